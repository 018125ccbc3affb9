//! Golden tests: the PVT v1 port against the official whai362/PVT code (fixtures made by
//! tools/make_pvt_v1_fixtures.py), for every checkpoint path a user can take.

mod common;

use candle::Device;
use common::*;
use pvt_backbone::{load_classifier, load_dense, Dialect, Numerics, PosEmbedResize};
use pvt_nn::Checkpoint;

const DENSE_FILES: [&str; 4] = [
    "mini_cls_official_f16.pth",
    "mini_cls_official_model_bf16.pth",
    "mini_det_official_f32.safetensors",
    "mini_det_mmdet_f16.pth",
];

fn ckpt(name: &str) -> Checkpoint {
    Checkpoint::load(asset(&format!("fixtures/pvt_v1/{name}"))).unwrap()
}

fn check_features(name: &str, model: &pvt_backbone::PvtDense, h: usize, w: usize, suffix: &str) {
    let refs = references();
    let feats = model.forward(&formula_input(h, w)).unwrap();
    for (i, f) in feats.iter().enumerate() {
        let key = format!("feat{}_{suffix}", i + 1);
        assert_close(&format!("{name} {key}"), f, &refs[&key]);
    }
}

#[test]
fn dense_features_match_official_for_every_loader_path() {
    for name in DENSE_FILES {
        let c = ckpt(name);
        // The fixtures' numbers come from the official code, so build with its conventions
        // whatever the file's origin.
        let mut cfg = mini_config();
        cfg.numerics = Some(Numerics::OFFICIAL);
        let (model, info) = load_dense(&c, &cfg, &Device::Cpu).unwrap();
        check_features(name, &model, 224, 224, "224");
        check_features(name, &model, 320, 480, "320x480");
        check_features(name, &model, 256, 196, "256x196");
        match name {
            "mini_cls_official_f16.pth" | "mini_cls_official_model_bf16.pth" => {
                assert_eq!(info.dialect, Dialect::Official);
                assert_eq!(info.dropped.len(), 6, "{:?}", info.dropped); // cls_token, norm x2, head x2, pos row
                assert!(info.outside.is_empty());
            }
            "mini_det_official_f32.safetensors" => {
                assert_eq!(info.prefix.as_deref(), Some("backbone."));
                assert_eq!(
                    info.outside,
                    vec![
                        "neck.lateral_convs.0.conv.bias",
                        "neck.lateral_convs.0.conv.weight"
                    ]
                );
                assert_eq!(info.dropped, vec!["pos_embed4[:, 0] (cls position)"]);
            }
            _ => {
                assert_eq!(info.dialect, Dialect::Mmdet);
                assert_eq!(c.wrapper.as_deref(), Some("state_dict"));
                assert!(info.dropped.is_empty());
            }
        }
    }
    assert_eq!(
        ckpt("mini_cls_official_model_bf16.pth").wrapper.as_deref(),
        Some("model")
    );
}

#[test]
fn numerics_follow_the_checkpoint_origin_by_default() {
    let cfg = mini_config();
    let (model, info) = load_dense(&ckpt("mini_det_mmdet_f16.pth"), &cfg, &Device::Cpu).unwrap();
    assert_eq!(info.numerics, Numerics::MMDET);
    // mmdetection's own forward (eps 1e-6 everywhere, always interpolate) on the same weights
    check_features("mmdet", &model, 256, 196, "256x196_mmdet");
    let (_, info) = load_dense(
        &ckpt("mini_det_official_f32.safetensors"),
        &cfg,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(info.numerics, Numerics::OFFICIAL);
}

#[test]
fn always_interpolate_rule_matches_patched_official_code() {
    let mut cfg = mini_config();
    cfg.numerics = Some(Numerics {
        pos_embed_resize: PosEmbedResize::AlwaysInterpolate,
        ..Numerics::OFFICIAL
    });
    let (model, _) = load_dense(
        &ckpt("mini_det_official_f32.safetensors"),
        &cfg,
        &Device::Cpu,
    )
    .unwrap();
    check_features("always_interp", &model, 256, 196, "256x196_always_interp");
    // and the two rules really differ on this input
    let refs = references();
    assert!(rel_err(&refs["feat1_256x196"], &refs["feat1_256x196_always_interp"]) > 1e-3);
}

#[test]
fn wrong_layernorm_eps_is_detected_by_the_fixtures() {
    // Guards the fixtures themselves: with mmdetection's eps the official numbers must not be
    // reproduced, otherwise the eps choice would be untested.
    let mut cfg = mini_config();
    cfg.numerics = Some(Numerics {
        norm_eps: pvt_backbone::NormEps::Mmdet,
        ..Numerics::OFFICIAL
    });
    let (model, _) = load_dense(
        &ckpt("mini_det_official_f32.safetensors"),
        &cfg,
        &Device::Cpu,
    )
    .unwrap();
    let feats = model.forward(&formula_input(224, 224)).unwrap();
    let refs = references();
    assert!(rel_err(&feats[3], &refs["feat4_224"]) > 1e-4);
}

#[test]
fn classifier_logits_match_official() {
    let refs = references();
    for name in [
        "mini_cls_official_f16.pth",
        "mini_cls_official_model_bf16.pth",
    ] {
        let (model, info) = load_classifier(&ckpt(name), &mini_config(), &Device::Cpu).unwrap();
        assert!(info.dropped.is_empty());
        let logits = model.forward(&formula_input(224, 224)).unwrap();
        assert_close(
            &format!("{name} logits 224"),
            &logits,
            &refs["cls_logits_224"],
        );
        let logits = model.forward(&formula_input(320, 480)).unwrap();
        assert_close(
            &format!("{name} logits 320x480"),
            &logits,
            &refs["cls_logits_320x480"],
        );
    }
}

#[test]
fn classifier_from_a_dense_checkpoint_is_a_clear_error() {
    let err = load_classifier(
        &ckpt("mini_det_official_f32.safetensors"),
        &mini_config(),
        &Device::Cpu,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("dense backbone"), "{msg}");
    assert!(
        msg.contains("missing")
            && msg.contains("cls_token [1, 1, 64]")
            && msg.contains("head.weight [1000, 64]"),
        "{msg}"
    );
}
