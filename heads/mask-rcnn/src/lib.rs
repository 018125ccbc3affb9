//! Mask R-CNN (He et al., ICCV 2017) as mmdetection 2.13 builds it for the PVT configs
//! (`_base_/models/mask_rcnn_r50_fpn.py`, spec §4.3).
//!
//! - [`rpn`]: the region proposal network head ([`RpnHead`]: `rpn_conv` 3×3 + ReLU, then
//!   `rpn_cls` 1×1 → A sigmoid logits and `rpn_reg` 1×1 → A·4 deltas, shared over levels) and
//!   its test-time proposals ([`proposals`], mmdet 2.13 `RPNHead._get_bboxes`).
//!
//! Weight names are mmdetection's (`rpn_conv`, `rpn_cls`, `rpn_reg`, under `rpn_head.` in
//! checkpoints).
#![deny(missing_docs)]

pub mod rpn;

pub use rpn::{
    proposals, select_proposals, LevelCandidates, Proposals, RpnHead, RpnHeadConfig, RpnOutputs,
    RpnProposalConfig,
};
