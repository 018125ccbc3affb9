//! The PVT v2 network (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision Transformer",
//! Computational Visual Media 2022, arXiv 2106.13797), ported from the official code
//! (github.com/whai362/PVT, branch v2, `classification/pvt_v2.py` and `detection/pvt_v2.py`,
//! Apache-2.0); timm's `pvt_v2.py` computes the same function.
//!
//! Differences from v1: overlapping patch embeddings (conv k7/s4/p3, then k3/s2/p1,
//! output `ceil(H / stride)`), no position embeddings and no cls token, a convolutional FFN
//! (fc1 → depth-wise 3×3 conv on the token map → GELU → fc2; ReLU after fc1 in the linear
//! variant), a LayerNorm `norm{i}` after every stage (the dense outputs are taken after it), and
//! the classifier mean-pools the final tokens. Keys/values are reduced as in v1 or, in b2_li, by
//! adaptive average pooling to 7×7 ([`KvReduction`]).
//!
//! Tokens travel channels-last as `[B, N, C]` with the grid `(H, W)` alongside (token `y·W + x`);
//! images and emitted features are NCHW. The model is built from official key names.

use anyhow::{ensure, Result};
use candle::{Module, Tensor, D};
use candle_nn::VarBuilder;
use pvt_nn::channel::Linear;
use pvt_nn::dwconv::DepthwiseConv3x3;
use pvt_nn::ops::LayerNorm;
use pvt_nn::ops::{gelu_erf, PatchConv};
use pvt_nn::{Backbone, FeaturePyramid, LevelSpec, PyramidSpec};

use crate::attention::{ln, MultiHead};
use crate::config::NormEps;
use crate::config_v2::{KvReduction, PvtV2Config, StageV2Config};

/// `[out, in]` averaging matrix of PyTorch's `AdaptiveAvgPool` along one axis: output `i`
/// averages inputs `floor(i·in/out) .. ceil((i+1)·in/out)` (bins may overlap, and repeat when
/// `out > in`).
pub fn adaptive_pool_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; out_len * in_len];
    for i in 0..out_len {
        let start = i * in_len / out_len;
        let end = ((i + 1) * in_len).div_ceil(out_len);
        let wgt = 1.0 / (end - start) as f32;
        for v in &mut m[i * in_len + start..i * in_len + end] {
            *v = wgt;
        }
    }
    m
}

/// `AdaptiveAvgPool2d(size)` of a channels-last map `[B, H, W, C]`, returned as tokens
/// `[B, size², C]` (row-major). Two matmuls, so differentiable and device-agnostic.
pub fn adaptive_avg_pool_nhwc(x: &Tensor, size: usize) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    ensure!(
        h > 0 && w > 0 && size > 0,
        "adaptive pooling of an empty map"
    );
    let (dev, dt) = (x.device(), x.dtype());
    let py = Tensor::from_vec(adaptive_pool_matrix(h, size), (size, h), dev)?.to_dtype(dt)?;
    let px = Tensor::from_vec(adaptive_pool_matrix(w, size), (size, w), dev)?.to_dtype(dt)?;
    // rows: [S, H] @ [B, H, W·C] -> [B, S, W·C]
    let t = py.broadcast_matmul(&x.reshape((b, h, w * c))?)?;
    // columns: [S, W] @ [B·S, W, C] -> [B·S, S, C]
    let t = px.broadcast_matmul(&t.reshape((b * size, w, c))?)?;
    Ok(t.reshape((b, size * size, c))?)
}

/// Overlapping patch embedding: `Conv2d(k, stride, padding k/2)` then LayerNorm.
#[derive(Debug, Clone)]
struct OverlapPatchEmbed {
    /// `[C_out, C_in, k, k]`.
    weight: Tensor,
    /// `[1, C_out, 1, 1]`.
    bias: Tensor,
    stride: usize,
    padding: usize,
    norm: LayerNorm,
}

impl OverlapPatchEmbed {
    fn new(cin: usize, s: &StageV2Config, eps: f64, vb: VarBuilder) -> candle::Result<Self> {
        let (c, k) = (s.embed_dim, s.patch_size);
        let p = vb.pp("proj");
        Ok(Self {
            weight: p.get((c, cin, k, k), "weight")?,
            bias: p.get(c, "bias")?.reshape((1, c, 1, 1))?,
            stride: s.stride,
            padding: k / 2,
            norm: ln(c, eps, vb.pp("norm"))?,
        })
    }

    /// NCHW in; normalised tokens `[B, H'·W', C]` and the grid `(H', W')` out.
    fn forward(&self, x: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        let y = pvt_nn::channel::add_bias(&y, &self.bias, 1)?;
        let (_, _, h, w) = y.dims4()?;
        let t = y.flatten_from(2)?.transpose(1, 2)?.contiguous()?; // B,C,H,W -> B,N,C
        Ok((self.norm.forward(&t)?, (h, w)))
    }
}

/// How keys/values are computed from the normalised tokens.
#[derive(Debug, Clone)]
enum Reduction {
    /// `R = 1`: the tokens themselves.
    None,
    /// Conv with kernel = stride = R, then LayerNorm.
    Conv { conv: PatchConv, norm: LayerNorm },
    /// Adaptive average pool to `size²` tokens → 1×1 conv (a linear map) → LayerNorm → GELU.
    Pool {
        size: usize,
        sr: Linear,
        norm: LayerNorm,
    },
}

/// Spatial-reduction attention (v1's, or linear SRA).
#[derive(Debug, Clone)]
struct Attention {
    heads: MultiHead,
    reduction: Reduction,
}

impl Attention {
    fn new(
        s: &StageV2Config,
        kind: KvReduction,
        qkv_bias: bool,
        eps: NormEps,
        vb: VarBuilder,
    ) -> candle::Result<Self> {
        let c = s.embed_dim;
        let sr_eps = eps.spatial_reduction();
        let reduction = match kind {
            KvReduction::Conv if s.sr_ratio > 1 => Reduction::Conv {
                conv: PatchConv::new(c, c, s.sr_ratio, vb.pp("sr"))?,
                norm: ln(c, sr_eps, vb.pp("norm"))?,
            },
            KvReduction::Conv => Reduction::None,
            KvReduction::LinearPool { size } => {
                let w = vb.pp("sr").get((c, c, 1, 1), "weight")?.reshape((c, c))?;
                let b = vb.pp("sr").get(c, "bias")?;
                Reduction::Pool {
                    size,
                    sr: Linear::new(w, Some(b)),
                    norm: ln(c, sr_eps, vb.pp("norm"))?,
                }
            }
        };
        Ok(Self {
            heads: MultiHead::new(c, s.num_heads, qkv_bias, &vb)?,
            reduction,
        })
    }

    /// `x`: `[B, N, C]` on an `(h, w)` grid.
    fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let xr = match &self.reduction {
            Reduction::None => x.clone(),
            Reduction::Conv { conv, norm } => {
                let (t, _) = conv.forward_nhwc(&x.reshape((b, h, w, c))?)?;
                norm.forward(&t)?
            }
            Reduction::Pool { size, sr, norm } => {
                let t = adaptive_avg_pool_nhwc(&x.reshape((b, h, w, c))?, *size)?;
                gelu_erf(&norm.forward(&sr.forward(&t)?)?)?
            }
        };
        Ok(self.heads.forward(x, &xr)?)
    }
}

/// Convolutional FFN: fc1 → (ReLU) → depth-wise 3×3 on the token map → GELU → fc2.
#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    relu: bool,
    dwconv: DepthwiseConv3x3,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let mut t = self.fc1.forward(x)?;
        if self.relu {
            t = t.relu()?;
        }
        let hidden = t.dim(2)?;
        // tokens [B, N, hidden] are the channels-last map [B, h, w, hidden]; GELU fused in
        let t = self
            .dwconv
            .forward_nhwc_gelu(&t.reshape((b, h, w, hidden))?)?;
        Ok(self.fc2.forward(&t.reshape((b, n, hidden))?)?)
    }
}

/// Pre-norm transformer block.
#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(s: &StageV2Config, cfg: &PvtV2Config, eps: NormEps, vb: VarBuilder) -> Result<Self> {
        let c = s.embed_dim;
        let hidden = c * s.mlp_ratio;
        Ok(Self {
            norm1: ln(c, eps.block(), vb.pp("norm1"))?,
            attn: Attention::new(s, cfg.kv_reduction, cfg.qkv_bias, eps, vb.pp("attn"))?,
            norm2: ln(c, eps.block(), vb.pp("norm2"))?,
            mlp: Mlp {
                fc1: pvt_nn::channel::linear(c, hidden, vb.pp("mlp.fc1"))?,
                relu: cfg.is_linear(),
                dwconv: DepthwiseConv3x3::new(hidden, vb.pp("mlp.dwconv.dwconv"))?,
                fc2: pvt_nn::channel::linear(hidden, c, vb.pp("mlp.fc2"))?,
            },
        })
    }

    fn forward(&self, x: &Tensor, hw: (usize, usize)) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?, hw)?)?;
        Ok((&x + self.mlp.forward(&self.norm2.forward(&x)?, hw)?)?)
    }
}

/// One stage: patch embedding, blocks, stage norm.
#[derive(Debug, Clone)]
struct Stage {
    patch_embed: OverlapPatchEmbed,
    blocks: Vec<Block>,
    norm: LayerNorm,
    embed_dim: usize,
}

/// Everything the dense and classifier forms share.
#[derive(Debug, Clone)]
struct Trunk {
    stages: Vec<Stage>,
    in_channels: usize,
    norm_eps: NormEps,
}

impl Trunk {
    fn new(cfg: &PvtV2Config, vb: &VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let eps = cfg.norm_eps_or_official();
        let mut stages = Vec::with_capacity(4);
        let mut cin = cfg.in_channels;
        for (i, s) in cfg.stages.iter().enumerate() {
            let idx = i + 1;
            let patch_embed = OverlapPatchEmbed::new(
                cin,
                s,
                eps.patch_embed(),
                vb.pp(format!("patch_embed{idx}")),
            )?;
            let blocks = (0..s.depth)
                .map(|j| Block::new(s, cfg, eps, vb.pp(format!("block{idx}.{j}"))))
                .collect::<Result<Vec<_>>>()?;
            let norm = ln(s.embed_dim, eps.block(), vb.pp(format!("norm{idx}")))?;
            stages.push(Stage {
                patch_embed,
                blocks,
                norm,
                embed_dim: s.embed_dim,
            });
            cin = s.embed_dim;
        }
        Ok(Self {
            stages,
            in_channels: cfg.in_channels,
            norm_eps: eps,
        })
    }

    fn check_images(&self, images: &Tensor) -> Result<()> {
        let (_, c, _, _) = images.dims4().map_err(|_| {
            anyhow::anyhow!("expected images [B, C, H, W], got {:?}", images.dims())
        })?;
        ensure!(
            c == self.in_channels,
            "expected {} input channels, got {c}",
            self.in_channels
        );
        Ok(())
    }

    /// Stage `i` on an NCHW input: stage-normalised tokens `[B, N, C]` and their grid.
    fn stage(&self, i: usize, x_nchw: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let st = &self.stages[i];
        let (mut t, hw) = st.patch_embed.forward(x_nchw)?;
        for blk in &st.blocks {
            t = blk.forward(&t, hw)?;
        }
        Ok((st.norm.forward(&t)?, hw))
    }

    /// Tokens `[B, h·w, C]` -> NCHW `[B, C, h, w]` (contiguous).
    fn to_nchw(&self, i: usize, t: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let b = t.dim(0)?;
        let c = self.stages[i].embed_dim;
        Ok(t.reshape((b, h, w, c))?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }
}

/// The dense PVT v2 backbone (detection / segmentation form): four NCHW maps at strides 4, 8,
/// 16, 32, each taken after its stage's LayerNorm. Any input size works: every level is
/// `ceil(previous / 2)` (`ceil(H / 4)` for the first), so for sides that are not multiples of 32
/// the levels are the ceil-rounded sizes PyTorch produces, not `H / stride`.
#[derive(Debug, Clone)]
pub struct PvtV2Dense {
    trunk: Trunk,
    spec: PyramidSpec,
}

impl PvtV2Dense {
    /// Builds the model from official-named tensors in `vb`, with the LayerNorm epsilons of
    /// `cfg.norm_eps` (official ones when `None`).
    pub fn new(cfg: &PvtV2Config, vb: VarBuilder) -> Result<Self> {
        let trunk = Trunk::new(cfg, &vb)?;
        let spec = PyramidSpec::new(
            cfg.stages
                .iter()
                .zip(cfg.strides())
                .map(|(s, stride)| LevelSpec {
                    channels: s.embed_dim,
                    stride,
                })
                .collect(),
        )?;
        Ok(Self { trunk, spec })
    }

    /// The LayerNorm epsilons the model was built with.
    pub fn norm_eps(&self) -> NormEps {
        self.trunk.norm_eps
    }

    /// `images`: normalised `[B, 3, H, W]`; returns the four stage outputs, NCHW.
    pub fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        self.trunk.check_images(images)?;
        let mut x = images.clone();
        let mut feats = Vec::with_capacity(self.trunk.stages.len());
        for i in 0..self.trunk.stages.len() {
            let (t, hw) = self.trunk.stage(i, &x)?;
            x = self.trunk.to_nchw(i, &t, hw)?;
            feats.push(x.clone());
        }
        Ok(feats)
    }
}

impl Backbone for PvtV2Dense {
    fn output_spec(&self) -> &PyramidSpec {
        &self.spec
    }

    fn forward_pyramid(&self, images: &Tensor) -> Result<FeaturePyramid> {
        FeaturePyramid::new(self.spec.clone(), self.forward(images)?)
    }
}

/// The ImageNet classifier form: the four stages, the mean of the final (normalised) tokens,
/// and the linear `head`.
#[derive(Debug, Clone)]
pub struct PvtV2Classifier {
    trunk: Trunk,
    head: Linear,
}

impl PvtV2Classifier {
    /// Builds the model from official-named tensors in `vb` (with `head`).
    pub fn new(cfg: &PvtV2Config, vb: VarBuilder) -> Result<Self> {
        let trunk = Trunk::new(cfg, &vb)?;
        let c = cfg.stages[3].embed_dim;
        Ok(Self {
            trunk,
            head: pvt_nn::channel::linear(c, cfg.num_classes, vb.pp("head"))?,
        })
    }

    /// The LayerNorm epsilons the model was built with.
    pub fn norm_eps(&self) -> NormEps {
        self.trunk.norm_eps
    }

    /// Logits `[B, num_classes]` for normalised `[B, 3, H, W]` images (any size).
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        self.trunk.check_images(images)?;
        let last = self.trunk.stages.len() - 1;
        let mut x = images.clone();
        for i in 0..last {
            let (t, hw) = self.trunk.stage(i, &x)?;
            x = self.trunk.to_nchw(i, &t, hw)?;
        }
        let (t, _) = self.trunk.stage(last, &x)?;
        let pooled = t.mean(1)?; // [B, C]
        Ok(self.head.forward(&pooled)?)
    }

    /// Softmax probabilities `[B, num_classes]`.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.forward(images)?, D::Minus1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    #[test]
    fn pool_bins_follow_pytorch() {
        // 10 -> 7: bins [0,2) [1,3) [2,5) [4,6) [5,8) [7,9) [8,10)
        let m = adaptive_pool_matrix(10, 7);
        let bins: Vec<(usize, usize)> = (0..7)
            .map(|i| {
                let row = &m[i * 10..(i + 1) * 10];
                let s = row.iter().position(|&v| v > 0.0).unwrap();
                let e = row.iter().rposition(|&v| v > 0.0).unwrap() + 1;
                (s, e)
            })
            .collect();
        assert_eq!(
            bins,
            vec![(0, 2), (1, 3), (2, 5), (4, 6), (5, 8), (7, 9), (8, 10)]
        );
        // upsampling 3 -> 7 repeats inputs
        let m = adaptive_pool_matrix(3, 7);
        for i in 0..7 {
            let s: f32 = m[i * 3..(i + 1) * 3].iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        assert_eq!(adaptive_pool_matrix(2, 2), vec![1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn pool_equals_avg_pool_when_divisible() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 14, 21, 3), &dev)?;
        let got = adaptive_avg_pool_nhwc(&x, 7)?; // bins 2x3
        let want = x
            .permute((0, 3, 1, 2))?
            .contiguous()?
            .avg_pool2d_with_stride((2, 3), (2, 3))?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn zero_weights_build_and_ceil_sizes() -> Result<()> {
        let dev = Device::Cpu;
        let mut cfg = crate::config_v2::PvtV2::B0.config();
        for s in &mut cfg.stages {
            s.depth = 1;
        }
        let vb = VarBuilder::zeros(DType::F32, &dev);
        let model = PvtV2Dense::new(&cfg, vb.clone())?;
        let x = Tensor::zeros((1, 3, 65, 97), DType::F32, &dev)?;
        let dims: Vec<Vec<usize>> = model
            .forward(&x)?
            .iter()
            .map(|f| f.dims().to_vec())
            .collect();
        assert_eq!(
            dims,
            vec![
                vec![1, 32, 17, 25],
                vec![1, 64, 9, 13],
                vec![1, 160, 5, 7],
                vec![1, 256, 3, 4]
            ]
        );
        cfg.kv_reduction = KvReduction::LinearPool { size: 7 };
        let cls = PvtV2Classifier::new(&cfg, vb)?;
        assert_eq!(cls.forward(&x)?.dims(), &[1, 1000]);
        Ok(())
    }
}
