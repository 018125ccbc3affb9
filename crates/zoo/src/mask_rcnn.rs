//! Mask R-CNN with a PVT backbone: the official PVT detection configs
//! `mask_rcnn_pvt_{t,s,m,l}_fpn_1x_coco` (PVT v1) and `mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco`
//! (PVT v2 branch), on mmdetection 2.13's `mask_rcnn_r50_fpn.py`:
//! PVT → FPN (P2–P5, P6 by subsampling P5) → RPN → RoIAlign → box head → mask head.

use anyhow::{Context, Result};
use candle::{Device, Tensor};
use image::RgbImage;
use pvt_backbone::{AnyDense, AnyLoadInfo, PvtV1, PvtV2};
use pvt_det_ops::{AnchorConfig, AnchorGenerator, ImageMeta};
use pvt_fpn::{Fpn, FpnConfig};
use pvt_mask_rcnn::{
    proposals, BBoxHeadConfig, MaskHeadConfig, Proposals, RoiHead, RoiTestConfig, RpnHead,
    RpnHeadConfig, RpnOutputs, RpnProposalConfig,
};
use pvt_nn::cv_resize::MMDET_COCO_SCALE;
use pvt_nn::{Backbone, Checkpoint, FeaturePyramid};
use pvt_types::Detections;
use serde::{Deserialize, Serialize};

use crate::det_input::preprocess_det_scale;
use crate::detector::{checked_class_names, default_class_names};
use crate::{BackboneConfig, ImageDetector};

fn default_fc() -> usize {
    1024
}
fn default_mask_channels() -> usize {
    256
}
fn default_mask_convs() -> usize {
    4
}

/// A Mask R-CNN-PVT architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnConfig {
    /// The backbone.
    pub backbone: BackboneConfig,
    /// FPN output channels, also the RPN's and the RoI features' (256).
    pub fpn_channels: usize,
    /// Foreground classes (80 for COCO).
    pub num_classes: usize,
    /// Width of the box head's two shared fc layers (1024).
    #[serde(default = "default_fc")]
    pub fc_channels: usize,
    /// Channels of the mask head's convs (256).
    #[serde(default = "default_mask_channels")]
    pub mask_channels: usize,
    /// Number of 3×3 convs in the mask head (4).
    #[serde(default = "default_mask_convs")]
    pub mask_convs: usize,
}

impl MaskRcnnConfig {
    fn with_backbone(backbone: BackboneConfig) -> Self {
        Self {
            backbone,
            fpn_channels: 256,
            num_classes: 80,
            fc_channels: default_fc(),
            mask_channels: default_mask_channels(),
            mask_convs: default_mask_convs(),
        }
    }

    /// `mask_rcnn_pvt_{t,s,m,l}_fpn_1x_coco` (PVT v1 detection configs).
    pub fn coco(variant: PvtV1) -> Self {
        Self::with_backbone(BackboneConfig::V1(variant.config()))
    }

    /// `mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco` and `..._b2_li_...` (PVT v2 detection configs).
    pub fn coco_v2(variant: PvtV2) -> Self {
        Self::with_backbone(BackboneConfig::V2(variant.config()))
    }

    /// Parses `mask_rcnn_pvt_tiny_fpn_1x_coco` (also `mask_rcnn_pvt_t_fpn_1x_coco`,
    /// `mask_rcnn_pvt-t_fpn_1x_coco`) and `mask_rcnn_pvt_v2_b2_fpn_1x_coco` (also
    /// `mask_rcnn_pvtv2_b2_fpn_1x_coco`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(Self::with_backbone(BackboneConfig::from_model_name(
            name,
            "mask_rcnn",
        )?))
    }

    fn fpn(&self) -> FpnConfig {
        FpnConfig {
            out_channels: self.fpn_channels,
            ..FpnConfig::mask_rcnn()
        }
    }

    fn rpn(&self) -> RpnHeadConfig {
        RpnHeadConfig {
            in_channels: self.fpn_channels,
            feat_channels: self.fpn_channels,
            num_anchors: 3,
        }
    }

    fn bbox(&self) -> BBoxHeadConfig {
        BBoxHeadConfig {
            in_channels: self.fpn_channels,
            roi_feat_size: 7,
            fc_out_channels: self.fc_channels,
            num_classes: self.num_classes,
        }
    }

    fn mask(&self) -> MaskHeadConfig {
        MaskHeadConfig {
            in_channels: self.fpn_channels,
            num_convs: self.mask_convs,
            conv_out_channels: self.mask_channels,
            num_classes: self.num_classes,
            roi_feat_size: 14,
        }
    }
}

/// Mask R-CNN: PVT backbone → FPN → RPN head → RoI heads.
#[derive(Debug, Clone)]
pub struct MaskRcnnPvt {
    /// The backbone.
    pub backbone: AnyDense,
    /// The neck (P2–P6).
    pub neck: Fpn,
    /// The RPN head.
    pub rpn_head: RpnHead,
    /// The box and mask heads.
    pub roi_head: RoiHead,
    /// The architecture.
    pub config: MaskRcnnConfig,
}

impl MaskRcnnPvt {
    /// Builds the network from official-named tensors in `vb` (`backbone.`, `neck.`,
    /// `rpn_head.`, `roi_head.`), e.g. a `VarMap` for training or random weights for benchmarks.
    pub fn new(config: &MaskRcnnConfig, vb: candle_nn::VarBuilder) -> Result<Self> {
        let backbone = config.backbone.build(vb.pp("backbone"))?;
        Self::assemble(config, backbone, vb)
    }

    fn assemble(
        config: &MaskRcnnConfig,
        backbone: AnyDense,
        vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let neck = Fpn::new(config.fpn(), backbone.output_spec(), vb.pp("neck"))?;
        let rpn_head = RpnHead::new(config.rpn(), vb.pp("rpn_head"))?;
        rpn_head.check_input(neck.output_spec())?;
        let roi_head = RoiHead::new(config.bbox(), config.mask(), vb.pp("roi_head"))?;
        Ok(Self {
            backbone,
            neck,
            rpn_head,
            roi_head,
            config: config.clone(),
        })
    }

    /// Loads a detector checkpoint: the official PVT detection files (official backbone names)
    /// and mmdetection's (mmdetection backbone names); `neck.*`, `rpn_head.*` and `roi_head.*`
    /// are mmdetection's in both. Every tensor must be used; anything else is an error listing
    /// the keys.
    pub fn load(
        ckpt: &Checkpoint,
        config: &MaskRcnnConfig,
        device: &Device,
    ) -> Result<(Self, AnyLoadInfo)> {
        let (backbone, info, loader) = config.backbone.load_split(ckpt, "Mask R-CNN", device)?;
        let model = Self::assemble(config, backbone, loader.var_builder(device))?;
        loader.finish().context("neck / RPN / RoI head tensors")?;
        Ok((model, info))
    }

    /// The FPN levels (P2–P6) and the RPN's raw outputs for a normalised, padded batch.
    pub fn forward_rpn(&self, images: &Tensor) -> Result<(FeaturePyramid, RpnOutputs)> {
        let feats = self.backbone.forward_pyramid(images)?;
        let p = self.neck.forward(&feats)?;
        let out = self.rpn_head.forward(&p)?;
        Ok((p, out))
    }
}

/// A ready-to-use Mask R-CNN detector: the network, its anchors, the mmdetection test pipeline
/// and post-processing (boxes and masks).
#[derive(Debug, Clone)]
pub struct MaskRcnnDetector {
    /// The network.
    pub model: MaskRcnnPvt,
    /// RPN proposal settings (CUDA NMS rule by default).
    pub rpn_test: RpnProposalConfig,
    /// RoI head test settings (CUDA NMS rule by default).
    pub rcnn_test: RoiTestConfig,
    /// Test scale `(long, short)` of the resize (1333, 800).
    pub scale: (usize, usize),
    anchors: AnchorGenerator,
    class_names: Vec<String>,
    device: Device,
    info: Option<AnyLoadInfo>,
}

impl MaskRcnnDetector {
    /// Wraps a loaded model with the COCO test settings. Class names are COCO's when the heads
    /// have 80 classes, `class i` otherwise.
    pub fn new(model: MaskRcnnPvt, device: &Device) -> Result<Self> {
        let class_names = default_class_names(model.config.num_classes);
        Ok(Self {
            model,
            rpn_test: RpnProposalConfig::default(),
            rcnn_test: RoiTestConfig::default(),
            scale: MMDET_COCO_SCALE,
            anchors: AnchorGenerator::new(&AnchorConfig::rpn())?,
            class_names,
            device: device.clone(),
            info: None,
        })
    }

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

    /// Every stage for one image: the FPN levels, the proposals and the detections with masks.
    pub fn detect_stages(&self, img: &RgbImage) -> Result<(FeaturePyramid, Proposals, Detections)> {
        let input = preprocess_det_scale(img, self.scale, &self.device)?;
        let meta = ImageMeta {
            img_shape: input.img_shape,
            ori_shape: input.ori_shape,
            scale_factor: input.scale_factor,
        };
        let (p, rpn) = self.model.forward_rpn(&input.batch.pixels)?;
        let props = proposals(&rpn, 0, &self.anchors, meta.img_shape, &self.rpn_test)?;
        let dets = self
            .model
            .roi_head
            .simple_test(&p, 0, &props, &meta, &self.rcnn_test)?;
        Ok((p, props, dets))
    }
}

impl ImageDetector for MaskRcnnDetector {
    fn detect(&self, img: &RgbImage) -> Result<Detections> {
        Ok(self.detect_stages(img)?.2)
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn load_info(&self) -> Option<&AnyLoadInfo> {
        self.info.as_ref()
    }

    fn has_masks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let c = MaskRcnnConfig::from_name("mask_rcnn_pvt_small_fpn_1x_coco").unwrap();
        assert_eq!(c.backbone, BackboneConfig::V1(PvtV1::Small.config()));
        assert_eq!(
            (c.fc_channels, c.mask_channels, c.mask_convs),
            (1024, 256, 4)
        );
        assert!(MaskRcnnConfig::from_name("mask_rcnn_pvt-t_fpn_1x_coco").is_some());
        let c = MaskRcnnConfig::from_name("mask_rcnn_pvt_v2_b2_fpn_1x_coco").unwrap();
        assert_eq!(c.backbone, BackboneConfig::V2(PvtV2::B2.config()));
        assert!(MaskRcnnConfig::from_name("mask_rcnn_pvtv2_b2_li_fpn_1x_coco").is_some());
        assert!(MaskRcnnConfig::from_name("retinanet_pvt_tiny_fpn_1x_coco").is_none());
        assert!(MaskRcnnConfig::from_name("mask_rcnn_pvt_huge_fpn_1x_coco").is_none());
        // JSON round trip, and the head widths default to the published ones
        let c = MaskRcnnConfig::coco_v2(PvtV2::B0);
        let back: MaskRcnnConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
