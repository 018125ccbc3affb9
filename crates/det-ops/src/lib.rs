//! Detection geometry: the single home of the box arithmetic the detection heads (RetinaNet,
//! Mask R-CNN's RPN and RoI heads) need, written to reproduce mmdetection 2.x (≤ 2.17, the
//! versions behind the published PVT numbers) and mmcv 1.3 operator by operator.
//!
//! - [`boxes`]: `xyxy` ↔ `xywh` conversions, IoU of two boxes and the pairwise IoU matrix
//!   (mmdet `bbox_overlaps`, mode `iou`), clipping to an image size, the min-size filter.
//! - [`coder`]: [`DeltaXywhCoder`], mmdet's `DeltaXYWHBBoxCoder` (`bbox2delta` / `delta2bbox`
//!   with the `±|ln(16/1000)|` clamp on `dw, dh` and clipping to the unpadded image).
//! - [`anchors`]: [`AnchorGenerator`], mmdet's `AnchorGenerator`, with the RetinaNet and RPN
//!   configurations of the PVT detectors; the anchor order is documented there, once.
//! - [`mod@nms`]: [`nms()`] and class-aware [`batched_nms`] as mmcv computes them
//!   (including the coordinate-offset trick), [`multiclass_nms`] as mmdet's
//!   `multiclass_nms`, and the ranking helpers ([`top_k`], [`argsort_desc`], [`pre_nms_top_k`]).
//! - [`roi`]: [`map_roi_levels`], the FPN level a RoI is pooled from (`SingleRoIExtractor`).
//! - [`mod@roi_align`]: [`roi_align()`], mmcv's `RoIAlign` (avg mode, `aligned`, adaptive or
//!   fixed sampling), and [`multi_level_roi_align`], mmdet's `SingleRoIExtractor` over P2–P5.
//! - [`mask_paste`]: [`paste_mask`] and friends, mmdet's `_do_paste_mask` + `grid_sample` +
//!   `mask_thr_binary` for one Mask R-CNN mask, into the original image.
//!
//! # Conventions (stated once for the crate)
//!
//! - A box is `[x1, y1, x2, y2]` (`xyxy`) in **f32**, in continuous pixel coordinates of the
//!   image the network saw (after resize, before padding) unless a function says otherwise.
//!   Width is `x2 - x1` and area is `(x2 - x1)·(y2 - y1)`: **no `+1`** anywhere (mmdet 2.x,
//!   mmcv `offset=0`, torchvision). A box with `x2 < x1` is not rejected; its area is negative,
//!   as it is upstream.
//! - `xywh` is COCO's `[x, y, width, height]` with `(x, y)` the top-left corner (results JSON);
//!   it is **not** the centre form the box coder uses internally.
//! - Sizes are `(height, width)` ([`pvt_types::ImageSize`]); clipping bounds `x` by the width
//!   and `y` by the height.
//! - Rankings sort scores in descending order with **NaN above every number** (as PyTorch's
//!   `sort` / `topk` place it) and **ties broken by the lower index**; `-0.0` and `0.0` tie.
//! - Arithmetic is done in f32 in the order mmdet / mmcv write it (no fused multiply-add), so
//!   that results agree with the reference to the last bit wherever the reference's own f32
//!   operations are correctly rounded (everything but `exp` / `ln`, which may differ by an ulp).
//!
//! # Invariants
//!
//! - Heads call this crate; they never re-implement a box formula. The one deliberate exception
//!   in the workspace is `pvt-eval`'s crowd-aware IoU, which is part of the COCO metric and must
//!   build without any model code.
//! - This crate knows nothing of tensors, checkpoints or datasets: it works on host slices of
//!   `[f32; 4]` (and, for RoIAlign and mask pasting, row-major `f32` maps), so it can be tested
//!   exhaustively and called after the one device → host copy of a head's outputs.
//! - No function panics on user data: length mismatches and invalid configurations are errors,
//!   and NaN inputs give defined (documented) results.
//!
//! ```
//! use pvt_det_ops::{AnchorConfig, AnchorGenerator, DeltaXywhCoder};
//! use pvt_types::ImageSize;
//!
//! let gen = AnchorGenerator::new(&AnchorConfig::retinanet())?;
//! let anchors = gen.grid_anchors(0, ImageSize::new(100, 152))?; // stride 8 on 800x1216
//! assert_eq!(anchors.len(), 100 * 152 * 9);
//! let coder = DeltaXywhCoder::retinanet();
//! let boxes = coder.decode(&anchors[..2], &[[0.0; 4]; 2], Some(ImageSize::new(800, 1202)))?;
//! assert_eq!(boxes[0], [0.0, 0.0, 22.627417, 11.313708]); // clipped at the top-left corner
//! # anyhow::Ok(())
//! ```
#![deny(missing_docs)]

pub mod anchors;
pub mod boxes;
pub mod coder;
pub mod mask_paste;
pub mod nms;
pub mod roi;
pub mod roi_align;
pub mod roi_align_grad;

pub use anchors::{AnchorConfig, AnchorGenerator, AnchorScales};
pub use boxes::{
    clip_box, clip_boxes, iou, iou_matrix, keep_min_size, rescale_boxes, xywh_to_xyxy,
    xyxy_to_xywh, ImageMeta, IouMatrix,
};
pub use coder::DeltaXywhCoder;
pub use mask_paste::{
    paste_bitmask, paste_mask, paste_mask_probs, paste_masks, paste_region, PasteRegion,
    MASK_THR_BINARY,
};
pub use nms::{
    argsort_desc, batched_nms, multiclass_nms, nms, pre_nms_top_k, top_k, ClassBoxes,
    ClassDetection, MulticlassNmsConfig, NmsThreshold, Suppress,
};
pub use roi::{map_roi_level, map_roi_levels};
pub use roi_align::{multi_level_roi_align, roi_align, RoiLevel};
pub use roi_align_grad::{LevelShape, RoiAlignPlan, RoiFloat};
