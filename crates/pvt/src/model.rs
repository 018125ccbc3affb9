//! The PVT v1 network: patch embeddings, spatial-reduction attention, blocks, and the dense
//! and classifier forms.
//!
//! Tokens travel channels-last as `[B, N, C]` with the grid `(H, W)` passed alongside
//! (token `y·W + x`), as in the official code; emitted features are NCHW.

use anyhow::{bail, ensure, Result};
use candle::{Module, Tensor, D};
use candle_nn::VarBuilder;
use pvt_nn::channel::Linear;
use pvt_nn::ops::LayerNorm;
use pvt_nn::ops::{gelu_erf, resize_token_table, PatchConv};
use pvt_nn::{Backbone, FeaturePyramid, LevelSpec, PyramidSpec};

use crate::attention::{ln, MultiHead};
use crate::config::{Numerics, PosEmbedResize, PvtConfig, StageConfig};

/// Spatial-reduction attention (PVT paper Eq. 3-4).
#[derive(Debug, Clone)]
struct Attention {
    heads: MultiHead,
    /// Conv with kernel = stride = R and its LayerNorm, when R > 1.
    sr: Option<(PatchConv, LayerNorm)>,
}

impl Attention {
    fn new(
        s: &StageConfig,
        qkv_bias: bool,
        numerics: Numerics,
        vb: VarBuilder,
    ) -> candle::Result<Self> {
        let c = s.embed_dim;
        let sr = if s.sr_ratio > 1 {
            Some((
                PatchConv::new(c, c, s.sr_ratio, vb.pp("sr"))?,
                ln(c, numerics.norm_eps.spatial_reduction(), vb.pp("norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            heads: MultiHead::new(c, s.num_heads, qkv_bias, &vb)?,
            sr,
        })
    }

    /// `x`: `[B, N, C]` on an `(h, w)` grid (N may include a leading cls token when there is
    /// no spatial reduction).
    fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> candle::Result<Tensor> {
        let (b, _, c) = x.dims3()?;
        let xr = match &self.sr {
            Some((conv, norm)) => {
                // tokens -> channels-last map -> reduced tokens [B, M, C]
                let (t, _) = conv.forward_nhwc(&x.reshape((b, h, w, c))?)?;
                norm.forward(&t)?
            }
            None => x.clone(),
        };
        self.heads.forward(x, &xr)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle::Result<Tensor> {
        self.fc2.forward(&gelu_erf(&self.fc1.forward(x)?)?)
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
    fn new(
        s: &StageConfig,
        qkv_bias: bool,
        numerics: Numerics,
        vb: VarBuilder,
    ) -> candle::Result<Self> {
        let c = s.embed_dim;
        let hidden = c * s.mlp_ratio;
        let eps = numerics.norm_eps.block();
        Ok(Self {
            norm1: ln(c, eps, vb.pp("norm1"))?,
            attn: Attention::new(s, qkv_bias, numerics, vb.pp("attn"))?,
            norm2: ln(c, eps, vb.pp("norm2"))?,
            mlp: Mlp {
                fc1: pvt_nn::channel::linear(c, hidden, vb.pp("mlp.fc1"))?,
                fc2: pvt_nn::channel::linear(hidden, c, vb.pp("mlp.fc2"))?,
            },
        })
    }

    fn forward(&self, x: &Tensor, hw: (usize, usize)) -> candle::Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?, hw)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// One stage: patch embedding (conv + LayerNorm), position table, blocks.
#[derive(Debug, Clone)]
struct Stage {
    proj: PatchConv,
    norm: LayerNorm,
    /// Spatial position table `[g·g, C]` (the cls row of stage 4 is kept separately).
    pos: Tensor,
    grid: usize,
    blocks: Vec<Block>,
    embed_dim: usize,
}

/// Everything the dense and classifier forms share.
#[derive(Debug, Clone)]
struct Trunk {
    stages: Vec<Stage>,
    numerics: Numerics,
    /// Rows of the stage-1 table: the official code's "no resize" test compares every stage's
    /// token count with this number.
    stage1_rows: usize,
}

impl Trunk {
    /// Builds the four stages. `pos4_rows` is 49 (dense) or 50 (with the cls row).
    fn new(
        cfg: &PvtConfig,
        numerics: Numerics,
        with_cls_row: bool,
        vb: &VarBuilder,
    ) -> Result<(Self, Option<Tensor>)> {
        cfg.validate()?;
        let mut stages = vec![];
        let mut cin = cfg.in_channels;
        let mut cls_pos = None;
        for (i, s) in cfg.stages.iter().enumerate() {
            let idx = i + 1;
            let g = cfg.pos_grid(i);
            let c = s.embed_dim;
            let pe = vb.pp(format!("patch_embed{idx}"));
            let proj = PatchConv::new(cin, c, s.patch_size, pe.pp("proj"))?;
            let norm = ln(c, numerics.norm_eps.patch_embed(), pe.pp("norm"))?;
            let extra = usize::from(i == 3 && with_cls_row);
            let table = vb
                .get((1, g * g + extra, c), &format!("pos_embed{idx}"))?
                .squeeze(0)?;
            let pos = if extra == 1 {
                cls_pos = Some(table.narrow(0, 0, 1)?);
                table.narrow(0, 1, g * g)?
            } else {
                table
            };
            let blocks = (0..s.depth)
                .map(|j| Block::new(s, cfg.qkv_bias, numerics, vb.pp(format!("block{idx}.{j}"))))
                .collect::<candle::Result<Vec<_>>>()?;
            stages.push(Stage {
                proj,
                norm,
                pos,
                grid: g,
                blocks,
                embed_dim: c,
            });
            cin = c;
        }
        let g1 = cfg.pos_grid(0);
        Ok((
            Self {
                stages,
                numerics,
                stage1_rows: g1 * g1,
            },
            cls_pos,
        ))
    }

    /// The position table of stage `i` fitted to an `(h, w)` grid, `[h·w, C]`.
    fn pos_embed(&self, i: usize, (h, w): (usize, usize)) -> Result<Tensor> {
        let st = &self.stages[i];
        let g = st.grid;
        match self.numerics.pos_embed_resize {
            PosEmbedResize::OfficialShortcut if h * w == self.stage1_rows => {
                ensure!(
                    st.pos.dim(0)? == h * w,
                    "stage {}: a {h}x{w} token grid has {} cells, which the official code's position-embedding shortcut \
                     mistakes for the stage-1 table (the Python code fails here too); use the always_interpolate \
                     position-embedding rule or another input size",
                    i + 1,
                    h * w
                );
                Ok(st.pos.clone())
            }
            _ => resize_token_table(&st.pos, (g, g), (h, w)),
        }
    }

    /// Patch-embeds and adds positions for stage `i`: channels-last map in, tokens out.
    fn embed(&self, i: usize, x_nhwc: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let st = &self.stages[i];
        let (t, hw) = st.proj.forward_nhwc(x_nhwc)?;
        let t = st.norm.forward(&t)?;
        let pos = self.pos_embed(i, hw)?;
        Ok((add_positions(&t, &pos)?, hw))
    }

    fn run_blocks(&self, i: usize, mut t: Tensor, hw: (usize, usize)) -> Result<Tensor> {
        for blk in &self.stages[i].blocks {
            t = blk.forward(&t, hw)?;
        }
        Ok(t)
    }
}

fn check_images(images: &Tensor, in_channels: usize) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = images
        .dims4()
        .map_err(|_| anyhow::anyhow!("expected images [B, C, H, W], got {:?}", images.dims()))?;
    ensure!(
        c == in_channels,
        "expected {in_channels} input channels, got {c}"
    );
    Ok((b, h, w))
}

/// The dense PVT v1 backbone (detection / segmentation form): four NCHW feature maps at strides
/// 4, 8, 16, 32 with 64/128/320/512 channels for the published sizes; no cls token, no final
/// norm, no norm on the outputs.
#[derive(Debug, Clone)]
pub struct PvtDense {
    trunk: Trunk,
    spec: PyramidSpec,
    in_channels: usize,
}

impl PvtDense {
    /// Builds the model from official-named tensors in `vb` (`pos_embed4` has the 49 spatial
    /// rows). `numerics` decides LayerNorm epsilons and the position-table rule.
    pub fn new(cfg: &PvtConfig, numerics: Numerics, vb: VarBuilder) -> Result<Self> {
        let (trunk, _) = Trunk::new(cfg, numerics, false, &vb)?;
        let strides = cfg.strides();
        let spec = PyramidSpec::new(
            cfg.stages
                .iter()
                .zip(strides)
                .map(|(s, stride)| LevelSpec {
                    channels: s.embed_dim,
                    stride,
                })
                .collect(),
        )?;
        Ok(Self {
            trunk,
            spec,
            in_channels: cfg.in_channels,
        })
    }

    /// The numerics the model was built with.
    pub fn numerics(&self) -> Numerics {
        self.trunk.numerics
    }

    /// `images`: normalised `[B, 3, H, W]`, sides multiples of 32 for exact level sizes
    /// (other sides are floored stage by stage, as PyTorch's convolutions do).
    pub fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let (b, _, _) = check_images(images, self.in_channels)?;
        let mut x = images.permute((0, 2, 3, 1))?.contiguous()?; // NCHW -> NHWC
        let mut feats = Vec::with_capacity(4);
        for i in 0..self.trunk.stages.len() {
            let (t, (h, w)) = self.trunk.embed(i, &x)?;
            let t = self.trunk.run_blocks(i, t, (h, w))?;
            let c = self.trunk.stages[i].embed_dim;
            x = t.reshape((b, h, w, c))?;
            feats.push(x.permute((0, 3, 1, 2))?.contiguous()?); // NHWC -> NCHW
        }
        Ok(feats)
    }
}

impl Backbone for PvtDense {
    fn output_spec(&self) -> &PyramidSpec {
        &self.spec
    }

    fn forward_pyramid(&self, images: &Tensor) -> Result<FeaturePyramid> {
        FeaturePyramid::new(self.spec.clone(), self.forward(images)?)
    }
}

/// The ImageNet classifier form: cls token prepended at stage 4, final LayerNorm, linear head
/// on the cls token.
#[derive(Debug, Clone)]
pub struct PvtClassifier {
    trunk: Trunk,
    cls_token: Tensor,
    cls_pos: Tensor,
    norm: LayerNorm,
    head: Linear,
    in_channels: usize,
}

impl PvtClassifier {
    /// Builds the model from official-named tensors in `vb` (`pos_embed4` with 50 rows).
    pub fn new(cfg: &PvtConfig, numerics: Numerics, vb: VarBuilder) -> Result<Self> {
        if cfg.stages[3].sr_ratio != 1 {
            bail!("the classifier form needs no spatial reduction at stage 4 (sr_ratio 1) because of the cls token");
        }
        let (trunk, cls_pos) = Trunk::new(cfg, numerics, true, &vb)?;
        let c = cfg.stages[3].embed_dim;
        Ok(Self {
            trunk,
            cls_token: vb.get((1, 1, c), "cls_token")?,
            cls_pos: cls_pos.expect("built with the cls row"),
            norm: ln(c, numerics.norm_eps.block(), vb.pp("norm"))?,
            head: pvt_nn::channel::linear(c, cfg.num_classes, vb.pp("head"))?,
            in_channels: cfg.in_channels,
        })
    }

    /// Logits `[B, num_classes]` for normalised `[B, 3, 224, 224]` images.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let (b, _, _) = check_images(images, self.in_channels)?;
        let mut x = images.permute((0, 2, 3, 1))?.contiguous()?;
        let last = self.trunk.stages.len() - 1;
        for i in 0..last {
            let (t, (h, w)) = self.trunk.embed(i, &x)?;
            let t = self.trunk.run_blocks(i, t, (h, w))?;
            x = t.reshape((b, h, w, self.trunk.stages[i].embed_dim))?;
        }
        // stage 4 with the cls token in front: positions = [cls row; resized spatial table]
        let st = &self.trunk.stages[last];
        let (t, hw) = st.proj.forward_nhwc(&x)?;
        let t = st.norm.forward(&t)?;
        let c = st.embed_dim;
        let cls = self.cls_token.broadcast_as((b, 1, c))?;
        let t = Tensor::cat(&[&cls, &t], 1)?;
        let pos = Tensor::cat(&[&self.cls_pos, &self.trunk.pos_embed(last, hw)?], 0)?;
        let t = add_positions(&t, &pos)?;
        let t = self.trunk.run_blocks(last, t, hw)?;
        let cls_out = self.norm.forward(&t)?.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.head.forward(&cls_out)?)
    }

    /// Softmax probabilities `[B, num_classes]`.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.forward(images)?, D::Minus1)?)
    }
}
/// Tokens `[B, N, C]` plus a position table of `N·C` values, with the table's gradient summed
/// over the batch by `pvt_nn::channel::add_bias` (the same values as `broadcast_add`).
fn add_positions(t: &Tensor, pos: &Tensor) -> candle::Result<Tensor> {
    let (b, n, c) = t.dims3()?;
    let flat = pvt_nn::channel::add_bias(&t.reshape((b, n * c))?, &pos.flatten_all()?, 1)?;
    flat.reshape((b, n, c))
}
