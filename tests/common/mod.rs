//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{Device, Tensor};

/// `<workspace>/assets/...`
pub fn asset(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(rel)
}

/// The reduced "mini" PVT v1 configuration of the golden fixtures, read from manifest.json.
pub fn mini_config() -> pvt_backbone::PvtConfig {
    let text = std::fs::read_to_string(asset("fixtures/pvt_v1/manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let c = &m["config"];
    let list = |k: &str| -> Vec<usize> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (p, d, h, r, s, n) = (
        list("patch_sizes"),
        list("embed_dims"),
        list("num_heads"),
        list("mlp_ratios"),
        list("sr_ratios"),
        list("depths"),
    );
    let stage = |i: usize| pvt_backbone::StageConfig {
        patch_size: p[i],
        embed_dim: d[i],
        num_heads: h[i],
        mlp_ratio: r[i],
        sr_ratio: s[i],
        depth: n[i],
    };
    pvt_backbone::PvtConfig {
        stages: [stage(0), stage(1), stage(2), stage(3)],
        in_channels: 3,
        pretrain_img_size: c["img_size"].as_u64().unwrap() as usize,
        num_classes: c["num_classes"].as_u64().unwrap() as usize,
        qkv_bias: c["qkv_bias"].as_bool().unwrap(),
        numerics: None,
    }
}

/// The fixtures' input, by formula (manifest.json `input.formula`), `[1, 3, H, W]`.
pub fn formula_input(h: usize, w: usize) -> Tensor {
    let mut v = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (cf, yf, xf, wf) = (c as f64, y as f64, x as f64, w as f64);
                let val = 2.0 * ((0.05 * yf + 0.07 * xf) + 1.3 * cf).sin()
                    + 0.5 * (((0.11 * yf) * xf) / wf + cf).cos();
                v.push(val as f32);
            }
        }
    }
    Tensor::from_vec(v, (1, 3, h, w), &Device::Cpu).unwrap()
}

/// The reference tensors.
pub fn references() -> HashMap<String, Tensor> {
    candle::safetensors::load(
        asset("fixtures/pvt_v1/mini_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

/// `max|got - want| / max|want|`, after checking the shapes agree.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = want
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale
}

/// Parity tolerance on max|diff| / max|ref|. The issue asks for 1e-4; the port reaches a few
/// 1e-6 (f32 rounding), and 2e-5 keeps a tanh-GELU mistake (2.2e-4 on these fixtures) 10x away.
pub const TOL: f32 = 2e-5;

/// Asserts the relative error is within [`TOL`].
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let e = rel_err(got, want);
    assert!(e <= TOL, "{what}: max|diff|/max|ref| = {e:e} > {TOL:e}");
}
