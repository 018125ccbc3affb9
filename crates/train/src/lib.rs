//! Training and fine-tuning of the PVT detectors in Rust (RetinaNet first).
//!
//! - [`assign`]: mmdetection's `MaxIoUAssigner`, anchor valid flags and the RetinaNet targets.
//! - [`data`]: COCO-format detection datasets, the training pipeline (scale jitter, flip), padded
//!   batches, seeded order.
//! - [`losses`]: sigmoid focal loss, L1 and smooth L1, as mmdetection sums them.
pub mod assign;
pub mod data;
pub mod losses;
