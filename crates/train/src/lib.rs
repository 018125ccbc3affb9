//! Training and fine-tuning of the PVT detectors and segmenters in Rust (RetinaNet, Mask R-CNN,
//! Semantic FPN).
//!
//! The engine ([`driver`], [`run_dir`], [`optim`], [`params`], [`plot`]) is the same for every
//! family: a [`driver::Task`] gives the batches, the loss of a batch and the validation, the
//! driver runs the loop (resume, checkpoints, validation, log). This crate knows the families
//! through `pvt-zoo`; it knows nothing of the command line.
//!
//! - [`assign`]: mmdetection's `MaxIoUAssigner`, anchor valid flags and the RetinaNet targets.
//! - [`data`]: COCO-format detection datasets, the training pipeline (scale jitter, flip), padded
//!   batches, seeded order.
//! - [`driver`]: the training loop every family shares (resume, checkpoints, validation, log).
//! - [`losses`]: sigmoid focal loss, L1 and smooth L1, as mmdetection sums them.
//! - [`mask_rcnn_loop`]: the Mask R-CNN training loop (run directory, resume, box and mask AP).
//! - [`mask_rcnn`]: the Mask R-CNN losses (RPN, box and mask heads) with mmdetection 2.13's
//!   assigners and random samplers, ground-truth instance masks, differentiable RoIAlign.
//! - [`optim`]: AdamW, the step schedule with linear warm-up, gradient clipping.
//! - [`params`]: named training variables, mmdetection's initialisation, frozen stages, ImageNet
//!   backbone initialisation.
//! - [`retinanet`]: the RetinaNet loss over a batch (targets, focal loss, L1).
//! - [`segmentation`]: Semantic FPN training: ADE20K-style folders, mmseg's pipeline (resize,
//!   crop, flip, pad), the pixel cross entropy with ignore index 255, the loop with mIoU.
//! - [`run_dir`]: the run directory (config, weights, resume point, log), run-time options.
//! - [`trainer`]: RetinaNet training: its settings, task and box-AP validation.
//! - [`plot`]: the loss curve PNG.
//!
//! Gradients: the network is built over [`params::Params`] at every step; the layers that
//! have fast inference kernels switch to differentiable ones when a tensor tracks gradients
//! (`pvt_nn::ops::{LayerNorm, softmax_last_dim, upsample_nearest2d}`, `pvt_nn::conv::Conv2d`'s
//! im2col path), each checked against finite differences in its crate and end to end in
//! `tests/gradients.rs`.
#![deny(missing_docs)]

pub mod assign;
pub mod data;
pub mod driver;
pub mod losses;
pub mod mask_rcnn;
pub mod mask_rcnn_loop;
pub mod optim;
pub mod params;
pub mod plot;
pub mod retinanet;
pub mod run_dir;
pub mod segmentation;
pub mod trainer;
