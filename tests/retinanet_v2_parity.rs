//! RetinaNet with a PVT v2 backbone against mmdetection, end to end from the photo: mmdet 3.3's
//! own `PyramidVisionTransformerV2` (mmdetection-named checkpoint, LayerNorm eps 1e-6 everywhere)
//! + FPN + RetinaHead, mmdet's test pipeline, and mmdet 2.13's post-processing (mmcv 1.3.8 CPU
//! NMS, IoU >= thr). Fixtures made by tools/make_retinanet_v2_fixtures.py; see
//! assets/fixtures/retinanet_v2/manifest.json.

mod common;

use std::collections::{BTreeMap, HashMap};

use candle::{DType, Device, Tensor};
use common::{assert_close, asset, rel_err, TOL};
use pvt_backbone::naming_v2::{from_official_v2, split_backbone_v2, to_official_v2};
use pvt_backbone::{AnyLoadInfo, DialectV2, NormEps, PvtV2Config};
use pvt_det_ops::nms::NmsThreshold;
use pvt_det_ops::{AnchorConfig, AnchorGenerator};
use pvt_nn::image::load_rgb;
use pvt_nn::Checkpoint;
use pvt_retinanet::{postprocess, ImageMeta, RetinaPostprocess};
use pvt_types::Detections;
use pvt_zoo::det_input::preprocess_det_scale;
use pvt_zoo::{BackboneConfig, RetinaNetConfig, RetinaNetPvt};

const CKPT: &str = "fixtures/retinanet_v2/mini_retinanet_v2_mmdet_f16.pth";

const CASES: [(&str, &str, (usize, usize)); 4] = [
    ("chelsea_320x256", "images/chelsea.png", (320, 256)),
    ("chelsea_1333x800", "images/chelsea.png", (1333, 800)),
    (
        "coffee_crop_320x256",
        "images/coffee_crop_233x599.png",
        (320, 256),
    ),
    (
        "coffee_crop_1333x800",
        "images/coffee_crop_233x599.png",
        (1333, 800),
    ),
];

fn manifest() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(asset("fixtures/retinanet_v2/manifest.json")).unwrap(),
    )
    .unwrap()
}

/// The fixture's architecture; `norm_eps: None` lets loading follow the checkpoint's naming.
fn config(norm_eps: Option<NormEps>) -> RetinaNetConfig {
    let m = manifest();
    let mut backbone: PvtV2Config =
        serde_json::from_value(m["config"]["rust_backbone"].clone()).unwrap();
    backbone.norm_eps = norm_eps;
    RetinaNetConfig {
        backbone: BackboneConfig::V2(backbone),
        fpn_channels: m["config"]["fpn_channels"].as_u64().unwrap() as usize,
        num_classes: m["config"]["num_classes"].as_u64().unwrap() as usize,
        stacked_convs: m["config"]["stacked_convs"].as_u64().unwrap() as usize,
    }
}

fn load(ckpt: &Checkpoint, norm_eps: Option<NormEps>) -> (RetinaNetPvt, AnyLoadInfo) {
    RetinaNetPvt::load(ckpt, &config(norm_eps), &Device::Cpu).unwrap()
}

fn refs(case: &str) -> HashMap<String, Tensor> {
    candle::safetensors::load(
        asset(&format!(
            "fixtures/retinanet_v2/reference_{case}.safetensors"
        )),
        &Device::Cpu,
    )
    .unwrap()
}

fn pp() -> RetinaPostprocess {
    // the fixture ran mmcv 1.3.8's CPU kernel (suppress when IoU >= thr)
    RetinaPostprocess::coco(NmsThreshold::cpu_legacy)
}

/// Largest box and score differences of `got` against the reference, after checking the same
/// count, labels and order.
fn compare(what: &str, got: &Detections, r: &HashMap<String, Tensor>) -> (f32, f32) {
    let boxes = r["dets_le217_bboxes"].to_vec2::<f32>().unwrap();
    let scores = r["dets_le217_scores"].to_vec1::<f32>().unwrap();
    let labels = r["dets_le217_labels"].to_vec1::<i64>().unwrap();
    assert_eq!(got.len(), boxes.len(), "{what}: detection count");
    let (mut max_box, mut max_score) = (0f32, 0f32);
    for i in 0..boxes.len() {
        assert_eq!(
            got.classes()[i].0 as i64,
            labels[i],
            "{what}: label of detection {i}"
        );
        let ds = (got.scores()[i] - scores[i]).abs();
        assert!(
            ds <= 1e-5,
            "{what}: score {i}: {} vs {}",
            got.scores()[i],
            scores[i]
        );
        max_score = max_score.max(ds);
        for k in 0..4 {
            let (a, b) = (got.boxes()[i][k], boxes[i][k]);
            assert!(
                (a - b).abs() <= 1e-3f32.max(1e-5 * b.abs()),
                "{what}: box {i}[{k}]: {a} vs {b}"
            );
            max_box = max_box.max((a - b).abs());
        }
    }
    (max_box, max_score)
}

/// Checks `got` against `want` (within [`TOL`]) and returns the relative error.
fn check(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_close(what, got, want);
    rel_err(got, want)
}

/// Runs one case: checks the stored raw outputs and returns the detections with the largest
/// relative error of those outputs.
fn detect(net: &RetinaNetPvt, case: &str, image: &str, scale: (usize, usize)) -> (Detections, f32) {
    let r = refs(case);
    let img = load_rgb(asset(image)).unwrap();
    let input = preprocess_det_scale(&img, scale, &Device::Cpu).unwrap();
    let meta = ImageMeta {
        img_shape: input.img_shape,
        ori_shape: input.ori_shape,
        scale_factor: input.scale_factor,
    };
    let (p, out) = net.forward_raw(&input.batch.pixels).unwrap();
    let mut worst = 0f32;
    if let Some(c5) = r.get("c5") {
        let feats = net.backbone.forward(&input.batch.pixels).unwrap();
        worst = worst.max(check(&format!("{case} c5"), &feats[3], c5));
    }
    for (l, lvl) in (3..=7).enumerate() {
        let key = format!("fpn_p{lvl}");
        if let Some(want) = r.get(&key) {
            worst = worst.max(check(&format!("{case} {key}"), &p.levels()[l], want));
            worst = worst.max(check(
                &format!("{case} cls_score_p{lvl}"),
                &out.cls_logits[l],
                &r[&format!("cls_score_p{lvl}")],
            ));
            worst = worst.max(check(
                &format!("{case} bbox_pred_p{lvl}"),
                &out.box_deltas[l],
                &r[&format!("bbox_pred_p{lvl}")],
            ));
        }
    }
    let anchors = AnchorGenerator::new(&AnchorConfig::retinanet()).unwrap();
    let dets = postprocess(&out, 0, &anchors, &meta, 8, &pp()).unwrap();
    (dets, worst)
}

#[test]
fn end_to_end_detections_match_mmdet() {
    let ckpt = Checkpoint::load(asset(CKPT)).unwrap();
    let (net, info) = load(&ckpt, None);
    assert_eq!(info.prefix(), Some("backbone."));
    // an mmdetection-named checkpoint runs with mmdetection's LayerNorm eps (1e-6 everywhere)
    match &info {
        AnyLoadInfo::V2(i) => {
            assert_eq!(i.dialect, DialectV2::Mmdet);
            assert_eq!(i.norm_eps, NormEps::Mmdet);
        }
        other => panic!("expected a PVT v2 backbone, got {other:?}"),
    }
    let m = manifest();
    for (case, image, scale) in CASES {
        let (dets, raw) = detect(&net, case, image, scale);
        let (db, ds) = compare(case, &dets, &refs(case));
        let expected = m["cases"][case]["stats"]["dets_le217"].as_u64().unwrap() as usize;
        assert_eq!(dets.len(), expected, "{case}");
        assert!(dets.len() >= 50, "{case}: too few detections to mean much");
        eprintln!(
            "{case}: {} detections, max |box diff| {db:.2e} px, max |score diff| {ds:.2e}; \
             stored raw outputs max rel diff {raw:.2e}",
            dets.len()
        );
    }
}

/// The same weights stored in bf16 and under official / timm names (converted by
/// `pvt_backbone::naming_v2`, as `pvt convert` does) give the same detections, provided the
/// epsilons are pinned to mmdetection's.
#[test]
fn bf16_and_renamed_checkpoints_give_the_same_detections() {
    let ckpt = Checkpoint::load(asset(CKPT)).unwrap();
    let bb = split_backbone_v2(&ckpt.tensors).unwrap();
    let official = to_official_v2(bb.dialect, &bb.tensors).unwrap();
    let (case, image, scale) = CASES[0];
    let want = detect(&load(&ckpt, None).0, case, image, scale).0;
    for (naming, dtype) in [
        (DialectV2::Mmdet, DType::BF16),
        (DialectV2::Official, DType::F16),
        (DialectV2::Timm, DType::BF16),
    ] {
        let renamed = from_official_v2(naming, &official).unwrap();
        let mut all: BTreeMap<String, Tensor> = renamed
            .into_iter()
            .map(|(k, v)| (format!("backbone.{k}"), v))
            .collect();
        for k in &bb.outside {
            all.insert(k.clone(), ckpt.tensors[k].clone());
        }
        let cast: BTreeMap<String, Tensor> = all
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap()))
            .collect();
        let path = std::env::temp_dir().join(format!(
            "pvt-retina-v2-{naming:?}-{}.safetensors",
            std::process::id()
        ));
        pvt_nn::checkpoint::save_safetensors(&cast, &path).unwrap();
        let c = Checkpoint::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(
            c.dtype_counts().keys().collect::<Vec<_>>(),
            vec![&format!("{dtype:?}").to_lowercase()]
        );
        // every value is exact in f16 and bf16
        for (k, v) in &all {
            let d = (v - &c.tensors[k])
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap();
            let d = d.max(0).unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(d, 0.0, "{naming:?} {dtype:?} {k}");
        }
        let got = detect(&load(&c, Some(NormEps::Mmdet)).0, case, image, scale).0;
        assert_eq!(got.len(), want.len(), "{naming:?} {dtype:?}");
        assert_eq!(got.boxes(), want.boxes(), "{naming:?} {dtype:?}");
        assert_eq!(got.scores(), want.scores(), "{naming:?} {dtype:?}");
        assert_eq!(got.classes(), want.classes(), "{naming:?} {dtype:?}");
    }
}

/// The fixture sees the LayerNorm epsilons: the official / timm ones (1e-5 in the
/// patch-embedding and spatial-reduction norms) on these weights move the outputs far beyond
/// the tolerance, as the generator measured with PyTorch.
#[test]
fn official_epsilons_are_visible() {
    let ckpt = Checkpoint::load(asset(CKPT)).unwrap();
    let (net, _) = load(&ckpt, Some(NormEps::Official));
    let (case, image, scale) = CASES[0];
    let r = refs(case);
    let img = load_rgb(asset(image)).unwrap();
    let input = preprocess_det_scale(&img, scale, &Device::Cpu).unwrap();
    let (p, out) = net.forward_raw(&input.batch.pixels).unwrap();
    let e_fpn = rel_err(&p.levels()[2], &r["fpn_p5"]);
    let e_cls = rel_err(&out.cls_logits[2], &r["cls_score_p5"]);
    let want = manifest()["cases"][case]["stats"]["official_eps_effect"]["fpn_max_rel_diff"]
        .as_f64()
        .unwrap() as f32;
    eprintln!("official eps: fpn_p5 rel diff {e_fpn:.2e}, cls_score_p5 {e_cls:.2e}");
    assert!(
        e_fpn > 100.0 * TOL && e_cls > 100.0 * TOL,
        "official eps: fpn_p5 {e_fpn:e}, cls_score_p5 {e_cls:e}"
    );
    assert!(
        e_fpn <= want * 1.01,
        "fpn_p5 {e_fpn:e} vs PyTorch's max over levels {want:e}"
    );
}
