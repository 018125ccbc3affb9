//! Pyramid Vision Transformer v1 (Wang et al., "Pyramid Vision Transformer: A Versatile
//! Backbone for Dense Prediction without Convolutions", ICCV 2021, arXiv 2102.12122), ported
//! from the official code (github.com/whai362/PVT, Apache-2.0) to candle.
//!
//! - [`config`]: typed variant tables ([`PvtV1`] Tiny/Small/Medium/Large) and the numerical
//!   conventions that differ between checkpoint origins ([`Numerics`]).
//! - [`model`]: [`PvtDense`] (implements [`pvt_nn::Backbone`]: four NCHW maps at strides
//!   4/8/16/32) and [`PvtClassifier`] (ImageNet logits).
//! - [`naming`]: official ↔ mmdetection key names, `backbone.` prefixes.
//! - [`load`]: strict loading from a [`pvt_nn::Checkpoint`].
//!
//! The backbone knows nothing of FPN, anchors, heads or datasets.
#![deny(missing_docs)]

pub mod config;
pub mod load;
pub mod model;
pub mod naming;

pub use config::{NormEps, Numerics, PosEmbedResize, PvtConfig, PvtV1, StageConfig};
pub use load::{guess_variant, load_classifier, load_dense, LoadInfo};
pub use model::{PvtClassifier, PvtDense};
pub use naming::Dialect;
