//! Golden tests: Semantic FPN-PVT (backbone → FPN → FPNHead, the ADE20K test pipeline) against
//! the official PVT segmentation backbone + mmsegmentation's FPN / FPNHead / slide_inference
//! (fixtures made by tools/make_semantic_fpn_fixtures.py, see its manifest.json).
//!
//! Tolerances (the issue's): logits at max|diff| / max|ref| ≤ 1e-4; label maps equal except
//! where the two best logits are within 1e-4 · max|logits|.

mod common;

use candle::{DType, Device, IndexOp, Tensor};
use common::{asset, formula_input, mini_config, rel_err};
use pvt_backbone::Numerics;
use pvt_nn::Checkpoint;
use pvt_types::ImageSize;
use pvt_zoo::semantic_fpn::{
    preprocess_seg, seg_map_from_logits, Inference, SegAug, SegTestConfig, SemanticFpnConfig,
    SemanticFpnPvt,
};
use std::collections::HashMap;

const TOL: f32 = 1e-4;

struct Fixture {
    model: SemanticFpnPvt,
    refs: HashMap<String, Tensor>,
    manifest: serde_json::Value,
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(asset("fixtures/semantic_fpn/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hw(v: &serde_json::Value) -> (usize, usize) {
    let a = v.as_array().unwrap();
    (
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    )
}

fn mini_semantic_config(m: &serde_json::Value) -> SemanticFpnConfig {
    let mut backbone = mini_config();
    backbone.numerics = Some(Numerics::OFFICIAL);
    let n = |k: &str| m["config"]["decode_head"][k].as_u64().unwrap() as usize;
    SemanticFpnConfig {
        backbone: pvt_zoo::BackboneConfig::V1(backbone),
        fpn_channels: m["config"]["neck"]["out_channels"].as_u64().unwrap() as usize,
        head_channels: n("channels"),
        num_classes: n("num_classes"),
    }
}

fn fixture() -> Fixture {
    let manifest = manifest();
    let ckpt = Checkpoint::load(asset("fixtures/semantic_fpn/mini_fpn_pvt_f16.pth")).unwrap();
    let (model, info) =
        SemanticFpnPvt::load(&ckpt, &mini_semantic_config(&manifest), &Device::Cpu).unwrap();
    assert_eq!(info.prefix(), Some("backbone."));
    assert_eq!(info.dropped(), ["pos_embed4[:, 0] (cls position)"]);
    let refs = candle::safetensors::load(
        asset("fixtures/semantic_fpn/mini_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    Fixture {
        model,
        refs,
        manifest,
    }
}

fn check_logits(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    let e = rel_err(got, want);
    println!("{what}: max rel err {e:e}");
    assert!(e <= TOL, "{what}: max|diff|/max|ref| = {e:e} > {TOL:e}");
    e
}

/// Labels equal except where our two best logits are within `TOL · max|logits|`.
fn check_labels(what: &str, logits: &Tensor, want: &Tensor) {
    let map = seg_map_from_logits(logits).unwrap();
    let want: Vec<u8> = want.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    assert_eq!(map.labels().len(), want.len(), "{what}: label count");
    let v = logits.i(0).unwrap().to_dtype(DType::F32).unwrap();
    let (k, h, w) = v.dims3().unwrap();
    let v: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
    let scale = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let n = h * w;
    let (mut differ, mut excused) = (0, 0);
    for (p, (&got, &exp)) in map.labels().iter().zip(&want).enumerate() {
        if got == exp as u16 {
            continue;
        }
        differ += 1;
        let mut best: Vec<f32> = (0..k).map(|c| v[c * n + p]).collect();
        best.sort_by(|a, b| b.total_cmp(a));
        let gap = best[0] - best[1];
        assert!(
            gap <= TOL * scale,
            "{what}: pixel ({}, {}) labelled {got}, reference {exp}, top-2 gap {gap:e}",
            p / w,
            p % w
        );
        excused += 1;
    }
    println!("{what}: {differ} of {n} labels differ, all at near-ties ({excused})");
}

#[test]
fn formula_input_whole_and_slide() {
    let f = fixture();
    let m = &f.manifest["formula"];
    let (h, w) = hw(&m["input_hw"]);
    let (oh, ow) = hw(&m["ori_hw"]);
    let ori = ImageSize::new(oh, ow);
    let x = formula_input(h, w);

    let head = f.model.forward_logits(&x).unwrap();
    assert_eq!(head.dims(), &[1, 8, h / 4, w / 4]);
    check_logits("formula head logits", &head, &f.refs["formula_head_logits"]);

    let fin = f.model.output_logits(&x, ori, &Inference::Whole).unwrap();
    check_logits(
        "formula final logits",
        &fin,
        &f.refs["formula_final_logits"],
    );
    check_labels("formula labels", &fin, &f.refs["formula_labels"]);

    let slide = Inference::Slide {
        crop: hw(&m["slide"]["crop_hw"]),
        stride: hw(&m["slide"]["stride_hw"]),
    };
    let fin = f.model.output_logits(&x, ori, &slide).unwrap();
    check_logits(
        "formula slide final logits",
        &fin,
        &f.refs["formula_slide_final_logits"],
    );
    check_labels(
        "formula slide labels",
        &fin,
        &f.refs["formula_slide_labels"],
    );
}

#[test]
fn photo_through_the_align_resize_pipeline() {
    let f = fixture();
    let m = &f.manifest["photo"];
    let img = pvt_nn::image::load_rgb(asset("images/chelsea.png")).unwrap();
    let step = m["row_step"].as_u64().unwrap() as usize;

    // the pipeline's sizes and input
    let test = SegTestConfig::ade20k();
    let input = preprocess_seg(&img, &test, &Device::Cpu).unwrap();
    let (ah, aw) = hw(&m["aligned_hw"]);
    assert_eq!(input.pixels.dims(), &[1, 3, ah, aw]);
    assert_eq!(
        (input.ori_shape.height, input.ori_shape.width),
        hw(&m["ori_hw"])
    );
    // the reference stores the input at rows and columns 0, 37, 74, ..
    let px: Vec<f32> = input.pixels.flatten_all().unwrap().to_vec1().unwrap();
    let want: Vec<f32> = f.refs["photo_input"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (sh, sw) = (ah.div_ceil(37), aw.div_ceil(37));
    let mut worst = 0f32;
    for c in 0..3 {
        for y in 0..sh {
            for x in 0..sw {
                let got = px[c * ah * aw + (y * 37) * aw + x * 37];
                let exp = want[c * sh * sw + y * sw + x];
                worst = worst.max((got - exp).abs());
            }
        }
    }
    assert!(
        worst <= 1e-6,
        "network input differs from mmcv's by {worst}"
    );

    let head = f.model.forward_logits(&input.pixels).unwrap();
    check_logits("photo head logits", &head, &f.refs["photo_head_logits"]);

    for (tag, test) in [
        ("photo", test.clone()),
        (
            "photo_slide",
            SegTestConfig {
                inference: Inference::Slide {
                    crop: hw(&m["slide"]["crop_hw"]),
                    stride: hw(&m["slide"]["stride_hw"]),
                },
                ..test
            },
        ),
    ] {
        let fin = f.model.image_logits(&img, &test).unwrap();
        let (_, k, h, w) = fin.dims4().unwrap();
        let rows: Vec<u32> = (0..h).step_by(step).map(|r| r as u32).collect();
        let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
        let sub = fin.index_select(&idx, 2).unwrap();
        assert_eq!(sub.dims(), &[1, k, rows.len(), w]);
        check_logits(
            &format!("{tag} final logits (every {step}th row)"),
            &sub,
            &f.refs[&format!("{tag}_final_logits_rows")],
        );
        check_labels(
            &format!("{tag} labels"),
            &fin,
            &f.refs[&format!("{tag}_labels")],
        );
        // segment_with is the argmax of the same logits
        let map = f.model.segment_with(&img, &test).unwrap();
        assert_eq!(map, seg_map_from_logits(&fin).unwrap());
    }
}

/// mmseg's multi-scale + flip test (`MultiScaleFlipAug` + `aug_test`) on the photo: the scales,
/// the mean class probabilities at the original size and the labels.
#[test]
fn photo_multi_scale_flip_test() {
    let f = fixture();
    let m = &f.manifest["tta"];
    let refs = candle::safetensors::load(
        asset("fixtures/semantic_fpn/tta_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let aug = SegAug {
        ratios: m["ratios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect(),
        flip: m["flip"].as_bool().unwrap(),
    };
    let base = SegTestConfig::ade20k();
    let passes = m["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 2 * aug.ratios.len());
    for (scale, pass) in aug
        .scales(base.scale)
        .unwrap()
        .iter()
        .zip(passes.iter().step_by(2))
    {
        assert_eq!(*scale, hw(&pass["scale"]));
    }
    let test = SegTestConfig {
        aug: Some(aug),
        ..base
    };
    let img = pvt_nn::image::load_rgb(asset("images/chelsea.png")).unwrap();
    let probs = f.model.image_logits(&img, &test).unwrap();
    let step = m["row_step"].as_u64().unwrap() as usize;
    let h = probs.dim(2).unwrap();
    let rows: Vec<u32> = (0..h).step_by(step).map(|r| r as u32).collect();
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
    check_logits(
        &format!("multi-scale + flip probabilities (every {step}th row)"),
        &probs.index_select(&idx, 2).unwrap(),
        &refs["photo_tta_probs_rows"],
    );
    check_labels(
        "multi-scale + flip labels",
        &probs,
        &refs["photo_tta_labels"],
    );
    let map = f.model.segment_with(&img, &test).unwrap();
    assert_eq!(map, seg_map_from_logits(&probs).unwrap());
    // the flipped passes matter: without them the labels change somewhere
    let no_flip = SegTestConfig {
        aug: Some(SegAug {
            flip: false,
            ..test.aug.clone().unwrap()
        }),
        ..test.clone()
    };
    assert_ne!(f.model.segment_with(&img, &no_flip).unwrap(), map);
}

#[test]
fn strict_loading_reports_problems_and_tolerates_auxiliary_heads() {
    let manifest = manifest();
    let cfg = mini_semantic_config(&manifest);
    let base = Checkpoint::load(asset("fixtures/semantic_fpn/mini_fpn_pvt_f16.pth")).unwrap();
    assert_eq!(base.wrapper.as_deref(), Some("state_dict"));

    // an auxiliary head is dropped and reported
    let mut ck = Checkpoint::load(asset("fixtures/semantic_fpn/mini_fpn_pvt_f16.pth")).unwrap();
    let t = Tensor::zeros((4, 8, 3, 3), DType::F32, &Device::Cpu).unwrap();
    ck.tensors
        .insert("auxiliary_head.convs.0.conv.weight".into(), t);
    let (_, info) = SemanticFpnPvt::load(&ck, &cfg, &Device::Cpu).unwrap();
    assert!(info
        .dropped()
        .contains(&"auxiliary_head.convs.0.conv.weight".to_string()));

    // num_batches_tracked is optional
    let mut ck = Checkpoint::load(asset("fixtures/semantic_fpn/mini_fpn_pvt_f16.pth")).unwrap();
    ck.tensors
        .retain(|k, _| !k.ends_with("num_batches_tracked"));
    SemanticFpnPvt::load(&ck, &cfg, &Device::Cpu).unwrap();

    // a missing BN statistic and a stray head tensor are both reported
    let mut ck = Checkpoint::load(asset("fixtures/semantic_fpn/mini_fpn_pvt_f16.pth")).unwrap();
    ck.tensors
        .remove("decode_head.scale_heads.3.4.bn.running_var")
        .unwrap();
    ck.tensors.insert(
        "decode_head.conv_seg2.weight".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = format!(
        "{:#}",
        SemanticFpnPvt::load(&ck, &cfg, &Device::Cpu).unwrap_err()
    );
    assert!(
        err.contains("decode_head.scale_heads.3.4.bn.running_var")
            && err.contains("decode_head.conv_seg2.weight"),
        "{err}"
    );

    // wrong class count: a shape error naming conv_seg
    let mut wrong = cfg.clone();
    wrong.num_classes = 150;
    let err = format!(
        "{:#}",
        SemanticFpnPvt::load(&base, &wrong, &Device::Cpu).unwrap_err()
    );
    assert!(err.contains("decode_head.conv_seg.weight"), "{err}");
}

#[test]
fn full_size_key_names_load_strictly() {
    // keys and shapes of fpn_pvt_t / fpn_pvt_l as the official code + mmseg build them
    let text = std::fs::read_to_string(asset("fixtures/semantic_fpn/full_size_keys.json")).unwrap();
    let models: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, keys) in models.as_object().unwrap() {
        let tensors: std::collections::BTreeMap<String, Tensor> = keys
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, shape)| {
                let dims: Vec<usize> = shape
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let t = Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
                (k.clone(), t)
            })
            .collect();
        assert!(tensors.contains_key("decode_head.scale_heads.3.4.bn.num_batches_tracked"));
        assert_eq!(tensors["backbone.pos_embed4"].dims(), &[1, 50, 512]);
        let n = tensors.len();
        let ckpt = Checkpoint {
            path: format!("{name}.pth").into(),
            container: pvt_nn::checkpoint::Container::TorchZip,
            wrapper: Some("state_dict".into()),
            stored_dtypes: Default::default(),
            tensors,
            skipped: vec![],
        };
        let cfg = SemanticFpnConfig::from_name(name).unwrap();
        let (_, info) = SemanticFpnPvt::load(&ckpt, &cfg, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(info.dropped(), ["pos_embed4[:, 0] (cls position)"]);
        println!("{name}: {n} tensors, all used");
    }
}
