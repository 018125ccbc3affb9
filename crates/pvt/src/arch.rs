//! One entry point over both PVT generations, for front ends that take an architecture name or
//! a JSON config (the CLI): [`Arch`] resolves `pvt_tiny` ... `pvt_large` and `pvt_v2_b0` ...
//! `pvt_v2_b5` / `pvt_v2_b2_li`, and loads the matching dense or classifier model.

use anyhow::{anyhow, Context, Result};
use candle::{Device, Tensor};
use pvt_nn::{Backbone, Checkpoint, FeaturePyramid, PyramidSpec};

use crate::config::{PvtConfig, PvtV1};
use crate::config_v2::{PvtV2, PvtV2Config};
use crate::load::{load_classifier, load_dense, LoadInfo};
use crate::load_v2::{load_classifier_v2, load_dense_v2, LoadInfoV2};
use crate::model::{PvtClassifier, PvtDense};
use crate::v2::{PvtV2Classifier, PvtV2Dense};

/// A PVT model configuration of either generation.
#[derive(Debug, Clone, PartialEq)]
pub enum Arch {
    /// PVT v1.
    V1(PvtConfig),
    /// PVT v2.
    V2(PvtV2Config),
}

impl Arch {
    /// Every published architecture name.
    pub fn names() -> Vec<&'static str> {
        PvtV1::ALL
            .iter()
            .map(|v| v.name())
            .chain(PvtV2::ALL.iter().map(|v| v.name()))
            .collect()
    }

    /// Resolves a published name (`pvt_small`, `pvt_v2_b2_li`, ...); returns the canonical name
    /// and the configuration.
    pub fn from_name(name: &str) -> Result<(&'static str, Arch)> {
        if let Some(v) = PvtV2::from_name(name) {
            return Ok((v.name(), Arch::V2(v.config())));
        }
        if let Some(v) = PvtV1::from_name(name) {
            return Ok((v.name(), Arch::V1(v.config())));
        }
        Err(anyhow!(
            "unknown architecture `{name}`; expected one of {}",
            Self::names().join(", ")
        ))
    }

    /// Parses a JSON model config: a PVT v2 config (it has a `kv_reduction` field) or a PVT v1
    /// config, then validates it.
    pub fn from_json(text: &str) -> Result<Arch> {
        let value: serde_json::Value = serde_json::from_str(text).context("not valid JSON")?;
        let arch = if value.get("kv_reduction").is_some() {
            Arch::V2(serde_json::from_value(value).context("invalid PVT v2 config")?)
        } else {
            Arch::V1(serde_json::from_value(value).context("invalid PVT v1 config")?)
        };
        match &arch {
            Arch::V1(c) => c.validate()?,
            Arch::V2(c) => c.validate()?,
        }
        Ok(arch)
    }

    /// Loads the classifier form from `ckpt` (strictly; see [`load_classifier`] and
    /// [`load_classifier_v2`]).
    pub fn load_classifier(
        &self,
        ckpt: &Checkpoint,
        device: &Device,
    ) -> Result<(AnyClassifier, AnyLoadInfo)> {
        Ok(match self {
            Arch::V1(c) => {
                let (m, i) = load_classifier(ckpt, c, device)?;
                (AnyClassifier::V1(m), AnyLoadInfo::V1(i))
            }
            Arch::V2(c) => {
                let (m, i) = load_classifier_v2(ckpt, c, device)?;
                (AnyClassifier::V2(m), AnyLoadInfo::V2(i))
            }
        })
    }

    /// Loads the dense form from `ckpt` (strictly; see [`load_dense`] and [`load_dense_v2`]).
    pub fn load_dense(
        &self,
        ckpt: &Checkpoint,
        device: &Device,
    ) -> Result<(AnyDense, AnyLoadInfo)> {
        Ok(match self {
            Arch::V1(c) => {
                let (m, i) = load_dense(ckpt, c, device)?;
                (AnyDense::V1(m), AnyLoadInfo::V1(i))
            }
            Arch::V2(c) => {
                let (m, i) = load_dense_v2(ckpt, c, device)?;
                (AnyDense::V2(m), AnyLoadInfo::V2(i))
            }
        })
    }
}

/// A classifier of either generation.
#[derive(Debug, Clone)]
pub enum AnyClassifier {
    /// PVT v1.
    V1(PvtClassifier),
    /// PVT v2.
    V2(PvtV2Classifier),
}

impl AnyClassifier {
    /// Logits `[B, num_classes]`.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        match self {
            AnyClassifier::V1(m) => m.forward(images),
            AnyClassifier::V2(m) => m.forward(images),
        }
    }

    /// Softmax probabilities `[B, num_classes]`.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        match self {
            AnyClassifier::V1(m) => m.probabilities(images),
            AnyClassifier::V2(m) => m.probabilities(images),
        }
    }
}

/// A dense backbone of either generation.
#[derive(Debug, Clone)]
pub enum AnyDense {
    /// PVT v1.
    V1(PvtDense),
    /// PVT v2.
    V2(PvtV2Dense),
}

impl AnyDense {
    /// The four NCHW feature maps, fine to coarse.
    pub fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            AnyDense::V1(m) => m.forward(images),
            AnyDense::V2(m) => m.forward(images),
        }
    }
}

impl Backbone for AnyDense {
    fn output_spec(&self) -> &PyramidSpec {
        match self {
            AnyDense::V1(m) => m.output_spec(),
            AnyDense::V2(m) => m.output_spec(),
        }
    }

    fn forward_pyramid(&self, images: &Tensor) -> Result<FeaturePyramid> {
        match self {
            AnyDense::V1(m) => m.forward_pyramid(images),
            AnyDense::V2(m) => m.forward_pyramid(images),
        }
    }
}

/// The load report of either generation.
#[derive(Debug, Clone)]
pub enum AnyLoadInfo {
    /// PVT v1.
    V1(LoadInfo),
    /// PVT v2.
    V2(LoadInfoV2),
}

impl AnyLoadInfo {
    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        match self {
            AnyLoadInfo::V1(i) => i.summary(),
            AnyLoadInfo::V2(i) => i.summary(),
        }
    }

    /// The prefix removed from the backbone keys (`backbone.`), if any.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            AnyLoadInfo::V1(i) => i.prefix.as_deref(),
            AnyLoadInfo::V2(i) => i.prefix.as_deref(),
        }
    }

    /// Keys outside the backbone (necks, heads), left for other models.
    pub fn outside(&self) -> &[String] {
        match self {
            AnyLoadInfo::V1(i) => &i.outside,
            AnyLoadInfo::V2(i) => &i.outside,
        }
    }

    /// Moves the outside keys that `drop` selects (e.g. a segmentor's auxiliary head) to the
    /// dropped list.
    pub fn drop_outside(&mut self, drop: impl Fn(&str) -> bool) {
        let (outside, dropped) = match self {
            AnyLoadInfo::V1(i) => (&mut i.outside, &mut i.dropped),
            AnyLoadInfo::V2(i) => (&mut i.outside, &mut i.dropped),
        };
        let (gone, kept): (Vec<String>, Vec<String>) =
            std::mem::take(outside).into_iter().partition(|k| drop(k));
        *outside = kept;
        dropped.extend(gone);
    }

    /// Tensors dropped on purpose.
    pub fn dropped(&self) -> &[String] {
        match self {
            AnyLoadInfo::V1(i) => &i.dropped,
            AnyLoadInfo::V2(i) => &i.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_json() {
        assert!(matches!(
            Arch::from_name("pvt_v2_b2_li").unwrap(),
            ("pvt_v2_b2_li", Arch::V2(_))
        ));
        assert!(matches!(
            Arch::from_name("pvt_small").unwrap(),
            ("pvt_small", Arch::V1(_))
        ));
        let e = Arch::from_name("pvt_v3").unwrap_err().to_string();
        assert!(e.contains("pvt_v2_b5") && e.contains("pvt_large"), "{e}");
        let v2 = serde_json::to_string(&PvtV2::B1.config()).unwrap();
        assert_eq!(Arch::from_json(&v2).unwrap(), Arch::V2(PvtV2::B1.config()));
        let v1 = serde_json::to_string(&PvtV1::Tiny.config()).unwrap();
        assert_eq!(
            Arch::from_json(&v1).unwrap(),
            Arch::V1(PvtV1::Tiny.config())
        );
    }
}
