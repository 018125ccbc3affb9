//! The Feature Pyramid Network neck (Lin et al., CVPR 2017) exactly as mmdetection 2.x
//! (`mmdet/models/necks/fpn.py`) and mmsegmentation (`mmseg/models/necks/fpn.py`, the same
//! algorithm) build it for the PVT configs:
//!
//! - lateral 1×1 convs (bias, no norm, no activation) on backbone levels `start_level..`;
//! - top-down: from the coarsest level down, `lateral[i-1] += nearest_upsample(lateral[i],
//!   size of lateral[i-1])`;
//! - 3×3 output convs (padding 1, bias, no activation);
//! - extra levels when more outputs than used backbone levels are asked for, as [`ExtraLevels`]
//!   says (never inferred from channel counts).
//!
//! Input and output are [`FeaturePyramid`]s with declared [`PyramidSpec`]s. Weight names are
//! mmdetection's (`lateral_convs.{i}.conv`, `fpn_convs.{i}.conv`; extra convs continue the
//! `fpn_convs` numbering). This crate knows nothing of backbones, anchors or heads.
#![deny(missing_docs)]

use anyhow::{bail, ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_nn::conv::Conv2d;
use pvt_nn::{FeaturePyramid, LevelSpec, PyramidSpec};

/// How levels beyond the coarsest backbone level are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraLevels {
    /// No extra levels: `num_outs` must equal the number of used backbone levels.
    None,
    /// `add_extra_convs=False`: each extra level is `max_pool2d(kernel 1, stride 2)` of the
    /// previous output, i.e. every other pixel (Mask R-CNN's P6).
    MaxPool,
    /// `add_extra_convs='on_input'`: the first extra level is a 3×3 stride-2 conv on the raw
    /// coarsest backbone level, later ones 3×3 stride-2 convs on the previous output, with no
    /// ReLU in between (`relu_before_extra_convs=False`) — RetinaNet's P6 and P7.
    ConvOnInput,
}

/// FPN hyper-parameters (mmdetection's argument names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpnConfig {
    /// Output channels of every level (256 in every published config).
    pub out_channels: usize,
    /// First backbone level used (0-based).
    pub start_level: usize,
    /// Number of output levels.
    pub num_outs: usize,
    /// How the levels beyond the backbone's are made.
    pub extra: ExtraLevels,
}

impl FpnConfig {
    /// PVT RetinaNet (`retinanet_pvt_*`): C3–C5 → P3–P7, P6 from the raw C5.
    pub fn retinanet() -> Self {
        Self {
            out_channels: 256,
            start_level: 1,
            num_outs: 5,
            extra: ExtraLevels::ConvOnInput,
        }
    }

    /// PVT Mask R-CNN (`mask_rcnn_pvt_*`): C2–C5 → P2–P6, P6 by subsampling P5.
    pub fn mask_rcnn() -> Self {
        Self {
            out_channels: 256,
            start_level: 0,
            num_outs: 5,
            extra: ExtraLevels::MaxPool,
        }
    }

    /// PVT Semantic FPN (`fpn_pvt_*_ade20k`): C2–C5 → P2–P5.
    pub fn semantic_fpn() -> Self {
        Self {
            out_channels: 256,
            start_level: 0,
            num_outs: 4,
            extra: ExtraLevels::None,
        }
    }

    /// The output layout for a given input layout.
    pub fn output_spec(&self, input: &PyramidSpec) -> Result<PyramidSpec> {
        let used = input.len().checked_sub(self.start_level).filter(|&n| n > 0);
        let Some(used) = used else {
            bail!(
                "start_level {} leaves no backbone level of {}",
                self.start_level,
                input.len()
            );
        };
        ensure!(
            self.num_outs >= used,
            "num_outs {} is below the {used} backbone levels used",
            self.num_outs
        );
        if self.num_outs > used && self.extra == ExtraLevels::None {
            bail!("num_outs {} needs extra levels beyond the {used} backbone levels, but extra is None", self.num_outs);
        }
        let mut levels: Vec<LevelSpec> = input.levels()[self.start_level..]
            .iter()
            .map(|l| LevelSpec {
                channels: self.out_channels,
                stride: l.stride,
            })
            .collect();
        while levels.len() < self.num_outs {
            let s = levels.last().expect("at least one level").stride * 2;
            levels.push(LevelSpec {
                channels: self.out_channels,
                stride: s,
            });
        }
        PyramidSpec::new(levels)
    }
}

/// The FPN neck with loaded weights.
#[derive(Debug, Clone)]
pub struct Fpn {
    cfg: FpnConfig,
    lateral: Vec<Conv2d>,
    output: Vec<Conv2d>,
    /// Extra stride-2 convs (only for [`ExtraLevels::ConvOnInput`]).
    extra: Vec<Conv2d>,
    in_spec: PyramidSpec,
    out_spec: PyramidSpec,
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    vb: VarBuilder,
) -> candle::Result<Conv2d> {
    Conv2d::new(cin, cout, k, stride, k / 2, true, vb.pp("conv"))
}

impl Fpn {
    /// Builds the neck for backbones emitting `in_spec`, reading mmdetection-named weights from
    /// `vb` (typically `vb.pp("neck")`).
    pub fn new(cfg: FpnConfig, in_spec: &PyramidSpec, vb: VarBuilder) -> Result<Self> {
        let out_spec = cfg.output_spec(in_spec)?;
        let used = &in_spec.levels()[cfg.start_level..];
        let c = cfg.out_channels;
        let mut lateral = vec![];
        let mut output = vec![];
        for (i, l) in used.iter().enumerate() {
            lateral.push(conv(
                l.channels,
                c,
                1,
                1,
                vb.pp(format!("lateral_convs.{i}")),
            )?);
            output.push(conv(c, c, 3, 1, vb.pp(format!("fpn_convs.{i}")))?);
        }
        let mut extra = vec![];
        if cfg.extra == ExtraLevels::ConvOnInput {
            let last_in = used.last().expect("at least one level").channels;
            for j in 0..cfg.num_outs - used.len() {
                let cin = if j == 0 { last_in } else { c };
                extra.push(conv(
                    cin,
                    c,
                    3,
                    2,
                    vb.pp(format!("fpn_convs.{}", used.len() + j)),
                )?);
            }
        }
        Ok(Self {
            cfg,
            lateral,
            output,
            extra,
            in_spec: in_spec.clone(),
            out_spec,
        })
    }

    /// The layout [`Fpn::forward`] returns.
    pub fn output_spec(&self) -> &PyramidSpec {
        &self.out_spec
    }

    /// Runs the neck.
    pub fn forward(&self, feats: &FeaturePyramid) -> Result<FeaturePyramid> {
        ensure!(
            feats.spec() == &self.in_spec,
            "FPN built for {:?}, got {:?}",
            self.in_spec,
            feats.spec()
        );
        let inputs = &feats.levels()[self.cfg.start_level..];
        let mut laterals = self
            .lateral
            .iter()
            .zip(inputs)
            .map(|(conv, x)| conv.forward(x))
            .collect::<candle::Result<Vec<_>>>()?;
        // top-down pathway
        for i in (1..laterals.len()).rev() {
            let (_, _, h, w) = laterals[i - 1].dims4()?;
            // PyTorch `F.interpolate(mode="nearest", size=...)`: src = floor(dst · in / out)
            let up = pvt_nn::ops::upsample_nearest2d(&laterals[i], h, w)?;
            laterals[i - 1] = (&laterals[i - 1] + up)?;
        }
        let mut outs = self
            .output
            .iter()
            .zip(&laterals)
            .map(|(conv, x)| conv.forward(x))
            .collect::<candle::Result<Vec<_>>>()?;
        match self.cfg.extra {
            ExtraLevels::None => {}
            ExtraLevels::MaxPool => {
                while outs.len() < self.cfg.num_outs {
                    let last = outs.last().expect("at least one level");
                    // max_pool2d(kernel 1, stride 2) = every other pixel, starting at 0
                    let (_, _, h, w) = last.dims4()?;
                    let sub = subsample2(last, h, w)?;
                    outs.push(sub);
                }
            }
            ExtraLevels::ConvOnInput => {
                let mut x = self.extra[0].forward(inputs.last().expect("at least one level"))?;
                outs.push(x.clone());
                for conv in &self.extra[1..] {
                    x = conv.forward(&x)?;
                    outs.push(x.clone());
                }
            }
        }
        FeaturePyramid::new(self.out_spec.clone(), outs)
    }
}

/// `x[:, :, ::2, ::2]`.
fn subsample2(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    // pad to even sizes, then view as [B, C, oh, 2, ow, 2] and take index 0 of both pairs
    let xp = x
        .pad_with_zeros(2, 0, oh * 2 - h)?
        .pad_with_zeros(3, 0, ow * 2 - w)?;
    Ok(xp
        .reshape((b, c, oh, 2, ow, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((b, c, oh, ow))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use std::collections::HashMap;

    fn pvt_spec() -> PyramidSpec {
        PyramidSpec::new(
            [(64, 4), (128, 8), (320, 16), (512, 32)]
                .iter()
                .map(|&(channels, stride)| LevelSpec { channels, stride })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn output_specs_of_the_published_configs() {
        let s = FpnConfig::retinanet().output_spec(&pvt_spec()).unwrap();
        assert_eq!(
            s.levels().iter().map(|l| l.stride).collect::<Vec<_>>(),
            vec![8, 16, 32, 64, 128]
        );
        let s = FpnConfig::mask_rcnn().output_spec(&pvt_spec()).unwrap();
        assert_eq!(
            s.levels().iter().map(|l| l.stride).collect::<Vec<_>>(),
            vec![4, 8, 16, 32, 64]
        );
        let s = FpnConfig::semantic_fpn().output_spec(&pvt_spec()).unwrap();
        assert_eq!(s.len(), 4);
        let bad = FpnConfig {
            extra: ExtraLevels::None,
            ..FpnConfig::retinanet()
        };
        assert!(bad.output_spec(&pvt_spec()).is_err());
    }

    #[test]
    fn retinanet_key_names_and_shapes() {
        // zeros backend records every request
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        Fpn::new(FpnConfig::retinanet(), &pvt_spec(), vb).unwrap();
        let data = vm.data().lock().unwrap();
        let shapes: HashMap<String, Vec<usize>> = data
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        assert_eq!(shapes.len(), 16);
        assert_eq!(shapes["lateral_convs.0.conv.weight"], vec![256, 128, 1, 1]);
        assert_eq!(shapes["lateral_convs.2.conv.weight"], vec![256, 512, 1, 1]);
        assert_eq!(shapes["fpn_convs.3.conv.weight"], vec![256, 512, 3, 3]);
        assert_eq!(shapes["fpn_convs.4.conv.weight"], vec![256, 256, 3, 3]);
    }

    #[test]
    fn maxpool_extra_level_takes_every_other_pixel() {
        let x = Tensor::arange(0f32, 15., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 5))
            .unwrap();
        let s = subsample2(&x, 3, 5).unwrap();
        assert_eq!(
            s.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 2., 4., 10., 12., 14.]
        );
    }
}
