//! Nearest upsampling (`F.interpolate(mode="nearest")`) with a correct backward pass: the
//! forward custom op and its adjoint, which sums each output gradient onto its source pixel.

use candle::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::elem::contiguous_slice;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::grad_check::{fd_error, wave};
    use candle::Device;

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
}
