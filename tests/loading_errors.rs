//! Every way a checkpoint or an image can be wrong gets an error that says what and where.

mod common;

use std::collections::BTreeMap;

use candle::{Device, Tensor};
use common::{asset, mini_config};
use pvt_backbone::{load_dense, PvtV1};
use pvt_nn::checkpoint::save_safetensors;
use pvt_nn::image::load_rgb;
use pvt_nn::Checkpoint;

fn fixture(name: &str) -> std::path::PathBuf {
    asset(&format!("fixtures/pvt_v1/{name}"))
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pvt-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Loads the official detection fixture, edits its tensors, saves and reloads them.
fn edited(name: &str, edit: impl FnOnce(&mut BTreeMap<String, Tensor>)) -> Checkpoint {
    let mut t = Checkpoint::load(fixture("mini_det_official_f32.safetensors"))
        .unwrap()
        .tensors;
    edit(&mut t);
    let path = tmp(name);
    save_safetensors(&t, &path).unwrap();
    Checkpoint::load(&path).unwrap()
}

fn dense_err(c: &Checkpoint, cfg: &pvt_backbone::PvtConfig) -> String {
    format!("{:#}", load_dense(c, cfg, &Device::Cpu).unwrap_err())
}

#[test]
fn missing_tensor_is_named_with_its_shape() {
    let c = edited("missing.safetensors", |t| {
        t.remove("backbone.block2.0.mlp.fc1.weight");
    });
    let msg = dense_err(&c, &mini_config());
    assert!(
        msg.contains("missing (1):\n    block2.0.mlp.fc1.weight [256, 32]"),
        "{msg}"
    );
    assert!(msg.contains("missing.safetensors"), "{msg}");
}

#[test]
fn unexpected_tensor_is_named() {
    let c = edited("unexpected.safetensors", |t| {
        t.insert(
            "backbone.block1.7.attn.q.weight".into(),
            Tensor::zeros((16, 16), candle::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = dense_err(&c, &mini_config());
    assert!(
        msg.contains("unexpected (1):\n    block1.7.attn.q.weight [16, 16]"),
        "{msg}"
    );
}

#[test]
fn wrong_shapes_are_listed_with_both_shapes() {
    let c = Checkpoint::load(fixture("mini_det_official_f32.safetensors")).unwrap();
    // the mini checkpoint into the full PVT-Tiny architecture
    let msg = dense_err(&c, &PvtV1::Tiny.config());
    assert!(msg.contains("wrong shape"), "{msg}");
    assert!(
        msg.contains(
            "patch_embed1.proj.weight: model expects [64, 3, 4, 4], checkpoint has [16, 3, 4, 4]"
        ),
        "{msg}"
    );
    assert!(msg.contains("missing"), "{msg}"); // Tiny has more blocks in stage 2..3 than mini
}

#[test]
fn legacy_and_foreign_files_are_refused_clearly() {
    let msg = format!(
        "{:#}",
        Checkpoint::load(fixture("legacy_tiny.pth")).unwrap_err()
    );
    assert!(
        msg.contains("legacy (PyTorch < 1.6") && msg.contains("torch.save"),
        "{msg}"
    );
    assert!(msg.contains("legacy_tiny.pth"), "{msg}");
    let msg = format!(
        "{:#}",
        Checkpoint::load(fixture("not_a_checkpoint.pth")).unwrap_err()
    );
    assert!(msg.contains("not a checkpoint"), "{msg}");
    let msg = format!(
        "{:#}",
        Checkpoint::load(fixture("does_not_exist.pth")).unwrap_err()
    );
    assert!(
        msg.contains("cannot open") && msg.contains("does_not_exist.pth"),
        "{msg}"
    );
    // a zip that is not a torch file
    let p = tmp("truncated.pth");
    let bytes = std::fs::read(fixture("mini_cls_official_f16.pth")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = format!("{:#}", Checkpoint::load(&p).unwrap_err());
    assert!(
        msg.contains("truncated.pth") && msg.contains("corrupt zip"),
        "{msg}"
    );
}

#[test]
fn unrecognised_naming_is_explained() {
    let c = edited("timm.safetensors", |t| {
        let all = std::mem::take(t);
        for (k, v) in all {
            t.insert(
                k.replace("backbone.patch_embed1", "stages.0.x")
                    .replace("backbone.", "stages."),
                v,
            );
        }
    });
    let msg = dense_err(&c, &mini_config());
    assert!(msg.contains("timm"), "{msg}");
}

#[test]
fn bad_images_are_clear_errors() {
    let msg = format!(
        "{:#}",
        load_rgb(fixture("not_a_checkpoint.pth")).unwrap_err()
    );
    assert!(
        msg.contains("not_a_checkpoint.pth") && msg.contains("not an image"),
        "{msg}"
    );
    let png = std::fs::read(asset("images/chelsea.png")).unwrap();
    let p = tmp("truncated.png");
    std::fs::write(&p, &png[..png.len() / 3]).unwrap();
    let msg = format!("{:#}", load_rgb(&p).unwrap_err());
    assert!(
        msg.contains("truncated.png") && msg.contains("cannot decode"),
        "{msg}"
    );
    let msg = format!("{:#}", load_rgb(tmp("missing.png")).unwrap_err());
    assert!(msg.contains("cannot open image"), "{msg}");
}

#[test]
fn exif_orientation_is_applied() {
    // A 2x1 JPEG whose EXIF orientation (6: rotate 90° clockwise) makes it 1x2.
    let img = image::RgbImage::from_fn(8, 4, |x, _| {
        if x < 4 {
            image::Rgb([250, 10, 10])
        } else {
            image::Rgb([10, 10, 250])
        }
    });
    let mut jpeg = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&img)
        .unwrap();
    // insert an APP1 Exif segment right after SOI
    let tiff: Vec<u8> = [
        b"II*\0".as_slice(),
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
        &1u32.to_le_bytes(),
        &6u16.to_le_bytes(),
        &[0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    let p = tmp("rotated.jpg");
    std::fs::write(&p, out).unwrap();
    let loaded = load_rgb(&p).unwrap();
    assert_eq!((loaded.width(), loaded.height()), (4, 8));
    // rotated clockwise: the left (red) half is now on top
    assert!(loaded.get_pixel(2, 1)[0] > 200 && loaded.get_pixel(2, 6)[2] > 200);
}
