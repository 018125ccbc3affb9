//! Depth-wise 3×3 convolution (stride 1, padding 1, bias) on channels-last maps.
//!
//! PVT v2's convolutional FFN (`mlp.dwconv.dwconv`, PyTorch
//! `nn.Conv2d(C, C, 3, 1, 1, bias=True, groups=C)`) runs on the hidden tokens `[B, N, C]`, which
//! are already a channels-last map `[B, H, W, C]`. candle's grouped convolution splits the input
//! into `C` single-channel convolutions, which is far too slow for `C` in the thousands, so the CPU
//! path here is a direct kernel: every output pixel is `bias + Σ_taps w[tap] ⊙ x[neighbour]`,
//! a `C`-wide multiply-add per tap that the compiler vectorises, with the rows spread over threads.
//! Neighbours outside the map count as zeros (PyTorch's zero padding).
//!
//! Invariants: the output has the input's shape; the result equals candle's
//! `conv2d(.., padding 1, stride 1, dilation 1, groups C)` up to f32 summation order (tested
//! below). The fast path is taken on the CPU for f32 when the weights are not training variables;
//! it is differentiable with respect to the input (the input gradient is the same kernel with the
//! taps mirrored). Weights that are variables (training) on the CPU take the same kernel with the
//! taps read at run time and a weight gradient of their own; other devices and dtypes go through
//! candle's differentiable grouped `conv2d` (the rule of [`crate::conv`]).

use std::sync::Arc;

use candle::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// `Conv2d(C, C, 3, stride 1, padding 1, groups C, bias)` on `[B, H, W, C]` maps.
#[derive(Debug, Clone)]
pub struct DepthwiseConv3x3 {
    /// `[C, 1, 3, 3]` (PyTorch layout).
    weight: Tensor,
    /// `[C]`.
    bias: Tensor,
    /// Tap-major `[9, C]`, taps in `(ky, kx)` raster order.
    taps: Arc<Vec<f32>>,
    /// `[C]`.
    bias_host: Arc<Vec<f32>>,
    channels: usize,
}

impl DepthwiseConv3x3 {
    /// Reads `weight` `[C, 1, 3, 3]` and `bias` `[C]` from `vb`.
    pub fn new(channels: usize, vb: VarBuilder) -> candle::Result<Self> {
        let weight = vb.get((channels, 1, 3, 3), "weight")?;
        let bias = vb.get(channels, "bias")?;
        Self::from_tensors(weight, bias)
    }

    /// From tensors already at hand: `weight` `[C, 1, 3, 3]`, `bias` `[C]`.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> candle::Result<Self> {
        let (c, one, kh, kw) = weight.dims4()?;
        if (one, kh, kw) != (1, 3, 3) {
            candle::bail!(
                "depth-wise 3x3 conv expects a [C, 1, 3, 3] weight, got {:?}",
                weight.dims()
            )
        }
        if bias.dims() != [c] {
            candle::bail!("depth-wise conv bias must be [{c}], got {:?}", bias.dims())
        }
        // [C, 1, 3, 3] -> [3, 3, C] -> [9·C]
        let taps = weight
            .reshape((c, 9))?
            .t()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias_host = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(Self {
            weight,
            bias,
            taps: Arc::new(taps),
            bias_host: Arc::new(bias_host),
            channels: c,
        })
    }

    /// Number of channels `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// `x`: channels-last `[B, H, W, C]`; returns `[B, H, W, C]`.
    pub fn forward_nhwc(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.forward_impl(x, false)
    }

    /// `GELU(conv(x))` with the exact-erf GELU of [`crate::ops::gelu_erf`] (PVT v2's
    /// `dwconv → act`). On the fast path the activation is applied while the output is still in
    /// registers, saving a pass over the hidden map; the values equal the unfused composition.
    pub fn forward_nhwc_gelu(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.forward_impl(x, true)
    }

    fn forward_impl(&self, x: &Tensor, gelu: bool) -> candle::Result<Tensor> {
        let (_, h, w, c) = x.dims4()?;
        if c != self.channels {
            candle::bail!(
                "depth-wise conv expects {} channels, got {c}",
                self.channels
            )
        }
        if h == 0 || w == 0 {
            candle::bail!("depth-wise conv on an empty {h}x{w} map")
        }
        let fast = x.device().is_cpu()
            && x.dtype() == DType::F32
            && !self.weight.is_variable()
            && !self.bias.is_variable();
        if fast {
            x.contiguous()?.apply_op1(DwOp {
                taps: self.taps.clone(),
                bias: Some(self.bias_host.clone()),
                gelu,
            })
        } else if x.device().is_cpu() && x.dtype() == DType::F32 {
            // training on the CPU: the same kernel with the taps read from the (variable)
            // weight at run time, differentiable in the input and the weight; bias and GELU as
            // separate differentiable ops
            let z = x
                .contiguous()?
                .apply_op2(&self.weight.to_dtype(DType::F32)?, DwTrainOp)?;
            let z = crate::channel::add_bias(&z, &self.bias.to_dtype(DType::F32)?, 3)?;
            if gelu {
                crate::ops::gelu_erf(&z)
            } else {
                Ok(z)
            }
        } else if gelu {
            crate::ops::gelu_erf(&self.forward_candle(x)?)
        } else {
            self.forward_candle(x)
        }
    }

    /// candle's grouped convolution (differentiable in everything, any device).
    fn forward_candle(&self, x: &Tensor) -> candle::Result<Tensor> {
        let c = self.channels;
        let x = x.permute((0, 3, 1, 2))?.contiguous()?; // NHWC -> NCHW
        let y = x
            .conv2d(&self.weight, 1, 1, 1, c)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        y.permute((0, 2, 3, 1))?.contiguous() // NCHW -> NHWC
    }
}

/// The CPU kernel as a candle op: input `[B, H, W, C]` contiguous f32.
#[derive(Clone)]
struct DwOp {
    /// `[9, C]`.
    taps: Arc<Vec<f32>>,
    /// `[C]`, or none (zero bias, for the input gradient).
    bias: Option<Arc<Vec<f32>>>,
    /// Apply the exact-erf GELU to each output (fused epilogue).
    gelu: bool,
}

impl CustomOp1 for DwOp {
    fn name(&self) -> &'static str {
        "pvt-depthwise-conv3x3"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle::Error::Msg("depth-wise conv: input must be contiguous".into())
        })?;
        let src = match storage {
            CpuStorage::F32(v) => &v[start..end],
            _ => {
                return Err(candle::Error::Msg(
                    "depth-wise conv: the CPU kernel takes f32".into(),
                ))
            }
        };
        let (b, h, w, c) = layout.shape().dims4()?;
        if self.taps.len() != 9 * c {
            candle::bail!("depth-wise conv: {} taps for {c} channels", self.taps.len())
        }
        let zeros;
        let bias: &[f32] = match &self.bias {
            Some(v) => v,
            None => {
                zeros = vec![0f32; c];
                &zeros
            }
        };
        let mut out = vec![0f32; b * h * w * c];
        out.par_chunks_mut(w * c).enumerate().for_each(|(r, row)| {
            let (bi, y) = (r / h, r % h);
            let img = &src[bi * h * w * c..(bi + 1) * h * w * c];
            dw_row(img, row, &self.taps, bias, (h, w, c), y, self.gelu);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        // z[p] = b + Σ_t w[t] x[p + d_t]  =>  ∂L/∂x[q] = Σ_t w[t] ∂L/∂z[q − d_t]: the same stencil
        // with the taps mirrored (tap (ky, kx) -> (2 − ky, 2 − kx)) and no bias.
        let grad_z = if self.gelu {
            // y = GELU(z): recompute z, then ∂L/∂z = ∂L/∂y · (Φ(z) + z·φ(z))
            let z = arg.contiguous()?.apply_op1(DwOp {
                gelu: false,
                ..self.clone()
            })?;
            let cdf = ((&z * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
            let pdf = ((z.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
            grad_res.mul(&(cdf? + (&z * pdf)?)?)?
        } else {
            grad_res.clone()
        };
        let c = self.taps.len() / 9;
        let mut mirrored = vec![0f32; 9 * c];
        for t in 0..9 {
            mirrored[(8 - t) * c..(9 - t) * c].copy_from_slice(&self.taps[t * c..(t + 1) * c]);
        }
        let g = grad_z.contiguous()?.apply_op1(DwOp {
            taps: Arc::new(mirrored),
            bias: None,
            gelu: false,
        })?;
        Ok(Some(g))
    }
}

fn cpu_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle::Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle::Error::Msg(format!("depth-wise conv: {what} must be contiguous")))?;
    match storage {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => Err(candle::Error::Msg(format!(
            "depth-wise conv: {what} must be f32"
        ))),
    }
}

/// `[C, 1, 3, 3]` weights as tap-major `[9, C]`.
fn taps_of(w: &[f32], c: usize) -> Vec<f32> {
    let mut taps = vec![0f32; 9 * c];
    for ch in 0..c {
        for t in 0..9 {
            taps[t * c + ch] = w[ch * 9 + t];
        }
    }
    taps
}

/// The training form: `(x [B, H, W, C], weight [C, 1, 3, 3]) -> conv(x)` without bias, with
/// gradients for both (the input's by the mirrored stencil, the weight's as
/// `∂L/∂w[c, t] = Σ_{b, y, x} ∂L/∂z[b, y, x, c] · x[b, (y, x) + d_t, c]`, rows summed in
/// parallel).
struct DwTrainOp;

impl CustomOp2 for DwTrainOp {
    fn name(&self) -> &'static str {
        "pvt-depthwise-conv3x3-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let src = cpu_f32(s1, l1, "input")?;
        let w = cpu_f32(s2, l2, "weight")?;
        let (b, h, wd, c) = l1.shape().dims4()?;
        if l2.shape().dims() != [c, 1, 3, 3] {
            candle::bail!(
                "depth-wise conv: weight {:?} for {c} channels",
                l2.shape().dims()
            )
        }
        let taps = taps_of(w, c);
        let zeros = vec![0f32; c];
        let mut out = vec![0f32; b * h * wd * c];
        out.par_chunks_mut(wd * c).enumerate().for_each(|(r, row)| {
            let (bi, y) = (r / h, r % h);
            let img = &src[bi * h * wd * c..(bi + 1) * h * wd * c];
            dw_row(img, row, &taps, &zeros, (h, wd, c), y, false);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, h, w, c) = x.dims4()?;
        let wv = weight.flatten_all()?.to_vec1::<f32>()?;
        let taps = taps_of(&wv, c);
        let mut mirrored = vec![0f32; 9 * c];
        for t in 0..9 {
            mirrored[(8 - t) * c..(9 - t) * c].copy_from_slice(&taps[t * c..(t + 1) * c]);
        }
        let g = grad_res.contiguous()?;
        let gx = g.apply_op1(DwOp {
            taps: Arc::new(mirrored),
            bias: None,
            gelu: false,
        })?;
        let gv = g.flatten_all()?.to_vec1::<f32>()?;
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        // per output row: acc[t * C + c] += g[y, x, c] * x[y + dy, x + dx, c]
        let acc = (0..b * h)
            .into_par_iter()
            .fold(
                || vec![0f64; 9 * c],
                |mut acc, r| {
                    let (bi, y) = (r / h, r % h);
                    let img = &xv[bi * h * w * c..(bi + 1) * h * w * c];
                    let grow = &gv[r * w * c..(r + 1) * w * c];
                    let mut part = vec![0f32; 9 * c];
                    for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                        let ky = yy + 1 - y;
                        for xo in 0..w {
                            let go = &grow[xo * c..(xo + 1) * c];
                            for xx in xo.saturating_sub(1)..=(xo + 1).min(w - 1) {
                                let t = ky * 3 + xx + 1 - xo;
                                let xi = &img[(yy * w + xx) * c..(yy * w + xx + 1) * c];
                                let p = &mut part[t * c..(t + 1) * c];
                                for ((a, &gg), &v) in p.iter_mut().zip(go).zip(xi) {
                                    *a += gg * v;
                                }
                            }
                        }
                    }
                    for (a, p) in acc.iter_mut().zip(&part) {
                        *a += *p as f64;
                    }
                    acc
                },
            )
            .reduce(
                || vec![0f64; 9 * c],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(&b) {
                        *x += y;
                    }
                    a
                },
            );
        // [9, C] -> [C, 1, 3, 3]
        let mut gw = vec![0f32; 9 * c];
        for ch in 0..c {
            for t in 0..9 {
                gw[ch * 9 + t] = acc[t * c + ch] as f32;
            }
        }
        let gw = Tensor::from_vec(gw, (c, 1, 3, 3), x.device())?;
        Ok((Some(gx), Some(gw)))
    }
}

/// One output row `y` of one image: `row` is `[W, C]`, `img` is `[H, W, C]`.
fn dw_row(
    img: &[f32],
    row: &mut [f32],
    taps: &[f32],
    bias: &[f32],
    hwc: (usize, usize, usize),
    y: usize,
    gelu: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { dw_row_avx2(img, row, taps, bias, hwc, y, gelu) };
    }
    dw_row_generic(img, row, taps, bias, hwc, y, gelu)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_row_avx2(
    img: &[f32],
    row: &mut [f32],
    taps: &[f32],
    bias: &[f32],
    hwc: (usize, usize, usize),
    y: usize,
    gelu: bool,
) {
    // Same code, compiled for 8-wide vectors and hardware FMA (used by the GELU's erf).
    dw_row_generic(img, row, taps, bias, hwc, y, gelu)
}

/// Channels per register block (four 8-wide accumulators).
const LANES: usize = 32;

#[inline(always)]
fn gelu_erf_scalar(x: f32) -> f32 {
    // the formula of `crate::ops::gelu_erf`, so fused and unfused results are identical
    0.5 * x * (1.0 + crate::ops::erf_f32_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Σ over the in-bounds taps for the channels `[c0, c0 + acc.len())` of output pixel `(y, x)`,
/// then the optional GELU. Called with fixed-size blocks so that the accumulators stay in
/// registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dw_block(
    acc: &mut [f32],
    img: &[f32],
    taps: &[f32],
    bias: &[f32],
    (h, w, c): (usize, usize, usize),
    (y, x): (usize, usize),
    c0: usize,
    apply_gelu: bool,
) {
    let n = acc.len();
    acc.copy_from_slice(&bias[c0..c0 + n]);
    for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
        let ky = yy + 1 - y;
        for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
            let tap = ky * 3 + xx + 1 - x;
            let t = &taps[tap * c + c0..tap * c + c0 + n];
            let p = (yy * w + xx) * c + c0;
            let i = &img[p..p + n];
            for ((a, &v), &k) in acc.iter_mut().zip(i).zip(t) {
                *a += v * k;
            }
        }
    }
    if apply_gelu {
        for a in acc.iter_mut() {
            *a = gelu_erf_scalar(*a);
        }
    }
}

#[inline(always)]
fn dw_row_generic(
    img: &[f32],
    row: &mut [f32],
    taps: &[f32],
    bias: &[f32],
    hwc: (usize, usize, usize),
    y: usize,
    gelu: bool,
) {
    let (_, w, c) = hwc;
    for x in 0..w {
        let out = &mut row[x * c..(x + 1) * c];
        let mut c0 = 0;
        while c0 + LANES <= c {
            let mut acc = [0f32; LANES];
            dw_block(&mut acc, img, taps, bias, hwc, (y, x), c0, gelu);
            out[c0..c0 + LANES].copy_from_slice(&acc);
            c0 += LANES;
        }
        if c0 < c {
            let mut acc = [0f32; LANES];
            let rem = &mut acc[..c - c0];
            dw_block(rem, img, taps, bias, hwc, (y, x), c0, gelu);
            out[c0..].copy_from_slice(rem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{Device, Var};

    fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Fast kernel vs candle's grouped conv2d on NCHW, `max|diff| / max|ref|`.
    fn check(b: usize, h: usize, w: usize, c: usize) {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (b, h, w, c), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.5, (c, 1, 3, 3), &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.1, c, &dev).unwrap();
        let conv = DepthwiseConv3x3::from_tensors(wt.clone(), bias.clone()).unwrap();
        let got = conv.forward_nhwc(&x).unwrap();
        let want = x
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap()
            .conv2d(&wt, 1, 1, 1, c)
            .unwrap()
            .broadcast_add(&bias.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        assert_eq!(got.dims(), want.dims());
        let e = max_abs(&(&got - &want).unwrap()) / max_abs(&want);
        assert!(e < 1e-6, "b{b} {h}x{w} c{c}: rel err {e:e}");
    }

    #[test]
    fn matches_candle_grouped_conv() {
        check(1, 7, 9, 5);
        check(2, 5, 5, 16);
        check(1, 1, 1, 3); // every neighbour is padding
        check(1, 1, 6, 8);
        check(1, 6, 1, 8);
        check(2, 13, 19, 33); // channels not a multiple of the vector width
    }

    #[test]
    fn fused_gelu_equals_the_composition() {
        let dev = Device::Cpu;
        let (b, h, w, c) = (1, 6, 7, 45);
        let x = Tensor::randn(0f32, 1., (b, h, w, c), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.5, (c, 1, 3, 3), &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.1, c, &dev).unwrap();
        let conv = DepthwiseConv3x3::from_tensors(wt, bias).unwrap();
        let fused = conv.forward_nhwc_gelu(&x).unwrap();
        let composed = crate::ops::gelu_erf(&conv.forward_nhwc(&x).unwrap()).unwrap();
        assert_eq!(max_abs(&(&fused - &composed).unwrap()), 0.0);
        // its input gradient agrees with candle's differentiable ops
        let grad = |fast: bool| {
            let v = Var::from_tensor(&x).unwrap();
            let y = if fast {
                conv.forward_nhwc_gelu(v.as_tensor()).unwrap()
            } else {
                conv.forward_candle(v.as_tensor())
                    .unwrap()
                    .gelu_erf()
                    .unwrap()
            };
            let loss = y.sqr().unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(&v).unwrap().clone()
        };
        let (g_fast, g_ref) = (grad(true), grad(false));
        let e = max_abs(&(&g_fast - &g_ref).unwrap()) / max_abs(&g_ref);
        assert!(e < 1e-5, "fused input gradient rel err {e:e}");
    }

    #[test]
    fn hand_computed_corner() {
        // one channel, all-ones 3x3 kernel, bias 0.5, 2x2 input: each output sums the whole map
        let dev = Device::Cpu;
        let x = Tensor::new(&[1f32, 2., 3., 4.], &dev)
            .unwrap()
            .reshape((1, 2, 2, 1))
            .unwrap();
        let conv = DepthwiseConv3x3::from_tensors(
            Tensor::ones((1, 1, 3, 3), DType::F32, &dev).unwrap(),
            Tensor::new(&[0.5f32], &dev).unwrap(),
        )
        .unwrap();
        let y = conv.forward_nhwc(&x).unwrap().flatten_all().unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![10.5; 4]);
    }

    #[test]
    fn input_gradient_matches_candle() {
        let dev = Device::Cpu;
        let (b, h, w, c) = (2, 5, 6, 7);
        let wt = Tensor::randn(0f32, 0.5, (c, 1, 3, 3), &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.1, c, &dev).unwrap();
        let probe = Tensor::randn(0f32, 1., (b, h, w, c), &dev).unwrap();
        let conv = DepthwiseConv3x3::from_tensors(wt.clone(), bias.clone()).unwrap();
        let grad_of = |fast: bool| {
            let x = Var::from_tensor(&probe).unwrap();
            let y = if fast {
                conv.forward_nhwc(x.as_tensor()).unwrap()
            } else {
                conv.forward_candle(x.as_tensor()).unwrap()
            };
            let loss = (y.sqr().unwrap().sum_all()).unwrap();
            loss.backward().unwrap().get(&x).unwrap().clone()
        };
        let (g_fast, g_ref) = (grad_of(true), grad_of(false));
        let e = max_abs(&(&g_fast - &g_ref).unwrap()) / max_abs(&g_ref);
        assert!(e < 1e-6, "input gradient rel err {e:e}");
    }

    #[test]
    fn variable_weights_take_the_differentiable_path() {
        let dev = Device::Cpu;
        let wt = Var::randn(0f32, 1., (4, 1, 3, 3), &dev).unwrap();
        let bias = Var::zeros(4, DType::F32, &dev).unwrap();
        let conv = DepthwiseConv3x3::from_tensors(wt.as_tensor().clone(), bias.as_tensor().clone())
            .unwrap();
        let x = Tensor::randn(0f32, 1., (1, 3, 3, 4), &dev).unwrap();
        let y = conv.forward_nhwc(&x).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&wt).is_some() && grads.get(&bias).is_some());
    }

    #[test]
    fn training_op_matches_candle_in_value_and_gradients() {
        let dev = Device::Cpu;
        let (b, h, w, c) = (2, 5, 4, 40);
        let wt = Var::randn(0f32, 1., (c, 1, 3, 3), &dev).unwrap();
        let bias = Var::randn(0f32, 1., c, &dev).unwrap();
        let x = Var::randn(0f32, 1., (b, h, w, c), &dev).unwrap();
        let probe = Tensor::randn(0f32, 1., (b, h, w, c), &dev).unwrap();
        let run = |fast: bool, gelu: bool| {
            let conv =
                DepthwiseConv3x3::from_tensors(wt.as_tensor().clone(), bias.as_tensor().clone())
                    .unwrap();
            let y = if fast {
                conv.forward_impl(x.as_tensor(), gelu).unwrap()
            } else {
                let z = conv.forward_candle(x.as_tensor()).unwrap();
                if gelu {
                    crate::ops::gelu_erf(&z).unwrap()
                } else {
                    z
                }
            };
            let g = (&y * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let grads: Vec<Tensor> = [x.as_tensor(), wt.as_tensor(), bias.as_tensor()]
                .iter()
                .map(|v| g.get(v).unwrap().clone())
                .collect();
            (y, grads)
        };
        for gelu in [false, true] {
            let (y1, g1) = run(true, gelu);
            let (y2, g2) = run(false, gelu);
            let e = max_abs(&(&y1 - &y2).unwrap()) / max_abs(&y2);
            assert!(e < 1e-6, "value rel err {e:e}");
            for (k, (a, r)) in g1.iter().zip(&g2).enumerate() {
                let e = max_abs(&(a - r).unwrap()) / max_abs(r);
                assert!(
                    e < 1e-5,
                    "gradient {k} (x, w, b) rel err {e:e}, gelu {gelu}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((4, 1, 5, 5), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(DepthwiseConv3x3::from_tensors(w, b.clone()).is_err());
        let w = Tensor::zeros((4, 1, 3, 3), DType::F32, &dev).unwrap();
        let conv = DepthwiseConv3x3::from_tensors(w, b).unwrap();
        let x = Tensor::zeros((1, 2, 2, 3), DType::F32, &dev).unwrap();
        assert!(conv.forward_nhwc(&x).is_err());
    }
}
