//! `resize_bilinear` against PyTorch's `F.interpolate(mode="bilinear")` (goldens made by
//! tools/make_semantic_fpn_fixtures.py), and how far candle's own `upsample_bilinear2d` is from
//! the same goldens.

use candle::{Device, Tensor};
use pvt_semantic_fpn::{resize_bilinear, PixelGrid};
use std::collections::HashMap;
use std::path::PathBuf;

fn goldens() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/fixtures/semantic_fpn");
    let t =
        candle::safetensors::load(dir.join("interp_reference.safetensors"), &Device::Cpu).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    (t, m)
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap()
}

#[test]
fn resize_matches_pytorch_interpolate() {
    let (t, m) = goldens();
    let cases = m["interp"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    let mut worst_ours = 0f32;
    let mut worst_candle = 0f32;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let call = c["call"].as_str().unwrap();
        let grid = if call.contains("'align_corners': True") {
            PixelGrid::AlignCorners
        } else {
            PixelGrid::HalfPixel
        };
        let out_hw: Vec<usize> = c["out_hw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let x = &t[&format!("{name}_in")];
        let want = &t[&format!("{name}_out")];
        let ours = resize_bilinear(x, (out_hw[0], out_hw[1]), grid).unwrap();
        let e = max_rel(&ours, want);
        worst_ours = worst_ours.max(e);
        assert!(e <= 1e-6, "{name}: ours vs PyTorch {e:e}");
        let theirs = x
            .upsample_bilinear2d(out_hw[0], out_hw[1], grid == PixelGrid::AlignCorners)
            .unwrap();
        let e = max_rel(&theirs, want);
        worst_candle = worst_candle.max(e);
        assert!(e <= 1e-5, "{name}: candle vs PyTorch {e:e}");
        println!(
            "{name:10} {call}: ours {:e}, candle {e:e}",
            max_rel(&ours, want)
        );
    }
    println!("worst: ours {worst_ours:e}, candle upsample_bilinear2d {worst_candle:e}");
}
