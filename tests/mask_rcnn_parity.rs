//! Golden tests of Mask R-CNN-PVT against mmdetection (fixtures from
//! `tools/make_mask_rcnn_fixtures.py`: the official PVT detection backbone, mmdet 3.3 forwards of
//! FPN / RPNHead / SingleRoIExtractor / Shared2FCBBoxHead / FCNMaskHead, and mmdet 2.13's own
//! test path — proposals, `BBoxHead.get_bboxes`, `multiclass_nms`, `get_seg_masks` on the CPU —
//! on mmcv 1.3.8's CPU NMS rule, suppress when IoU ≥ thr).
//!
//! Each stage is checked on the reference's own inputs, so that a difference is caught where
//! it starts, then the whole detector is checked end to end from the image file.

mod common;

use std::collections::HashMap;

use candle::{DType, Device, Tensor};
use common::{asset, rel_err};
use pvt_det_ops::nms::NmsThreshold;
use pvt_det_ops::{paste_mask_probs, ImageMeta, MASK_THR_BINARY};
use pvt_mask_rcnn::{box_detections, HostLevels, Proposals, RoiTestConfig, RpnProposalConfig};
use pvt_nn::image::load_rgb;
use pvt_nn::Checkpoint;
use pvt_types::{ImageSize, Rle};
use pvt_zoo::det_input::preprocess_det_scale;
use pvt_zoo::{MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
use serde_json::Value;

fn manifest() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(asset("fixtures/mask_rcnn/manifest.json")).unwrap(),
    )
    .unwrap()
}

fn model() -> MaskRcnnPvt {
    let cfg: MaskRcnnConfig = serde_json::from_str(
        &std::fs::read_to_string(asset("configs/mask_rcnn_pvt_mini.json")).unwrap(),
    )
    .unwrap();
    let ckpt =
        Checkpoint::load(asset("fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")).unwrap();
    MaskRcnnPvt::load(&ckpt, &cfg, &Device::Cpu).unwrap().0
}

/// The fixtures ran mmcv 1.3.8's CPU NMS kernel (suppress when IoU >= thr).
fn detector(net: MaskRcnnPvt, scale: (usize, usize)) -> MaskRcnnDetector {
    let mut d = MaskRcnnDetector::new(net, &Device::Cpu).unwrap();
    d.rpn_test = RpnProposalConfig::coco(NmsThreshold::cpu_legacy);
    d.rcnn_test = RoiTestConfig::coco(NmsThreshold::cpu_legacy);
    d.scale = scale;
    d
}

struct Case {
    name: String,
    image: String,
    scale: (usize, usize),
    meta: ImageMeta,
    refs: HashMap<String, Tensor>,
    masks: Vec<Rle>,
}

fn shape(v: &Value) -> ImageSize {
    ImageSize::new(
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    )
}

fn cases() -> Vec<Case> {
    let m = manifest();
    let mut out = vec![];
    for (name, c) in m["cases"].as_object().unwrap() {
        let sf: Vec<f32> = c["scale_factor"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ori = shape(&c["ori_shape"]);
        let masks = c["masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(shape(&r["size"]), ori);
                Rle::from_compressed(r["counts"].as_str().unwrap(), ori).unwrap()
            })
            .collect();
        let refs = candle::safetensors::load(
            asset(&format!(
                "fixtures/mask_rcnn/{}",
                c["file"].as_str().unwrap()
            )),
            &Device::Cpu,
        )
        .unwrap();
        out.push(Case {
            name: name.clone(),
            image: c["image"]
                .as_str()
                .unwrap()
                .trim_start_matches("assets/")
                .into(),
            scale: (
                c["test_scale"][0].as_u64().unwrap() as usize,
                c["test_scale"][1].as_u64().unwrap() as usize,
            ),
            meta: ImageMeta {
                img_shape: shape(&c["img_shape"]),
                ori_shape: ori,
                scale_factor: [sf[0], sf[1], sf[2], sf[3]],
            },
            refs,
            masks,
        });
    }
    assert!(out.len() >= 2, "fixture cases: {}", out.len());
    out
}

fn boxes(t: &Tensor) -> Vec<[f32; 4]> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| [r[0], r[1], r[2], r[3]])
        .collect()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Boxes within 1e-3 px (relative 1e-5 for large coordinates).
fn assert_boxes_close(what: &str, got: &[[f32; 4]], want: &[[f32; 4]]) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        for k in 0..4 {
            assert!(
                (a[k] - b[k]).abs() <= 1e-3f32.max(1e-5 * b[k].abs()),
                "{what}: box {i}[{k}]: {} vs {}",
                a[k],
                b[k]
            );
        }
    }
}

fn assert_scores_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5, "{what}: score {i}: {a} vs {b}");
    }
}

/// Masks equal except on pixels whose pasted probability (ours) is within 1e-4 of the
/// threshold; returns how many such pixels differed.
fn assert_masks_match(what: &str, got: &[Rle], want: &[Rle], probs: &[Vec<f32>]) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: mask count");
    let mut near = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.decode(), w.decode());
        for (p, (a, b)) in g.data().iter().zip(w.data()).enumerate() {
            if a != b {
                let prob = probs[i][p];
                assert!(
                    (prob - MASK_THR_BINARY).abs() <= 1e-4,
                    "{what}: mask {i} pixel {p}: ours {a}, mmdet {b}, probability {prob}"
                );
                near += 1;
            }
        }
    }
    near
}

/// End to end, scores computed in another order of operations differ in the last bits, so two
/// entries whose scores are within 1e-5 may come out in either order. Matches each of ours to an
/// unused reference entry at most 8 places away with a box within 1e-3 px, a score within 1e-5
/// and the same label; returns, for each of ours, the reference index.
fn match_up_to_near_ties(
    what: &str,
    got: (&[[f32; 4]], &[f32], &[i64]),
    want: (&[[f32; 4]], &[f32], &[i64]),
) -> Vec<usize> {
    assert_eq!(got.0.len(), want.0.len(), "{what}: count");
    let n = want.0.len();
    let mut used = vec![false; n];
    let close = |a: [f32; 4], b: [f32; 4]| {
        (0..4).all(|k| (a[k] - b[k]).abs() <= 1e-3f32.max(1e-5 * b[k].abs()))
    };
    let mut swapped = 0;
    let out: Vec<usize> = (0..n)
        .map(|i| {
            let j = (i.saturating_sub(8)..(i + 9).min(n))
                .find(|&j| {
                    !used[j]
                        && close(got.0[i], want.0[j])
                        && (got.1[i] - want.1[j]).abs() <= 1e-5
                        && got.2[i] == want.2[j]
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: entry {i} {:?} score {} label {} has no reference counterpart \
                         near index {i} (reference there: {:?} {} {})",
                        got.0[i], got.1[i], got.2[i], want.0[i], want.1[i], want.2[i]
                    )
                });
            used[j] = true;
            swapped += usize::from(i != j);
            j
        })
        .collect();
    eprintln!("{what}: {n} matched, {swapped} in another order (score near-ties)");
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Our pasted probabilities (original image, row-major) for detections `boxes` (original
/// frame) with 28×28 probability masks.
fn pasted_probs(probs: &[f32], boxes_ori: &[[f32; 4]], meta: &ImageMeta) -> Vec<Vec<f32>> {
    let sf = meta.scale_factor;
    boxes_ori
        .iter()
        .enumerate()
        .map(|(i, b)| {
            // mmdet's round trip: mask RoI = det · sf, paste box = RoI / sf
            let roi = [b[0] * sf[0], b[1] * sf[1], b[2] * sf[2], b[3] * sf[3]];
            let pb = [
                roi[0] / sf[0],
                roi[1] / sf[1],
                roi[2] / sf[2],
                roi[3] / sf[3],
            ];
            paste_mask_probs(&probs[i * 784..(i + 1) * 784], (28, 28), pb, meta.ori_shape).unwrap()
        })
        .collect()
}

#[test]
fn every_stage_matches_mmdet_on_reference_inputs() {
    let net = model();
    let cfg = RoiTestConfig::coco(NmsThreshold::cpu_legacy);
    for c in cases() {
        let r = &c.refs;
        let img = load_rgb(asset(&c.image)).unwrap();
        let input = preprocess_det_scale(&img, c.scale, &Device::Cpu).unwrap();
        assert_eq!(input.img_shape, c.meta.img_shape, "{}", c.name);
        assert_eq!(input.scale_factor, c.meta.scale_factor, "{}", c.name);

        // FPN levels (stored as f16: compare at f16 resolution; the large case stores P5, P6)
        let (p, _) = net.forward_rpn(&input.batch.pixels).unwrap();
        for l in 0..5 {
            let Some(want) = r.get(&format!("fpn.{l}")) else {
                continue;
            };
            let want = want.to_dtype(DType::F32).unwrap();
            let e = rel_err(&p.levels()[l], &want);
            assert!(e <= 2e-3, "{} fpn.{l}: rel err {e}", c.name);
        }

        // box head on the reference proposals
        let props = boxes(&r["proposals"]);
        let levels = HostLevels::new(&p, 0, 4).unwrap();
        let feats = levels.extract(&props, 7, &Device::Cpu).unwrap();
        let out = net.roi_head.bbox_head.forward(&feats).unwrap();
        let e_cls = rel_err(&out.cls_score, &r["bbox_cls_score"]);
        let e_reg = rel_err(&out.bbox_pred, &r["bbox_pred"]);
        assert!(
            e_cls <= 1e-4 && e_reg <= 1e-4,
            "{}: box head rel err cls {e_cls}, reg {e_reg}",
            c.name
        );

        // box post-processing of the reference raw outputs: exact
        let dets = box_detections(
            &props,
            &flat(&r["bbox_cls_score"]),
            &flat(&r["bbox_pred"]),
            8,
            &c.meta,
            &cfg.nms,
        )
        .unwrap();
        let want_boxes = boxes(&r["det_bboxes"]);
        let want_labels = r["det_labels"].to_vec1::<i64>().unwrap();
        let got_boxes: Vec<[f32; 4]> = dets.iter().map(|d| d.bbox).collect();
        assert_boxes_close(&format!("{} detections", c.name), &got_boxes, &want_boxes);
        assert_scores_close(
            &format!("{} detections", c.name),
            &dets.iter().map(|d| d.score).collect::<Vec<_>>(),
            &r["det_scores"].to_vec1::<f32>().unwrap(),
        );
        let got_labels: Vec<i64> = dets.iter().map(|d| d.class as i64).collect();
        assert_eq!(got_labels, want_labels, "{} labels", c.name);

        // mask head on the reference detections
        let sf = c.meta.scale_factor;
        let rois: Vec<[f32; 4]> = want_boxes
            .iter()
            .map(|b| [b[0] * sf[0], b[1] * sf[1], b[2] * sf[2], b[3] * sf[3]])
            .collect();
        let labels: Vec<usize> = want_labels.iter().map(|&l| l as usize).collect();
        let mfeats = levels.extract(&rois, 14, &Device::Cpu).unwrap();
        let logits = net
            .roi_head
            .mask_head
            .forward_labels(&mfeats, &labels)
            .unwrap();
        let e = rel_err(&logits, &r["mask_pred"]);
        assert!(e <= 1e-4, "{}: mask logits rel err {e}", c.name);

        // paste of the reference logits
        let probs: Vec<f32> = flat(&r["mask_pred"]).into_iter().map(sigmoid).collect();
        let pasted = pasted_probs(&probs, &want_boxes, &c.meta);
        let ours: Vec<Rle> = pasted
            .iter()
            .map(|p| {
                let data = p.iter().map(|&v| u8::from(v >= MASK_THR_BINARY)).collect();
                Rle::encode(&pvt_types::BitMask::new(c.meta.ori_shape, data).unwrap())
            })
            .collect();
        let near = assert_masks_match(&format!("{} pasted", c.name), &ours, &c.masks, &pasted);
        eprintln!(
            "{}: {} proposals, {} detections, box head rel err {e_cls:.1e}/{e_reg:.1e}, \
             {near} mask pixels differ (all within 1e-4 of 0.5)",
            c.name,
            props.len(),
            dets.len()
        );
    }
}

#[test]
fn end_to_end_detections_and_masks_match_mmdet() {
    let net = model();
    for c in cases() {
        let r = &c.refs;
        let det = detector(net.clone(), c.scale);
        let img = load_rgb(asset(&c.image)).unwrap();
        let (_, props, dets): (_, Proposals, _) = det.detect_stages(&img).unwrap();
        let want_props = boxes(&r["proposals"]);
        let want_pscores = r["proposal_scores"].to_vec1::<f32>().unwrap();
        let zeros = vec![0i64; want_props.len()];
        match_up_to_near_ties(
            &format!("{} proposals", c.name),
            (
                &props.boxes,
                &props.scores,
                &zeros[..props.len().min(zeros.len())],
            ),
            (&want_props, &want_pscores, &zeros),
        );
        let want_boxes = boxes(&r["det_bboxes"]);
        let want_scores = r["det_scores"].to_vec1::<f32>().unwrap();
        let want_labels = r["det_labels"].to_vec1::<i64>().unwrap();
        let labels: Vec<i64> = dets.classes().iter().map(|l| l.0 as i64).collect();
        let order = match_up_to_near_ties(
            &format!("{} detections", c.name),
            (dets.boxes(), dets.scores(), &labels),
            (&want_boxes, &want_scores, &want_labels),
        );
        let want_masks: Vec<Rle> = order.iter().map(|&j| c.masks[j].clone()).collect();
        // our own probabilities, to judge pixels that differ
        let (p, _) = net
            .forward_rpn(
                &preprocess_det_scale(&img, c.scale, &Device::Cpu)
                    .unwrap()
                    .batch
                    .pixels,
            )
            .unwrap();
        let levels = HostLevels::new(&p, 0, 4).unwrap();
        let sf = c.meta.scale_factor;
        let rois: Vec<[f32; 4]> = dets
            .boxes()
            .iter()
            .map(|b| [b[0] * sf[0], b[1] * sf[1], b[2] * sf[2], b[3] * sf[3]])
            .collect();
        let lab: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let probs = net
            .roi_head
            .mask_probs(&levels, &rois, &lab, &Device::Cpu)
            .unwrap();
        let pasted = pasted_probs(&probs, dets.boxes(), &c.meta);
        let near = assert_masks_match(
            &format!("{} end to end", c.name),
            dets.masks().unwrap(),
            &want_masks,
            &pasted,
        );
        eprintln!(
            "{} end to end: {} proposals, {} detections, {near} mask pixels near 0.5 differ",
            c.name,
            props.len(),
            dets.len()
        );
    }
}

/// Strict loading: a missing, an unexpected or a wrong-shaped head tensor is an error naming it.
#[test]
fn detector_checkpoint_errors_name_the_keys() {
    let cfg: MaskRcnnConfig = serde_json::from_str(
        &std::fs::read_to_string(asset("configs/mask_rcnn_pvt_mini.json")).unwrap(),
    )
    .unwrap();
    let mut ckpt =
        Checkpoint::load(asset("fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")).unwrap();
    // a missing mask-head tensor
    ckpt.tensors.remove("roi_head.mask_head.conv_logits.bias");
    let err = MaskRcnnPvt::load(&ckpt, &cfg, &Device::Cpu).unwrap_err();
    assert!(
        format!("{err:#}").contains("roi_head.mask_head.conv_logits.bias"),
        "{err:#}"
    );
    // an unexpected one
    let mut ckpt =
        Checkpoint::load(asset("fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")).unwrap();
    ckpt.tensors.insert(
        "roi_head.bbox_head.extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = MaskRcnnPvt::load(&ckpt, &cfg, &Device::Cpu).unwrap_err();
    assert!(
        format!("{err:#}").contains("roi_head.bbox_head.extra.weight"),
        "{err:#}"
    );
    // a wrong class count
    let mut wrong = cfg.clone();
    wrong.num_classes = 80;
    let ckpt =
        Checkpoint::load(asset("fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")).unwrap();
    let err = MaskRcnnPvt::load(&ckpt, &wrong, &Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("fc_cls"), "{err:#}");
}

/// Mask R-CNN with a PVT v2 backbone, as the official PVT v2 detection checkpoints lay it out
/// (`backbone.` + official v2 names, mmdetection heads): the mini v2 backbone of
/// assets/fixtures/pvt_v2 joined with the mini Mask R-CNN neck and heads (same input channels).
/// The whole checkpoint loads strictly, the backbone reproduces timm's features, and the detector
/// runs end to end with one mask per detection.
#[test]
fn pvt_v2_backbone_mask_rcnn_loads_and_runs() {
    let v2_manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(asset("fixtures/pvt_v2/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut v2: pvt_backbone::PvtV2Config =
        serde_json::from_value(v2_manifest["config"]["rust"]["conv"].clone()).unwrap();
    v2.norm_eps = Some(pvt_backbone::NormEps::Official);
    let cls = Checkpoint::load(asset("fixtures/pvt_v2/mini_v2_cls_official_f16.pth")).unwrap();
    let mut tensors: std::collections::BTreeMap<String, Tensor> = cls
        .tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with("head."))
        .map(|(k, v)| (format!("backbone.{k}"), v))
        .collect();
    let heads =
        Checkpoint::load(asset("fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")).unwrap();
    tensors.extend(
        heads
            .tensors
            .into_iter()
            .filter(|(k, _)| !k.starts_with("backbone.")),
    );
    let path = std::env::temp_dir().join(format!(
        "pvt-mask-rcnn-v2-{}.safetensors",
        std::process::id()
    ));
    pvt_nn::checkpoint::save_safetensors(&tensors, &path).unwrap();
    let mut cfg: MaskRcnnConfig = serde_json::from_str(
        &std::fs::read_to_string(asset("configs/mask_rcnn_pvt_mini.json")).unwrap(),
    )
    .unwrap();
    cfg.backbone = pvt_zoo::BackboneConfig::V2(v2);
    let ckpt = Checkpoint::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let (net, info) = MaskRcnnPvt::load(&ckpt, &cfg, &Device::Cpu).unwrap();
    assert_eq!(info.prefix(), Some("backbone."));
    let v2_refs = candle::safetensors::load(
        asset("fixtures/pvt_v2/mini_v2_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let feats = net
        .backbone
        .forward(&common::formula_input(200, 300))
        .unwrap();
    for (i, f) in feats.iter().enumerate() {
        let e = rel_err(f, &v2_refs[&format!("conv_feat{}_200x300", i + 1)]);
        assert!(e <= 2e-5, "v2 Mask R-CNN backbone feat{}: {e}", i + 1);
    }
    let det = detector(net, (320, 256));
    let img = load_rgb(asset("images/chelsea.png")).unwrap();
    let (p, props, dets) = det.detect_stages(&img).unwrap();
    assert_eq!(
        p.spec()
            .levels()
            .iter()
            .map(|l| l.stride)
            .collect::<Vec<_>>(),
        vec![4, 8, 16, 32, 64]
    );
    assert!(!props.is_empty());
    let masks = dets.masks().unwrap();
    assert_eq!(masks.len(), dets.len());
    assert!(masks.iter().all(|m| m.size() == ImageSize::new(300, 451)));
}
