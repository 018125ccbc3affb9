//! LayerNorm over the last dimension with a backward pass: the [`LayerNorm`] module and its
//! training kernels (the `Normalize` custom op and its input gradient `NormalizeBwd`).
//!
//! candle-nn 0.11's fused `layer_norm` kernel is registered without a backward pass
//! (`apply_op*_no_bwd`): a graph through it silently stops there. [`LayerNorm`] keeps candle-nn's
//! kernel for inference (nothing tracks gradients: same code, same values) and switches to a
//! kernel with a backward pass as soon as the input or a parameter is a training variable or
//! depends on one.

use candle::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use crate::elem::{contiguous_slice, tracks, Real};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::grad_check::{fd_error, wave};
    use candle::Device;

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
}
