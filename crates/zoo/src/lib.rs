//! Named models end to end: which backbone, neck and head a published config uses, how a
//! checkpoint's tensors are split between them, and the preprocessing the config evaluates with.
//!
//! This is the only crate that knows model names (`retinanet_pvt_tiny_fpn_1x_coco`, ...) and
//! checkpoint layouts (`backbone.`, `neck.`, `bbox_head.` prefixes). Backbones and heads stay
//! ignorant of each other; they meet here through `FeaturePyramid`.
#![deny(missing_docs)]

pub mod det_input;
pub mod detector;
pub mod mask_rcnn;
pub mod retinanet;
pub mod runner;
pub mod semantic_fpn;

pub use detector::ImageDetector;
pub use mask_rcnn::{MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
pub use retinanet::{BackboneConfig, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt};
pub use semantic_fpn::{SemanticFpnConfig, SemanticFpnPvt};
