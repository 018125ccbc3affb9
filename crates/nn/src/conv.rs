//! 2-D convolution for inference on the CPU, without im2col.
//!
//! A stride-1 convolution is a sum over the `k·k` kernel taps of matrix products:
//! with the input zero-padded to `[C, Hp, Wp]` and flattened per channel, the output computed on
//! the padded width, `O'[o, y·Wp + x] = Σ_taps Σ_c W[o, c, ky, kx] · Xp[c, y·Wp + x + ky·Wp + kx]`,
//! is `k·k` GEMMs of `[O, C] × [C, Ho·Wp]` whose right-hand sides are the same buffer shifted by
//! `ky·Wp + kx` — no patch matrix is materialised. The `k − 1` extra columns per row are dropped
//! at the end. On an AVX-512 CPU this runs a 3×3 256→256 conv on 100×152 about 2x faster than
//! PyTorch (BENCHMARKS.md). Other strides, devices and dtypes go through candle's `conv2d`.
//! When the input, the weight or the bias tracks gradients (training), an im2col path built from
//! differentiable tensor ops is used instead (`forward_train`).

use candle::{CpuStorage, Module, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Output columns per block of the tap loop.
const COL_BLOCK: usize = 2048;

/// A `Conv2d` (square kernel, bias, no groups or dilation) with the fast CPU path above.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[O, C, k, k]`.
    weight: Tensor,
    /// `[O]`.
    bias: Option<Tensor>,
    /// Per tap `[O, C]` row-major, `k·k` of them (taps in `(ky, kx)` raster order).
    taps: Vec<f32>,
    bias_host: Vec<f32>,
    k: usize,
    stride: usize,
    padding: usize,
    in_channels: usize,
    out_channels: usize,
}

impl Conv2d {
    /// Reads `weight` `[O, C, k, k]` and, when `bias`, `bias` `[O]` from `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        k: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> candle::Result<Self> {
        let weight = vb.get((out_channels, in_channels, k, k), "weight")?;
        let bias = if bias {
            Some(vb.get(out_channels, "bias")?)
        } else {
            None
        };
        Self::from_tensors(weight, bias, stride, padding)
    }

    /// From tensors already at hand.
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
    ) -> candle::Result<Self> {
        let (o, c, k, k2) = weight.dims4()?;
        if k != k2 {
            candle::bail!("only square kernels are supported, got {k}x{k2}")
        }
        // [O, C, ky, kx] -> [ky, kx, O, C]
        let taps = weight
            .permute((2, 3, 0, 1))?
            .flatten_all()?
            .to_dtype(candle::DType::F32)?
            .to_vec1::<f32>()?;
        let bias_host = match &bias {
            Some(b) => b.to_dtype(candle::DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; o],
        };
        Ok(Self {
            weight,
            bias,
            taps,
            bias_host,
            k,
            stride,
            padding,
            in_channels: c,
            out_channels: o,
        })
    }

    fn forward_candle(&self, x: &Tensor) -> candle::Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, self.out_channels, 1, 1))?),
            None => Ok(y),
        }
    }

    /// The training path: im2col ([`Im2Col`], whose backward is col2im) and one matmul, so that
    /// gradients reach the input, the weight and the bias. candle's own `conv2d` backward derives the transposed convolution's output
    /// padding from the height alone and fails on maps whose width and height differ in parity
    /// (RetinaNet's P7 from a 4x5 P6), hence this path.
    fn forward_train(&self, x: &Tensor) -> candle::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, s, p, o) = (self.k, self.stride, self.padding, self.out_channels);
        if h + 2 * p < k || w + 2 * p < k {
            candle::bail!("input {h}x{w} is smaller than the {k}x{k} kernel")
        }
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let cols = if k == 1 && s == 1 && p == 0 {
            x.reshape((b, c, h * w))?
        } else {
            x.contiguous()?.apply_op1(Im2Col {
                k,
                stride: s,
                pad: p,
            })?
        };
        let wm = self.weight.reshape((o, c * k * k))?;
        let y = crate::channel::broadcast_left(&wm, b)?
            .matmul(&cols)?
            .reshape((b, o, ho, wo))?;
        match &self.bias {
            Some(bias) => crate::channel::add_bias(&y, bias, 1),
            None => Ok(y),
        }
    }

    fn forward_fast(&self, x: &Tensor) -> candle::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, p, o) = (self.k, self.padding, self.out_channels);
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        if hp < k || wp < k {
            candle::bail!("input {h}x{w} is smaller than the {k}x{k} kernel")
        }
        let (ho, wo) = (hp - k + 1, wp - k + 1);
        // one spare row so the last shifted view stays in bounds
        let plane = (hp + 1) * wp;
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let src = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                &v[layout.start_offset()..layout.start_offset() + b * c * h * w]
            }
            _ => candle::bail!("fast conv: expected f32 CPU storage"),
        };
        let mut out = vec![0f32; b * o * ho * wo];
        let mut xp = vec![0f32; c * plane];
        let mut acc = vec![0f32; o * ho * wp];
        for bi in 0..b {
            let img = &src[bi * c * h * w..(bi + 1) * c * h * w];
            xp.par_chunks_mut(plane)
                .zip(img.par_chunks(h * w))
                .for_each(|(dst, s)| {
                    for y in 0..h {
                        dst[(y + p) * wp + p..(y + p) * wp + p + w]
                            .copy_from_slice(&s[y * w..(y + 1) * w]);
                    }
                });
            // Column blocks keep the accumulator in cache across the k·k taps.
            let n_total = ho * wp;
            let block = COL_BLOCK.min(n_total);
            for n0 in (0..n_total).step_by(block) {
                let nb = block.min(n_total - n0);
                for (t, tap) in self.taps.chunks_exact(o * c).enumerate() {
                    let (ky, kx) = (t / k, t % k);
                    let off = ky * wp + kx + n0;
                    // SAFETY: dst is the [o, nb] block at column n0 of the row-major
                    // [o, ho·wp] accumulator; lhs is [o, c] row-major; rhs reads, for c rows at
                    // stride `plane`, nb consecutive values from `off`, which stays inside each
                    // channel's padded plane (one spare row).
                    unsafe {
                        gemm::gemm(
                            o,
                            nb,
                            c,
                            acc.as_mut_ptr().add(n0),
                            1,
                            n_total as isize,
                            t > 0,
                            tap.as_ptr(),
                            1,
                            c as isize,
                            xp.as_ptr().add(off),
                            1,
                            plane as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::Rayon(0),
                        );
                    }
                }
            }
            let dst = &mut out[bi * o * ho * wo..(bi + 1) * o * ho * wo];
            dst.par_chunks_mut(ho * wo)
                .zip(acc.par_chunks(ho * wp))
                .zip(&self.bias_host)
                .for_each(|((d, a), &bias)| {
                    for y in 0..ho {
                        for (dv, av) in d[y * wo..(y + 1) * wo]
                            .iter_mut()
                            .zip(&a[y * wp..y * wp + wo])
                        {
                            *dv = av + bias;
                        }
                    }
                });
        }
        Tensor::from_vec(out, (b, o, ho, wo), x.device())
    }
}

/// `[B, C, H, W]` → `[B, C·k·k, Ho·Wo]`, rows in `(c, ky, kx)` order, zero padding `pad`,
/// stride `stride`; its backward pass is [`Col2Im`].
struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    fn out_hw(&self, h: usize, w: usize) -> candle::Result<(usize, usize)> {
        let (k, s, p) = (self.k, self.stride, self.pad);
        if h + 2 * p < k || w + 2 * p < k {
            candle::bail!("input {h}x{w} is smaller than the {k}x{k} kernel")
        }
        Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
    }

    /// For output row `o` of tap offset `t` (ky or kx): the input index, if inside.
    #[inline(always)]
    fn src(&self, o: usize, t: usize, len: usize) -> Option<usize> {
        (o * self.stride + t)
            .checked_sub(self.pad)
            .filter(|&i| i < len)
    }

    /// The outputs `o` in `0..n_out` whose input index `o·stride + t − pad` lies in `0..len`:
    /// a range `lo..hi`, and the input index of `lo`.
    #[inline(always)]
    fn valid(&self, t: usize, len: usize, n_out: usize) -> (usize, usize, usize) {
        let s = self.stride;
        // o·s + t ≥ pad  and  o·s + t < len + pad
        let lo = self.pad.saturating_sub(t).div_ceil(s);
        let hi = (len + self.pad).saturating_sub(t).div_ceil(s).min(n_out);
        let lo = lo.min(hi);
        (lo, hi, (lo * s + t).saturating_sub(self.pad))
    }

    fn fwd<T: Copy + Default + Send + Sync>(
        &self,
        x: &[T],
        (b, c, h, w): (usize, usize, usize, usize),
    ) -> candle::Result<Vec<T>> {
        let (ho, wo) = self.out_hw(h, w)?;
        let (k, s) = (self.k, self.stride);
        let kk = k * k;
        let mut out = vec![T::default(); b * c * kk * ho * wo];
        out.par_chunks_mut(kk * ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for ky in 0..k {
                    for kx in 0..k {
                        let row = &mut dst[(ky * k + kx) * ho * wo..][..ho * wo];
                        let (x0, x1, ix0) = self.valid(kx, w, wo);
                        if x0 == x1 {
                            continue;
                        }
                        for oy in 0..ho {
                            let Some(iy) = self.src(oy, ky, h) else {
                                continue;
                            };
                            let d = &mut row[oy * wo + x0..oy * wo + x1];
                            let src = &plane[iy * w + ix0..(iy + 1) * w];
                            if s == 1 {
                                d.copy_from_slice(&src[..d.len()]);
                            } else {
                                d.iter_mut()
                                    .zip(src.iter().step_by(s))
                                    .for_each(|(o, v)| *o = *v);
                            }
                        }
                    }
                }
            });
        Ok(out)
    }

    fn bwd_host<T: Copy + Default + Send + Sync + std::ops::AddAssign>(
        &self,
        g: &[T],
        (b, c, h, w): (usize, usize, usize, usize),
    ) -> candle::Result<Vec<T>> {
        let (ho, wo) = self.out_hw(h, w)?;
        let kk = self.k * self.k;
        let mut out = vec![T::default(); b * c * h * w];
        let (k, s) = (self.k, self.stride);
        out.par_chunks_mut(h * w)
            .zip(g.par_chunks(kk * ho * wo))
            .for_each(|(plane, src)| {
                for ky in 0..k {
                    for kx in 0..k {
                        let row = &src[(ky * k + kx) * ho * wo..][..ho * wo];
                        let (x0, x1, ix0) = self.valid(kx, w, wo);
                        if x0 == x1 {
                            continue;
                        }
                        for oy in 0..ho {
                            let Some(iy) = self.src(oy, ky, h) else {
                                continue;
                            };
                            let g = &row[oy * wo + x0..oy * wo + x1];
                            let d = &mut plane[iy * w + ix0..(iy + 1) * w];
                            if s == 1 {
                                d[..g.len()].iter_mut().zip(g).for_each(|(o, v)| *o += *v);
                            } else {
                                d.iter_mut().step_by(s).zip(g).for_each(|(o, v)| *o += *v);
                            }
                        }
                    }
                }
            });
        Ok(out)
    }
}

fn host_slice<'a, T>(v: &'a [T], layout: &candle::Layout) -> candle::Result<&'a [T]> {
    let (a, z) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle::Error::Msg("im2col: input must be contiguous".into()))?;
    Ok(&v[a..z])
}

impl candle::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "pvt-im2col"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &candle::Layout,
    ) -> candle::Result<(CpuStorage, candle::Shape)> {
        let dims = layout.shape().dims4()?;
        let (b, c, h, w) = dims;
        let (ho, wo) = self.out_hw(h, w)?;
        let shape = candle::Shape::from((b, c * self.k * self.k, ho * wo));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.fwd(host_slice(v, layout)?, dims)?),
            CpuStorage::F64(v) => CpuStorage::F64(self.fwd(host_slice(v, layout)?, dims)?),
            _ => candle::bail!("im2col: f32 or f64 only"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im {
            op: Im2Col {
                k: self.k,
                stride: self.stride,
                pad: self.pad,
            },
            input: arg.dims4()?,
        })?;
        Ok(Some(g))
    }
}

/// The adjoint of [`Im2Col`]: sums each column entry back onto the input pixel it came from.
struct Col2Im {
    op: Im2Col,
    input: (usize, usize, usize, usize),
}

impl candle::CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "pvt-col2im"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &candle::Layout,
    ) -> candle::Result<(CpuStorage, candle::Shape)> {
        let out = match storage {
            CpuStorage::F32(v) => {
                CpuStorage::F32(self.op.bwd_host(host_slice(v, layout)?, self.input)?)
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(self.op.bwd_host(host_slice(v, layout)?, self.input)?)
            }
            _ => candle::bail!("col2im: f32 or f64 only"),
        };
        Ok((out, candle::Shape::from(self.input)))
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        if c != self.in_channels {
            candle::bail!("conv expects {} input channels, got {c}", self.in_channels)
        }
        let training = x.track_op()
            || self.weight.track_op()
            || self.bias.as_ref().is_some_and(|b| b.track_op());
        if training {
            return self.forward_train(x);
        }
        let fast = self.stride == 1
            && x.device().is_cpu()
            && x.dtype() == candle::DType::F32
            && !self.weight.is_variable();
        if fast {
            self.forward_fast(x)
        } else {
            self.forward_candle(x)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    fn check(b: usize, c: usize, o: usize, k: usize, p: usize, h: usize, w: usize) {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (b, c, h, w), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1., (o, c, k, k), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1., o, &dev).unwrap();
        let conv = Conv2d::from_tensors(wt.clone(), Some(bias.clone()), 1, p).unwrap();
        let got = conv.forward(&x).unwrap();
        let want = conv.forward_candle(&x).unwrap();
        assert_eq!(got.dims(), want.dims());
        let diff = (got - &want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = want
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "b{b} c{c} o{o} k{k} p{p} {h}x{w}: {diff}"
        );
    }

    /// The row-wise im2col / col2im kernels against a per-element reference, over kernel sizes,
    /// strides, paddings (wider than the kernel too) and sides down to 1.
    #[test]
    fn im2col_and_col2im_equal_the_per_element_definition() {
        for k in [1usize, 2, 3, 5] {
            for stride in [1usize, 2, 3] {
                for pad in [0usize, 1, 2, 6] {
                    for (h, w) in [(1usize, 1usize), (4, 7), (9, 5), (6, 6)] {
                        let op = Im2Col { k, stride, pad };
                        let Ok((ho, wo)) = op.out_hw(h, w) else {
                            continue;
                        };
                        let (b, c) = (2, 3);
                        let x: Vec<f64> = (0..b * c * h * w)
                            .map(|i| (i as f64 * 0.37).sin())
                            .collect();
                        let got = op.fwd(&x, (b, c, h, w)).unwrap();
                        let mut want = vec![0f64; b * c * k * k * ho * wo];
                        let g: Vec<f64> =
                            (0..want.len()).map(|i| (i as f64 * 0.11).cos()).collect();
                        let mut want_back = vec![0f64; x.len()];
                        for (bc, (cols, plane)) in want
                            .chunks_mut(k * k * ho * wo)
                            .zip(x.chunks(h * w))
                            .enumerate()
                        {
                            for ky in 0..k {
                                for kx in 0..k {
                                    for oy in 0..ho {
                                        for ox in 0..wo {
                                            let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                                            if iy < pad
                                                || ix < pad
                                                || iy - pad >= h
                                                || ix - pad >= w
                                            {
                                                continue;
                                            }
                                            let (iy, ix) = (iy - pad, ix - pad);
                                            let r = ((ky * k + kx) * ho + oy) * wo + ox;
                                            cols[r] = plane[iy * w + ix];
                                            want_back[bc * h * w + iy * w + ix] +=
                                                g[bc * k * k * ho * wo + r];
                                        }
                                    }
                                }
                            }
                        }
                        let case = format!("k{k} s{stride} p{pad} {h}x{w}");
                        assert_eq!(got, want, "{case}");
                        assert_eq!(op.bwd_host(&g, (b, c, h, w)).unwrap(), want_back, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn matches_candle_conv_on_odd_shapes() {
        check(1, 3, 5, 3, 1, 7, 9);
        check(2, 8, 4, 3, 1, 5, 5);
        check(1, 4, 6, 1, 0, 3, 11);
        check(1, 16, 16, 3, 0, 6, 4);
        check(1, 5, 3, 5, 2, 9, 8);
        check(1, 2, 2, 3, 1, 1, 1);
    }

    /// Autograd gradients of the training path against central differences (f64), for the input,
    /// the weight and the bias, on shapes with odd/even sides and strides 1 and 2.
    #[test]
    fn training_path_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let wave = |n: usize, k: f64| -> Vec<f64> {
            (0..n).map(|i| (i as f64 * k).sin() + 0.05).collect()
        };
        for &(c, o, k, s, p, h, w) in &[
            (2, 3, 3, 1, 1, 4, 5),
            (2, 2, 3, 2, 1, 4, 5), // P7 from a 4x5 P6
            (3, 2, 3, 2, 1, 5, 4),
            (2, 3, 1, 1, 0, 3, 3),
        ] {
            let xs = wave(c * h * w, 0.71);
            let ws = wave(o * c * k * k, 0.43);
            let bs = wave(o, 1.9);
            let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let proj = Tensor::from_vec(wave(o * ho * wo, 2.9), (1, o, ho, wo), &dev).unwrap();
            let loss = |x: &Tensor, wt: &Tensor, bt: &Tensor| -> (Tensor, Tensor) {
                let conv = Conv2d::from_tensors(wt.clone(), Some(bt.clone()), s, p).unwrap();
                let y = conv.forward(x).unwrap();
                let l = (&y * &proj).unwrap().sqr().unwrap().sum_all().unwrap();
                (y, l)
            };
            let xv = candle::Var::from_vec(xs.clone(), (1, c, h, w), &dev).unwrap();
            let wv = candle::Var::from_vec(ws.clone(), (o, c, k, k), &dev).unwrap();
            let bv = candle::Var::from_vec(bs.clone(), o, &dev).unwrap();
            let (y, l) = loss(xv.as_tensor(), wv.as_tensor(), bv.as_tensor());
            // the forward equals candle's convolution
            let want = xv
                .as_tensor()
                .detach()
                .conv2d(&wv.as_tensor().detach(), p, s, 1, 1)
                .unwrap()
                .broadcast_add(&bv.as_tensor().detach().reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let d: f64 = (y - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-12, "forward differs by {d}");
            let grads = l.backward().unwrap();
            let step = 1e-6;
            for (which, base, shape, var) in [
                (0, &xs, vec![1, c, h, w], &xv),
                (1, &ws, vec![o, c, k, k], &wv),
                (2, &bs, vec![o], &bv),
            ] {
                let g = grads
                    .get(var.as_tensor())
                    .expect("gradient")
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for i in 0..base.len() {
                    let eval = |dlt: f64| {
                        let mut v = base.clone();
                        v[i] += dlt;
                        let t = Tensor::from_vec(v, shape.as_slice(), &dev).unwrap();
                        let (xt, wt, bt) = match which {
                            0 => (t, wv.as_tensor().detach(), bv.as_tensor().detach()),
                            1 => (xv.as_tensor().detach(), t, bv.as_tensor().detach()),
                            _ => (xv.as_tensor().detach(), wv.as_tensor().detach(), t),
                        };
                        loss(&xt, &wt, &bt).1.to_scalar::<f64>().unwrap()
                    };
                    let num = (eval(step) - eval(-step)) / (2.0 * step);
                    let err = (num - g[i]).abs() / g[i].abs().max(1.0);
                    assert!(
                        err < 1e-6,
                        "c{c} o{o} k{k} s{s} {h}x{w}: tensor {which} element {i}: {num} vs {}",
                        g[i]
                    );
                }
            }
        }
    }

    #[test]
    fn variables_and_strides_take_the_differentiable_path() {
        let dev = Device::Cpu;
        let wt = candle::Var::randn(0f32, 1., (2, 3, 3, 3), &dev).unwrap();
        let conv = Conv2d::from_tensors(wt.as_tensor().clone(), None, 1, 1).unwrap();
        let x = Tensor::randn(0f32, 1., (1, 3, 4, 4), &dev).unwrap();
        let y = conv.forward(&x).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&wt).is_some());
        let conv = Conv2d::from_tensors(
            Tensor::ones((2, 3, 3, 3), DType::F32, &dev).unwrap(),
            None,
            2,
            1,
        )
        .unwrap();
        assert_eq!(conv.forward(&x).unwrap().dims(), &[1, 2, 2, 2]);
    }
}
