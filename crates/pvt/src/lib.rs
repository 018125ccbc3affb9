//! Pyramid Vision Transformer v1 and v2 (Wang et al., "Pyramid Vision Transformer: A Versatile
//! Backbone for Dense Prediction without Convolutions", ICCV 2021, arXiv 2102.12122), ported
//! from the official code (github.com/whai362/PVT, Apache-2.0) to candle.
//!
//! - [`config`]: typed variant tables ([`PvtV1`] Tiny/Small/Medium/Large) and the numerical
//!   conventions that differ between checkpoint origins ([`Numerics`]).
//! - [`model`]: [`PvtDense`] (implements [`pvt_nn::Backbone`]: four NCHW maps at strides
//!   4/8/16/32) and [`PvtClassifier`] (ImageNet logits).
//! - [`naming`]: official ↔ mmdetection key names, `backbone.` prefixes.
//! - [`load`]: strict loading from a [`pvt_nn::Checkpoint`].
//! - PVT v2 (arXiv 2106.13797): [`config_v2`] ([`PvtV2`] b0–b5, b2_li), [`v2`] ([`PvtV2Dense`],
//!   [`PvtV2Classifier`]), [`naming_v2`] (official / timm / mmdetection names), [`load_v2`].
//! - [`arch`]: [`Arch`], either generation by name or JSON config (what the CLI takes).
//! - [`convert`]: checkpoint conversion between the official, mmdetection and timm namings.
//!
//! The backbone knows nothing of FPN, anchors, heads or datasets.
#![deny(missing_docs)]

pub mod arch;
mod attention;
pub mod config;
pub mod config_v2;
pub mod convert;
pub mod load;
pub mod load_v2;
pub mod model;
pub mod naming;
pub mod naming_v2;
pub mod v2;

pub use arch::{AnyClassifier, AnyDense, AnyLoadInfo, Arch};
pub use config::{NormEps, Numerics, PosEmbedResize, PvtConfig, PvtV1, StageConfig};
pub use config_v2::{KvReduction, PvtV2, PvtV2Config, StageV2Config};
pub use convert::{convert_naming, Converted, Generation, Naming};
pub use load::{guess_variant, load_classifier, load_dense, LoadInfo};
pub use load_v2::{guess_variant_v2, load_classifier_v2, load_dense_v2, LoadInfoV2};
pub use model::{PvtClassifier, PvtDense};
pub use naming::Dialect;
pub use naming_v2::DialectV2;
pub use v2::{PvtV2Classifier, PvtV2Dense};
