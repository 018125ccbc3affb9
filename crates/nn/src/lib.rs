//! candle glue shared by everything in the workspace that holds weights.
//!
//! - [`pyramid`]: [`PyramidSpec`] / [`LevelSpec`] (channels and stride per level, declared before
//!   any forward) and [`FeaturePyramid`] (the tensors a backbone or neck emits), plus the
//!   [`Backbone`] trait that heads are written against.
//! - [`checkpoint`]: reading the files users have (`.pth` zip containers with or without a
//!   `state_dict` / `model` wrapper, `.safetensors`) into f32 tensors, with clear errors for
//!   legacy or unknown containers; and [`checkpoint::StrictLoader`], a `VarBuilder` backend that
//!   records every missing, unexpected or wrong-shaped tensor and reports them all at once.
//! - [`ops`]: numerics that must match PyTorch and be fast: exact-erf GELU, LayerNorm, softmax
//!   and nearest upsampling with backward passes, bilinear resize matrices with
//!   `align_corners=False`, patch convolutions written as matmuls.
//! - [`loss`]: sigmoid focal loss, L1 and smooth L1 sums, as mmdetection computes them.
//! - [`channel`]: per-channel bias and scale (and a `Linear` on them) whose training backward
//!   sums gradients with a fast contiguous kernel instead of candle's strided reduction.
//! - [`dwconv`]: depth-wise 3×3 convolution on channels-last maps (PVT v2's convolutional FFN).
//! - [`image`]: image decoding (EXIF orientation applied), PIL-exact bicubic resizing for the
//!   ImageNet evaluation transform, normalisation and padding to an [`ImageBatch`].
//! - [`cv_resize`]: OpenCV-exact `cv2.resize(INTER_LINEAR)` on 8-bit images and mmcv's size rules
//!   (mmdet `Resize(keep_ratio=True)`, PVT-seg `AlignResize`) for detection / segmentation inputs.
//!
//! This crate knows nothing of PVT, FPN, anchors or datasets.
#![deny(missing_docs)]

pub mod channel;
pub mod checkpoint;
pub mod conv;
pub mod cv_resize;
pub mod dwconv;
mod elem;
pub mod image;
pub mod loss;
pub mod ops;
pub mod pyramid;

pub use checkpoint::{Checkpoint, StrictLoader};
pub use image::ImageBatch;
pub use pyramid::{Backbone, FeaturePyramid, LevelSpec, PyramidSpec};
