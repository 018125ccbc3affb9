//! Softmax over the last dimension with a backward pass ([`softmax_last_dim`]).
//!
//! candle-nn 0.11's fused `softmax_last_dim` kernel is registered without a backward pass
//! (`apply_op*_no_bwd`): a graph through it silently stops there. [`softmax_last_dim`] keeps
//! candle-nn's kernel for inference (nothing tracks gradients: same code, same values) and
//! switches to a kernel with a backward pass as soon as its input is a training variable or
//! depends on one.

use candle::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::elem::{contiguous_slice, tracks, Real};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::grad_check::{fd_error, wave};
    use candle::Device;

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
}
