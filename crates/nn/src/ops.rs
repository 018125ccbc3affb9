//! Numerics that must equal PyTorch's and run fast on the CPU.

use anyhow::{ensure, Result};
use candle::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use crate::elem::{contiguous_slice, tracks, Real};

// ----------------------------------------------------------------------------------------------
// GELU (exact erf form)

/// `erf(x)` for f32 as a rational function of `x` on `[-4, 4]` (erf is ±1 to f32 precision
/// beyond): `x·P(x²)/Q(x²)`, the form used by Eigen and XLA for single precision. It has no
/// branches and no `exp`, so the loop below vectorises. Maximum absolute error against the f64
/// `erf` is below 1e-6 (checked in the tests over a dense grid).
#[inline(always)]
pub fn erf_f32_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024_1e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.954_600_5e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329_3e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    x * p / q
}

#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_slice_generic(src: &[f32], dst: &mut [f32]) {
    for (o, &x) in dst.iter_mut().zip(src) {
        *o = gelu_scalar(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2_fma(src: &[f32], dst: &mut [f32]) {
    // Same code, compiled with hardware FMA (`mul_add` is otherwise a libm call) and 8-wide
    // vectors.
    gelu_slice_generic(src, dst)
}

fn gelu_slice(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { gelu_slice_avx2_fma(src, dst) };
    }
    gelu_slice_generic(src, dst)
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "pvt-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle::Error::Msg("gelu: input must be contiguous".into()))?;
        let src = match storage {
            CpuStorage::F32(v) => &v[start..end],
            _ => {
                return Err(candle::Error::Msg(
                    "gelu: only f32 has a CPU kernel here".into(),
                ))
            }
        };
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(o, s)| gelu_slice(s, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        if arg.device().is_cpu() && arg.dtype() == candle::DType::F32 {
            let g = grad_res.to_dtype(candle::DType::F32)?.contiguous()?;
            return Ok(Some(arg.contiguous()?.apply_op2_no_bwd(&g, &GeluErfBwd)?));
        }
        gelu_erf_grad_composite(arg, grad_res).map(Some)
    }
}

/// `grad · GELU'(x)` with candle ops (any device), `GELU'(x) = Φ(x) + x·φ(x)`.
fn gelu_erf_grad_composite(arg: &Tensor, grad_res: &Tensor) -> candle::Result<Tensor> {
    let cdf = ((arg * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
    let pdf = ((arg.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
    let d = (cdf? + (arg * pdf)?)?;
    grad_res.mul(&d)
}

/// `grad · GELU'(x)` in one pass (f32, CPU): `(x, grad) -> grad_x`. Replaces about ten candle
/// ops (each a pass over the tensor and an allocation) in the backward of every MLP.
struct GeluErfBwd;

#[inline(always)]
fn gelu_grad_scalar(x: f32, g: f32) -> f32 {
    // φ(x) = exp(-x²/2)/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32_fast(x * std::f32::consts::FRAC_1_SQRT_2));
    g * (cdf + x * INV_SQRT_2PI * (-0.5 * x * x).exp())
}

/// `xg[i] <- gelu_grad_scalar(xg[i], g[i])`.
#[inline(always)]
fn gelu_grad_slice_generic(xg: &mut [f32], g: &[f32]) {
    xg.iter_mut()
        .zip(g)
        .for_each(|(v, &g)| *v = gelu_grad_scalar(*v, g));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_grad_slice_avx2_fma(xg: &mut [f32], g: &[f32]) {
    // as `gelu_slice_avx2_fma`: hardware FMA for the `mul_add`s of `erf_f32_fast`
    gelu_grad_slice_generic(xg, g)
}

fn gelu_grad_slice(xg: &mut [f32], g: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { gelu_grad_slice_avx2_fma(xg, g) };
    }
    gelu_grad_slice_generic(xg, g)
}

impl candle::CustomOp2 for GeluErfBwd {
    fn name(&self) -> &'static str {
        "pvt-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle::bail!("gelu backward: shapes differ")
        }
        let (x, g) = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => (
                contiguous_slice(x, l1, "gelu backward")?,
                contiguous_slice(g, l2, "gelu backward")?,
            ),
            _ => candle::bail!("gelu backward: f32 only"),
        };
        let mut out = x.to_vec();
        out.par_chunks_mut(1 << 14)
            .zip(g.par_chunks(1 << 14))
            .for_each(|(o, g)| gelu_grad_slice(o, g));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU with the exact erf formulation, `0.5·x·(1 + erf(x/√2))` (PyTorch's `nn.GELU()`
/// default). Not candle's `Tensor::gelu`, which is the tanh approximation. On the CPU with f32
/// this runs a vectorised, multi-threaded kernel; elsewhere it uses candle's `gelu_erf`.
pub fn gelu_erf(xs: &Tensor) -> candle::Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == candle::DType::F32 {
        xs.contiguous()?.apply_op1(GeluErf)
    } else {
        xs.gelu_erf()
    }
}

/// [`gelu_erf`] as a module.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeluErfModule;

impl Module for GeluErfModule {
    fn forward(&self, xs: &Tensor) -> candle::Result<Tensor> {
        gelu_erf(xs)
    }
}

// ----------------------------------------------------------------------------------------------
// LayerNorm and softmax with backward passes
//
// candle-nn 0.11's fused `layer_norm` and `softmax_last_dim` kernels are registered without a
// backward pass (`apply_op*_no_bwd`): a graph through them silently stops there. The types below
// keep candle-nn's kernels for inference (nothing tracks gradients: same code, same values) and
// switch to kernels with a backward pass as soon as an input or a parameter is a training
// variable or depends on one.

/// Mean and `1/sqrt(var + eps)` of one row (biased variance, as PyTorch's LayerNorm).
fn row_stats<T: Real>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|v| {
            let d = v.to_f64() - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

fn normalize_rows<T: Real>(src: &[T], dim: usize, eps: f64) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); src.len()];
    out.par_chunks_mut(dim)
        .zip(src.par_chunks(dim))
        .for_each(|(o, x)| {
            let (mean, rstd) = row_stats(x, eps);
            for (o, &v) in o.iter_mut().zip(x) {
                *o = T::from_f64((v.to_f64() - mean) * rstd);
            }
        });
    out
}

/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` per row, with `x̂` recomputed from `x`.
fn normalize_rows_bwd<T: Real>(x: &[T], g: &[T], dim: usize, eps: f64) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); x.len()];
    out.par_chunks_mut(dim)
        .zip(x.par_chunks(dim).zip(g.par_chunks(dim)))
        .for_each(|(o, (x, g))| {
            let (mean, rstd) = row_stats(x, eps);
            let n = dim as f64;
            let (mut sg, mut sgx) = (0f64, 0f64);
            for (&xv, &gv) in x.iter().zip(g) {
                let xh = (xv.to_f64() - mean) * rstd;
                sg += gv.to_f64();
                sgx += gv.to_f64() * xh;
            }
            let (mg, mgx) = (sg / n, sgx / n);
            for ((o, &xv), &gv) in o.iter_mut().zip(x).zip(g) {
                let xh = (xv.to_f64() - mean) * rstd;
                *o = T::from_f64(rstd * (gv.to_f64() - mg - xh * mgx));
            }
        });
    out
}

/// `(x − mean) / sqrt(var + eps)` over the last dimension, with a backward pass.
struct Normalize {
    eps: f64,
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "pvt-normalize-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let dim = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(normalize_rows(
                contiguous_slice(v, layout, "layer norm")?,
                dim,
                self.eps,
            )),
            CpuStorage::F64(v) => CpuStorage::F64(normalize_rows(
                contiguous_slice(v, layout, "layer norm")?,
                dim,
                self.eps,
            )),
            _ => candle::bail!("layer norm (training): f32 or f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?;
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&g, &NormalizeBwd { eps: self.eps })?,
        ))
    }
}

/// The input gradient of [`Normalize`]: `(x, grad_out) -> grad_x`.
struct NormalizeBwd {
    eps: f64,
}

impl candle::CustomOp2 for NormalizeBwd {
    fn name(&self) -> &'static str {
        "pvt-normalize-last-dim-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle::bail!("layer norm backward: shapes differ")
        }
        let dim = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let what = "layer norm backward";
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => CpuStorage::F32(normalize_rows_bwd(
                contiguous_slice(x, l1, what)?,
                contiguous_slice(g, l2, what)?,
                dim,
                self.eps,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(g)) => CpuStorage::F64(normalize_rows_bwd(
                contiguous_slice(x, l1, what)?,
                contiguous_slice(g, l2, what)?,
                dim,
                self.eps,
            )),
            _ => candle::bail!("layer norm backward: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// A LayerNorm over the last dimension with weight and bias (PyTorch's `nn.LayerNorm`).
///
/// Inference (no tensor involved tracks gradients) runs candle-nn's `LayerNorm` exactly. When the
/// input, the weight or the bias tracks gradients (training), a kernel with a backward pass is
/// used instead; values agree to f32 rounding.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
}

impl LayerNorm {
    /// From tensors: `weight` and `bias` `[C]`.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self {
            inner: candle_nn::LayerNorm::new(weight, bias, eps),
        }
    }

    /// Reads `weight` and `bias` `[dim]` from `vb` (initialised to 1 and 0 in a `VarMap`).
    pub fn load(dim: usize, eps: f64, vb: candle_nn::VarBuilder) -> candle::Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.))?;
        Ok(Self::new(weight, bias, eps))
    }

    /// `[C]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// `[C]`.
    pub fn bias(&self) -> &Tensor {
        self.inner.bias().expect("built with a bias")
    }

    /// The epsilon.
    pub fn eps(&self) -> f64 {
        self.inner.eps()
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        let (w, b) = (self.weight(), self.bias());
        // (candle-nn's CPU kernel has no f64 version: f64 takes the kernel below)
        if !(tracks(x) || tracks(w) || tracks(b)) && x.dtype() != candle::DType::F64 {
            return self.inner.forward(x);
        }
        if !x.device().is_cpu() {
            return candle_nn::ops::layer_norm_slow(x, w, b, self.eps() as f32);
        }
        let xn = x.contiguous()?.apply_op1(Normalize { eps: self.eps() })?;
        crate::channel::scale_bias(&xn, w, b, xn.rank() - 1)
    }
}

/// Softmax over `[.., N]` rows, with a backward pass.
struct SoftmaxLast;

fn softmax_rows<T: Real>(src: &[T], dim: usize) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); src.len()];
    out.par_chunks_mut(dim)
        .zip(src.par_chunks(dim))
        .for_each(|(o, x)| {
            let m = x
                .iter()
                .map(|v| v.to_f64())
                .fold(f64::NEG_INFINITY, f64::max);
            let mut s = 0f64;
            for (o, &v) in o.iter_mut().zip(x) {
                let e = (v.to_f64() - m).exp();
                s += e;
                *o = T::from_f64(e);
            }
            for o in o.iter_mut() {
                *o = T::from_f64(o.to_f64() / s);
            }
        });
    out
}

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "pvt-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let dim = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(softmax_rows(contiguous_slice(v, layout, "softmax")?, dim))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(softmax_rows(contiguous_slice(v, layout, "softmax")?, dim))
            }
            _ => candle::bail!("softmax (training): f32 or f64 only"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        // dx = y ⊙ (g − Σ_j g_j y_j)
        let dot = (grad_res * res)?.sum_keepdim(candle::D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last dimension: candle-nn's fused kernel for inference, a kernel with a
/// backward pass when `xs` tracks gradients.
pub fn softmax_last_dim(xs: &Tensor) -> candle::Result<Tensor> {
    if tracks(xs) && xs.device().is_cpu() {
        xs.contiguous()?.apply_op1(SoftmaxLast)
    } else if tracks(xs) {
        candle_nn::ops::softmax(xs, candle::D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

// ----------------------------------------------------------------------------------------------
// Nearest upsampling with a correct backward pass

/// `F.interpolate(x, size=(h, w), mode="nearest")` on `[B, C, H, W]`: output pixel `(y, x)`
/// reads input `(floor(y·H/h), floor(x·W/w))`. For inference this is candle's
/// `upsample_nearest2d` (same values). When `xs` tracks gradients a kernel with its own backward
/// pass is used: candle 0.11's backward for `upsample_nearest2d` *replaces* the gradient already
/// accumulated for its input instead of adding to it, which corrupts the gradient of an FPN
/// lateral that also feeds its own output conv.
pub fn upsample_nearest2d(xs: &Tensor, h: usize, w: usize) -> candle::Result<Tensor> {
    if xs.track_op() && xs.device().is_cpu() {
        xs.contiguous()?.apply_op1(UpsampleNearest { h, w })
    } else {
        xs.upsample_nearest2d(h, w)
    }
}

/// Source index of output `o` along an axis of `inp` → `out` cells (PyTorch's legacy `nearest`:
/// `floor(o · in / out)` in f32).
fn nearest_src(o: usize, inp: usize, out: usize) -> usize {
    let scale = inp as f32 / out as f32;
    ((o as f32 * scale).floor() as usize).min(inp - 1)
}

struct UpsampleNearest {
    h: usize,
    w: usize,
}

impl UpsampleNearest {
    fn fwd<T: Copy + Default + Send + Sync>(
        &self,
        x: &[T],
        (b, c, ih, iw): (usize, usize, usize, usize),
    ) -> Vec<T> {
        let (h, w) = (self.h, self.w);
        let mut out = vec![T::default(); b * c * h * w];
        out.par_chunks_mut(h * w)
            .zip(x.par_chunks(ih * iw))
            .for_each(|(o, p)| {
                for y in 0..h {
                    let sy = nearest_src(y, ih, h);
                    for xo in 0..w {
                        o[y * w + xo] = p[sy * iw + nearest_src(xo, iw, w)];
                    }
                }
            });
        out
    }

    fn bwd<T: Copy + Default + Send + Sync + std::ops::AddAssign>(
        &self,
        g: &[T],
        (b, c, ih, iw): (usize, usize, usize, usize),
    ) -> Vec<T> {
        let (h, w) = (self.h, self.w);
        let mut out = vec![T::default(); b * c * ih * iw];
        out.par_chunks_mut(ih * iw)
            .zip(g.par_chunks(h * w))
            .for_each(|(p, gp)| {
                for y in 0..h {
                    let sy = nearest_src(y, ih, h);
                    for xo in 0..w {
                        p[sy * iw + nearest_src(xo, iw, w)] += gp[y * w + xo];
                    }
                }
            });
        out
    }
}

impl CustomOp1 for UpsampleNearest {
    fn name(&self) -> &'static str {
        "pvt-upsample-nearest2d"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims4()?;
        let (b, c, ih, iw) = dims;
        if ih == 0 || iw == 0 {
            candle::bail!("upsample: empty input")
        }
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(self.fwd(contiguous_slice(v, layout, "upsample")?, dims))
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(self.fwd(contiguous_slice(v, layout, "upsample")?, dims))
            }
            _ => candle::bail!("upsample (training): f32 or f64 only"),
        };
        Ok((out, Shape::from((b, c, self.h, self.w))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        let g = grad_res
            .contiguous()?
            .apply_op1_no_bwd(&UpsampleNearestBwd {
                op: UpsampleNearest {
                    h: self.h,
                    w: self.w,
                },
                input: arg.dims4()?,
            })?;
        Ok(Some(g))
    }
}

/// The adjoint of [`UpsampleNearest`]: sums each output gradient onto its source pixel.
struct UpsampleNearestBwd {
    op: UpsampleNearest,
    input: (usize, usize, usize, usize),
}

impl CustomOp1 for UpsampleNearestBwd {
    fn name(&self) -> &'static str {
        "pvt-upsample-nearest2d-bwd"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(
                self.op
                    .bwd(contiguous_slice(v, layout, "upsample")?, self.input),
            ),
            CpuStorage::F64(v) => CpuStorage::F64(
                self.op
                    .bwd(contiguous_slice(v, layout, "upsample")?, self.input),
            ),
            _ => candle::bail!("upsample backward: f32 or f64 only"),
        };
        Ok((out, Shape::from(self.input)))
    }
}

// ----------------------------------------------------------------------------------------------
// Bilinear resizing

/// The `[out, in]` matrix of 1-D linear interpolation weights that PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False, size=...)` applies along one axis
/// (no antialias): source coordinate `(dst + 0.5)·in/out − 0.5`, clamped below at 0, upper
/// neighbour clamped to `in − 1`. Weights are computed in f32 as PyTorch does for f32 input.
pub fn linear_interp_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; out_len * in_len];
    let scale = in_len as f32 / out_len as f32;
    for d in 0..out_len {
        let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        m[d * in_len + i0] += l0;
        m[d * in_len + i1] += l1;
    }
    m
}

/// Resizes a token-major table `[h·w, C]` laid out row by row (token `y·w + x`) to
/// `[out_h·out_w, C]` with PyTorch's bilinear `align_corners=False` rule. Written as two
/// matmuls, so it is differentiable and runs on any device.
pub fn resize_token_table(
    table: &Tensor,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Result<Tensor> {
    let (n, c) = table.dims2()?;
    ensure!(n == h * w, "token table has {n} rows, expected {h}x{w}");
    if (h, w) == (out_h, out_w) {
        return Ok(table.clone());
    }
    let dev = table.device();
    let ry = Tensor::from_vec(linear_interp_matrix(h, out_h), (out_h, h), dev)?;
    let rx = Tensor::from_vec(linear_interp_matrix(w, out_w), (out_w, w), dev)?;
    // rows: [out_h, h] @ [h, w·C] -> [out_h, w, C]
    let t = ry
        .matmul(&table.reshape((h, w * c))?)?
        .reshape((out_h, w, c))?;
    // columns: [out_h, out_w, w] @ [out_h, w, C] -> [out_h, out_w, C]
    let t = rx
        .unsqueeze(0)?
        .broadcast_as((out_h, out_w, w))?
        .contiguous()?
        .matmul(&t)?;
    Ok(t.reshape((out_h * out_w, c))?)
}

// ----------------------------------------------------------------------------------------------
// Non-overlapping patch convolution

/// A `Conv2d` whose kernel equals its stride and has no padding (PVT's patch embeddings and
/// spatial-reduction convs), computed as patchify + matmul on channels-last tokens.
#[derive(Debug, Clone)]
pub struct PatchConv {
    /// `[C_out, P·P·C_in]`, inner order `(ky, kx, c_in)` to match channels-last patches.
    weight: Tensor,
    /// `[C_out, C_in, P, P]` as loaded: when it is a training variable the layout above is
    /// derived from it at every call (a copy made once would keep the values it was made from).
    raw: Tensor,
    /// `[C_out]`.
    bias: Tensor,
    patch: usize,
    in_channels: usize,
}

impl PatchConv {
    /// Loads `weight` `[C_out, C_in, P, P]` and `bias` `[C_out]` (PyTorch layout) from `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        patch: usize,
        vb: candle_nn::VarBuilder,
    ) -> candle::Result<Self> {
        let w = vb.get((out_channels, in_channels, patch, patch), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        let weight = Self::channels_last(&w)?;
        Ok(Self {
            weight,
            raw: w,
            bias,
            patch,
            in_channels,
        })
    }

    fn channels_last(w: &Tensor) -> candle::Result<Tensor> {
        let (o, c, p, _) = w.dims4()?;
        w.permute((0, 2, 3, 1))?.reshape((o, p * p * c))
    }

    /// The patch size (kernel and stride).
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// `x`: channels-last `[B, H, W, C_in]`. Returns tokens `[B, (H/P)·(W/P), C_out]` and the
    /// output grid `(H/P, W/P)` (floor, as PyTorch's convolution drops the remainder).
    pub fn forward_nhwc(&self, x: &Tensor) -> candle::Result<(Tensor, (usize, usize))> {
        let (b, h, w, c) = x.dims4()?;
        if c != self.in_channels {
            candle::bail!(
                "patch conv expects {} input channels, got {c}",
                self.in_channels
            )
        }
        let p = self.patch;
        let (oh, ow) = (h / p, w / p);
        if oh == 0 || ow == 0 {
            candle::bail!("input {h}x{w} is smaller than the {p}x{p} patch")
        }
        let x = if oh * p != h || ow * p != w {
            x.narrow(1, 0, oh * p)?.narrow(2, 0, ow * p)?.contiguous()?
        } else {
            x.clone()
        };
        let patches = x
            .reshape((b, oh, p, ow, p, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b, oh * ow, p * p * c))?;
        let y = if self.raw.is_variable() {
            // training: one 2-D matmul (no broadcast weight, whose gradient candle would sum
            // with its slow strided reduction)
            let weight = Self::channels_last(&self.raw)?;
            patches
                .reshape((b * oh * ow, p * p * c))?
                .matmul(&weight.t()?)?
                .reshape((b, oh * ow, ()))?
        } else {
            patches.broadcast_matmul(&self.weight.t()?)?
        };
        let y = crate::channel::add_bias(&y, &self.bias, 2)?;
        Ok((y, (oh, ow)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn fast_erf_within_1e6_of_f64_erf() {
        let mut worst = 0f64;
        let mut x = -8.0f64;
        while x <= 8.0 {
            let e = (erf_f32_fast(x as f32) as f64 - candle::cpu::erf::erf_f64(x)).abs();
            worst = worst.max(e);
            x += 1e-4;
        }
        assert!(worst < 1e-6, "max |erf error| = {worst:e}");
    }

    #[test]
    fn gelu_matches_f64_reference_and_candle() -> candle::Result<()> {
        let xs: Vec<f32> = (-20000..20000).map(|i| i as f32 * 6e-4).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu)?;
        let ours = gelu_erf(&t)?.to_vec1::<f32>()?;
        let mut worst = 0f64;
        for (&x, &y) in xs.iter().zip(&ours) {
            let x = x as f64;
            let r = 0.5 * x * (1.0 + candle::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2));
            worst = worst.max((y as f64 - r).abs());
        }
        assert!(worst <= 1e-6, "max |gelu error| = {worst:e}");
        // and against the tanh approximation it must differ (guards against a wrong variant)
        let tanh = t.gelu()?.to_vec1::<f32>()?;
        let diff = ours
            .iter()
            .zip(&tanh)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff > 1e-4,
            "tanh and erf GELU should differ, max diff {diff}"
        );
        Ok(())
    }

    /// Largest |autograd − central difference| over every element of `x`, relative to
    /// max(1, |gradient|), for the scalar `f(x)` (f64).
    fn fd_error(x: &[f64], shape: &[usize], f: impl Fn(&Tensor) -> Tensor) -> f64 {
        let dev = Device::Cpu;
        let v = candle::Var::from_vec(x.to_vec(), shape, &dev).unwrap();
        let y = f(v.as_tensor());
        let g = y.backward().unwrap();
        let g = g
            .get(v.as_tensor())
            .expect("a gradient")
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let h = 1e-5;
        let mut worst = 0f64;
        for i in 0..x.len() {
            let eval = |d: f64| {
                let mut xs = x.to_vec();
                xs[i] += d;
                f(&Tensor::from_vec(xs, shape, &dev).unwrap())
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let num = (eval(h) - eval(-h)) / (2.0 * h);
            worst = worst.max((num - g[i]).abs() / g[i].abs().max(1.0));
        }
        worst
    }

    fn wave(n: usize, k: f64) -> Vec<f64> {
        (0..n).map(|i| (i as f64 * k).sin() * 1.7 + 0.1).collect()
    }

    #[test]
    fn layer_norm_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let (rows, c) = (3, 5);
        let x = wave(rows * c, 0.91);
        let w0 = Tensor::from_vec(wave(c, 0.37), c, &dev).unwrap();
        let b0 = Tensor::from_vec(wave(c, 1.3), c, &dev).unwrap();
        // a fixed random projection makes the scalar depend on every output
        let proj = Tensor::from_vec(wave(rows * c, 2.1), (rows, c), &dev).unwrap();
        let loss = |y: Tensor| (y * &proj).unwrap().sqr().unwrap().sum_all().unwrap();
        let e = fd_error(&x, &[rows, c], |x| {
            loss(
                LayerNorm::new(w0.clone(), b0.clone(), 1e-5)
                    .forward(x)
                    .unwrap(),
            )
        });
        assert!(e < 1e-7, "input gradient error {e:e}");
        let xt = Tensor::from_vec(x.clone(), (rows, c), &dev).unwrap();
        let e = fd_error(&wave(c, 0.37), &[c], |w| {
            loss(
                LayerNorm::new(w.clone(), b0.clone(), 1e-5)
                    .forward(&xt)
                    .unwrap(),
            )
        });
        assert!(e < 1e-7, "weight gradient error {e:e}");
        let e = fd_error(&wave(c, 1.3), &[c], |b| {
            loss(
                LayerNorm::new(w0.clone(), b.clone(), 1e-5)
                    .forward(&xt)
                    .unwrap(),
            )
        });
        assert!(e < 1e-7, "bias gradient error {e:e}");
    }

    #[test]
    fn layer_norm_training_kernel_equals_inference_kernel() -> candle::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 2., (4, 7, 48), &dev)?;
        let w = Tensor::randn(1f32, 0.1, 48, &dev)?;
        let b = Tensor::randn(0f32, 0.1, 48, &dev)?;
        let want = LayerNorm::new(w.clone(), b.clone(), 1e-6).forward(&x)?;
        let var = candle::Var::from_tensor(&x)?;
        let got = LayerNorm::new(w, b, 1e-6).forward(var.as_tensor())?;
        let d = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }

    #[test]
    fn softmax_gradients_match_finite_differences() -> candle::Result<()> {
        let dev = Device::Cpu;
        let (rows, c) = (4, 6);
        let proj = Tensor::from_vec(wave(rows * c, 2.3), (rows, c), &dev)?;
        let e = fd_error(&wave(rows * c, 0.77), &[rows, c], |x| {
            (softmax_last_dim(x).unwrap() * &proj)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        });
        assert!(e < 1e-7, "softmax gradient error {e:e}");
        // the training kernel equals candle-nn's
        let x = Tensor::randn(0f32, 3., (5, 33), &dev)?;
        let want = softmax_last_dim(&x)?;
        let got = softmax_last_dim(candle::Var::from_tensor(&x)?.as_tensor())?;
        let d = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "{d}");
        Ok(())
    }

    #[test]
    fn gelu_gradient_matches_finite_differences_of_exact_gelu() -> candle::Result<()> {
        // The fast f32 kernel's backward against central differences of the f64 exact GELU.
        let dev = Device::Cpu;
        let xs: Vec<f32> = (-60..=60).map(|i| i as f32 * 0.1 + 0.013).collect();
        let v = candle::Var::new(xs.as_slice(), &dev)?;
        let g = gelu_erf(v.as_tensor())?.sum_all()?.backward()?;
        let g = g.get(v.as_tensor()).expect("gradient").to_vec1::<f32>()?;
        let gelu =
            |x: f64| 0.5 * x * (1.0 + candle::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2));
        let mut worst = 0f64;
        for (&x, &gx) in xs.iter().zip(&g) {
            let h = 1e-5;
            let num = (gelu(x as f64 + h) - gelu(x as f64 - h)) / (2.0 * h);
            worst = worst.max((num - gx as f64).abs());
        }
        assert!(worst < 1e-5, "GELU gradient error {worst:e}");
        Ok(())
    }

    #[test]
    fn fused_gelu_backward_equals_the_composite_formula() -> candle::Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 2., (3, 50, 70), &dev)? + 0.1)?;
        let g = Tensor::randn(0f32, 1., (3, 50, 70), &dev)?;
        let fused = x.apply_op2_no_bwd(&g, &GeluErfBwd)?;
        let want = gelu_erf_grad_composite(&x, &g)?;
        let d = (fused - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }

    #[test]
    fn upsample_equals_candle_and_accumulates_gradients() -> candle::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?;
        for (h, w) in [(8, 10), (4, 5), (7, 9)] {
            let want = x.upsample_nearest2d(h, w)?;
            let got = upsample_nearest2d(candle::Var::from_tensor(&x)?.as_tensor(), h, w)?;
            let d = (got - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert_eq!(d, 0.0, "{h}x{w}");
        }
        // an input used twice, as an FPN lateral is: both paths' gradients add up
        let (c, ih, iw, h, w) = (2, 2, 3, 4, 6);
        let proj = Tensor::from_vec(wave(c * h * w, 1.1), (1, c, h, w), &dev)?;
        let proj2 = Tensor::from_vec(wave(c * ih * iw, 0.3), (1, c, ih, iw), &dev)?;
        let e = fd_error(&wave(c * ih * iw, 0.57), &[1, c, ih, iw], |x| {
            let up = upsample_nearest2d(x, h, w).unwrap();
            ((up * &proj).unwrap().sqr().unwrap().sum_all().unwrap()
                + (x * &proj2).unwrap().sum_all().unwrap())
            .unwrap()
        });
        assert!(e < 1e-7, "upsample gradient error {e:e}");
        Ok(())
    }

    #[test]
    fn interp_matrix_hand_computed() {
        // upsample 2 -> 4: sources -0.25 (clamped 0), 0.25, 0.75, 1.25 (upper clamped)
        let m = linear_interp_matrix(2, 4);
        assert_eq!(m, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
        // downsample 4 -> 2: sources 0.5 and 2.5
        let m = linear_interp_matrix(4, 2);
        assert_eq!(m, vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
        // identity
        assert_eq!(
            linear_interp_matrix(3, 3),
            vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]
        );
    }

    #[test]
    fn resize_table_matches_separable_formula() -> anyhow::Result<()> {
        let (h, w, c) = (3, 4, 2);
        let vals: Vec<f32> = (0..h * w * c).map(|v| (v as f32 * 0.37).sin()).collect();
        let t = Tensor::from_vec(vals.clone(), (h * w, c), &Device::Cpu)?;
        let (oh, ow) = (5, 2);
        let r = resize_token_table(&t, (h, w), (oh, ow))?.to_vec2::<f32>()?;
        let my = linear_interp_matrix(h, oh);
        let mx = linear_interp_matrix(w, ow);
        for y in 0..oh {
            for x in 0..ow {
                for ch in 0..c {
                    let mut s = 0f32;
                    for sy in 0..h {
                        for sx in 0..w {
                            s += my[y * h + sy] * mx[x * w + sx] * vals[(sy * w + sx) * c + ch];
                        }
                    }
                    assert!((s - r[y * ow + x][ch]).abs() < 1e-6);
                }
            }
        }
        Ok(())
    }

    #[test]
    fn patch_conv_equals_conv2d() -> candle::Result<()> {
        let dev = Device::Cpu;
        let (cin, cout, p) = (3, 5, 2);
        let w = Tensor::randn(0f32, 1., (cout, cin, p, p), &dev)?;
        let b = Tensor::randn(0f32, 1., cout, &dev)?;
        let vb = candle_nn::VarBuilder::from_tensors(
            [
                ("weight".to_string(), w.clone()),
                ("bias".to_string(), b.clone()),
            ]
            .into(),
            candle::DType::F32,
            &dev,
        );
        let pc = PatchConv::new(cin, cout, p, vb)?;
        let x = Tensor::randn(0f32, 1., (2, cin, 7, 6), &dev)?; // 7 rows: remainder dropped
        let want = x
            .conv2d(&w, 0, p, 1, 1)?
            .broadcast_add(&b.reshape((1, cout, 1, 1))?)?;
        let (got, (oh, ow)) = pc.forward_nhwc(&x.permute((0, 2, 3, 1))?.contiguous()?)?;
        assert_eq!((oh, ow), (3, 3));
        let got = got.reshape((2, oh, ow, cout))?.permute((0, 3, 1, 2))?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
