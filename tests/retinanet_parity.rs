//! RetinaNet-PVT against mmdetection (FPN, RetinaHead, ≤ 2.17 post-processing) and the official
//! PVT backbone, on real photos through the mmdet test pipeline (fixtures made by
//! tools/make_retinanet_fixtures.py; see assets/fixtures/retinanet/manifest.json).

mod common;

use std::collections::HashMap;

use candle::{Device, Tensor};
use common::{assert_close, asset, mini_config};
use pvt_backbone::Numerics;
use pvt_det_ops::nms::NmsThreshold;
use pvt_det_ops::{AnchorConfig, AnchorGenerator};
use pvt_nn::image::load_rgb;
use pvt_nn::Checkpoint;
use pvt_retinanet::{postprocess, DenseOutputs, ImageMeta, RetinaPostprocess};
use pvt_types::{Detections, ImageSize};
use pvt_zoo::det_input::preprocess_det_scale;
use pvt_zoo::{BackboneConfig, RetinaNetConfig, RetinaNetPvt};

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

fn config() -> RetinaNetConfig {
    let mut backbone = mini_config();
    // the references were computed with the official backbone conventions, whichever file
    backbone.numerics = Some(Numerics::OFFICIAL);
    RetinaNetConfig {
        backbone: BackboneConfig::V1(backbone),
        fpn_channels: 32,
        num_classes: 8,
        stacked_convs: 4,
    }
}

fn model(file: &str) -> RetinaNetPvt {
    let ckpt = Checkpoint::load(asset(&format!("fixtures/retinanet/{file}"))).unwrap();
    RetinaNetPvt::load(&ckpt, &config(), &Device::Cpu)
        .unwrap()
        .0
}

fn refs(case: &str) -> HashMap<String, Tensor> {
    candle::safetensors::load(
        asset(&format!("fixtures/retinanet/reference_{case}.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
}

fn pp() -> RetinaPostprocess {
    // the fixture ran mmcv 1.3.8's CPU kernel (suppress when IoU >= thr)
    RetinaPostprocess::coco(NmsThreshold::cpu_legacy)
}

/// Same count and labels, boxes within 1e-3 px (relative 1e-5 for large coordinates), scores
/// within 1e-5.
fn assert_same_detections(what: &str, got: &Detections, r: &HashMap<String, Tensor>) {
    let boxes = r["dets_le217_bboxes"].to_vec2::<f32>().unwrap();
    let scores = r["dets_le217_scores"].to_vec1::<f32>().unwrap();
    let labels = r["dets_le217_labels"].to_vec1::<i64>().unwrap();
    assert_eq!(got.len(), boxes.len(), "{what}: detection count");
    for i in 0..boxes.len() {
        assert_eq!(
            got.classes()[i].0 as i64,
            labels[i],
            "{what}: label of detection {i}"
        );
        assert!(
            (got.scores()[i] - scores[i]).abs() <= 1e-5,
            "{what}: score {i}: {} vs {}",
            got.scores()[i],
            scores[i]
        );
        for k in 0..4 {
            let (a, b) = (got.boxes()[i][k], boxes[i][k]);
            assert!(
                (a - b).abs() <= 1e-3f32.max(1e-5 * b.abs()),
                "{what}: box {i}[{k}]: {a} vs {b}"
            );
        }
    }
}

fn meta(
    case: &str,
    img: &image::RgbImage,
    scale: (usize, usize),
) -> (pvt_zoo::det_input::DetInput, ImageMeta) {
    let input = preprocess_det_scale(img, scale, &Device::Cpu).unwrap();
    let m = ImageMeta {
        img_shape: input.img_shape,
        ori_shape: input.ori_shape,
        scale_factor: input.scale_factor,
    };
    let _ = case;
    (input, m)
}

#[test]
fn raw_outputs_match_mmdet_for_both_checkpoint_namings() {
    let r = refs("chelsea_320x256");
    let img = load_rgb(asset("images/chelsea.png")).unwrap();
    let (input, m) = meta("chelsea_320x256", &img, (320, 256));
    assert_eq!(m.img_shape, ImageSize::new(213, 320));
    assert_eq!(input.batch.pixels.dims(), &[1, 3, 224, 320]);
    for file in [
        "mini_retinanet_official_f16.pth",
        "mini_retinanet_mmdet_f16.pth",
    ] {
        let net = model(file);
        let (p, out) = net.forward_raw(&input.batch.pixels).unwrap();
        for (l, lvl) in (3..=7).enumerate() {
            assert_close(
                &format!("{file} fpn_p{lvl}"),
                &p.levels()[l],
                &r[&format!("fpn_p{lvl}")],
            );
            assert_close(
                &format!("{file} cls_score_p{lvl}"),
                &out.cls_logits[l],
                &r[&format!("cls_score_p{lvl}")],
            );
            assert_close(
                &format!("{file} bbox_pred_p{lvl}"),
                &out.box_deltas[l],
                &r[&format!("bbox_pred_p{lvl}")],
            );
        }
    }
}

#[test]
fn postprocessing_of_reference_outputs_is_exact() {
    let r = refs("chelsea_320x256");
    let img = load_rgb(asset("images/chelsea.png")).unwrap();
    let (_, m) = meta("chelsea_320x256", &img, (320, 256));
    let out = DenseOutputs {
        cls_logits: (3..=7)
            .map(|l| r[&format!("cls_score_p{l}")].clone())
            .collect(),
        box_deltas: (3..=7)
            .map(|l| r[&format!("bbox_pred_p{l}")].clone())
            .collect(),
        strides: vec![8, 16, 32, 64, 128],
    };
    let anchors = AnchorGenerator::new(&AnchorConfig::retinanet()).unwrap();
    let dets = postprocess(&out, 0, &anchors, &m, 8, &pp()).unwrap();
    assert_same_detections("chelsea_320x256 (reference logits)", &dets, &r);
}

#[test]
fn end_to_end_detections_match_mmdet() {
    let net = model("mini_retinanet_official_f16.pth");
    let anchors = AnchorGenerator::new(&AnchorConfig::retinanet()).unwrap();
    for (case, image, scale) in CASES {
        let r = refs(case);
        let img = load_rgb(asset(image)).unwrap();
        let (input, m) = meta(case, &img, scale);
        let (p, out) = net.forward_raw(&input.batch.pixels).unwrap();
        assert_close(&format!("{case} fpn_p6"), &p.levels()[3], &r["fpn_p6"]);
        assert_close(
            &format!("{case} cls_score_p7"),
            &out.cls_logits[4],
            &r["cls_score_p7"],
        );
        let dets = postprocess(&out, 0, &anchors, &m, 8, &pp()).unwrap();
        assert_same_detections(case, &dets, &r);
    }
}

/// RetinaNet with a PVT v2 backbone (mmdetection's `retinanet_pvtv2_*` layout): the mini v2
/// backbone in mmdetection naming (assets/fixtures/pvt_v2) joined with the mini RetinaNet
/// neck/head (same input channels 16/32/40/64). The whole checkpoint loads strictly, the
/// detector's backbone reproduces timm's features, and its FPN/head run on them.
#[test]
fn pvt_v2_backbone_detector_loads_and_runs() {
    let v2_manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(asset("fixtures/pvt_v2/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut v2: pvt_backbone::PvtV2Config =
        serde_json::from_value(v2_manifest["config"]["rust"]["conv"].clone()).unwrap();
    v2.norm_eps = Some(pvt_backbone::NormEps::Official); // the references are timm's (official eps)
    let mut tensors = Checkpoint::load(asset("fixtures/pvt_v2/mini_v2_det_mmdet_f16.pth"))
        .unwrap()
        .tensors;
    tensors.retain(|k, _| k.starts_with("backbone."));
    let head = Checkpoint::load(asset("fixtures/retinanet/mini_retinanet_official_f16.pth"))
        .unwrap()
        .tensors;
    tensors.extend(
        head.into_iter()
            .filter(|(k, _)| !k.starts_with("backbone.")),
    );
    let path =
        std::env::temp_dir().join(format!("pvt-retina-v2-{}.safetensors", std::process::id()));
    pvt_nn::checkpoint::save_safetensors(&tensors, &path).unwrap();
    let cfg = RetinaNetConfig {
        backbone: BackboneConfig::V2(v2),
        fpn_channels: 32,
        num_classes: 8,
        stacked_convs: 4,
    };
    let (net, info) =
        RetinaNetPvt::load(&Checkpoint::load(&path).unwrap(), &cfg, &Device::Cpu).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(info.prefix(), Some("backbone."));
    let x = common::formula_input(200, 300);
    let v2_refs = candle::safetensors::load(
        asset("fixtures/pvt_v2/mini_v2_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let feats = net.backbone.forward(&x).unwrap();
    for (i, f) in feats.iter().enumerate() {
        assert_close(
            &format!("v2 detector feat{}", i + 1),
            f,
            &v2_refs[&format!("conv_feat{}_200x300", i + 1)],
        );
    }
    let (p, out) = net.forward_raw(&x).unwrap();
    assert_eq!(
        p.spec()
            .levels()
            .iter()
            .map(|l| l.stride)
            .collect::<Vec<_>>(),
        vec![8, 16, 32, 64, 128]
    );
    assert_eq!(out.cls_logits[0].dims(), &[1, 72, 25, 38]);
}
