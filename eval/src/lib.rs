//! Evaluation for the PVT workspace: COCO AP (bbox, segm) equal to pycocotools 2.0.11, and
//! ADE20K mIoU equal to mmsegmentation 1.x's `IoUMetric`.
//!
//! Every rule of pycocotools' and mmseg's evaluation is either implemented here (or by hotcoco,
//! which we measured) or fenced and documented where it departs (see [`coco`]).
//!
//! Main types:
//! - [`coco::CocoGt`], [`coco::CocoResults`]: COCO JSON loaded and checked, with errors that
//!   name the file and the position; [`coco::evaluate`] returns a [`coco::CocoEvaluation`]
//!   holding the 12 [`coco::CocoStats`] (printed byte for byte as pycocotools prints them),
//!   per-category AP and the precision/recall tables.
//! - [`coco::stream::CocoStreamEvaluator`]: feed per-image [`pvt_types::Detections`] while a
//!   dataset streams; memory holds the per-detection match bits, not the results.
//! - [`coco::writer`]: COCO results JSON from [`pvt_types::Detections`].
//! - [`ade20k`]: label-map mIoU / mAcc / aAcc by mmseg's rule, from PNG folders or
//!   [`pvt_types::SegMap`]s.
//! - [`plot`]: precision/recall curves to a PNG.
//! - [`report`]: the text and JSON reports every entry point prints (pycocotools' summary,
//!   per-category AP, the mIoU line and mmseg's per-class table).
//!
//! What it must not know: tensors (no candle anywhere in its dependency tree), models, or how
//! detections were produced. It knows the COCO JSON format and the metric definitions, and is the
//! only crate that does. Its one piece of geometry, the crowd-aware IoU, belongs to the metric's
//! definition and lives in hotcoco.
#![deny(missing_docs)]

pub mod ade20k;
pub mod coco;
mod json_error;
mod numpy;
pub mod plot;
pub mod report;
