//! The RetinaNet head (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) as
//! mmdetection's `RetinaHead` builds it for the PVT RetinaNet configs.
//!
//! - [`head`]: two branches of `stacked_convs` × (3×3 conv + ReLU), then `retina_cls`
//!   (A·K channels, sigmoid) and `retina_reg` (A·4 channels), weights shared over levels;
//!   [`RetinaHead::forward`] returns raw per-level outputs ([`DenseOutputs`]);
//! - [`postprocess`]: anchors, decoding, top-k and NMS as mmdetection ≤ 2.17 (the published
//!   numbers), through `pvt-det-ops`, the single home of box arithmetic.
//!
//! Weight names are mmdetection's (`cls_convs.{i}.conv`, `reg_convs.{i}.conv`, `retina_cls`,
//! `retina_reg`, under `bbox_head.` in checkpoints). Channel layout of the outputs: anchor-major,
//! `channel = a·K + k` for scores and `a·4 + j` for deltas, anchors in the generator's order.
#![deny(missing_docs)]

pub mod head;
pub mod postprocess;

pub use head::{DenseOutputs, RetinaHead, RetinaHeadConfig};
pub use postprocess::{postprocess, ImageMeta, RetinaPostprocess};
