//! Image decoding and the preprocessing transforms of the reference pipelines.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use candle::{Device, Tensor};
use image::{ImageDecoder, ImageReader, RgbImage};
use pvt_types::ImageSize;

/// ImageNet mean in RGB order on the 0..255 scale (mmcv / mmdetection `img_norm_cfg`).
pub const IMAGENET_MEAN_255: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet std in RGB order on the 0..255 scale.
pub const IMAGENET_STD_255: [f32; 3] = [58.395, 57.12, 57.375];
/// ImageNet mean on the 0..1 scale (torchvision `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet std on the 0..1 scale.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Decodes an image file to 8-bit RGB, applying its EXIF orientation (as OpenCV's
/// `IMREAD_COLOR` and PIL's `exif_transpose` do). Unreadable, truncated or unknown files are
/// errors naming the file.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let reader = ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?;
    if reader.format().is_none() {
        bail!(
            "{}: not an image in a supported format (png, jpeg, bmp, tiff, webp)",
            path.display()
        );
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| anyhow!("{}: cannot decode image: {e}", path.display()))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| anyhow!("{}: cannot read orientation: {e}", path.display()))?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| {
        anyhow!(
            "{}: cannot decode image (truncated or corrupt?): {e}",
            path.display()
        )
    })?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

// ----------------------------------------------------------------------------------------------
// PIL-exact bicubic resampling (Pillow's `Image.resize(size, BICUBIC)`).

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: first input index and fixed-point weights (Pillow `precompute_coeffs` +
/// `normalize_coeffs_8bpc`: antialiased when downscaling, support 2·scale).
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    (if f < 0.0 { f - 0.5 } else { f + 0.5 }) as i32
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like Pillow's `Image.resize((w, h), Image.BICUBIC)` on an RGB image, to the bit:
/// separable passes (horizontal, then vertical) with 22-bit fixed-point weights and an 8-bit
/// intermediate image.
pub fn resize_bicubic_pil(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    // horizontal pass (all rows; Pillow restricts to the rows the vertical pass reads, which
    // gives the same values)
    let tmp: Vec<u8> = if out_w != in_w {
        let cx = pil_coeffs(in_w, out_w);
        let mut tmp = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for (x, (xmin, k)) in cx.iter().enumerate() {
                for c in 0..3 {
                    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                    for (i, &kw) in k.iter().enumerate() {
                        acc += row[(xmin + i) * 3 + c] as i32 * kw;
                    }
                    tmp[(y * out_w + x) * 3 + c] = clip8(acc);
                }
            }
        }
        tmp
    } else {
        src.to_vec()
    };
    let out: Vec<u8> = if out_h != in_h {
        let cy = pil_coeffs(in_h, out_h);
        let mut out = vec![0u8; out_h * out_w * 3];
        for (y, (ymin, k)) in cy.iter().enumerate() {
            for x in 0..out_w * 3 {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (i, &kw) in k.iter().enumerate() {
                    acc += tmp[(ymin + i) * out_w * 3 + x] as i32 * kw;
                }
                out[y * out_w * 3 + x] = clip8(acc);
            }
        }
        out
    } else {
        tmp
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size matches")
}

/// Output size of torchvision's `Resize(size)` with an int: the shorter side becomes `size`,
/// the longer `int(size · long / short)`. Returns `(width, height)`.
pub fn shorter_side_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Python's `round` (half to even) of a non-negative value.
fn round_half_even(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        r as i64 - 1
    } else {
        r as i64
    }
}

/// torchvision `CenterCrop(size)` offsets `(top, left)` (`int(round((H - size) / 2))`).
pub fn center_crop_offsets(h: usize, w: usize, size: usize) -> (usize, usize) {
    let top = round_half_even((h as f64 - size as f64) / 2.0).max(0) as usize;
    let left = round_half_even((w as f64 - size as f64) / 2.0).max(0) as usize;
    (top, left)
}

/// The DeiT / PVT ImageNet evaluation transform: `Resize(256, bicubic)` (Pillow, antialiased),
/// `CenterCrop(224)`, `ToTensor`, `Normalize(ImageNet mean, std)`. Returns `[3, 224, 224]` f32.
pub fn deit_eval_transform(img: &RgbImage, device: &Device) -> Result<Tensor> {
    const RESIZE: usize = 256;
    const CROP: usize = 224;
    let (w, h) = shorter_side_size(img.width() as usize, img.height() as usize, RESIZE);
    let resized = resize_bicubic_pil(img, w, h);
    let (top, left) = center_crop_offsets(h, w, CROP);
    let mut out = vec![0f32; 3 * CROP * CROP];
    for y in 0..CROP {
        for x in 0..CROP {
            let p = resized.get_pixel((left + x) as u32, (top + y) as u32);
            for c in 0..3 {
                let v = p[c] as f32 / 255.0;
                out[c * CROP * CROP + y * CROP + x] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    Ok(Tensor::from_vec(out, (3, CROP, CROP), device)?)
}

/// `(x − mean) / std` per RGB channel on the 0..255 scale (true f32 division, which equals
/// mmcv's `imnormalize`), as a `[3, H, W]` tensor.
pub fn normalize_255(img: &RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = (p[c] as f32 - IMAGENET_MEAN_255[c]) / IMAGENET_STD_255[c];
        }
    }
    Ok(Tensor::from_vec(out, (3, h, w), device)?)
}

/// Normalised images padded (bottom / right, zeros after normalisation) to a common size that
/// is a multiple of the network's largest stride.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `[B, 3, Hp, Wp]` f32.
    pub pixels: Tensor,
    /// Per image: the size fed to the network before padding.
    pub sizes: Vec<ImageSize>,
}

impl ImageBatch {
    /// Stacks `[3, H, W]` images, padding each to the batch's largest size rounded up to
    /// `multiple`. With `pad = false`, sizes that are not multiples of `multiple` are an error.
    pub fn from_images(images: &[Tensor], multiple: usize, pad: bool) -> Result<Self> {
        ensure!(!images.is_empty(), "no images");
        let mut sizes = vec![];
        for (i, t) in images.iter().enumerate() {
            let (c, h, w) = t
                .dims3()
                .map_err(|_| anyhow!("image {i}: expected [3, H, W], got {:?}", t.dims()))?;
            ensure!(c == 3, "image {i}: expected 3 channels, got {c}");
            if !pad && (h % multiple != 0 || w % multiple != 0) {
                bail!(
                    "image size {h}x{w} (HxW) is not a multiple of {multiple}; resize it, or pass --pad to zero-pad \
                     bottom/right to {}x{}",
                    h.div_ceil(multiple) * multiple,
                    w.div_ceil(multiple) * multiple
                );
            }
            sizes.push(ImageSize::new(h, w));
        }
        let hp = sizes
            .iter()
            .map(|s| s.height)
            .max()
            .unwrap_or(0)
            .div_ceil(multiple)
            * multiple;
        let wp = sizes
            .iter()
            .map(|s| s.width)
            .max()
            .unwrap_or(0)
            .div_ceil(multiple)
            * multiple;
        let padded = images
            .iter()
            .zip(&sizes)
            .map(|(t, s)| {
                t.pad_with_zeros(1, 0, hp - s.height)?
                    .pad_with_zeros(2, 0, wp - s.width)
            })
            .collect::<candle::Result<Vec<_>>>()?;
        Ok(Self {
            pixels: Tensor::stack(&padded, 0)?,
            sizes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_size_rules() {
        assert_eq!(shorter_side_size(451, 300, 256), (384, 256));
        assert_eq!(shorter_side_size(300, 451, 256), (256, 384));
        assert_eq!(center_crop_offsets(256, 384, 224), (16, 80));
        // (225 - 224) / 2 = 0.5 rounds to 0 (half to even); 1.5 rounds to 2
        assert_eq!(center_crop_offsets(225, 227, 224), (0, 2));
    }

    #[test]
    fn pil_coeffs_sum_to_one_and_identity_is_exact() {
        for (i, o) in [(451, 384), (300, 256), (10, 23)] {
            for (_, k) in pil_coeffs(i, o) {
                let s: i64 = k.iter().map(|&v| v as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= 4, "{s}");
            }
        }
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 7]));
        assert_eq!(resize_bicubic_pil(&img, 5, 4), img);
    }

    #[test]
    fn batch_padding_and_odd_size_error() -> Result<()> {
        let a = Tensor::ones((3, 40, 64), candle::DType::F32, &Device::Cpu)?;
        let err = ImageBatch::from_images(&[a.clone()], 32, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("40x64") && err.contains("--pad") && err.contains("64x64"),
            "{err}"
        );
        let b = ImageBatch::from_images(&[a], 32, true)?;
        assert_eq!(b.pixels.dims(), &[1, 3, 64, 64]);
        assert_eq!(b.sizes[0], ImageSize::new(40, 64));
        let s = b.pixels.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(s, (3 * 40 * 64) as f32);
        Ok(())
    }
}
