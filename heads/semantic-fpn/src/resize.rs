//! Bilinear resizing of `[B, C, H, W]` maps with PyTorch's rule, and per-pixel argmax.
//!
//! [`resize_bilinear`] equals `F.interpolate(x, size=(out_h, out_w), mode="bilinear",
//! align_corners=...)` (no antialias) for up- and down-sampling, which is what mmseg's
//! `resize`, its `Upsample(scale_factor=2)` module (it passes `size = 2·input`) and the test-time
//! resizes call. The weights are computed in f32 exactly as ATen's CPU kernel computes them
//! (`area_pixel_compute_scale`, `area_pixel_compute_source_index`, `guard_index_and_lambda` in
//! `UpSample.h`):
//!
//! - half-pixel (`align_corners=False`): `scale = (f32)in / out`,
//!   `src = max(fma(scale, dst + 0.5, −0.5), 0)` (one rounding, as the x86-64 build of ATen
//!   computes it: with a separate multiply and subtract 14 of 488 weights of a 88 → 61 resize
//!   differ from PyTorch's);
//! - corners (`align_corners=True`): `scale = (f32)(in − 1) / (out − 1)` (0 when `out == 1`),
//!   `src = scale·dst`;
//! - `i0 = min(floor(src), in − 1)`, `i1 = i0 + 1` unless `i0` is the last index,
//!   `λ = clamp(src − i0, 0, 1)`, weights `(1 − λ, λ)`;
//! - value `((v00·wx0 + v01·wx1)·wy0 + (v10·wx0 + v11·wx1)·wy1)`, ATen's order: a horizontal pass
//!   then a vertical one.
//!
//! Indices and weights are bit-identical to PyTorch's (checked on 1-D resizes); the values
//! differ from PyTorch 2.x by an ulp or two at some pixels, because ATen's compiled kernel fuses
//! some of the products above into FMAs, and which ones depends on its vectorisation of the
//! particular sizes (no single order reproduces all cases; ≤ 2.4e-7 relative on the goldens).
//!
//! On the CPU with f32 this is a multi-threaded separable kernel (rayon over planes). Other
//! devices and dtypes, and inputs that take part in a training graph, use the same weights as two
//! dense interpolation matrices (matmuls, differentiable), which gives the same values up to
//! summation order.
//!
//! candle's own `Tensor::upsample_bilinear2d` follows the same rule but computes coordinates and
//! weights in f64 and runs on one thread; its results differ from PyTorch's by float rounding
//! only (measured in this crate's tests, ≤ 1e-6 relative on the goldens).

use anyhow::{ensure, Result};
use candle::{CpuStorage, DType, Storage, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Where output pixels sample the input: PyTorch's `align_corners` flag as a named choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelGrid {
    /// `align_corners=False` (every PVT / mmseg config): pixel centres at half-integer
    /// positions, `src = (dst + 0.5)·in/out − 0.5`, clamped at 0.
    HalfPixel,
    /// `align_corners=True`: the corner pixels of input and output coincide,
    /// `src = dst·(in − 1)/(out − 1)`.
    AlignCorners,
}

/// The two source indices and weights of each output position along one axis.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w0: Vec<f32>,
    w1: Vec<f32>,
}

fn taps(in_len: usize, out_len: usize, grid: PixelGrid) -> Taps {
    let scale: f32 = match grid {
        PixelGrid::HalfPixel => in_len as f32 / out_len as f32,
        PixelGrid::AlignCorners if out_len > 1 => (in_len - 1) as f32 / (out_len - 1) as f32,
        PixelGrid::AlignCorners => 0.0,
    };
    let mut t = Taps {
        i0: Vec::with_capacity(out_len),
        i1: Vec::with_capacity(out_len),
        w0: Vec::with_capacity(out_len),
        w1: Vec::with_capacity(out_len),
    };
    for d in 0..out_len {
        let src = match grid {
            // ATen's compiled kernel contracts this into one fused multiply-add
            PixelGrid::HalfPixel => scale.mul_add(d as f32 + 0.5, -0.5).max(0.0),
            PixelGrid::AlignCorners => scale * d as f32,
        };
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
        let lambda = (src - i0 as f32).clamp(0.0, 1.0);
        t.i0.push(i0);
        t.i1.push(i1);
        t.w0.push(1.0 - lambda);
        t.w1.push(lambda);
    }
    t
}

/// `[out, in]` row-major matrix of the taps (a row sums the two weights of its position).
fn taps_matrix(t: &Taps, in_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; t.i0.len() * in_len];
    for d in 0..t.i0.len() {
        m[d * in_len + t.i0[d]] += t.w0[d];
        m[d * in_len + t.i1[d]] += t.w1[d];
    }
    m
}

/// Resizes one `h × w` plane into `dst` (`ty.len() × tx.len()`), using `tmp` for the
/// horizontal pass (`h × out_w`).
fn resize_plane(src: &[f32], w: usize, ty: &Taps, tx: &Taps, tmp: &mut [f32], dst: &mut [f32]) {
    let ow = tx.i0.len();
    for (row, hrow) in src.chunks_exact(w).zip(tmp.chunks_exact_mut(ow)) {
        for (x, o) in hrow.iter_mut().enumerate() {
            *o = row[tx.i0[x]] * tx.w0[x] + row[tx.i1[x]] * tx.w1[x];
        }
    }
    for (y, drow) in dst.chunks_exact_mut(ow).enumerate() {
        let (a, b) = (ty.i0[y], ty.i1[y]);
        let (wa, wb) = (ty.w0[y], ty.w1[y]);
        let ra = &tmp[a * ow..(a + 1) * ow];
        let rb = &tmp[b * ow..(b + 1) * ow];
        for ((o, &va), &vb) in drow.iter_mut().zip(ra).zip(rb) {
            *o = va * wa + vb * wb;
        }
    }
}

/// Resizes `x` `[B, C, H, W]` to `[B, C, out_h, out_w]` with PyTorch's bilinear rule (module
/// docs). Returns `x` itself when the size is unchanged (PyTorch's result is then the input,
/// value for value). Errors on a zero-sized input or output.
pub fn resize_bilinear(
    x: &Tensor,
    (out_h, out_w): (usize, usize),
    grid: PixelGrid,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    ensure!(
        h > 0 && w > 0 && out_h > 0 && out_w > 0,
        "bilinear resize of a {h}x{w} map to {out_h}x{out_w}: sizes must be positive"
    );
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let ty = taps(h, out_h, grid);
    let tx = taps(w, out_w, grid);
    // the matmul form is differentiable: training graphs go through it
    if x.track_op() || !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return resize_by_matmul(x, &ty, &tx, (h, w));
    }
    let x = x.contiguous()?;
    let planes = b * c;
    let out = {
        let (storage, layout) = x.storage_and_layout();
        let src = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                &v[layout.start_offset()..layout.start_offset() + planes * h * w]
            }
            _ => unreachable!("checked: f32 on the CPU"),
        };
        let mut out = vec![0f32; planes * out_h * out_w];
        out.par_chunks_mut(out_h * out_w)
            .zip(src.par_chunks(h * w))
            .for_each_init(
                || vec![0f32; h * out_w],
                |tmp, (dst, plane)| resize_plane(plane, w, &ty, &tx, tmp, dst),
            );
        out
    };
    Ok(Tensor::from_vec(out, (b, c, out_h, out_w), x.device())?)
}

fn resize_by_matmul(x: &Tensor, ty: &Taps, tx: &Taps, (h, w): (usize, usize)) -> Result<Tensor> {
    let (b, c, _, _) = x.dims4()?;
    let (oh, ow) = (ty.i0.len(), tx.i0.len());
    let dev = x.device();
    let my = Tensor::from_vec(taps_matrix(ty, h), (oh, h), dev)?.to_dtype(x.dtype())?;
    let mxt = Tensor::from_vec(taps_matrix(tx, w), (ow, w), dev)?
        .to_dtype(x.dtype())?
        .t()?;
    // [B·C, H, W] @ [W, OW] -> [B·C, H, OW]; then [OH, H] @ each plane -> [B·C, OH, OW]
    let t = x.reshape((b * c, h, w))?.broadcast_matmul(&mxt)?;
    let t = my
        .broadcast_left(b * c)?
        .contiguous()?
        .matmul(&t.contiguous()?)?;
    Ok(t.reshape((b, c, oh, ow))?)
}

/// Pixels per work item of the argmax loops.
const PIXEL_BLOCK: usize = 4096;

/// Runs `f` on the values of a CPU f32 tensor (made contiguous), without copying them out.
fn with_cpu_f32<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(f(
            &v[layout.start_offset()..layout.start_offset() + x.elem_count()]
        )),
        _ => anyhow::bail!("expected f32 values on the CPU"),
    }
}

/// `[1, K, H, W]` or `[K, H, W]` → `(K, H, W)`, as a CPU f32 tensor `[K, H, W]`.
fn single_map(x: &Tensor) -> Result<(Tensor, (usize, usize, usize))> {
    let x = match x.rank() {
        4 => {
            ensure!(
                x.dim(0)? == 1,
                "argmax: batch of {} maps, expected one",
                x.dim(0)?
            );
            x.squeeze(0)?
        }
        _ => x.clone(),
    };
    let (k, h, w) = x.dims3()?;
    ensure!(
        k > 0 && k <= u16::MAX as usize + 1,
        "argmax over {k} channels: expected 1 to 65536"
    );
    let x = x.to_device(&candle::Device::Cpu)?.to_dtype(DType::F32)?;
    Ok((x, (k, h, w)))
}

/// The running argmax update: ties keep the lower index, NaN never wins over a number.
#[inline(always)]
fn update(best: &mut f32, label: &mut u16, v: f32, c: usize) {
    if v > *best || best.is_nan() {
        *best = v;
        *label = c as u16;
    }
}

/// Per-pixel argmax over the channels of `x` `[1, K, H, W]` (or `[K, H, W]`): row-major
/// `H·W` class indices. Ties go to the lower index (as `torch.argmax`); NaN never wins.
/// Errors if `K` is zero or does not fit in `u16`.
pub fn argmax_channels(x: &Tensor) -> Result<(Vec<u16>, (usize, usize))> {
    let (x, (k, h, w)) = single_map(x)?;
    let n = h * w;
    let mut label = vec![0u16; n];
    with_cpu_f32(&x, |v| {
        label
            .par_chunks_mut(PIXEL_BLOCK)
            .enumerate()
            .for_each(|(bi, lab)| {
                let p0 = bi * PIXEL_BLOCK;
                let mut best = v[p0..p0 + lab.len()].to_vec();
                for c in 1..k {
                    let plane = &v[c * n + p0..c * n + p0 + lab.len()];
                    for ((b, l), &p) in best.iter_mut().zip(lab.iter_mut()).zip(plane) {
                        update(b, l, p, c);
                    }
                }
            })
    })?;
    Ok((label, (h, w)))
}

/// `argmax_channels(resize_bilinear(x, size, grid))` without materialising the resized
/// logits (`[K, out_h, out_w]` can be hundreds of MB for 150 classes): each output row is
/// interpolated class by class with the same arithmetic as [`resize_bilinear`] and reduced at
/// once, so the labels are identical. Returns row-major `out_h·out_w` labels.
pub fn resize_argmax(
    x: &Tensor,
    (out_h, out_w): (usize, usize),
    grid: PixelGrid,
) -> Result<Vec<u16>> {
    let (x, (k, h, w)) = single_map(x)?;
    ensure!(
        h > 0 && w > 0 && out_h > 0 && out_w > 0,
        "bilinear resize of a {h}x{w} map to {out_h}x{out_w}: sizes must be positive"
    );
    if (h, w) == (out_h, out_w) {
        return Ok(argmax_channels(&x)?.0);
    }
    let ty = taps(h, out_h, grid);
    let tx = taps(w, out_w, grid);
    let mut label = vec![0u16; out_h * out_w];
    with_cpu_f32(&x, |v| {
        label.par_chunks_mut(out_w).enumerate().for_each_init(
            || (vec![0f32; out_w], vec![0f32; out_w]),
            |(best, row), (y, lab)| {
                let (a, b) = (ty.i0[y], ty.i1[y]);
                let (wa, wb) = (ty.w0[y], ty.w1[y]);
                for c in 0..k {
                    let plane = &v[c * h * w..(c + 1) * h * w];
                    let ra = &plane[a * w..(a + 1) * w];
                    let rb = &plane[b * w..(b + 1) * w];
                    for (x, o) in row.iter_mut().enumerate() {
                        let (i0, i1, w0, w1) = (tx.i0[x], tx.i1[x], tx.w0[x], tx.w1[x]);
                        let ha = ra[i0] * w0 + ra[i1] * w1;
                        let hb = rb[i0] * w0 + rb[i1] * w1;
                        *o = ha * wa + hb * wb;
                    }
                    if c == 0 {
                        best.copy_from_slice(row);
                        lab.fill(0);
                    } else {
                        for ((bv, l), &r) in best.iter_mut().zip(lab.iter_mut()).zip(row.iter()) {
                            update(bv, l, r, c);
                        }
                    }
                }
            },
        )
    })?;
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn taps_hand_computed() {
        // upsample 2 -> 4: sources -0.25 (clamped 0), 0.25, 0.75, 1.25 (both taps on the last
        // pixel, λ kept: weights 0.75 + 0.25 on the same index, as in ATen)
        let t = taps(2, 4, PixelGrid::HalfPixel);
        assert_eq!(t.i0, vec![0, 0, 0, 1]);
        assert_eq!(t.i1, vec![1, 1, 1, 1]);
        assert_eq!(t.w1, vec![0.0, 0.25, 0.75, 0.25]);
        // downsample 4 -> 2: sources 0.5 and 2.5
        let t = taps(4, 2, PixelGrid::HalfPixel);
        assert_eq!((t.i0, t.w1), (vec![0, 2], vec![0.5, 0.5]));
        // corners 3 -> 5: sources 0, 0.5, 1, 1.5, 2
        let t = taps(3, 5, PixelGrid::AlignCorners);
        assert_eq!(t.i0, vec![0, 0, 1, 1, 2]);
        assert_eq!(t.w1, vec![0.0, 0.5, 0.0, 0.5, 0.0]);
        // a 1-pixel output samples the middle (half-pixel) or the first pixel (corners)
        assert_eq!(taps(5, 1, PixelGrid::HalfPixel).i0, vec![2]);
        assert_eq!(taps(5, 1, PixelGrid::AlignCorners).i0, vec![0]);
    }

    #[test]
    fn matrix_path_equals_kernel() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (2, 3, 7, 5), &Device::Cpu)?;
        for grid in [PixelGrid::HalfPixel, PixelGrid::AlignCorners] {
            for size in [(14, 10), (3, 4), (9, 2)] {
                let a = resize_bilinear(&x, size, grid)?;
                let ty = taps(7, size.0, grid);
                let tx = taps(5, size.1, grid);
                let b = resize_by_matmul(&x, &ty, &tx, (7, 5))?;
                let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                assert!(d < 1e-6, "{grid:?} {size:?}: {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn fused_resize_argmax_equals_resize_then_argmax() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (1, 7, 9, 13), &Device::Cpu)?;
        for size in [(36, 52), (5, 11), (9, 13), (20, 7)] {
            let want = argmax_channels(&resize_bilinear(&x, size, PixelGrid::HalfPixel)?)?.0;
            assert_eq!(
                resize_argmax(&x, size, PixelGrid::HalfPixel)?,
                want,
                "{size:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn argmax_ties_go_low() -> Result<()> {
        let x = Tensor::from_vec(vec![1f32, 2., 3., 3., 0., 3.], (1, 3, 1, 2), &Device::Cpu)?;
        // pixel 0: [1, 3, 0] -> 1; pixel 1: [2, 3, 3] -> 1 (tie between 1 and 2)
        let (l, hw) = argmax_channels(&x)?;
        assert_eq!((l, hw), (vec![1, 1], (1, 2)));
        Ok(())
    }
}
