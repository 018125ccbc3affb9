//! Mask R-CNN (He et al., ICCV 2017) as mmdetection 2.13 builds it for the PVT configs
//! (`_base_/models/mask_rcnn_r50_fpn.py`).
//!
//! - [`rpn`]: the region proposal network head ([`RpnHead`]: `rpn_conv` 3×3 + ReLU, then
//!   `rpn_cls` 1×1 → A sigmoid logits and `rpn_reg` 1×1 → A·4 deltas, shared over levels) and
//!   its test-time proposals ([`proposals`], mmdet 2.13 `RPNHead._get_bboxes`);
//! - [`bbox_head`]: `Shared2FCBBoxHead` ([`BBoxHead`]) and its post-processing
//!   ([`box_detections`], `BBoxHead.get_bboxes`);
//! - [`mask_head`]: `FCNMaskHead` ([`MaskHead`]);
//! - [`roi_head`]: the test-time RoI flow ([`RoiHead::simple_test`]: RoIAlign over P2–P5, box
//!   head, mask head, mask paste, RLE).
//!
//! Weight names are mmdetection's (`rpn_conv`, `rpn_cls`, `rpn_reg` under `rpn_head.`;
//! `bbox_head.shared_fcs.0`, `mask_head.convs.0.conv`, ... under `roi_head.`).
#![deny(missing_docs)]

pub mod bbox_head;
pub mod mask_head;
pub mod roi_head;
pub mod rpn;

pub use bbox_head::{box_detections, softmax_rows, BBoxHead, BBoxHeadConfig, BBoxOutputs};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use roi_head::{HostLevels, RoiHead, RoiTestConfig};
pub use rpn::{
    proposals, select_proposals, LevelCandidates, Proposals, RpnHead, RpnHeadConfig, RpnOutputs,
    RpnProposalConfig,
};
