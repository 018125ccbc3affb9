//! GELU in its exact erf form (PyTorch's `nn.GELU()` default): the vectorised f32 forward
//! kernel with the rational `erf` approximation [`erf_f32_fast`], and its fused backward
//! (`grad · GELU'(x)` in one pass), with candle's ops as the fallback on other devices and dtypes.

use candle::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use crate::elem::contiguous_slice;

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
}
