//! RetinaNet with a PVT v1 or v2 backbone (PVT detection configs
//! `retinanet_pvt_{t,s,m,l}_fpn_1x_coco`, mmdetection's `retinanet_pvtv2-b{0..5}_fpn_1x_coco`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use candle::{Device, Tensor};
use image::RgbImage;
use pvt_backbone::{
    AnyDense, AnyLoadInfo, Arch, PvtConfig, PvtDense, PvtV1, PvtV2, PvtV2Config, PvtV2Dense,
};
use pvt_det_ops::{AnchorConfig, AnchorGenerator};
use pvt_fpn::{Fpn, FpnConfig};
use pvt_nn::cv_resize::MMDET_COCO_SCALE;
use pvt_nn::{Backbone, Checkpoint, FeaturePyramid, StrictLoader};
use pvt_retinanet::{
    postprocess, DenseOutputs, ImageMeta, RetinaHead, RetinaHeadConfig, RetinaPostprocess,
};
use pvt_types::Detections;

use crate::det_input::preprocess_det_scale;
use crate::detector::{checked_class_names, default_class_names};
use crate::ImageDetector;
use serde::{Deserialize, Serialize};

/// The backbone of a detector: either PVT generation. In JSON, a PVT v2 config is recognised by
/// its `kv_reduction` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackboneConfig {
    /// PVT v2 (b0-b5, b2_li).
    V2(PvtV2Config),
    /// PVT v1 (Tiny/Small/Medium/Large).
    V1(PvtConfig),
}

impl BackboneConfig {
    /// As a [`pvt_backbone::Arch`] (for loading).
    pub fn arch(&self) -> Arch {
        match self {
            BackboneConfig::V1(c) => Arch::V1(c.clone()),
            BackboneConfig::V2(c) => Arch::V2(c.clone()),
        }
    }

    /// The backbone of a published detector name `{head}_pvt{size}_fpn_1x_coco`: PVT v1 as
    /// `{head}_pvt_tiny_…`, `{head}_pvt_t_…`, `{head}-pvt-t_…` (any of `_`/`-` after `pvt`), PVT v2
    /// as `{head}_pvtv2_b2_…` or `{head}_pvt_v2_b2_li_…`. Case-insensitive.
    pub fn from_model_name(name: &str, head: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let rest = n.strip_prefix(head)?.strip_prefix('_')?;
        let body = rest.strip_suffix("_fpn_1x_coco")?;
        if let Some(v2) = body
            .strip_prefix("pvtv2_")
            .or_else(|| body.strip_prefix("pvt_v2_"))
        {
            return Some(Self::V2(
                PvtV2::from_name(&format!("pvt_v2_{v2}"))?.config(),
            ));
        }
        let size = body.strip_prefix("pvt")?.trim_start_matches(['_', '-']);
        Some(Self::V1(PvtV1::from_name(size)?.config()))
    }

    /// The dense backbone from tensors in `vb` (official names; e.g. `vb.pp("backbone")`).
    pub fn build(&self, vb: candle_nn::VarBuilder) -> Result<AnyDense> {
        Ok(match self {
            BackboneConfig::V1(c) => AnyDense::V1(PvtDense::new(c, c.numerics_or_official(), vb)?),
            BackboneConfig::V2(c) => AnyDense::V2(PvtV2Dense::new(c, vb)?),
        })
    }

    /// Loads the `backbone.` part of a whole-detector checkpoint (any supported naming) and
    /// returns a strict loader over every other tensor, for the neck and heads: the caller
    /// builds them from `loader.var_builder(..)` and calls `loader.finish()`, which names any
    /// tensor left unused. `what` names the model in errors.
    pub fn load_split(
        &self,
        ckpt: &Checkpoint,
        what: &str,
        device: &Device,
    ) -> Result<(AnyDense, AnyLoadInfo, StrictLoader)> {
        let (backbone, info) = self.arch().load_dense(ckpt, device)?;
        if info.prefix().is_none() {
            bail!(
                "{}: no `backbone.` tensors: this is a bare backbone, not a {what} checkpoint (neck and heads missing)",
                ckpt.path.display()
            );
        }
        let rest: BTreeMap<String, Tensor> = info
            .outside()
            .iter()
            .map(|k| (k.clone(), ckpt.tensors[k].clone()))
            .collect();
        let loader = StrictLoader::new(rest, ckpt.path.display().to_string());
        Ok((backbone, info, loader))
    }
}

/// A RetinaNet-PVT architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetinaNetConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// FPN output channels (256).
    pub fpn_channels: usize,
    /// Foreground classes (80 for COCO).
    pub num_classes: usize,
    /// 3×3 conv units per head branch (4).
    pub stacked_convs: usize,
}

impl RetinaNetConfig {
    /// `retinanet_pvt_{tiny,small,medium,large}_fpn_1x_coco`.
    pub fn coco(variant: PvtV1) -> Self {
        Self::with_backbone(BackboneConfig::V1(variant.config()))
    }

    fn with_backbone(backbone: BackboneConfig) -> Self {
        Self {
            backbone,
            fpn_channels: 256,
            num_classes: 80,
            stacked_convs: 4,
        }
    }

    /// `retinanet_pvtv2_b{0..5}_fpn_1x_coco` (mmdetection's model zoo; the neck's input
    /// channels follow the backbone: 32/64/160/256 for b0, 64/128/320/512 for the others).
    pub fn coco_v2(variant: PvtV2) -> Self {
        Self::with_backbone(BackboneConfig::V2(variant.config()))
    }

    /// Parses `retinanet_pvt_tiny_fpn_1x_coco` (also `retinanet_pvt-t_fpn_1x_coco`) and
    /// `retinanet_pvtv2_b0_fpn_1x_coco` (also `retinanet_pvt_v2_b2_li_fpn_1x_coco`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(Self::with_backbone(BackboneConfig::from_model_name(
            name,
            "retinanet",
        )?))
    }

    fn fpn(&self) -> FpnConfig {
        FpnConfig {
            out_channels: self.fpn_channels,
            ..FpnConfig::retinanet()
        }
    }

    fn head(&self) -> RetinaHeadConfig {
        RetinaHeadConfig {
            num_classes: self.num_classes,
            in_channels: self.fpn_channels,
            feat_channels: self.fpn_channels,
            stacked_convs: self.stacked_convs,
            num_anchors: 9,
        }
    }
}

/// RetinaNet: PVT backbone → FPN (P3–P7) → RetinaHead.
#[derive(Debug, Clone)]
pub struct RetinaNetPvt {
    /// The backbone.
    pub backbone: AnyDense,
    /// The neck.
    pub neck: Fpn,
    /// The head.
    pub head: RetinaHead,
    /// The architecture.
    pub config: RetinaNetConfig,
}

impl RetinaNetPvt {
    /// Builds the network from official-named tensors in `vb` (`backbone.`, `neck.`,
    /// `bbox_head.`), e.g. a `VarMap` for training or random weights for benchmarks.
    pub fn new(config: &RetinaNetConfig, vb: candle_nn::VarBuilder) -> Result<Self> {
        let backbone = config.backbone.build(vb.pp("backbone"))?;
        let neck = Fpn::new(config.fpn(), backbone.output_spec(), vb.pp("neck"))?;
        let head = RetinaHead::new(config.head(), vb.pp("bbox_head"))?;
        Ok(Self {
            backbone,
            neck,
            head,
            config: config.clone(),
        })
    }

    /// Loads a detector checkpoint: official PVT detection files (official backbone names) and
    /// mmdetection's (mmdetection backbone names); `neck.*` and `bbox_head.*` are mmdetection's
    /// in both. Every tensor must be used; anything else is an error listing the keys.
    pub fn load(
        ckpt: &Checkpoint,
        config: &RetinaNetConfig,
        device: &Device,
    ) -> Result<(Self, AnyLoadInfo)> {
        let (backbone, info, loader) = config.backbone.load_split(ckpt, "RetinaNet", device)?;
        let vb = loader.var_builder(device);
        let neck = Fpn::new(config.fpn(), backbone.output_spec(), vb.pp("neck"))?;
        let head = RetinaHead::new(config.head(), vb.pp("bbox_head"))?;
        loader.finish().context("neck / head tensors")?;
        head.check_input(neck.output_spec())?;
        Ok((
            Self {
                backbone,
                neck,
                head,
                config: config.clone(),
            },
            info,
        ))
    }

    /// Raw outputs for a normalised, padded batch `[B, 3, H, W]`: the FPN levels and the head's
    /// per-level logits and deltas.
    pub fn forward_raw(&self, images: &Tensor) -> Result<(FeaturePyramid, DenseOutputs)> {
        let feats = self.backbone.forward_pyramid(images)?;
        let p = self.neck.forward(&feats)?;
        let out = self.head.forward(&p)?;
        Ok((p, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let c = RetinaNetConfig::from_name("retinanet_pvt_small_fpn_1x_coco").unwrap();
        assert_eq!(c.backbone, BackboneConfig::V1(PvtV1::Small.config()));
        let c = RetinaNetConfig::from_name("retinanet_pvtv2_b0_fpn_1x_coco").unwrap();
        assert_eq!(c.backbone, BackboneConfig::V2(PvtV2::B0.config()));
        assert!(RetinaNetConfig::from_name("retinanet_pvt_v2_b2_li_fpn_1x_coco").is_some());
        // JSON round trip picks the right generation
        for c in [
            RetinaNetConfig::coco(PvtV1::Tiny),
            RetinaNetConfig::coco_v2(PvtV2::B2Li),
        ] {
            let back: RetinaNetConfig =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
        assert!(RetinaNetConfig::from_name("retinanet_pvt-t_fpn_1x_coco").is_some());
        assert!(RetinaNetConfig::from_name("mask_rcnn_pvt_t_fpn_1x_coco").is_none());
    }
}

/// A ready-to-use RetinaNet detector: the network, its anchors, the mmdetection test pipeline
/// and post-processing.
#[derive(Debug, Clone)]
pub struct RetinaNetDetector {
    /// The network.
    pub model: RetinaNetPvt,
    /// Post-processing settings (mmdet ≤ 2.17 algorithm; CUDA NMS rule by default).
    pub postprocess: RetinaPostprocess,
    /// Test scale `(long, short)` of the resize (1333, 800).
    pub scale: (usize, usize),
    anchors: AnchorGenerator,
    class_names: Vec<String>,
    device: Device,
    info: Option<AnyLoadInfo>,
}

impl RetinaNetDetector {
    /// Wraps a loaded model with the COCO test settings. Class names are COCO's when the head
    /// has 80 classes, `class i` otherwise.
    pub fn new(model: RetinaNetPvt, device: &Device) -> Result<Self> {
        let class_names = default_class_names(model.config.num_classes);
        Ok(Self {
            model,
            postprocess: RetinaPostprocess::default(),
            scale: MMDET_COCO_SCALE,
            anchors: AnchorGenerator::new(&AnchorConfig::retinanet())?,
            class_names,
            device: device.clone(),
            info: None,
        })
    }
}

impl RetinaNetDetector {
    /// Names the classes (e.g. a dataset's category names); errors unless there is one name
    /// per class.
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self> {
        self.class_names = checked_class_names(names, self.model.config.num_classes)?;
        Ok(self)
    }

    /// Records what loading the checkpoint found ([`ImageDetector::load_info`]).
    pub fn with_load_info(mut self, info: AnyLoadInfo) -> Self {
        self.info = Some(info);
        self
    }
}

impl ImageDetector for RetinaNetDetector {
    fn detect(&self, img: &RgbImage) -> Result<Detections> {
        let input = preprocess_det_scale(img, self.scale, &self.device)?;
        let (_, out) = self.model.forward_raw(&input.batch.pixels)?;
        let meta = ImageMeta {
            img_shape: input.img_shape,
            ori_shape: input.ori_shape,
            scale_factor: input.scale_factor,
        };
        postprocess(
            &out,
            0,
            &self.anchors,
            &meta,
            self.model.config.num_classes,
            &self.postprocess,
        )
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn load_info(&self) -> Option<&AnyLoadInfo> {
        self.info.as_ref()
    }
}
