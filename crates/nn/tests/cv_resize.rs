//! `pvt_nn::cv_resize` against OpenCV's own outputs (`assets/fixtures/cv_resize/`, written by
//! `tools/make_cv_resize_fixtures.py` with opencv-python-headless; the manifest names the
//! version). Every case must match byte for byte.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use image::RgbImage;
use pvt_nn::cv_resize::{
    align_resize, mmdet_resize, resize_bilinear_cv, resize_bilinear_cv_raw, scale_factor,
    MMDET_COCO_SCALE, PVT_ADE20K_SCALE,
};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_dir() -> PathBuf {
    root().join("assets/fixtures/cv_resize")
}

fn manifest() -> Result<Value> {
    let path = fixture_dir().join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn field(case: &Value, key: &str) -> usize {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("manifest case {case}: no integer {key}")) as usize
}

/// The generator's input formula (`hash_image` in tools/make_cv_resize_fixtures.py).
fn hash_image(w: usize, h: usize, channels: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h * channels);
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            for c in 0..channels as u32 {
                let mut v = x
                    .wrapping_mul(0x9E37_79B1)
                    .wrapping_add(y.wrapping_mul(0x85EB_CA77))
                    .wrapping_add(c.wrapping_mul(0xC2B2_AE3D))
                    .wrapping_add(seed.wrapping_mul(0x27D4_EB2F));
                v ^= v >> 15;
                v = v.wrapping_mul(0x2C1B_3C6D);
                v ^= v >> 12;
                v = v.wrapping_mul(0x297A_2D39);
                v ^= v >> 15;
                out.push((v >> 24) as u8);
            }
        }
    }
    out
}

/// The expected bytes of a case (grayscale PNG of `out_w · channels` columns).
fn expected(case: &Value) -> Result<Vec<u8>> {
    let file = case["file"].as_str().context("case without file")?;
    let path = fixture_dir().join(file);
    let img = image::open(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_luma8();
    let (w, h, c) = (
        field(case, "out_w"),
        field(case, "out_h"),
        field(case, "channels"),
    );
    ensure!(
        (img.width() as usize, img.height() as usize) == (w * c, h),
        "{file}: {}x{} pixels, expected {}x{h}",
        img.width(),
        img.height(),
        w * c
    );
    Ok(img.into_raw())
}

/// `(differing bytes, max |difference|)`.
fn compare(got: &[u8], want: &[u8]) -> (usize, u8) {
    assert_eq!(got.len(), want.len(), "output length");
    got.iter().zip(want).fold((0, 0), |(n, m), (&a, &b)| {
        let d = a.abs_diff(b);
        (n + (d > 0) as usize, m.max(d))
    })
}

fn chelsea() -> Result<RgbImage> {
    pvt_nn::image::load_rgb(root().join("assets/images/chelsea.png"))
}

fn case<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name} in the manifest"))
}

#[test]
fn synthetic_images_match_opencv() -> Result<()> {
    let m = manifest()?;
    println!("OpenCV {}", m["opencv_version"]);
    let mut failures = vec![];
    let mut n = 0;
    for c in m["cases"].as_array().context("cases")? {
        if c["input"] != "hash" {
            continue;
        }
        n += 1;
        let name = c["name"].as_str().unwrap();
        let (iw, ih, ch) = (field(c, "in_w"), field(c, "in_h"), field(c, "channels"));
        let (ow, oh) = (field(c, "out_w"), field(c, "out_h"));
        let src = hash_image(iw, ih, ch, field(c, "seed") as u32);
        let got = resize_bilinear_cv_raw(&src, iw, ih, ch, ow, oh);
        let (count, max) = compare(&got, &expected(c)?);
        println!(
            "{name:22} {iw:>4}x{ih:<4} c{ch} -> {ow:>4}x{oh:<4} {:15} differing {count:6}  max |diff| {max}",
            c["opencv_path"].as_str().unwrap_or("")
        );
        if ch == 3 {
            let img = RgbImage::from_raw(iw as u32, ih as u32, src).unwrap();
            assert_eq!(resize_bilinear_cv(&img, ow, oh).into_raw(), got);
        }
        if count > 0 {
            failures.push(format!("{name}: {count} bytes differ, max {max}"));
        }
    }
    assert!(n >= 30, "only {n} synthetic cases in the manifest");
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[test]
fn chelsea_mmdet_resize_matches_opencv() -> Result<()> {
    let m = manifest()?;
    let c = case(&m, "chelsea_mmdet");
    let img = chelsea()?;
    assert_eq!((img.width(), img.height()), (451, 300));
    let r = mmdet_resize(&img, MMDET_COCO_SCALE)?;
    assert_eq!(
        (r.img.width() as usize, r.img.height() as usize),
        (field(c, "out_w"), field(c, "out_h"))
    );
    assert_eq!((r.img.width(), r.img.height()), (1203, 800));
    assert_eq!(r.scale_factor, scale_factor(451, 300, 1203, 800));
    assert_eq!(r.scale_factor[0], (1203.0f64 / 451.0) as f32);
    assert_eq!(r.scale_factor[1], (800.0f64 / 300.0) as f32);
    let (count, max) = compare(r.img.as_raw(), &expected(c)?);
    println!("chelsea 451x300 -> 1203x800 (mmdet): differing {count}, max |diff| {max}");
    assert_eq!((count, max), (0, 0));
    Ok(())
}

#[test]
fn chelsea_align_resize_matches_opencv() -> Result<()> {
    let m = manifest()?;
    let c = case(&m, "chelsea_align_resize");
    let img = chelsea()?;
    let r = align_resize(&img, PVT_ADE20K_SCALE, 32)?;
    assert_eq!((field(c, "rescaled_w"), field(c, "rescaled_h")), (770, 512));
    assert_eq!(
        (r.img.width() as usize, r.img.height() as usize),
        (field(c, "out_w"), field(c, "out_h"))
    );
    assert_eq!((r.img.width(), r.img.height()), (800, 512));
    assert_eq!(r.scale_factor, scale_factor(451, 300, 800, 512));
    let (count, max) = compare(r.img.as_raw(), &expected(c)?);
    println!(
        "chelsea 451x300 -> 770x512 -> 800x512 (AlignResize): differing {count}, max |diff| {max}"
    );
    assert_eq!((count, max), (0, 0));
    Ok(())
}

#[test]
fn chelsea_downscale_matches_opencv() -> Result<()> {
    let m = manifest()?;
    let c = case(&m, "chelsea_down");
    let out = resize_bilinear_cv(&chelsea()?, field(c, "out_w"), field(c, "out_h"));
    let (count, max) = compare(out.as_raw(), &expected(c)?);
    println!("chelsea 451x300 -> 200x133: differing {count}, max |diff| {max}");
    assert_eq!((count, max), (0, 0));
    Ok(())
}

#[test]
fn thread_count_does_not_change_the_result() -> Result<()> {
    let img = chelsea()?;
    let many = resize_bilinear_cv(&img, 1203, 800);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()?
        .install(|| resize_bilinear_cv(&img, 1203, 800));
    assert_eq!(many, one);
    Ok(())
}
