//! Training and fine-tuning of the PVT detectors in Rust (RetinaNet first).
//!
//! - [`assign`]: mmdetection's `MaxIoUAssigner`, anchor valid flags and the RetinaNet targets.
//! - [`losses`]: sigmoid focal loss, L1 and smooth L1, as mmdetection sums them.
pub mod assign;
pub mod losses;
