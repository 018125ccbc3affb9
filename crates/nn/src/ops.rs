//! Numerics that must equal PyTorch's and run fast on the CPU.

use anyhow::{ensure, Result};
use candle::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

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
        // d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
        let cdf = ((arg * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
        let pdf = ((arg.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
        let d = (cdf? + (arg * pdf)?)?;
        Ok(Some(grad_res.mul(&d)?))
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
        let weight = w
            .permute((0, 2, 3, 1))?
            .reshape((out_channels, patch * patch * in_channels))?;
        Ok(Self {
            weight,
            bias,
            patch,
            in_channels,
        })
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
        let y = patches
            .broadcast_matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
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
