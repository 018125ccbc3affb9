//! The RetinaNet head network.

use anyhow::{ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_nn::conv::Conv2d;
use pvt_nn::{FeaturePyramid, PyramidSpec};

/// RetinaHead hyper-parameters (mmdetection's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetinaHeadConfig {
    /// Foreground classes `K` (80 for COCO); no background channel (sigmoid scores).
    pub num_classes: usize,
    /// Channels of every input level (the FPN's `out_channels`).
    pub in_channels: usize,
    /// Channels of the stacked convs.
    pub feat_channels: usize,
    /// Number of 3×3 conv + ReLU units per branch.
    pub stacked_convs: usize,
    /// Anchors per location `A` (3 scales × 3 ratios = 9).
    pub num_anchors: usize,
}

impl RetinaHeadConfig {
    /// The COCO RetinaNet head of the PVT configs: 80 classes, 256 channels, 4 convs, 9 anchors.
    pub fn coco() -> Self {
        Self {
            num_classes: 80,
            in_channels: 256,
            feat_channels: 256,
            stacked_convs: 4,
            num_anchors: 9,
        }
    }
}

/// Raw per-level outputs of a dense head, fine to coarse.
#[derive(Debug, Clone)]
pub struct DenseOutputs {
    /// Per level `[B, A·K, H, W]` classification logits (`channel = a·K + k`).
    pub cls_logits: Vec<Tensor>,
    /// Per level `[B, A·4, H, W]` box deltas (`channel = a·4 + j`, j over dx, dy, dw, dh).
    pub box_deltas: Vec<Tensor>,
    /// Strides of the levels.
    pub strides: Vec<usize>,
}

/// The head with loaded weights.
#[derive(Debug, Clone)]
pub struct RetinaHead {
    cfg: RetinaHeadConfig,
    cls_convs: Vec<Conv2d>,
    reg_convs: Vec<Conv2d>,
    retina_cls: Conv2d,
    retina_reg: Conv2d,
}

fn conv3(cin: usize, cout: usize, vb: VarBuilder) -> candle::Result<Conv2d> {
    Conv2d::new(cin, cout, 3, 1, 1, true, vb)
}

impl RetinaHead {
    /// Reads mmdetection-named weights from `vb` (typically `vb.pp("bbox_head")`).
    pub fn new(cfg: RetinaHeadConfig, vb: VarBuilder) -> Result<Self> {
        let mut cls_convs = vec![];
        let mut reg_convs = vec![];
        for i in 0..cfg.stacked_convs {
            let cin = if i == 0 {
                cfg.in_channels
            } else {
                cfg.feat_channels
            };
            cls_convs.push(conv3(
                cin,
                cfg.feat_channels,
                vb.pp(format!("cls_convs.{i}.conv")),
            )?);
            reg_convs.push(conv3(
                cin,
                cfg.feat_channels,
                vb.pp(format!("reg_convs.{i}.conv")),
            )?);
        }
        let c = if cfg.stacked_convs > 0 {
            cfg.feat_channels
        } else {
            cfg.in_channels
        };
        let retina_cls = conv3(c, cfg.num_anchors * cfg.num_classes, vb.pp("retina_cls"))?;
        let retina_reg = conv3(c, cfg.num_anchors * 4, vb.pp("retina_reg"))?;
        Ok(Self {
            cfg,
            cls_convs,
            reg_convs,
            retina_cls,
            retina_reg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RetinaHeadConfig {
        &self.cfg
    }

    /// Checks that a neck's output can feed this head.
    pub fn check_input(&self, spec: &PyramidSpec) -> Result<()> {
        for l in spec.levels() {
            ensure!(
                l.channels == self.cfg.in_channels,
                "head expects {} channels, level at stride {} has {}",
                self.cfg.in_channels,
                l.stride,
                l.channels
            );
        }
        Ok(())
    }

    /// Runs both branches on every level.
    pub fn forward(&self, feats: &FeaturePyramid) -> Result<DenseOutputs> {
        self.check_input(feats.spec())?;
        let mut cls_logits = vec![];
        let mut box_deltas = vec![];
        for x in feats.levels() {
            let mut c = x.clone();
            for conv in &self.cls_convs {
                c = conv.forward(&c)?.relu()?;
            }
            let mut r = x.clone();
            for conv in &self.reg_convs {
                r = conv.forward(&r)?.relu()?;
            }
            cls_logits.push(self.retina_cls.forward(&c)?);
            box_deltas.push(self.retina_reg.forward(&r)?);
        }
        Ok(DenseOutputs {
            cls_logits,
            box_deltas,
            strides: feats.spec().levels().iter().map(|l| l.stride).collect(),
        })
    }
}
