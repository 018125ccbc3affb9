//! Per-channel bias and scale with a fast backward pass, and a `Linear` layer built on them.
//!
//! candle differentiates `x.broadcast_add(b)` by summing the full-size gradient back to `b`'s
//! shape with its generic reduction. When the summed dimensions are not the trailing ones (a
//! Linear bias over `[B, N, C]` tokens, a conv bias over `[B, C, H, W]`), candle 0.11's CPU
//! reduction does an integer division per element on one thread: profiled at 23% of a whole
//! Semantic FPN training step (BENCHMARKS.md, "Training throughput").
//!
//! The ops here give the same forward values (`x + b`, `x·s + b` in f32, element by element) and
//! sum the gradients with a contiguous, multi-threaded kernel that adds in a fixed order, so the
//! result does not depend on the number of threads. They are used only where something tracks
//! gradients on the CPU in f32/f64; inference and other devices take candle's broadcast ops
//! unchanged.

use candle::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// `x` seen as `[outer, c, inner]` with the per-channel vector on the middle axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    outer: usize,
    c: usize,
    inner: usize,
}

impl Geom {
    fn of(shape: &Shape, dim: usize) -> candle::Result<Self> {
        let dims = shape.dims();
        if dim >= dims.len() {
            candle::bail!("channel op: dim {dim} out of range for shape {shape:?}")
        }
        Ok(Self {
            outer: dims[..dim].iter().product(),
            c: dims[dim],
            inner: dims[dim + 1..].iter().product(),
        })
    }

    fn row(&self) -> usize {
        self.c * self.inner
    }

    /// Outer rows per parallel task: about 16K elements, fixed by the shape alone (never by
    /// the thread count), so sums are grouped the same way on every machine.
    fn rows_per_task(&self) -> usize {
        (16384 / self.row().max(1)).max(1)
    }
}

use crate::elem::{contiguous_slice as slice, Real as Elem};

fn check_vec(g: Geom, l: &Layout, what: &str) -> candle::Result<()> {
    if l.shape().elem_count() != g.c {
        candle::bail!(
            "{what}: expected {} per-channel values, got shape {:?}",
            g.c,
            l.shape()
        )
    }
    Ok(())
}

/// `x·scale[c] + bias[c]` (either optional), element by element in `T`.
fn affine<T: Elem>(x: &[T], scale: Option<&[T]>, bias: Option<&[T]>, g: Geom) -> Vec<T> {
    let mut out = x.to_vec();
    if out.is_empty() {
        return out;
    }
    let rows = g.rows_per_task();
    out.par_chunks_mut(rows * g.row()).for_each(|chunk| {
        for row in chunk.chunks_mut(g.row()) {
            for (ci, run) in row.chunks_mut(g.inner.max(1)).enumerate() {
                match (scale, bias) {
                    (Some(s), Some(b)) => run.iter_mut().for_each(|v| *v = *v * s[ci] + b[ci]),
                    (Some(s), None) => run.iter_mut().for_each(|v| *v = *v * s[ci]),
                    (None, Some(b)) => run.iter_mut().for_each(|v| *v = *v + b[ci]),
                    (None, None) => {}
                }
            }
        }
    });
    out
}

/// Sum of `x` per channel: `[outer, c, inner]` → `[c]`, in f64, in a fixed order.
fn channel_sum<T: Elem>(x: &[T], g: Geom) -> Vec<T> {
    if x.is_empty() {
        return vec![T::from_f64(0.0); g.c];
    }
    let rows = g.rows_per_task();
    let partials: Vec<Vec<f64>> = x
        .par_chunks(rows * g.row())
        .map(|chunk| {
            let mut acc = vec![0f64; g.c];
            for row in chunk.chunks(g.row()) {
                if g.inner == 1 {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v.to_f64());
                } else {
                    for (a, run) in acc.iter_mut().zip(row.chunks(g.inner)) {
                        *a += sum_run(run);
                    }
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0f64; g.c];
    for p in &partials {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total.into_iter().map(T::from_f64).collect()
}

/// A contiguous sum with eight independent accumulators (so the loop pipelines).
fn sum_run<T: Elem>(run: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = run.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v.to_f64();
        }
    }
    lanes.iter().sum::<f64>() + tail.iter().map(|v| v.to_f64()).sum::<f64>()
}

type Input<'a> = (&'a CpuStorage, &'a Layout);

/// [`affine`] on candle storages: `x`, optional per-channel scale and bias, all f32 or all f64.
fn affine_storage(
    what: &str,
    g: Geom,
    x: Input,
    scale: Option<Input>,
    bias: Option<Input>,
) -> candle::Result<CpuStorage> {
    for (_, l) in scale.iter().chain(bias.iter()) {
        check_vec(g, l, what)?;
    }
    Ok(match x.0 {
        CpuStorage::F32(_) => {
            CpuStorage::F32(affine_typed(what, g, x, scale, bias, |s| match s {
                CpuStorage::F32(v) => Some(v),
                _ => None,
            })?)
        }
        CpuStorage::F64(_) => {
            CpuStorage::F64(affine_typed(what, g, x, scale, bias, |s| match s {
                CpuStorage::F64(v) => Some(v),
                _ => None,
            })?)
        }
        _ => candle::bail!("{what}: f32 or f64 only"),
    })
}

fn affine_typed<'a, T: Elem + 'a>(
    what: &str,
    g: Geom,
    x: Input<'a>,
    scale: Option<Input<'a>>,
    bias: Option<Input<'a>>,
    get: for<'b> fn(&'b CpuStorage) -> Option<&'b Vec<T>>,
) -> candle::Result<Vec<T>> {
    let typed = |(s, l): Input<'a>| -> candle::Result<&'a [T]> {
        match get(s) {
            Some(v) => slice(v, l, what),
            None => candle::bail!("{what}: all inputs must have the same dtype"),
        }
    };
    let (scale, bias) = (scale.map(typed).transpose()?, bias.map(typed).transpose()?);
    Ok(affine(typed(x)?, scale, bias, g))
}

macro_rules! dispatch {
    ($what:expr, $s:expr, |$v:ident| $f32:expr, $f64:expr) => {
        match $s {
            CpuStorage::F32($v) => CpuStorage::F32($f32),
            CpuStorage::F64($v) => CpuStorage::F64($f64),
            _ => candle::bail!("{}: f32 or f64 only", $what),
        }
    };
}

/// `[outer, c, inner]` → `[c]` sums (no backward: used inside backward passes).
struct ChannelSum(Geom);

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "pvt-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let what = "channel sum";
        let out = dispatch!(what, s, |v| channel_sum(slice(v, l, what)?, self.0), {
            channel_sum(slice(v, l, what)?, self.0)
        });
        Ok((out, Shape::from(self.0.c)))
    }
}

/// `x·s[c]` (no backward: the input gradient of [`ScaleBias`]).
struct Scale(Geom);

impl CustomOp2 for Scale {
    fn name(&self) -> &'static str {
        "pvt-channel-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let out = affine_storage("channel scale", self.0, (s1, l1), Some((s2, l2)), None)?;
        Ok((out, l1.shape().clone()))
    }
}

/// `x + b[c]`, differentiable in both.
struct BiasAdd(Geom);

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "pvt-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let out = affine_storage("bias add", self.0, (s1, l1), None, Some((s2, l2)))?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let gb = g
            .apply_op1_no_bwd(&ChannelSum(self.0))?
            .reshape(b.shape())?;
        Ok((Some(g), Some(gb)))
    }
}

/// `x·s[c] + b[c]`, differentiable in all three.
struct ScaleBias(Geom);

impl CustomOp3 for ScaleBias {
    fn name(&self) -> &'static str {
        "pvt-scale-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let what = "scale and bias";
        let out = affine_storage(what, self.0, (s1, l1), Some((s2, l2)), Some((s3, l3)))?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let sum = ChannelSum(self.0);
        let gx = g.apply_op2_no_bwd(&s.contiguous()?, &Scale(self.0))?;
        let gs = (&g * x.contiguous()?)?
            .apply_op1_no_bwd(&sum)?
            .reshape(s.shape())?;
        let gb = g.apply_op1_no_bwd(&sum)?.reshape(b.shape())?;
        Ok((Some(gx), Some(gs), Some(gb)))
    }
}

/// Whether the fast kernels apply: CPU, f32 or f64, and something records a backward pass.
fn use_kernel(x: &Tensor, vs: &[&Tensor]) -> bool {
    let dt = x.dtype();
    x.device().is_cpu()
        && matches!(dt, DType::F32 | DType::F64)
        && vs.iter().all(|v| v.dtype() == dt && v.device().is_cpu())
        && (x.track_op() || vs.iter().any(|v| v.track_op()))
}

/// `bias` (`[C]`, or any shape with `C` elements) reshaped to broadcast along `dim` of `x`.
fn along(x: &Tensor, v: &Tensor, dim: usize) -> candle::Result<Tensor> {
    let mut shape = vec![1; x.rank()];
    shape[dim] = x.dim(dim)?;
    v.reshape(shape)
}

/// `x + bias`, with `bias` holding one value per index of dimension `dim` of `x` (a Linear bias
/// with `dim` last, a conv bias with `dim = 1`). The values equal `broadcast_add`'s; in training
/// on the CPU the bias gradient is summed by a fast contiguous kernel.
pub fn add_bias(x: &Tensor, bias: &Tensor, dim: usize) -> candle::Result<Tensor> {
    let g = Geom::of(x.shape(), dim)?;
    if bias.elem_count() != g.c {
        candle::bail!(
            "add_bias: {} values for dim {dim} of shape {:?}",
            bias.elem_count(),
            x.shape()
        )
    }
    if !use_kernel(x, &[bias]) {
        return x.broadcast_add(&along(x, bias, dim)?);
    }
    x.contiguous()?
        .apply_op2(&bias.contiguous()?.flatten_all()?, BiasAdd(g))?
        .reshape(x.shape())
}

/// `x·scale + bias` per index of dimension `dim` of `x` (a LayerNorm's or BatchNorm's affine
/// part). Values equal `broadcast_mul` then `broadcast_add`; fast gradient sums as
/// [`add_bias`].
pub fn scale_bias(x: &Tensor, scale: &Tensor, bias: &Tensor, dim: usize) -> candle::Result<Tensor> {
    let g = Geom::of(x.shape(), dim)?;
    if scale.elem_count() != g.c || bias.elem_count() != g.c {
        candle::bail!(
            "scale_bias: {} scales and {} biases for dim {dim} of shape {:?}",
            scale.elem_count(),
            bias.elem_count(),
            x.shape()
        )
    }
    if !use_kernel(x, &[scale, bias]) {
        return x
            .broadcast_mul(&along(x, scale, dim)?)?
            .broadcast_add(&along(x, bias, dim)?);
    }
    x.contiguous()?
        .apply_op3(
            &scale.contiguous()?.flatten_all()?,
            &bias.contiguous()?.flatten_all()?,
            ScaleBias(g),
        )?
        .reshape(x.shape())
}

/// `t` repeated `n` times along a new leading dimension, materialised (no backward of its own:
/// see [`broadcast_left`]).
struct RepeatLeft {
    n: usize,
}

impl CustomOp1 for RepeatLeft {
    fn name(&self) -> &'static str {
        "pvt-repeat-left"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle::Result<(CpuStorage, Shape)> {
        let what = "broadcast_left";
        let n = self.n;
        let out = dispatch!(what, s, |v| slice(v, l, what)?.repeat(n), {
            slice(v, l, what)?.repeat(n)
        });
        let mut dims = vec![n];
        dims.extend_from_slice(l.shape().dims());
        Ok((out, Shape::from(dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle::Result<Option<Tensor>> {
        let g = Geom {
            outer: self.n,
            c: arg.elem_count(),
            inner: 1,
        };
        let sum = grad.contiguous()?.apply_op1_no_bwd(&ChannelSum(g))?;
        Ok(Some(sum.reshape(arg.shape())?))
    }
}

/// `t` repeated along a new leading dimension of size `n` (candle's `t.broadcast_left(n)`), for
/// a weight shared by a batched matmul. candle differentiates `broadcast_left` with its strided
/// reduction over the new dimension; in training on the CPU this copies `t` `n` times instead
/// and sums the gradient with the fast kernel of [`add_bias`]. Same values either way.
pub fn broadcast_left(t: &Tensor, n: usize) -> candle::Result<Tensor> {
    if !use_kernel(t, &[]) {
        return t.broadcast_left(n);
    }
    t.contiguous()?.apply_op1(RepeatLeft { n })
}

/// A linear layer as PyTorch's `nn.Linear` (`y = x·Wᵀ + b`, `W` `[out, in]`): candle-nn's
/// `Linear` (the same matmuls, the same values) with the bias added by [`add_bias`], so that
/// training does not spend its time in candle's strided bias-gradient reduction.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// From a `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            inner: candle_nn::Linear::new(weight, bias),
        }
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// The `[out]` bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        match self.bias() {
            Some(b) if use_kernel(x, &[self.weight(), b]) => {
                let y = candle_nn::Linear::new(self.weight().clone(), None).forward(x)?;
                add_bias(&y, b, y.rank() - 1)
            }
            _ => self.inner.forward(x),
        }
    }
}

/// A [`Linear`] with a bias, reading `weight` and `bias` from `vb` (candle-nn's `linear`).
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle::Result<Linear> {
    linear_b(in_dim, out_dim, true, vb)
}

/// A [`Linear`] with or without a bias (candle-nn's `linear_b`).
pub fn linear_b(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    vb: VarBuilder,
) -> candle::Result<Linear> {
    let l = candle_nn::linear_b(in_dim, out_dim, bias, vb)?;
    Ok(Linear::new(l.weight().clone(), l.bias().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Gradients of `sum(w ⊙ op(x, ...))` through our op and through candle's broadcast ops.
    fn check(shape: &[usize], dim: usize, with_scale: bool) -> candle::Result<()> {
        let dev = Device::Cpu;
        let c = shape[dim];
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev)?)?;
        let s = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., c, &dev)?)?;
        let w = Tensor::randn(0f32, 1., shape, &dev)?;
        let ours = if with_scale {
            scale_bias(x.as_tensor(), s.as_tensor(), b.as_tensor(), dim)?
        } else {
            add_bias(x.as_tensor(), b.as_tensor(), dim)?
        };
        let theirs = if with_scale {
            x.broadcast_mul(&along(&x, &s, dim)?)?
                .broadcast_add(&along(&x, &b, dim)?)?
        } else {
            x.broadcast_add(&along(&x, &b, dim)?)?
        };
        // the forward values are the same f32 operations: bit-identical
        assert_eq!(max_diff(&ours, &theirs), 0.0, "{shape:?} dim {dim}");
        let g1 = (&ours * &w)?.sum_all()?.backward()?;
        let g2 = (&theirs * &w)?.sum_all()?.backward()?;
        let mut vars = vec![&x, &b];
        if with_scale {
            vars.push(&s);
        }
        for v in vars {
            let (a, e) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            assert_eq!(a.shape(), e.shape());
            let scale = e.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
            let d = max_diff(a, e);
            assert!(d <= 1e-5 * scale.max(1.0), "{shape:?} dim {dim}: {d}");
        }
        Ok(())
    }

    #[test]
    fn gradients_equal_broadcast_ops() -> candle::Result<()> {
        for (shape, dim) in [
            (vec![2usize, 5, 7], 2),  // Linear over tokens
            (vec![3, 4, 5, 6], 1),    // conv bias, NCHW
            (vec![2, 3, 4, 9], 3),    // channels-last conv
            (vec![17], 0),            // a single vector
            (vec![4, 3000, 8], 2),    // several parallel tasks
            (vec![2, 6, 100, 90], 1), // long inner runs
        ] {
            check(&shape, dim, false)?;
            check(&shape, dim, true)?;
        }
        Ok(())
    }

    #[test]
    fn channel_sums_do_not_depend_on_the_thread_count() -> candle::Result<()> {
        let x = Tensor::randn(0f32, 1., (64, 300, 7), &Device::Cpu)?;
        let g = Geom::of(x.shape(), 1)?;
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let a = one.install(|| x.apply_op1_no_bwd(&ChannelSum(g)))?;
        let b = x.apply_op1_no_bwd(&ChannelSum(g))?;
        assert_eq!(a.to_vec1::<f32>()?, b.to_vec1::<f32>()?);
        // and they are the sums
        let want = x.sum(2)?.sum(0)?;
        assert!(max_diff(&a, &want) < 1e-3);
        Ok(())
    }

    #[test]
    fn inference_keeps_candles_ops_and_bad_shapes_are_errors() -> candle::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 4), &dev)?;
        let b = Tensor::randn(0f32, 1., 3, &dev)?;
        let y = add_bias(&x, &b, 1)?;
        assert!(!y.track_op());
        assert_eq!(max_diff(&y, &x.broadcast_add(&b.reshape((1, 3, 1))?)?), 0.0);
        let err = add_bias(&x, &b, 2).unwrap_err().to_string();
        assert!(err.contains("3 values for dim 2"), "{err}");
        assert!(add_bias(&x, &b, 3).is_err());
        Ok(())
    }

    #[test]
    fn broadcast_left_gradient_is_the_sum() -> candle::Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 6), &dev)?)?;
        let x = Tensor::randn(0f32, 1., (3, 6, 5), &dev)?;
        let ours = broadcast_left(w.as_tensor(), 3)?.matmul(&x)?;
        let theirs = w.broadcast_left(3)?.matmul(&x)?;
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let wt = Tensor::randn(0f32, 1., (3, 4, 5), &dev)?;
        let g1 = (&ours * &wt)?.sum_all()?.backward()?;
        let g2 = (&theirs * &wt)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&w).unwrap(), g2.get(&w).unwrap()) < 1e-5);
        // nothing tracked: candle's view
        assert!(!broadcast_left(&x, 2)?.track_op());
        Ok(())
    }

    #[test]
    fn linear_matches_candle_nn() -> candle::Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (5, 4), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., 5, &dev)?)?;
        let x = Tensor::randn(0f32, 1., (2, 3, 4), &dev)?;
        let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())).forward(&x)?;
        let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
            .forward(&x)?;
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let (g1, g2) = (ours.sum_all()?.backward()?, theirs.sum_all()?.backward()?);
        assert!(max_diff(g1.get(&b).unwrap(), g2.get(&b).unwrap()) < 1e-5);
        assert!(max_diff(g1.get(&w).unwrap(), g2.get(&w).unwrap()) < 1e-5);
        Ok(())
    }
}
