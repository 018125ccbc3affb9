//! OpenCV-exact bilinear resizing of 8-bit images and mmcv's size rules, so that detection and
//! segmentation inputs equal mmdetection's / mmsegmentation's test pipelines to the bit.
//!
//! [`resize_bilinear_cv`] reproduces `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`
//! on `uint8` images (what mmcv's `imresize(..., interpolation='bilinear')` calls), as computed
//! by the CPU code of `modules/imgproc/src/resize.cpp`. It is checked byte for byte against
//! `opencv-python-headless` 5.0.0.93 (x86-64, the PyPI wheel: SSE3 baseline, AVX2 / AVX-512
//! dispatch, IPP 2026.0 built in) and 4.5.5.64; both give the same bytes on every case of the
//! fixtures (`assets/fixtures/cv_resize/`, made by `tools/make_cv_resize_fixtures.py`).
//!
//! The code paths of that build, all reproduced here:
//!
//! - **same size**: `cv::resize` copies the source.
//! - **exactly half in both directions** (`src = 2·dst`): OpenCV turns `INTER_LINEAR` into
//!   `INTER_AREA` and takes its fast 2×2 box path, `(a + b + c + d + 2) >> 2` for 1, 3 and 4
//!   channels; for other channel counts the fast path's generic loop rounds `sum · 0.25f` half
//!   to even instead.
//! - **everything else** (`resizeGeneric_` with `HResizeLinear<uchar, int, short, 2048>` /
//!   `VResizeLinear<uchar, int, short, FixedPtCast<int, uchar, 22>>`):
//!   - per output column, `fx = (float)((dx + 0.5)·(1/inv_scale) − 0.5)` (double arithmetic
//!     with `inv_scale = dst/src`, then rounded to f32), `sx = floor(fx)`, `fx −= sx`; columns
//!     left of the image (`sx < 0`) and at or past the last column (`sx ≥ src − 1`) take
//!     `sx` clamped and `fx = 0`; weights `saturate_cast<short>((1 − fx)·2048)` and
//!     `saturate_cast<short>(fx·2048)`, i.e. rounded half to even (the two need not sum to
//!     2048);
//!   - rows are computed the same way but **not** clamped: the two source rows `sy`, `sy + 1`
//!     are clipped to the image while the weights keep the unclamped fraction (at the top of
//!     an upscale both rows are row 0 with weights like 512/1536);
//!   - horizontal pass in `i32`: `S[sx]·a0 + S[sx+1]·a1` per channel (the SIMD version of this
//!     pass is an exact integer dot product, so it gives the same values);
//!   - vertical pass: `((b0·(H0 >> 4)) >> 16) + ((b1·(H1 >> 4)) >> 16) + 2) >> 2`. This is the
//!     formula of the SIMD kernel (`VResizeLinearVec_32s8u`: pre-shift by 4, `mul_hi`,
//!     rounding shift by 2) *and* of the `uchar` specialisation of the scalar tail loop, so every
//!     column of a row rounds the same way; the generic `FixedPtCast<int, uchar, 22>` (round
//!     of the 22-bit sum) is never used for `uchar` and would differ by one in places.
//!
//! Not taken by `uint8` `INTER_LINEAR` in that build, hence not modelled: IPP (its resize
//! declines 8-bit linear unless "not exact" IPP is enabled, which is off by default), OpenCL
//! (only for `UMat` outputs), `INTER_LINEAR_EXACT` (a different, bit-exact kernel that mmcv does
//! not use).
//!
//! The size rules are those of mmcv 1.x `rescale_size` / `imrescale` (used by mmdet 2.x
//! `Resize(keep_ratio=True)`) and of PVT's segmentation `AlignResize`; see [`rescale_size`],
//! [`mmdet_resize`] and [`align_resize`].
//!
//! All functions work on interleaved channels; channel order does not matter (the filter is per
//! channel), so an RGB image resized here equals the BGR image OpenCV resizes, channel-swapped.

use anyhow::{ensure, Result};
use image::RgbImage;
use rayon::prelude::*;

/// `INTER_RESIZE_COEF_BITS`: fixed-point weights are scaled by `2^11`.
const COEF_SCALE: f32 = 2048.0;

/// `saturate_cast<short>(float)`: `cvRound` (round half to even, SSE `cvtss2si`) then clamp.
#[inline]
fn saturate_short(v: f32) -> i32 {
    (v.round_ties_even() as i32).clamp(i16::MIN as i32, i16::MAX as i32)
}

/// One output coordinate of the generic path: the first source index (unclamped, may be `-1` or
/// past the end) and the two fixed-point weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tap {
    src: i64,
    w: [i32; 2],
}

/// Taps of the generic path along one axis (`cv::hal::resize`, `!area_mode`). With `clamp`
/// (the x axis) a coordinate left of the image or at/past its last pixel takes the clamped index
/// and weights `(2048, 0)`; without it (the y axis) the fraction is kept and only the rows read
/// are clipped later.
fn linear_taps(in_size: usize, out_size: usize, clamp: bool) -> Vec<Tap> {
    let inv_scale = out_size as f64 / in_size as f64;
    let scale = 1.0 / inv_scale;
    (0..out_size)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut f = f - s as f32;
            if clamp {
                if s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if s >= in_size as i64 - 1 {
                    s = in_size as i64 - 1;
                    f = 0.0;
                }
            }
            Tap {
                src: s,
                w: [
                    saturate_short((1.0 - f) * COEF_SCALE),
                    saturate_short(f * COEF_SCALE),
                ],
            }
        })
        .collect()
}

/// `(1/inv_scale)` is an integer (within `DBL_EPSILON`) in both directions and that integer is
/// 2: the case OpenCV hands to its `INTER_AREA` fast path.
fn is_exact_half(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let half = |i: usize, o: usize| {
        let scale = 1.0 / (o as f64 / i as f64);
        let iscale = scale.round_ties_even();
        (scale - iscale).abs() < f64::EPSILON && iscale == 2.0
    };
    half(in_w, out_w) && half(in_h, out_h)
}

/// `resizeAreaFast_` with a 2×2 box.
fn area_half(src: &[u8], in_w: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let row_len = out_w * channels;
    let src_row = in_w * channels;
    // cn 1/3/4: the `ResizeAreaFastVec` loops, `(sum + 2) >> 2`; otherwise the generic loop,
    // `saturate_cast<uchar>(sum * 0.25f)` (round half to even).
    let shift_round = matches!(channels, 1 | 3 | 4);
    let mut out = vec![0u8; out_h * row_len];
    out.par_chunks_mut(row_len.max(1))
        .enumerate()
        .for_each(|(dy, dst)| {
            let r0 = &src[2 * dy * src_row..(2 * dy + 1) * src_row];
            let r1 = &src[(2 * dy + 1) * src_row..(2 * dy + 2) * src_row];
            for dx in 0..out_w {
                for c in 0..channels {
                    let i = 2 * dx * channels + c;
                    let j = i + channels;
                    let sum = r0[i] as u32 + r0[j] as u32 + r1[i] as u32 + r1[j] as u32;
                    dst[dx * channels + c] = if shift_round {
                        ((sum + 2) >> 2) as u8
                    } else {
                        (sum as f32 * 0.25).round_ties_even() as u8
                    };
                }
            }
        });
    out
}

/// Horizontal pass of one source row into `i32` (`HResizeLinear`, weights scaled by 2048).
fn hresize_row(row: &[u8], in_w: usize, channels: usize, taps: &[Tap], dst: &mut [i32]) {
    for (dx, t) in taps.iter().enumerate() {
        let x0 = t.src as usize;
        let x1 = (x0 + 1).min(in_w - 1);
        let (a0, a1) = (t.w[0], t.w[1]);
        for c in 0..channels {
            dst[dx * channels + c] =
                row[x0 * channels + c] as i32 * a0 + row[x1 * channels + c] as i32 * a1;
        }
    }
}

/// [`resize_bilinear_cv`] on a raw interleaved buffer of `channels` 8-bit channels
/// (`in_w · in_h · channels` bytes, row-major, no padding); returns `out_w · out_h · channels`
/// bytes. Equals `cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)` on a
/// `(in_h, in_w, channels)` `uint8` array.
///
/// # Panics
/// If a size or `channels` is zero (OpenCV asserts too), or if `src` has the wrong length.
pub fn resize_bilinear_cv_raw(
    src: &[u8],
    in_w: usize,
    in_h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    assert!(
        in_w > 0 && in_h > 0 && channels > 0,
        "resize_bilinear_cv: empty source ({in_w}x{in_h}, {channels} channels)"
    );
    assert!(
        out_w > 0 && out_h > 0,
        "resize_bilinear_cv: empty output size {out_w}x{out_h} (WxH)"
    );
    assert_eq!(
        src.len(),
        in_w * in_h * channels,
        "resize_bilinear_cv: buffer of {} bytes for {in_w}x{in_h}x{channels}",
        src.len()
    );
    if (out_w, out_h) == (in_w, in_h) {
        return src.to_vec();
    }
    if is_exact_half(in_w, in_h, out_w, out_h) {
        return area_half(src, in_w, channels, out_w, out_h);
    }

    let xt = linear_taps(in_w, out_w, true);
    let yt = linear_taps(in_h, out_h, false);
    let clip = |r: i64| r.clamp(0, in_h as i64 - 1) as usize;

    // Horizontal pass over the source rows the vertical pass reads (each once).
    let mut needed = vec![false; in_h];
    for t in &yt {
        needed[clip(t.src)] = true;
        needed[clip(t.src + 1)] = true;
    }
    let mut slot = vec![usize::MAX; in_h];
    let rows: Vec<usize> = (0..in_h).filter(|&r| needed[r]).collect();
    for (i, &r) in rows.iter().enumerate() {
        slot[r] = i;
    }
    let row_len = out_w * channels;
    let src_row = in_w * channels;
    let mut hbuf = vec![0i32; rows.len() * row_len];
    hbuf.par_chunks_mut(row_len)
        .zip(rows.par_iter())
        .for_each(|(dst, &r)| {
            hresize_row(
                &src[r * src_row..(r + 1) * src_row],
                in_w,
                channels,
                &xt,
                dst,
            )
        });

    // Vertical pass (`VResizeLinear<uchar, int, short, ...>` / `VResizeLinearVec_32s8u`).
    let mut out = vec![0u8; out_h * row_len];
    out.par_chunks_mut(row_len)
        .zip(yt.par_iter())
        .for_each(|(dst, t)| {
            let h0 = &hbuf[slot[clip(t.src)] * row_len..][..row_len];
            let h1 = &hbuf[slot[clip(t.src + 1)] * row_len..][..row_len];
            let (b0, b1) = (t.w[0], t.w[1]);
            for ((d, &s0), &s1) in dst.iter_mut().zip(h0).zip(h1) {
                let v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
                *d = v.clamp(0, 255) as u8;
            }
        });
    out
}

/// `cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)` on an 8-bit RGB image, to
/// the bit (see the module documentation for the OpenCV build and code paths reproduced).
/// Half-pixel centres, no antialiasing, 11-bit fixed-point weights, replicated borders.
/// Multi-threaded over rows (rayon); the result does not depend on the thread count.
///
/// # Panics
/// If `out_w` or `out_h` is zero, or the image is empty.
pub fn resize_bilinear_cv(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let out = resize_bilinear_cv_raw(img.as_raw(), w, h, 3, out_w, out_h);
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size matches")
}

// ----------------------------------------------------------------------------------------------
// mmcv / mmdet / PVT size rules.

/// mmdet's COCO test scale, `Resize(img_scale=(1333, 800), keep_ratio=True)`.
pub const MMDET_COCO_SCALE: (usize, usize) = (1333, 800);
/// PVT-seg's ADE20K test scale, `AlignResize(img_scale=(2048, 512), size_divisor=32)`.
pub const PVT_ADE20K_SCALE: (usize, usize) = (2048, 512);

/// mmcv `_scale_size`: `(int(w·scale + 0.5), int(h·scale + 0.5))` in f64.
pub fn scale_size(w: usize, h: usize, scale: f64) -> (usize, usize) {
    (
        (w as f64 * scale + 0.5) as usize,
        (h as f64 * scale + 0.5) as usize,
    )
}

/// mmcv `rescale_size((w, h), scale, return_scale=True)` with a tuple `scale`: the largest
/// keep-ratio size whose long edge is at most `max(scale)` and short edge at most `min(scale)`
/// (the order inside `scale` does not matter). `s = min(long_max / max(h, w),
/// short_max / min(h, w))` in f64; returns `(new_w, new_h, s)` with the sizes rounded half up.
/// Very elongated images can give a zero side, as in mmcv (whose `cv2.resize` then fails).
pub fn rescale_size(w: usize, h: usize, scale: (usize, usize)) -> (usize, usize, f64) {
    let long_max = scale.0.max(scale.1) as f64;
    let short_max = scale.0.min(scale.1) as f64;
    let s = (long_max / w.max(h) as f64).min(short_max / w.min(h) as f64);
    let (nw, nh) = scale_size(w, h, s);
    (nw, nh, s)
}

/// The `scale_factor` mmdet / mmseg record after resizing `w x h` to `new_w x new_h`:
/// `[new_w/w, new_h/h, new_w/w, new_h/h]` computed in f64 and stored as float32 (boxes are
/// divided by it to return to original-image coordinates).
pub fn scale_factor(w: usize, h: usize, new_w: usize, new_h: usize) -> [f32; 4] {
    let sx = (new_w as f64 / w as f64) as f32;
    let sy = (new_h as f64 / h as f64) as f32;
    [sx, sy, sx, sy]
}

/// `(ceil(w / divisor)·divisor, ceil(h / divisor)·divisor)`: `AlignResize._align`'s size.
pub fn align_size(w: usize, h: usize, divisor: usize) -> (usize, usize) {
    assert!(divisor > 0, "size divisor must be positive");
    (w.div_ceil(divisor) * divisor, h.div_ceil(divisor) * divisor)
}

/// The two sizes of PVT-seg's `AlignResize(img_scale=scale, keep_ratio=True,
/// size_divisor=divisor)` for a `w x h` image: the `imrescale` size, then the aligned size the
/// rescaled image is stretched to (each side rounded up to a multiple of `divisor`), both
/// `(w, h)`. A 500x375 (WxH) image gives `(683, 512)` then `(704, 512)` for `(2048, 512), 32`.
pub fn align_resize_sizes(
    w: usize,
    h: usize,
    scale: (usize, usize),
    divisor: usize,
) -> ((usize, usize), (usize, usize)) {
    let (rw, rh, _) = rescale_size(w, h, scale);
    ((rw, rh), align_size(rw, rh, divisor))
}

/// An image resized by a test pipeline, with what the pipeline records about it.
#[derive(Debug, Clone)]
pub struct Resized {
    /// The resized image (RGB, the network input before normalisation).
    pub img: RgbImage,
    /// `[w_scale, h_scale, w_scale, h_scale]` as float32, relative to the original image.
    pub scale_factor: [f32; 4],
}

fn check_size(w: usize, h: usize, what: &str) -> Result<()> {
    ensure!(
        w > 0 && h > 0,
        "{what}: the image would be resized to {w}x{h} (WxH); it is too elongated for this scale"
    );
    Ok(())
}

/// mmdet 2.x `Resize(img_scale=scale, keep_ratio=True)` at test time (mmcv `imrescale`, cv2
/// bilinear): e.g. `scale = `[`MMDET_COCO_SCALE`]. Returns the resized image and mmdet's
/// `scale_factor` (`img_shape` is the image's size). Errors if a side would become zero.
pub fn mmdet_resize(img: &RgbImage, scale: (usize, usize)) -> Result<Resized> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    ensure!(w > 0 && h > 0, "mmdet_resize: empty image");
    let (nw, nh, _) = rescale_size(w, h, scale);
    check_size(nw, nh, "mmdet_resize")?;
    Ok(Resized {
        img: resize_bilinear_cv(img, nw, nh),
        scale_factor: scale_factor(w, h, nw, nh),
    })
}

/// PVT-seg's `AlignResize(img_scale=scale, keep_ratio=True, size_divisor=divisor)` at test time:
/// mmcv `imrescale` to `scale` (cv2 bilinear), then a second cv2 bilinear `imresize` stretching
/// the result to the next multiples of `divisor` (no padding; a copy when already aligned).
/// E.g. `scale = `[`PVT_ADE20K_SCALE`], `divisor = 32`. The `scale_factor` is relative to the
/// final (aligned) size, as `AlignResize` records it.
pub fn align_resize(img: &RgbImage, scale: (usize, usize), divisor: usize) -> Result<Resized> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    ensure!(w > 0 && h > 0, "align_resize: empty image");
    ensure!(divisor > 0, "align_resize: size divisor must be positive");
    let ((rw, rh), (aw, ah)) = align_resize_sizes(w, h, scale, divisor);
    check_size(rw, rh, "align_resize")?;
    let rescaled = resize_bilinear_cv(img, rw, rh);
    let aligned = resize_bilinear_cv(&rescaled, aw, ah);
    Ok(Resized {
        img: aligned,
        scale_factor: scale_factor(w, h, aw, ah),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmdet_sizes_match_mmcv() {
        // checked against mmcv: 480x640 -> 800x1067, 427x640 -> 800x1199 (HxW)
        let size = |w, h, scale| {
            let (nw, nh, _) = rescale_size(w, h, scale);
            (nw, nh)
        };
        assert_eq!(size(640, 480, MMDET_COCO_SCALE), (1067, 800));
        assert_eq!(size(640, 427, MMDET_COCO_SCALE), (1199, 800));
        // the order inside `scale` does not matter
        assert_eq!(
            rescale_size(640, 427, (800, 1333)),
            rescale_size(640, 427, (1333, 800))
        );
        let sf = scale_factor(640, 480, 1067, 800);
        assert_eq!(sf, [1.6671875, 1.6666666, 1.6671875, 1.6666666]);
        // chelsea (451x300): the long edge is not the limit, the short one is
        assert_eq!(size(451, 300, MMDET_COCO_SCALE), (1203, 800));
        // a long edge that binds
        assert_eq!(size(2000, 500, MMDET_COCO_SCALE), (1333, 333));
        // half-up rounding of the sizes (int(x + 0.5))
        assert_eq!(scale_size(3, 5, 0.5), (2, 3));
        assert_eq!(align_size(1067, 800, 32), (1088, 800));
    }

    #[test]
    fn align_resize_sizes_match_pvt_seg() {
        // as mmcv computes it: a 375x500 (HxW) image becomes 683x512 then 704x512 (WxH)
        assert_eq!(
            align_resize_sizes(500, 375, PVT_ADE20K_SCALE, 32),
            ((683, 512), (704, 512))
        );
        // chelsea
        assert_eq!(
            align_resize_sizes(451, 300, PVT_ADE20K_SCALE, 32),
            ((770, 512), (800, 512))
        );
        // already aligned: the second resize is a copy
        assert_eq!(
            align_resize_sizes(512, 512, PVT_ADE20K_SCALE, 32),
            ((512, 512), (512, 512))
        );
    }

    #[test]
    fn taps_follow_opencv() {
        // 2x upscale of 4 pixels: fx = -0.25, 0.25, 0.75, ... ; x is clamped, y is not
        let x = linear_taps(4, 8, true);
        assert_eq!(
            x[0],
            Tap {
                src: 0,
                w: [2048, 0]
            }
        );
        assert_eq!(
            x[1],
            Tap {
                src: 0,
                w: [1536, 512]
            }
        );
        assert_eq!(
            x[2],
            Tap {
                src: 0,
                w: [512, 1536]
            }
        );
        assert_eq!(
            x[7],
            Tap {
                src: 3,
                w: [2048, 0]
            }
        );
        let y = linear_taps(4, 8, false);
        assert_eq!(
            y[0],
            Tap {
                src: -1,
                w: [512, 1536]
            }
        );
        assert_eq!(
            y[7],
            Tap {
                src: 3,
                w: [1536, 512]
            }
        );
        // 3 -> 2: fx = 0.25 and 1.75
        let t = linear_taps(3, 2, true);
        assert_eq!(
            t[0],
            Tap {
                src: 0,
                w: [1536, 512]
            }
        );
        assert_eq!(
            t[1],
            Tap {
                src: 1,
                w: [512, 1536]
            }
        );
        assert!(is_exact_half(10, 8, 5, 4));
        assert!(!is_exact_half(10, 8, 5, 5));
        assert!(!is_exact_half(11, 8, 5, 4));
    }

    #[test]
    fn identity_and_half_and_edges() {
        let img = RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 7]));
        assert_eq!(resize_bilinear_cv(&img, 6, 4), img);
        // exact half: 2x2 box means, (sum + 2) >> 2
        let half = resize_bilinear_cv(&img, 3, 2);
        assert_eq!(half.get_pixel(0, 0).0, [20, 30, 7]);
        // a 1x1 source replicates everywhere
        let one = RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]));
        let big = resize_bilinear_cv(&one, 5, 3);
        assert!(big.pixels().all(|p| p.0 == [1, 2, 3]));
        // two channels, exact half: round half to even of sum / 4
        let two = [1u8, 0, 1, 0, 0, 0, 0, 0]; // 2x2 pixels, 2 channels; sums 2 and 0
        assert_eq!(resize_bilinear_cv_raw(&two, 2, 2, 2, 1, 1), vec![0, 0]);
        let three = [1u8, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1]; // 2x2x3: sums 2, 2, 2
        assert_eq!(resize_bilinear_cv_raw(&three, 2, 2, 3, 1, 1), vec![1, 1, 1]);
    }

    #[test]
    fn pipelines_report_zero_sizes() {
        let img = RgbImage::new(1, 10_000);
        let err = mmdet_resize(&img, MMDET_COCO_SCALE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0x1333"), "{err}");
    }
}
