//! Training and fine-tuning of the PVT detectors in Rust (RetinaNet first).
//!
//! - [`losses`]: sigmoid focal loss, L1 and smooth L1, as mmdetection sums them.
pub mod losses;
