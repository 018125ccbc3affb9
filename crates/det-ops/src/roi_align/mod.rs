//! RoIAlign (mmcv `RoIAlign`, `pool_mode='avg'`) and the FPN RoI feature extractor (mmdet
//! `SingleRoIExtractor`).
//!
//! Provenance: mmcv `mmcv/ops/csrc/pytorch/cpu/roi_align.cpp` (`ROIAlignForward`,
//! `pre_calc_for_bilinear_interpolate`) and `mmcv/ops/csrc/common/cuda/roi_align_cuda_kernel.cuh`
//! (`roi_align_forward_cuda_kernel` with `bilinear_interpolate` from `common_cuda_helper.hpp`),
//! both Apache-2.0 (OpenMMLab; the CPU kernel is detectron2's / Caffe2's); mmdetection 2.13
//! `mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py`. The Mask R-CNN
//! configuration is `RoIAlign(output_size=7 | 14, sampling_ratio=0, aligned=True)` on P2–P5
//! (strides 4, 8, 16, 32), `finest_scale=56`.
//!
//! # The computation, per RoI `[x1, y1, x2, y2]` (f32 throughout, in this order)
//!
//! ```text
//! offset       = aligned ? 0.5 : 0
//! start_x      = x1·scale − offset            (same for y with y1)
//! width        = (x2·scale − offset) − start_x
//! width        = max(width, 1)                 only when !aligned
//! bin_w        = width / out
//! grid_w       = sampling_ratio > 0 ? sampling_ratio : (int) ceil(width / out)
//! x(pw, ix)    = (start_x + pw·bin_w) + (ix + 0.5)·bin_w / grid_w
//! out[c,ph,pw] = (Σ_iy Σ_ix bilinear(feat[c], y(ph, iy), x(pw, ix))) / max(grid_h·grid_w, 1)
//! ```
//!
//! `bilinear(y, x)` (both kernels alike): 0 if `y < −1 or y > H or x < −1 or x > W`; else
//! clamp `y ≤ 0` to 0, `y_low = (int) y`, and if `y_low ≥ H − 1` set `y_low = y_high = H − 1`
//! and `y = y_low`, else `y_high = y_low + 1` (same for `x`); `ly = y − y_low`, `hy = 1 − ly`,
//! weights `hy·hx, hy·lx, ly·hx, ly·lx`, summed left to right as `w1·v1 + w2·v2 + w3·v3 +
//! w4·v4`. Like the CPU kernel, an out-of-range sample reads `feat[c, 0, 0]` with weight 0.
//!
//! # What was verified, against which source
//!
//! - **mmcv CPU vs CUDA vs torchvision** (read via the code search: mmcv `roi_align.cpp`,
//!   `roi_align_cuda_kernel.cuh`; torchvision `torchvision/csrc/ops/cpu/roi_align_kernel.cpp`
//!   and `roi_align_common.h`): the forward avg-mode formulas are the same expression for
//!   expression — the `−0.5` offset, no `min 1` clamp when aligned, the adaptive count
//!   `ceil(roi_size / out)` computed in f32 (`ceilf` in mmcv, `ceil` of a float in
//!   torchvision), the sample position, the bilinear boundary rule, the per-sample sum
//!   `w1·v1 + w2·v2 + w3·v3 + w4·v4` accumulated in bin order and the final division by
//!   `max(count, 1)`. Differences, none of which touch finite, non-negative-size RoIs:
//!   (1) mmcv's CPU kernel *asserts* `width ≥ 0 && height ≥ 0` when aligned (a RoI with
//!   `x2 < x1` is an error there); mmcv CUDA and torchvision compute it — adaptive sampling
//!   then has `ceil(negative) ≤ 0` samples and the bin is 0 — and so does this module;
//!   (2) torchvision (newer releases) treats a NaN sample position as out of range, mmcv casts
//!   it to `int` (undefined behaviour); this module follows torchvision;
//!   (3) the CUDA kernel evaluates `bilinear_interpolate` per output element and nvcc may fuse
//!   `start + pw·bin` and the weight products into FMAs, so GPU results can differ from the CPU
//!   kernels (and from this module) in the last bits.
//! - **This module vs torchvision 0.29 CPU** `roi_align` on random inputs (a 2×9×11 map; RoIs
//!   covering the map, one cell beyond it, partly left / right / above it, fully outside, tiny,
//!   three times the map, empty, inverted, thin at the edge, and random ones) in five
//!   configurations — aligned with `sampling_ratio` 0 at scales 1/4 (out 7), 1/8 (out 14) and 1
//!   (out 4), aligned with `sampling_ratio` 2, and `aligned=False` — plus mmdet's
//!   `SingleRoIExtractor` over four levels (strides 4–32, RoIs of 3 to 1200 px, levels checked
//!   too): `tests/reference/gen_roi_tables.py`, `tests/roi_reference.rs`. Measured: **all
//!   4160 + 1176 values bit-identical** (the test allows 1e-5 and also asserts bit identity).
//! - **Hand-computed** cases on ramp maps `feat = a·x + b·y + c` (bilinear interpolation is
//!   exact on a ramp, so an in-range bin's value is the ramp at the mean sample position) and at
//!   the borders (clamping) in the unit tests below.
//!
//! # Non-finite and absurd inputs (no panics)
//!
//! The adaptive count is converted to an integer as x86's `cvttss2si` does in the C++
//! kernels: NaN, ±∞ or a value beyond `i32` becomes `i32::MIN`, i.e. no samples and a zero
//! output. A finite RoI needing more than [`MAX_SAMPLES_PER_BIN`] samples per bin (a RoI over
//! about 4096·`out` feature cells per side) is rejected with an error rather than looping for
//! hours; so is a zero output size, an empty feature map and a slice whose length does not match
//! its shape.
//!
//! The sampling itself (geometry, sample positions, taps, bin sums) is in one place, `tap`,
//! shared with the training plan and its adjoint in [`crate::roi_align_grad`].

pub(crate) mod tap;

use crate::roi::map_roi_levels;
use anyhow::{anyhow, ensure, Result};
use rayon::prelude::*;
use tap::{bin_mean, for_each_tap, roi_geom, RoiGeom, Tap, TooManySamples};

pub use tap::MAX_SAMPLES_PER_BIN;

/// [`roi_geom`] with the error of the inference entry points.
fn geom(
    roi: [f32; 4],
    spatial_scale: f32,
    out: usize,
    aligned: bool,
    sampling_ratio: usize,
) -> Result<RoiGeom> {
    roi_geom(roi, spatial_scale, out, aligned, sampling_ratio).map_err(
        |TooManySamples { gh, gw }| {
            anyhow!(
                "RoIAlign: RoI {roi:?} at scale {spatial_scale} needs {gh}x{gw} samples per bin \
                 (more than {MAX_SAMPLES_PER_BIN})"
            )
        },
    )
}

/// RoIAlign of one RoI into `dst` (`[C, out, out]`), mmcv's CPU loop structure.
fn align_one(
    feat: &[f32],
    (c, h, w): (usize, usize, usize),
    g: &RoiGeom,
    out: usize,
    taps: &mut Vec<Tap>,
    dst: &mut [f32],
) {
    taps.clear();
    for_each_tap(g, out, (h, w), |t| taps.push(t));
    let per_bin = g.per_bin();
    for ch in 0..c {
        let plane = &feat[ch * h * w..(ch + 1) * h * w];
        let dst_c = &mut dst[ch * out * out..(ch + 1) * out * out];
        for (bin, d) in dst_c.iter_mut().enumerate() {
            *d = bin_mean(&taps[bin * per_bin..(bin + 1) * per_bin], plane, g.count);
        }
    }
}

fn check_feat(feat: &[f32], (c, h, w): (usize, usize, usize), what: &str) -> Result<()> {
    ensure!(
        h > 0 && w > 0,
        "RoIAlign: {what} has an empty spatial size {h}x{w}"
    );
    ensure!(
        c.checked_mul(h).and_then(|v| v.checked_mul(w)) == Some(feat.len()),
        "RoIAlign: {what} has {} values, its shape (C, H, W) = ({c}, {h}, {w}) says otherwise",
        feat.len()
    );
    Ok(())
}

/// mmcv `RoIAlign(output_size=out, spatial_scale, sampling_ratio, pool_mode='avg', aligned)`
/// of `rois` (`[x1, y1, x2, y2]` in input-image pixels, one image) on one feature map
/// `feat` (`[C, H, W]` row-major, shape `(c, h, w)`).
///
/// Returns `[N, C, out, out]` row-major (`N = rois.len()`). `sampling_ratio = 0` is adaptive
/// (`ceil(roi_size / out)` samples per bin and axis). Runs in parallel over RoIs (rayon); each
/// RoI's output is computed by one thread in the reference order, so results do not depend on
/// the thread count. See the module docs for the formulas and the edge cases.
///
/// ```
/// use pvt_det_ops::roi_align;
/// // A 1-channel 4x4 ramp feat = x: aligned RoIAlign over the whole map at stride 1, 2x2 out.
/// let feat: Vec<f32> = (0..16).map(|i| (i % 4) as f32).collect();
/// let out = roi_align(&feat, (1, 4, 4), &[[0.0, 0.0, 4.0, 4.0]], 1.0, 2, true, 0)?;
/// // Bins cover x in [-0.5, 1.5) and [1.5, 3.5), 2 samples each, at x = 0, 1 and x = 2, 3:
/// // means 0.5 and 2.5 (the same in both rows).
/// assert_eq!(out, vec![0.5, 2.5, 0.5, 2.5]);
/// # anyhow::Ok(())
/// ```
pub fn roi_align(
    feat: &[f32],
    shape: (usize, usize, usize),
    rois: &[[f32; 4]],
    spatial_scale: f32,
    out: usize,
    aligned: bool,
    sampling_ratio: usize,
) -> Result<Vec<f32>> {
    ensure!(out > 0, "RoIAlign: output size must be positive");
    check_feat(feat, shape, "the feature map")?;
    let geoms = rois
        .iter()
        .map(|&r| geom(r, spatial_scale, out, aligned, sampling_ratio))
        .collect::<Result<Vec<_>>>()?;
    let per_roi = shape.0 * out * out;
    let mut dst = vec![0.0f32; rois.len() * per_roi];
    if per_roi == 0 {
        return Ok(dst);
    }
    dst.par_chunks_mut(per_roi)
        .zip(geoms.par_iter())
        .for_each_init(Vec::new, |taps, (d, g)| {
            align_one(feat, shape, g, out, taps, d)
        });
    Ok(dst)
}

/// One FPN level for [`multi_level_roi_align`]: the map (`[C, H, W]` row-major), its shape
/// `(c, h, w)` and its stride in input pixels (`spatial_scale = 1 / stride`).
pub type RoiLevel<'a> = (&'a [f32], (usize, usize, usize), usize);

/// mmdet's `SingleRoIExtractor` with mmcv `RoIAlign(out, sampling_ratio=0, aligned=True)` per
/// level: each RoI is assigned a level by [`map_roi_levels`]`(rois, finest_scale,
/// levels.len())` and pooled from that level with `spatial_scale = 1 / stride` (computed in
/// f64 and rounded to f32, as Python passes it to the kernel). Output `[N, C, out, out]` in RoI
/// order. Mask R-CNN: levels P2–P5 (strides 4, 8, 16, 32), `finest_scale = 56`
/// ([`crate::roi::FINEST_SCALE`]), `out = 7` (box head) or `14` (mask head).
///
/// All levels must have the same channel count. One deliberate omission: for a level that
/// receives no RoI, mmdet adds `feats[i].sum() * 0` to the whole output (a distributed-training
/// trick), which only matters when that level holds an infinity or NaN (it then poisons every
/// RoI's features); this function does not reproduce it.
pub fn multi_level_roi_align(
    levels: &[RoiLevel<'_>],
    rois: &[[f32; 4]],
    out: usize,
    finest_scale: f32,
) -> Result<Vec<f32>> {
    ensure!(out > 0, "RoIAlign: output size must be positive");
    ensure!(!levels.is_empty(), "RoI extractor: no feature levels given");
    let c = levels[0].1 .0;
    let mut scales = Vec::with_capacity(levels.len());
    for (i, &(feat, shape, stride)) in levels.iter().enumerate() {
        check_feat(feat, shape, &format!("level {i}"))?;
        ensure!(
            shape.0 == c,
            "RoI extractor: level {i} has {} channels, level 0 has {c}",
            shape.0
        );
        ensure!(stride > 0, "RoI extractor: level {i} has stride 0");
        scales.push((1.0f64 / stride as f64) as f32);
    }
    let lvls = map_roi_levels(rois, finest_scale, levels.len());
    let geoms = rois
        .iter()
        .zip(&lvls)
        .map(|(&r, &l)| geom(r, scales[l], out, true, 0))
        .collect::<Result<Vec<_>>>()?;
    let per_roi = c * out * out;
    let mut dst = vec![0.0f32; rois.len() * per_roi];
    if per_roi == 0 {
        return Ok(dst);
    }
    dst.par_chunks_mut(per_roi)
        .zip(geoms.par_iter().zip(lvls.par_iter()))
        .for_each_init(Vec::new, |taps, (d, (g, &l))| {
            align_one(levels[l].0, levels[l].1, g, out, taps, d)
        });
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a·x + b·y + k` on an `h × w` map, `c` channels with `k` = channel index.
    fn ramp(c: usize, h: usize, w: usize, a: f32, b: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(c * h * w);
        for k in 0..c {
            for y in 0..h {
                for x in 0..w {
                    v.push(a * x as f32 + b * y as f32 + k as f32);
                }
            }
        }
        v
    }

    #[test]
    fn ramp_inside_is_linear() {
        // RoI fully inside (all samples in [0, W-1]): the bin value is the ramp at the mean of
        // its sample positions = the bin centre.
        let (h, w) = (20, 24);
        let feat = ramp(2, h, w, 1.0, 10.0);
        let roi = [6.0, 5.0, 30.0, 21.0]; // stride 2 -> [2.5, 2.0, 14.5, 10.0] after -0.5
        let out = 4;
        let got = roi_align(&feat, (2, h, w), &[roi], 0.5, out, true, 0).unwrap();
        let (sx, sy) = (6.0 * 0.5 - 0.5, 5.0 * 0.5 - 0.5);
        let (bw, bh) = ((30.0 - 6.0) * 0.5 / 4.0, (21.0 - 5.0) * 0.5 / 4.0);
        for k in 0..2 {
            for ph in 0..out {
                for pw in 0..out {
                    let cx = sx + (pw as f32 + 0.5) * bw;
                    let cy = sy + (ph as f32 + 0.5) * bh;
                    let want = cx + 10.0 * cy + k as f32;
                    let g = got[k * out * out + ph * out + pw];
                    assert!((g - want).abs() < 1e-4, "{k} {ph} {pw}: {g} vs {want}");
                }
            }
        }
        // The same with a fixed sampling ratio.
        let got2 = roi_align(&feat, (2, h, w), &[roi], 0.5, out, true, 3).unwrap();
        for (a, b) in got.iter().zip(&got2) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn hand_computed_samples_and_borders() {
        // 1x3x5 ramp feat = x. Aligned, scale 1, out 1: RoI [0, 0, 5, 3] -> start (-0.5, -0.5),
        // size 5x3, grid 5x3; x samples -0.5+0.5+k = 0..4 exactly, y samples 0, 1, 2.
        let feat = ramp(1, 3, 5, 1.0, 0.0);
        let g = roi_align(&feat, (1, 3, 5), &[[0.0, 0.0, 5.0, 3.0]], 1.0, 1, true, 0).unwrap();
        assert_eq!(g, vec![2.0]);
        // Not aligned: start (0, 0), samples x = 0.5..4.5; 4.5 > W-1 = 4 is clamped to 4:
        // (0.5+1.5+2.5+3.5+4)/5 = 2.4.
        let g = roi_align(&feat, (1, 3, 5), &[[0.0, 0.0, 5.0, 3.0]], 1.0, 1, false, 0).unwrap();
        assert!((g[0] - 2.4).abs() < 1e-6, "{g:?}");
        // Samples left of the map: x in [-1, 0] clamp to 0, x < -1 is 0.
        // RoI x in [-3, 1) aligned -> start -3.5, size 4, grid 4: x = -3, -2, -1, 0 -> values
        // 0 (out), 0 (out), feat(0)=0 (clamped), 0 -> but use feat = x + 1 to see them.
        let feat1: Vec<f32> = feat.iter().map(|v| v + 1.0).collect();
        let g = roi_align(&feat1, (1, 3, 5), &[[-3.0, 0.0, 1.0, 1.0]], 1.0, 1, true, 0).unwrap();
        // y: start -0.5, size 1, one sample at 0. x samples -3, -2 (zero), -1 and 0 (value 1).
        assert_eq!(g, vec![0.5]);
        // Right border: x = W = 5 is still inside (value at W-1 = 4, +1 = 5), x > 5 is out.
        // RoI [5, 0, 7, 1] aligned: start 4.5, size 2, grid 2: x = 5.0, 6.0 -> (5 + 0) / 2.
        let g = roi_align(&feat1, (1, 3, 5), &[[5.0, 0.0, 7.0, 1.0]], 1.0, 1, true, 0).unwrap();
        assert_eq!(g, vec![2.5]);
    }

    #[test]
    fn degenerate_rois_give_zeros_not_panics() {
        let feat = ramp(2, 4, 4, 1.0, 1.0);
        let rois = [
            [2.0, 2.0, 2.0, 2.0],               // empty: 0 samples
            [3.0, 3.0, 1.0, 1.0],               // inverted
            [f32::NAN, 0.0, 1.0, 1.0],          // NaN
            [0.0, 0.0, f32::INFINITY, 1.0],     // infinite
            [f32::NEG_INFINITY, 0.0, 1.0, 1.0], // infinite
            [0.0, 0.0, 1e20, 1e20],             // beyond i32 after ceil
        ];
        let got = roi_align(&feat, (2, 4, 4), &rois, 1.0, 2, true, 0).unwrap();
        assert!(got.iter().all(|&v| v == 0.0), "{got:?}");
        // Too many samples per bin is an error, not hours of work.
        assert!(roi_align(&feat, (2, 4, 4), &[[0., 0., 1e6, 1e6]], 1.0, 2, true, 0).is_err());
        // Shape errors.
        assert!(roi_align(&feat, (2, 4, 5), &rois, 1.0, 2, true, 0).is_err());
        assert!(roi_align(&feat, (2, 4, 4), &rois, 1.0, 0, true, 0).is_err());
        assert!(roi_align(&[], (0, 0, 4), &rois, 1.0, 2, true, 0).is_err());
        assert_eq!(
            roi_align(&feat, (2, 4, 4), &[], 1.0, 2, true, 0).unwrap(),
            vec![]
        );
    }

    #[test]
    fn multi_level_routes_by_size() {
        // Each level is a constant map equal to its index + 1: the output tells the level.
        // A 512x512 input: every RoI below lies inside every map.
        let shapes = [(1, 128, 128), (1, 64, 64), (1, 32, 32), (1, 16, 16)];
        let maps: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(c, h, w))| vec![i as f32 + 1.0; c * h * w])
            .collect();
        let levels: Vec<RoiLevel> = maps
            .iter()
            .zip(shapes)
            .zip([4, 8, 16, 32])
            .map(|((m, s), st)| (m.as_slice(), s, st))
            .collect();
        let rois = [
            [0.0, 0.0, 300.0, 300.0],
            [0.0, 0.0, 50.0, 50.0],
            [0.0, 0.0, 500.0, 500.0],
            [0.0, 0.0, 150.0, 150.0],
        ];
        let got = multi_level_roi_align(&levels, &rois, 2, 56.0).unwrap();
        for (roi_out, want) in got.chunks(4).zip([3.0f32, 1.0, 4.0, 2.0]) {
            for v in roi_out {
                assert!((v - want).abs() < 1e-5, "{roi_out:?} vs level value {want}");
            }
        }
        // Mismatched channels are an error.
        let bad = [levels[0], (maps[1].as_slice(), (2, 32, 64), 8)];
        assert!(multi_level_roi_align(&bad, &rois, 2, 56.0).is_err());
    }
}
