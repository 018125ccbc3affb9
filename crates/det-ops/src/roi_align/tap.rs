//! The bilinear sampling that the inference RoIAlign ([`roi_align()`](crate::roi_align())) and
//! the training plan with its adjoint ([`RoiAlignPlan`](crate::RoiAlignPlan)) share, in one copy
//! so that the forward, the plan and the adjoint cannot drift apart: a RoI's geometry (start, bin
//! size and sample grid per axis, [`roi_geom`]), the sample positions of every bin
//! ([`for_each_tap`]), the four taps of one sample ([`tap`], mmcv's
//! `pre_calc_for_bilinear_interpolate`) and the value of a bin ([`bin_mean`]). The formulas and
//! their provenance are documented in [`crate::roi_align`](mod@crate::roi_align).

use std::ops::{Add, AddAssign, Div, Mul};

/// Upper bound on `grid_h · grid_w` (samples per output bin) RoIAlign accepts.
pub const MAX_SAMPLES_PER_BIN: i64 = 1 << 24;

/// The float types a [`RoiAlignPlan`](crate::RoiAlignPlan) runs on (f32 and f64).
pub trait RoiFloat:
    Copy
    + Default
    + Send
    + Sync
    + Add<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + AddAssign
    + From<f32>
{
}
impl RoiFloat for f32 {}
impl RoiFloat for f64 {}

/// One precomputed bilinear sample: four flat positions in a `[H, W]` plane and their weights
/// (mmcv's `PreCalc`). Positions are `usize` as [`tap`] computes them; a plan that keeps many
/// stores them as `u32` ([`Tap::to_u32`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tap<P = usize> {
    pub(crate) pos: [P; 4],
    pub(crate) w: [f32; 4],
}

impl Tap {
    /// The same tap with `u32` positions (the caller has checked that `H·W` fits in a `u32`).
    pub(crate) fn to_u32(self) -> Tap<u32> {
        Tap {
            pos: self.pos.map(|p| p as u32),
            w: self.w,
        }
    }
}

/// A flat position in a plane, as a [`Tap`] stores it.
pub(crate) trait TapPos: Copy {
    /// The position as an index.
    fn index(self) -> usize;
}

impl TapPos for usize {
    #[inline(always)]
    fn index(self) -> usize {
        self
    }
}

impl TapPos for u32 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

/// mmcv's `pre_calc_for_bilinear_interpolate` for one sample position.
pub(crate) fn tap(height: usize, width: usize, y: f32, x: f32) -> Tap {
    // Written as !(in range) so that NaN takes the empty branch (torchvision's rule).
    if !(y >= -1.0 && y <= height as f32 && x >= -1.0 && x <= width as f32) {
        return Tap::default();
    }
    let mut y = if y <= 0.0 { 0.0 } else { y };
    let mut x = if x <= 0.0 { 0.0 } else { x };
    // 0 <= y <= height, so the truncation fits.
    let mut y_low = y as usize;
    let mut x_low = x as usize;
    let y_high;
    let x_high;
    if y_low >= height - 1 {
        y_low = height - 1;
        y_high = y_low;
        y = y_low as f32;
    } else {
        y_high = y_low + 1;
    }
    if x_low >= width - 1 {
        x_low = width - 1;
        x_high = x_low;
        x = x_low as f32;
    } else {
        x_high = x_low + 1;
    }
    let ly = y - y_low as f32;
    let lx = x - x_low as f32;
    // `1. - ly` is a double subtraction in C++; for ly in [0, 1) it rounds to the same float.
    let hy = 1.0 - ly;
    let hx = 1.0 - lx;
    Tap {
        pos: [
            y_low * width + x_low,
            y_low * width + x_high,
            y_high * width + x_low,
            y_high * width + x_high,
        ],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

/// `(int) ceilf(v)` as the C++ kernels compute it on x86: NaN and out-of-range give `i32::MIN`.
fn ceil_to_int(v: f32) -> i64 {
    let c = v.ceil();
    if c.is_nan() || !(-2147483648.0..2147483648.0).contains(&c) {
        i64::from(i32::MIN)
    } else {
        c as i64
    }
}

/// The per-RoI geometry: start, bin size and sample grid per axis.
pub(crate) struct RoiGeom {
    pub(crate) start_h: f32,
    pub(crate) start_w: f32,
    pub(crate) bin_h: f32,
    pub(crate) bin_w: f32,
    /// Samples per bin and axis; 0 when the kernels' loop would not run.
    pub(crate) grid_h: usize,
    pub(crate) grid_w: usize,
    /// `max(grid_h·grid_w, 1)` as the kernels' float `count`.
    pub(crate) count: f32,
}

impl RoiGeom {
    /// Samples per bin, `grid_h · grid_w` (0 when the loop would not run).
    pub(crate) fn per_bin(&self) -> usize {
        self.grid_h * self.grid_w
    }
}

/// A RoI whose sample grid `gh × gw` exceeds [`MAX_SAMPLES_PER_BIN`]; the caller words the
/// error (it knows which RoI it was).
pub(crate) struct TooManySamples {
    pub(crate) gh: i64,
    pub(crate) gw: i64,
}

/// The geometry of `roi` (`[x1, y1, x2, y2]` in input pixels) at `spatial_scale` for `out × out`
/// bins, mmcv's formulas (see [`crate::roi_align`](mod@crate::roi_align)).
pub(crate) fn roi_geom(
    roi: [f32; 4],
    spatial_scale: f32,
    out: usize,
    aligned: bool,
    sampling_ratio: usize,
) -> Result<RoiGeom, TooManySamples> {
    let offset = if aligned { 0.5f32 } else { 0.0 };
    let start_w = roi[0] * spatial_scale - offset;
    let start_h = roi[1] * spatial_scale - offset;
    let end_w = roi[2] * spatial_scale - offset;
    let end_h = roi[3] * spatial_scale - offset;
    let mut roi_w = end_w - start_w;
    let mut roi_h = end_h - start_h;
    if !aligned {
        // C++ `std::max(a, b)` is `a < b ? b : a`: a NaN width stays NaN.
        roi_w = if roi_w < 1.0 { 1.0 } else { roi_w };
        roi_h = if roi_h < 1.0 { 1.0 } else { roi_h };
    }
    let out_f = out as f32;
    let bin_h = roi_h / out_f;
    let bin_w = roi_w / out_f;
    let (gh, gw) = if sampling_ratio > 0 {
        (sampling_ratio as i64, sampling_ratio as i64)
    } else {
        (ceil_to_int(roi_h / out_f), ceil_to_int(roi_w / out_f))
    };
    let (grid_h, grid_w) = if gh <= 0 || gw <= 0 {
        (0, 0)
    } else {
        if gh.saturating_mul(gw) > MAX_SAMPLES_PER_BIN {
            return Err(TooManySamples { gh, gw });
        }
        (gh as usize, gw as usize)
    };
    let count = (grid_h * grid_w).max(1) as f32;
    Ok(RoiGeom {
        start_h,
        start_w,
        bin_h,
        bin_w,
        grid_h,
        grid_w,
        count,
    })
}

/// The taps of every sample of a RoI on a `height × width` map, in mmcv's order: bin by bin
/// (`ph`, then `pw`), and within a bin row by row (`iy`, then `ix`); `per_bin()` taps per bin.
pub(crate) fn for_each_tap(
    g: &RoiGeom,
    out: usize,
    (height, width): (usize, usize),
    mut push: impl FnMut(Tap),
) {
    for ph in 0..out {
        for pw in 0..out {
            for iy in 0..g.grid_h {
                let y =
                    g.start_h + ph as f32 * g.bin_h + (iy as f32 + 0.5) * g.bin_h / g.grid_h as f32;
                for ix in 0..g.grid_w {
                    let x = g.start_w
                        + pw as f32 * g.bin_w
                        + (ix as f32 + 0.5) * g.bin_w / g.grid_w as f32;
                    push(tap(height, width, y, x));
                }
            }
        }
    }
}

/// The value of one bin from its taps on `plane`: `Σ (w1·v1 + w2·v2 + w3·v3 + w4·v4)` over
/// the samples in order, then divided by `count` (the kernels' float `count`).
#[inline]
pub(crate) fn bin_mean<T: RoiFloat, P: TapPos>(taps: &[Tap<P>], plane: &[T], count: T) -> T {
    let mut acc = T::default();
    for t in taps {
        let p = t.pos;
        acc += T::from(t.w[0]) * plane[p[0].index()]
            + T::from(t.w[1]) * plane[p[1].index()]
            + T::from(t.w[2]) * plane[p[2].index()]
            + T::from(t.w[3]) * plane[p[3].index()];
    }
    acc / count
}
