//! Training and fine-tuning of the PVT detectors in Rust (RetinaNet first).
//!
//! - [`assign`]: mmdetection's `MaxIoUAssigner`, anchor valid flags and the RetinaNet targets.
//! - [`data`]: COCO-format detection datasets, the training pipeline (scale jitter, flip), padded
//!   batches, seeded order.
//! - [`losses`]: sigmoid focal loss, L1 and smooth L1, as mmdetection sums them.
//! - [`optim`]: AdamW, the step schedule with linear warm-up, gradient clipping.
//! - [`params`]: named training variables, mmdetection's initialisation, frozen stages, ImageNet
//!   backbone initialisation.
//! - [`retinanet`]: the RetinaNet loss over a batch (targets, focal loss, L1).
//! - [`trainer`]: the training loop, run directory, checkpoints and resume, validation AP.
//! - [`plot`]: the loss curve PNG.
pub mod assign;
pub mod data;
pub mod losses;
pub mod optim;
pub mod params;
pub mod plot;
pub mod retinanet;
pub mod trainer;
