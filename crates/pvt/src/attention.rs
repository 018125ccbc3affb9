//! What PVT v1 and v2 attention share: the multi-head attention of queries from every token
//! over keys/values from a (spatially reduced) token set. The reductions themselves differ by
//! generation and live with each model.

use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_nn::channel::{linear_b, Linear};
use pvt_nn::ops::LayerNorm;

/// A LayerNorm with the given epsilon (`weight`, `bias` under `vb`): candle-nn's fused kernel
/// for inference, one with a backward pass when training (`pvt_nn::ops::LayerNorm`).
pub(crate) fn ln(dim: usize, eps: f64, vb: VarBuilder) -> candle::Result<LayerNorm> {
    LayerNorm::load(dim, eps, vb)
}

/// The `q`, `kv` and `proj` projections of a spatial-reduction attention block and the
/// attention itself.
#[derive(Debug, Clone)]
pub(crate) struct MultiHead {
    /// Query projection with the softmax scale folded in (inference).
    q: Linear,
    /// The query projection as loaded and the scale, applied at run time when the weight is a
    /// training variable (a folded copy would keep the values it was made from).
    q_raw: Linear,
    scale: f64,
    /// Key/value projection: the first `C` output channels are K, the next `C` are V.
    kv: Linear,
    proj: Linear,
    num_heads: usize,
}

impl MultiHead {
    /// Reads `q`, `kv`, `proj` from `vb` (PyTorch `[out, in]` Linear weights).
    pub(crate) fn new(
        c: usize,
        num_heads: usize,
        qkv_bias: bool,
        vb: &VarBuilder,
    ) -> candle::Result<Self> {
        let scale = ((c / num_heads) as f64).powf(-0.5);
        // The softmax scale is folded into the q projection: (x·Wᵀ + b)·s = x·(s·W)ᵀ + s·b.
        // Exact for the published head dim 64 (s = 1/8) and saves a pass over q.
        let q_raw = linear_b(c, c, qkv_bias, vb.pp("q"))?;
        let q = Linear::new(
            (q_raw.weight() * scale)?,
            q_raw.bias().map(|b| b * scale).transpose()?,
        );
        Ok(Self {
            q,
            q_raw,
            scale,
            kv: linear_b(c, 2 * c, qkv_bias, vb.pp("kv"))?,
            proj: linear_b(c, c, true, vb.pp("proj"))?,
            num_heads,
        })
    }

    /// Scaled queries `[B, N, C]`.
    fn queries(&self, x: &Tensor) -> candle::Result<Tensor> {
        let w = self.q_raw.weight();
        if w.is_variable() || self.q_raw.bias().is_some_and(|b| b.is_variable()) {
            self.q_raw.forward(x)? * self.scale
        } else {
            self.q.forward(x)
        }
    }

    /// Queries from `x` `[B, N, C]`, keys and values from `xr` `[B, M, C]`; returns `[B, N, C]`.
    pub(crate) fn forward(&self, x: &Tensor, xr: &Tensor) -> candle::Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let heads = self.num_heads;
        let d = c / heads;
        // q (pre-scaled): [B, N, C] -> [B, heads, N, d]
        let q = self
            .queries(x)?
            .reshape((b, n, heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let m = xr.dim(1)?;
        // kv: [B, M, 2C] -> [2, B, heads, M, d]
        let kv = self
            .kv
            .forward(xr)?
            .reshape((b, m, 2, heads, d))?
            .permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let attn = pvt_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?; // heads merged
        self.proj.forward(&out)
    }
}
