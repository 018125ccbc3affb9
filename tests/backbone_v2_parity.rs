//! Golden tests: the PVT v2 port against timm's `PyramidVisionTransformerV2` (itself checked
//! against the official whai362/PVT v2 code and, for the mmdetection file, against real
//! mmdetection), fixtures made by tools/make_pvt_v2_fixtures.py, for every checkpoint path a user
//! can take; plus the strict-loading errors.

mod common;

use std::collections::HashMap;

use candle::{DType, Device, Tensor};
use common::{assert_close, asset, formula_input, rel_err};
use pvt_backbone::{
    load_classifier_v2, load_dense_v2, DialectV2, LoadInfoV2, NormEps, PvtV2Config, PvtV2Dense,
};
use pvt_nn::{Backbone, Checkpoint};

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(asset("fixtures/pvt_v2/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reduced config of one fixture model (`conv` or `linear`), read from the manifest.
fn mini(variant: &str) -> PvtV2Config {
    let cfg: PvtV2Config =
        serde_json::from_value(manifest()["config"]["rust"][variant].clone()).unwrap();
    cfg.validate().unwrap();
    cfg
}

fn refs() -> HashMap<String, Tensor> {
    candle::safetensors::load(
        asset("fixtures/pvt_v2/mini_v2_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn ckpt(name: &str) -> Checkpoint {
    Checkpoint::load(asset(&format!("fixtures/pvt_v2/{name}"))).unwrap()
}

/// Compares the four maps with `{prefix}_feat{i}_{suffix}`; returns the worst relative error.
fn check_features(
    what: &str,
    model: &PvtV2Dense,
    (h, w): (usize, usize),
    prefix: &str,
    suffix: &str,
) -> f32 {
    let refs = refs();
    let feats = model.forward(&formula_input(h, w)).unwrap();
    assert_eq!(feats.len(), 4);
    let mut worst = 0f32;
    for (i, f) in feats.iter().enumerate() {
        let key = format!("{prefix}_feat{}_{suffix}", i + 1);
        assert_close(&format!("{what} {key}"), f, &refs[&key]);
        worst = worst.max(rel_err(f, &refs[&key]));
    }
    eprintln!("{what} {prefix} {suffix}: max rel err {worst:e}");
    worst
}

fn official_eps(mut cfg: PvtV2Config) -> PvtV2Config {
    cfg.norm_eps = Some(NormEps::Official);
    cfg
}

#[test]
fn conv_dense_features_for_every_loader_path() {
    for name in [
        "mini_v2_cls_official_f16.pth",
        "mini_v2_cls_timm_bf16.safetensors",
        "mini_v2_det_mmdet_f16.pth",
    ] {
        // The references use the official / timm epsilons, whatever the file's origin.
        let (model, info) =
            load_dense_v2(&ckpt(name), &official_eps(mini("conv")), &Device::Cpu).unwrap();
        check_features(name, &model, (224, 224), "conv", "224");
        check_features(name, &model, (200, 300), "conv", "200x300");
        let spec: Vec<(usize, usize)> = model
            .output_spec()
            .levels()
            .iter()
            .map(|l| (l.channels, l.stride))
            .collect();
        assert_eq!(spec, vec![(16, 4), (32, 8), (40, 16), (64, 32)]);
        match name {
            "mini_v2_cls_official_f16.pth" => {
                assert_eq!(info.dialect, DialectV2::Official);
                assert_eq!(info.dropped, vec!["head.weight", "head.bias"]);
                assert!(info.prefix.is_none() && info.wrapper.is_none());
            }
            "mini_v2_cls_timm_bf16.safetensors" => {
                assert_eq!(info.dialect, DialectV2::Timm);
                assert_eq!(info.dropped, vec!["head.weight", "head.bias"]);
            }
            _ => {
                assert_eq!(info.dialect, DialectV2::Mmdet);
                assert_eq!(info.wrapper.as_deref(), Some("state_dict"));
                assert_eq!(info.prefix.as_deref(), Some("backbone."));
                assert!(info.dropped.is_empty());
                assert_eq!(
                    info.outside,
                    vec![
                        "neck.lateral_convs.0.conv.bias",
                        "neck.lateral_convs.0.conv.weight"
                    ]
                );
            }
        }
    }
}

#[test]
fn ceil_sized_levels_through_the_backbone_trait() {
    let (model, _) = load_dense_v2(
        &ckpt("mini_v2_cls_official_f16.pth"),
        &mini("conv"),
        &Device::Cpu,
    )
    .unwrap();
    let pyr = model.forward_pyramid(&formula_input(200, 300)).unwrap();
    let sizes: Vec<Vec<usize>> = pyr.levels().iter().map(|t| t.dims().to_vec()).collect();
    assert_eq!(
        sizes,
        vec![
            vec![1, 16, 50, 75],
            vec![1, 32, 25, 38],
            vec![1, 40, 13, 19],
            vec![1, 64, 7, 10]
        ]
    );
}

#[test]
fn mmdet_checkpoint_gets_mmdet_epsilons_by_default() {
    let c = ckpt("mini_v2_det_mmdet_f16.pth");
    let (model, info) = load_dense_v2(&c, &mini("conv"), &Device::Cpu).unwrap();
    assert_eq!(info.norm_eps, NormEps::Mmdet);
    assert_eq!(model.norm_eps(), NormEps::Mmdet);
    check_features("mmdet", &model, (100, 150), "conv", "100x150_mmdet");
    // and the fixtures see the difference: official epsilons on the same input miss the refs
    let (model, _) = load_dense_v2(&c, &official_eps(mini("conv")), &Device::Cpu).unwrap();
    let feats = model.forward(&formula_input(100, 150)).unwrap();
    let r = refs();
    assert!(rel_err(&feats[1], &r["conv_feat2_100x150_mmdet"]) > 1e-3);
    // timm / official files default to the official epsilons
    let (_, info) = load_dense_v2(
        &ckpt("mini_v2_cls_timm_bf16.safetensors"),
        &mini("conv"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(info.norm_eps, NormEps::Official);
}

#[test]
fn classifier_logits_match() {
    let r = refs();
    for (name, variant) in [
        ("mini_v2_cls_official_f16.pth", "conv"),
        ("mini_v2_cls_timm_bf16.safetensors", "conv"),
        ("mini_v2_li_cls_official_model_f16.pth", "linear"),
    ] {
        let (model, info): (_, LoadInfoV2) =
            load_classifier_v2(&ckpt(name), &mini(variant), &Device::Cpu).unwrap();
        assert!(info.dropped.is_empty());
        let logits = model.forward(&formula_input(224, 224)).unwrap();
        let key = format!("{variant}_logits_224");
        assert_close(&format!("{name} {key}"), &logits, &r[&key]);
        eprintln!("{name} {key}: rel err {:e}", rel_err(&logits, &r[&key]));
        let p = model.probabilities(&formula_input(224, 224)).unwrap();
        let s = p.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((s - 1.0).abs() < 1e-5);
    }
    assert_eq!(
        ckpt("mini_v2_li_cls_official_model_f16.pth")
            .wrapper
            .as_deref(),
        Some("model")
    );
}

#[test]
fn linear_sra_dense_features_for_both_files() {
    for name in [
        "mini_v2_li_cls_official_model_f16.pth",
        "mini_v2_li_det_timm_f16.safetensors",
    ] {
        let (model, info) = load_dense_v2(&ckpt(name), &mini("linear"), &Device::Cpu).unwrap();
        check_features(name, &model, (200, 300), "linear", "200x300");
        if name.contains("timm") {
            assert_eq!(info.dialect, DialectV2::Timm);
            assert_eq!(info.prefix.as_deref(), Some("backbone."));
            assert!(info.dropped.is_empty());
        } else {
            assert_eq!(info.dialect, DialectV2::Official);
            assert_eq!(info.dropped, vec!["head.weight", "head.bias"]);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// errors

fn with_tensors(
    name: &str,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, Tensor>),
) -> Checkpoint {
    let mut c = ckpt(name);
    edit(&mut c.tensors);
    c
}

#[test]
fn missing_key_is_reported_by_name() {
    let c = with_tensors("mini_v2_cls_official_f16.pth", |t| {
        t.remove("block2.0.mlp.dwconv.dwconv.weight");
        t.remove("norm3.bias");
    });
    let msg = format!(
        "{:#}",
        load_dense_v2(&c, &mini("conv"), &Device::Cpu).unwrap_err()
    );
    assert!(msg.contains("missing (2)"), "{msg}");
    assert!(
        msg.contains("block2.0.mlp.dwconv.dwconv.weight [256, 1, 3, 3]"),
        "{msg}"
    );
    assert!(msg.contains("norm3.bias [40]"), "{msg}");
}

#[test]
fn wrong_shape_and_unexpected_keys_are_reported_together() {
    let c = with_tensors("mini_v2_cls_timm_bf16.safetensors", |t| {
        // timm names: the error speaks of the official names the model is built from
        t.insert(
            "stages.1.downsample.proj.weight".into(),
            Tensor::zeros((32, 16, 7, 7), DType::F32, &Device::Cpu).unwrap(),
        );
        t.insert(
            "stages.0.blocks.5.norm1.weight".into(),
            Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = format!(
        "{:#}",
        load_classifier_v2(&c, &mini("conv"), &Device::Cpu).unwrap_err()
    );
    assert!(
        msg.contains(
            "patch_embed2.proj.weight: model expects [32, 16, 3, 3], checkpoint has [32, 16, 7, 7]"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("unexpected (1):\n    block1.5.norm1.weight [16]"),
        "{msg}"
    );
}

#[test]
fn wrong_variant_lists_the_differences() {
    // a linear-SRA checkpoint into the conv model: stage 4 has an extra SR conv and norm, and the
    // 1x1 SR convs have the wrong shape for stages 1-3
    let msg = format!(
        "{:#}",
        load_dense_v2(
            &ckpt("mini_v2_li_cls_official_model_f16.pth"),
            &mini("conv"),
            &Device::Cpu
        )
        .unwrap_err()
    );
    assert!(
        msg.contains(
            "block1.0.attn.sr.weight: model expects [16, 16, 8, 8], checkpoint has [16, 16, 1, 1]"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("block4.1.attn.sr.weight [64, 64, 1, 1]"),
        "{msg}"
    );
}

#[test]
fn classifier_from_a_dense_checkpoint_is_a_clear_error() {
    let msg = format!(
        "{:#}",
        load_classifier_v2(
            &ckpt("mini_v2_li_det_timm_f16.safetensors"),
            &mini("linear"),
            &Device::Cpu
        )
        .unwrap_err()
    );
    assert!(msg.contains("dense backbone"), "{msg}");
    assert!(msg.contains("head.weight [100, 64]"), "{msg}");
}

#[test]
fn v1_checkpoint_is_named_as_such() {
    let c = Checkpoint::load(asset("fixtures/pvt_v1/mini_det_mmdet_f16.pth")).unwrap();
    let msg = format!(
        "{:#}",
        load_dense_v2(&c, &mini("conv"), &Device::Cpu).unwrap_err()
    );
    assert!(msg.contains("PVT v1 checkpoint"), "{msg}");
}
