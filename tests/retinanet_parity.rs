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
use pvt_zoo::{RetinaNetConfig, RetinaNetPvt};

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
        backbone,
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
