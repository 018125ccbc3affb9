//! The ImageNet evaluation transform against torchvision + Pillow (fixtures made by
//! tools/make_pvt_v1_fixtures.py on assets/images/chelsea.png).

mod common;

use candle::{Device, Tensor};
use common::asset;
use pvt_nn::image::{deit_eval_transform, load_rgb, resize_bicubic_pil, shorter_side_size};

fn refs() -> std::collections::HashMap<String, Tensor> {
    candle::safetensors::load(
        asset("fixtures/pvt_v1/preprocess_reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn pil_bicubic_resize_is_bit_exact() {
    let img = load_rgb(asset("images/chelsea.png")).unwrap();
    let (w, h) = shorter_side_size(img.width() as usize, img.height() as usize, 256);
    assert_eq!((w, h), (384, 256));
    let ours = resize_bicubic_pil(&img, w, h);
    let want = refs()["resize256_chelsea"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got: Vec<f32> = ours.as_raw().iter().map(|&v| v as f32).collect();
    assert_eq!(got.len(), want.len());
    let mismatches = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(
        mismatches,
        0,
        "{mismatches} of {} bytes differ from Pillow",
        got.len()
    );
}

#[test]
fn deit_transform_matches_torchvision() {
    let img = load_rgb(asset("images/chelsea.png")).unwrap();
    let ours = deit_eval_transform(&img, &Device::Cpu).unwrap();
    let want = &refs()["deit_chelsea"];
    let diff = (ours - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff <= 1e-6, "max |diff| = {diff:e}");
}
