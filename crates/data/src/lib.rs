//! Datasets for training and fine-tuning the PVT detectors and segmenters.
//!
//! - [`synth`]: a deterministic synthetic dataset of coloured shapes on textured backgrounds,
//!   written as COCO instance annotations (compressed RLE masks) and ADE20K-style semantic label
//!   PNGs, so that the training code can be exercised end to end without downloading anything.
//! - [`coco`]: the COCO annotation file format (`instances_*.json`) as this crate writes it.
//!
//! No candle: the files are plain images and JSON; tensors are made by the training code.
#![deny(missing_docs)]

pub mod coco;
pub mod synth;

/// Write `bytes` to `path` through a temporary sibling and a rename (fsynced), so that a reader
/// never sees a half-written file and an interrupted run leaves the old file in place: the
/// evaluation crate's writer, shared.
pub use pvt_eval::coco::writer::write_atomic;
