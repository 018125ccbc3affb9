//! Pasting a Mask R-CNN mask into the original image (mmdet 2.x `FCNMaskHead.get_seg_masks` /
//! `_do_paste_mask`), one mask at a time.
//!
//! Provenance: mmdetection 2.x `mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`
//! (`_do_paste_mask`, itself from detectron2; Apache-2.0) and PyTorch's CPU
//! `grid_sample` kernel (`aten/src/ATen/native/cpu/GridSamplerKernel.cpp`, BSD-3: bilinear,
//! zeros padding, `align_corners=False`), read via the code search.
//!
//! # The computation (f32, in this order)
//!
//! Input: an `[mh, mw]` probability mask (the predicted class's channel after `sigmoid`; 28×28
//! for Mask R-CNN) and its box `[x0, y0, x1, y1]` in **original-image** pixels (the detection
//! box divided by `scale_factor`, as `get_seg_masks` does before pasting).
//!
//! ```text
//! gx(x) = ((x + 0.5) − x0) / (x1 − x0) · 2 − 1      (±∞ replaced by 0, NaN kept)
//! u(x)  = (gx + 1) · (mw / 2) − 0.5                 (grid_sample unnormalize, align_corners=False)
//! ```
//!
//! so `u = (x + 0.5 − x0) · mw / (x1 − x0) − 0.5` up to rounding; same for `y` with `y0, y1,
//! mh`. The pixel's probability is the bilinear interpolation of the mask at `(v, u)` with
//! zeros outside (`x_w = floor(u)`, `w = u − x_w`, `e = 1 − w`, `n = v − floor(v)`, `s = 1 − n`;
//! `nw·s·e + ne·s·w + sw·n·e + se·n·w`, a corner outside the mask reading 0), and the pixel is
//! foreground iff `probability ≥ mask_thr_binary` ([`MASK_THR_BINARY`] = 0.5).
//!
//! **Region.** On the CPU, mmdet pastes each mask only into `[x0_int, x1_int) × [y0_int,
//! y1_int)` with `x0_int = max(floor(x0) − 1, 0)`, `x1_int = min(ceil(x1) + 1, W)` (same for
//! `y`; empty when `x1_int ≤ x0_int`) and leaves the rest 0; [`paste_region`] computes it and
//! every function here follows that (probabilities outside it are 0). On the GPU mmdet samples
//! the whole image instead. For a box of positive width and height the **thresholded** masks
//! are identical: a pixel left of the region
//! has its centre at least 1.5 px left of `x0`, so `u ≤ −0.5 − 1.5·mw/(x1 − x0) < −0.5`, where
//! only mask column 0 contributes, with weight `1 + u < 0.5`; the probability is `< 0.5·p ≤ 0.5`
//! for `p ≤ 1` (sigmoid output), likewise on the other three sides. (Rounding could only break
//! this for boxes over ~10^8 px wide.) `tests/reference/gen_roi_tables.py` checks it on its
//! cases too (full-image `grid_sample` vs region paste: equal after thresholding).
//!
//! **Degenerate boxes**, where the two mmdet paths part ways (neither occurs for boxes that
//! went through the box coder and clipping with positive size): a zero-width (or zero-height)
//! box makes `(x + 0.5 − x0) / 0 = ±∞`, replaced by 0 (the mask centre) for *every* column, so
//! the whole-image (GPU) path paints a band across the image while the CPU path, and this
//! module, fill only the region (`0 / 0 = NaN` at a pixel centre equal to `x0` gives a NaN
//! probability, i.e. background). When `x0_int > x1_int` or `y0_int > y1_int` — a box more
//! than about a pixel outside the image on some side, or inverted by more than about two pixels
//! — mmdet's CPU path raises (`torch.arange` with an inverted range) and its GPU path pastes
//! what falls into the image (nothing after thresholding for an outside box of positive size, a
//! mirrored mask for an inverted one); here the region is empty and nothing is pasted. A less
//! inverted box pastes the mirrored mask into its region, as the CPU path does.
//!
//! # What was verified
//!
//! `tests/roi_reference.rs` compares with tables from `torch.nn.functional.grid_sample` (torch 2.15
//! CPU) driven by the script's transcription of `_do_paste_mask`
//! (`tests/reference/gen_roi_tables.py`): 15 cases over 28×28, 7×7 and 5×5 masks (random sigmoid
//! outputs, and one with exact 0.5, its two float neighbours, 0 and 1), boxes inside, partly
//! outside on each side, fully outside (left and right), tiny, much larger than the image,
//! zero-width (±∞ and NaN), inverted, integer-aligned (samples at exact cell centres and
//! midpoints), and two 120×160 images. Measured: **all 6669 stored probabilities bit-identical and
//! all 45069 thresholded pixels equal** against ATen's `default` CPU kernel (which the script
//! forces); the test asserts both, beside the looser rule it was written to (probabilities within
//! 1e-6, pixels differing only where the probability is within 1e-6 of 0.5). PyTorch's AVX2 /
//! AVX-512 kernels fuse some operations into FMAs: against them 500 of the 6669 probabilities
//! differ, by at most 7.2e-7, and no thresholded pixel differs. The script also checks that the
//! whole-image path gives the same thresholded masks for every case with a positive-size box
//! (largest whole-image probability outside the CPU region: 0.081). CUDA's `grid_sample`
//! unnormalizes as `((g + 1)·size − 1) / 2` and weights as `(ix_se − ix)·(iy_se − iy)`, the same
//! values with different roundings, so GPU probabilities (the published numbers' path) can differ
//! in the last bits too.
//!
//! Non-finite box coordinates are an error (mmdet would build a grid of undefined size); a
//! mask slice whose length is not `mh·mw`, or an empty mask, is an error too.

use anyhow::{ensure, Result};
use pvt_types::{BitMask, ImageSize};
use rayon::prelude::*;

/// mmdet's `rcnn.mask_thr_binary` for the PVT Mask R-CNN configs: foreground iff `p ≥ 0.5`.
pub const MASK_THR_BINARY: f32 = 0.5;

/// The pixel block `[x0, x1) × [y0, y1)` mmdet's CPU path pastes a box into (see the module
/// docs); empty when `x1 ≤ x0` or `y1 ≤ y0`. Always within the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasteRegion {
    /// First column.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// One past the last column (`≤ width`).
    pub x1: usize,
    /// One past the last row (`≤ height`).
    pub y1: usize,
}

impl PasteRegion {
    /// Whether the block has no pixel.
    pub fn is_empty(&self) -> bool {
        self.x1 <= self.x0 || self.y1 <= self.y0
    }
}

fn check_box(bbox: [f32; 4]) -> Result<()> {
    ensure!(
        bbox.iter().all(|v| v.is_finite()),
        "mask paste: box {bbox:?} has a non-finite coordinate"
    );
    Ok(())
}

/// `_do_paste_mask(skip_empty=True)`'s `x0_int, y0_int, x1_int, y1_int` for one box, computed
/// in f32 as torch does (`floor(x0) − 1` clamped below at 0, `ceil(x1) + 1` clamped above at the
/// image size), then clamped to the image (mmdet's own values can lie outside it only when the
/// block is empty).
pub fn paste_region(bbox: [f32; 4], image: ImageSize) -> Result<PasteRegion> {
    check_box(bbox)?;
    let lo = |v: f32| {
        let v = v.floor() - 1.0;
        (if v < 0.0 { 0.0 } else { v }) as usize // f32 -> usize saturates
    };
    let hi = |v: f32, size: usize| {
        let v = v.ceil() + 1.0;
        let s = size as f32;
        let v = if v > s { s } else { v };
        (v as usize).min(size) // negative saturates to 0
    };
    Ok(PasteRegion {
        x0: lo(bbox[0]),
        y0: lo(bbox[1]),
        x1: hi(bbox[2], image.width),
        y1: hi(bbox[3], image.height),
    })
}

/// Bilinear taps along one axis for one output pixel: the lower index, its weight `1 − frac`
/// and the upper index's weight `frac`, with in-bounds flags.
#[derive(Clone, Copy)]
struct AxisTap {
    /// `floor(u)` and `floor(u) + 1` as indices (meaningful only where flagged in bounds).
    lo: usize,
    hi: usize,
    lo_in: bool,
    hi_in: bool,
    /// Weight of `lo` (`e` or `s` in PyTorch's names).
    w_lo: f32,
    /// Weight of `lo + 1` (`w` or `n`).
    w_hi: f32,
}

/// One axis of `_do_paste_mask` + `grid_sample`: pixel index → taps into a mask axis of `size`.
fn axis_tap(pixel: usize, b0: f32, b1: f32, size: usize) -> AxisTap {
    let p = pixel as f32 + 0.5;
    let mut g = (p - b0) / (b1 - b0) * 2.0 - 1.0;
    if g.is_infinite() {
        g = 0.0;
    }
    let u = (g + 1.0) * (size as f32 / 2.0) - 0.5;
    let f = u.floor();
    let frac = u - f;
    // PyTorch converts floor(u) to i32 (NaN / huge -> INT_MIN, out of bounds); i64 here.
    let (lo_i, valid) = if f.is_nan() {
        (i64::MIN, false)
    } else {
        (f as i64, true)
    };
    let in_range = |i: i64| valid && i >= 0 && i < size as i64;
    let hi_i = lo_i.saturating_add(1);
    AxisTap {
        lo: if in_range(lo_i) { lo_i as usize } else { 0 },
        hi: if in_range(hi_i) { hi_i as usize } else { 0 },
        lo_in: in_range(lo_i),
        hi_in: in_range(hi_i),
        w_lo: 1.0 - frac,
        w_hi: frac,
    }
}

/// The column and row taps of the region's pixels.
fn region_taps(
    (mh, mw): (usize, usize),
    bbox: [f32; 4],
    r: PasteRegion,
) -> (Vec<AxisTap>, Vec<AxisTap>) {
    let xs = (r.x0..r.x1)
        .map(|x| axis_tap(x, bbox[0], bbox[2], mw))
        .collect();
    let ys = (r.y0..r.y1)
        .map(|y| axis_tap(y, bbox[1], bbox[3], mh))
        .collect();
    (xs, ys)
}

/// The interpolated probability at one pixel, in PyTorch's order.
#[inline]
fn sample(mask: &[f32], mw: usize, ty: &AxisTap, tx: &AxisTap) -> f32 {
    let at = |yi: bool, y: usize, xi: bool, x: usize| {
        if yi && xi {
            mask[y * mw + x]
        } else {
            0.0
        }
    };
    let (s, n, e, w) = (ty.w_lo, ty.w_hi, tx.w_lo, tx.w_hi);
    let nw = s * e;
    let ne = s * w;
    let sw = n * e;
    let se = n * w;
    let nw_v = at(ty.lo_in, ty.lo, tx.lo_in, tx.lo);
    let ne_v = at(ty.lo_in, ty.lo, tx.hi_in, tx.hi);
    let sw_v = at(ty.hi_in, ty.hi, tx.lo_in, tx.lo);
    let se_v = at(ty.hi_in, ty.hi, tx.hi_in, tx.hi);
    nw_v * nw + ne_v * ne + sw_v * sw + se_v * se
}

fn check_mask(mask: &[f32], (mh, mw): (usize, usize)) -> Result<()> {
    ensure!(mh > 0 && mw > 0, "mask paste: empty mask size {mh}x{mw}");
    ensure!(
        mh.checked_mul(mw) == Some(mask.len()),
        "mask paste: mask has {} values, its size says {mh}x{mw}",
        mask.len()
    );
    Ok(())
}

/// Visit every pixel of the paste region with its probability.
fn for_each_pixel(
    mask: &[f32],
    mask_size: (usize, usize),
    bbox: [f32; 4],
    image: ImageSize,
    mut f: impl FnMut(usize, f32),
) -> Result<()> {
    check_mask(mask, mask_size)?;
    let r = paste_region(bbox, image)?;
    if r.is_empty() {
        return Ok(());
    }
    let (xs, ys) = region_taps(mask_size, bbox, r);
    for (ty, y) in ys.iter().zip(r.y0..) {
        for (tx, x) in xs.iter().zip(r.x0..) {
            f(y * image.width + x, sample(mask, mask_size.1, ty, tx));
        }
    }
    Ok(())
}

/// The pasted probabilities of one mask over the whole original image (`height × width`,
/// row-major), 0 outside [`paste_region`] — mmdet's CPU `_do_paste_mask` output before the
/// threshold. `mask` is `[mh, mw]` row-major probabilities (after `sigmoid`), `mask_size =
/// (mh, mw)`, `bbox` the box in original-image pixels.
pub fn paste_mask_probs(
    mask: &[f32],
    mask_size: (usize, usize),
    bbox: [f32; 4],
    image: ImageSize,
) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; image.area()];
    for_each_pixel(mask, mask_size, bbox, image, |i, p| out[i] = p)?;
    Ok(out)
}

/// One mask pasted and thresholded as `get_seg_masks` does (`probability ≥ threshold`, use
/// [`MASK_THR_BINARY`]): row-major `height × width`, 1 = foreground, 0 elsewhere.
///
/// ```
/// use pvt_det_ops::{paste_mask, MASK_THR_BINARY};
/// use pvt_types::ImageSize;
/// // A 2x2 mask whose left column is certain: the left half of the box is foreground.
/// let m = paste_mask(&[1.0, 0.0, 1.0, 0.0], (2, 2), [1.0, 1.0, 5.0, 3.0], ImageSize::new(4, 6),
///                    MASK_THR_BINARY)?;
/// assert_eq!(m, vec![0, 0, 0, 0, 0, 0,
///                    0, 1, 1, 0, 0, 0,
///                    0, 1, 1, 0, 0, 0,
///                    0, 0, 0, 0, 0, 0]);
/// # anyhow::Ok(())
/// ```
pub fn paste_mask(
    mask: &[f32],
    mask_size: (usize, usize),
    bbox: [f32; 4],
    image: ImageSize,
    threshold: f32,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; image.area()];
    for_each_pixel(mask, mask_size, bbox, image, |i, p| {
        out[i] = u8::from(p >= threshold)
    })?;
    Ok(out)
}

/// [`paste_mask`] as a [`BitMask`] (encode it with `pvt_types::Rle::encode`).
pub fn paste_bitmask(
    mask: &[f32],
    mask_size: (usize, usize),
    bbox: [f32; 4],
    image: ImageSize,
    threshold: f32,
) -> Result<BitMask> {
    let data = paste_mask(mask, mask_size, bbox, image, threshold)?;
    Ok(BitMask::new(image, data)?)
}

/// [`paste_bitmask`] for `boxes.len()` masks stored back to back in `masks`
/// (`[N, mh, mw]`), in parallel (rayon); output in box order.
pub fn paste_masks(
    masks: &[f32],
    mask_size: (usize, usize),
    boxes: &[[f32; 4]],
    image: ImageSize,
    threshold: f32,
) -> Result<Vec<BitMask>> {
    let per = mask_size.0 * mask_size.1;
    ensure!(
        per > 0 && masks.len() == per * boxes.len(),
        "mask paste: {} mask values for {} boxes of {}x{} masks",
        masks.len(),
        boxes.len(),
        mask_size.0,
        mask_size.1
    );
    masks
        .par_chunks(per)
        .zip(boxes.par_iter())
        .map(|(m, &b)| paste_bitmask(m, mask_size, b, image, threshold))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_matches_mmdet_rule() {
        let img = ImageSize::new(50, 80);
        let r = paste_region([10.3, 5.0, 20.2, 15.0], img).unwrap();
        assert_eq!(
            r,
            PasteRegion {
                x0: 9,
                y0: 4,
                x1: 22,
                y1: 16
            }
        );
        // Clamped to the image; a box outside gives an empty region.
        let r = paste_region([-5.0, -0.5, 85.0, 49.5], img).unwrap();
        assert_eq!(
            r,
            PasteRegion {
                x0: 0,
                y0: 0,
                x1: 80,
                y1: 50
            }
        );
        assert!(paste_region([90.0, 0.0, 95.0, 10.0], img)
            .unwrap()
            .is_empty());
        assert!(paste_region([-30.0, 0.0, -5.0, 10.0], img)
            .unwrap()
            .is_empty());
        assert!(paste_region([0.0, f32::NAN, 1.0, 1.0], img).is_err());
    }

    #[test]
    fn constant_mask_is_a_clamped_ramp() {
        // A constant-1 mask pastes to f(u)·f(v) with f = 1 on [0, M-1], falling linearly to 0
        // over one mask cell on each side (zeros padding), 0 beyond; u = (x+0.5-x0)·M/bw - 0.5.
        let img = ImageSize::new(30, 40);
        let m = vec![1.0f32; 28 * 28];
        let b = [5.0f32, 3.0, 33.0, 24.0];
        let p = paste_mask_probs(&m, (28, 28), b, img).unwrap();
        let f = |t: f32| t.clamp(-1.0, 0.0) + 1.0 - (t - 27.0).clamp(0.0, 1.0);
        let r = paste_region(b, img).unwrap();
        for y in 0..30 {
            for x in 0..40 {
                let u = (x as f32 + 0.5 - b[0]) * 28.0 / (b[2] - b[0]) - 0.5;
                let v = (y as f32 + 0.5 - b[1]) * 28.0 / (b[3] - b[1]) - 0.5;
                let in_region = (r.x0..r.x1).contains(&x) && (r.y0..r.y1).contains(&y);
                let want = if in_region { f(u) * f(v) } else { 0.0 };
                let got = p[y * 40 + x];
                assert!((got - want).abs() < 1e-5, "({x},{y}) {got} vs {want}");
            }
        }
        let bits = paste_mask(&m, (28, 28), b, img, MASK_THR_BINARY).unwrap();
        // Foreground = pixel centres inside the box, except the fringe rows/cols with f < 0.5:
        // here columns 5..=32 (u from 0 to 27) and rows with v >= -0.5.
        assert_eq!(bits[10 * 40 + 5], 1);
        assert_eq!(bits[10 * 40 + 4], 0);
        assert_eq!(bits[10 * 40 + 32], 1);
        assert_eq!(bits[10 * 40 + 33], 0);
    }

    #[test]
    fn outside_region_would_be_below_threshold() {
        // The GPU path samples every pixel; check that pixels just outside the CPU region get
        // < 0.5 even from an all-ones mask, for boxes much wider than the mask.
        for &(b, mw) in &[
            ([10.25f32, 7.5, 310.75, 200.0], 28usize),
            ([0.5, 0.5, 3.5, 2.5], 28),
            ([100.0, 50.0, 1000.0, 60.0], 7),
        ] {
            let img = ImageSize::new(1000, 2000);
            let r = paste_region(b, img).unwrap();
            let mask = vec![1.0f32; mw * mw];
            let ty = axis_tap((r.y0 + r.y1) / 2, b[1], b[3], mw);
            for x in [r.x0.wrapping_sub(1), r.x1] {
                if x >= img.width {
                    continue;
                }
                let tx = axis_tap(x, b[0], b[2], mw);
                let v = sample(&mask, mw, &ty, &tx);
                assert!(v < 0.5, "{b:?} column {x}: {v}");
            }
        }
    }

    #[test]
    fn degenerate_boxes() {
        let img = ImageSize::new(10, 10);
        let m = vec![0.9f32; 4];
        // Zero width: (x + 0.5 - x0) / 0 is ±inf -> 0 -> mask centre; value 0.9 along the box
        // column range that the region covers.
        let p = paste_mask_probs(&m, (2, 2), [4.0, 2.0, 4.0, 6.0], img).unwrap();
        assert!((p[3 * 10 + 4] - 0.9).abs() < 1e-6);
        // Inverted boxes flip the mask; no panic.
        paste_mask(&m, (2, 2), [6.0, 6.0, 2.0, 2.0], img, MASK_THR_BINARY).unwrap();
        // Errors.
        assert!(paste_mask(&m, (2, 3), [0.0, 0.0, 5.0, 5.0], img, 0.5).is_err());
        assert!(paste_mask(&m, (2, 2), [0.0, 0.0, f32::INFINITY, 5.0], img, 0.5).is_err());
        let bm = paste_masks(
            &[m.clone(), m].concat(),
            (2, 2),
            &[[0., 0., 5., 5.]; 2],
            img,
            0.5,
        );
        // 0.9 everywhere: the 5x5 box's border pixels get weight 0.7 (0.63), its 4 corners
        // 0.7² (0.441 < 0.5).
        assert_eq!(bm.unwrap()[1].area(), 21);
    }
}
