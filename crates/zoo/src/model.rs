//! One entry point for every model family: [`ModelConfig`] says which model a published name, a
//! JSON config or a training run's directory describes, and [`load_detector`] /
//! [`load_segmenter`] turn it and a checkpoint into a ready-to-run model.
//!
//! The family of a JSON config is its `"family"` field (`"retinanet"`, `"mask_rcnn"`,
//! `"semantic_fpn"`), which `pvt train` writes into every run's `config.json` and which every
//! config shipped in `assets/` carries. Files written before that field existed are read by the
//! rule those versions used, kept in this one place ([`Family::of_untagged`]): `head_channels`
//! makes a Semantic FPN, `fc_channels`, `mask_channels` or `mask_convs` a Mask R-CNN, anything
//! else a RetinaNet.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use candle::Device;
use pvt_nn::Checkpoint;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::mask_rcnn::{MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
use crate::retinanet::{BackboneConfig, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt};
use crate::segmenter::{Segmenter, SemanticFpnSegmenter};
use crate::semantic_fpn::{SemanticFpnConfig, SemanticFpnPvt};
use crate::ImageDetector;

/// A model family: which network a config builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// RetinaNet-PVT (one-stage detector).
    RetinaNet,
    /// Mask R-CNN-PVT (two-stage detector with instance masks).
    MaskRcnn,
    /// Semantic FPN-PVT (semantic segmenter).
    SemanticFpn,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 3] = [Family::RetinaNet, Family::MaskRcnn, Family::SemanticFpn];

    /// The value of a config's `"family"` field.
    pub fn tag(self) -> &'static str {
        match self {
            Family::RetinaNet => "retinanet",
            Family::MaskRcnn => "mask_rcnn",
            Family::SemanticFpn => "semantic_fpn",
        }
    }

    /// The family whose [`Family::tag`] is `tag`.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.tag() == tag)
    }

    /// A name for messages: `RetinaNet-PVT`, `Mask R-CNN-PVT`, `Semantic FPN-PVT`.
    pub fn display_name(self) -> &'static str {
        match self {
            Family::RetinaNet => "RetinaNet-PVT",
            Family::MaskRcnn => "Mask R-CNN-PVT",
            Family::SemanticFpn => "Semantic FPN-PVT",
        }
    }

    /// Whether the family detects objects (boxes), rather than labelling pixels.
    pub fn is_detector(self) -> bool {
        matches!(self, Family::RetinaNet | Family::MaskRcnn)
    }

    /// The family of a config without a `"family"` field (files written before it existed), by
    /// the fields only that family has.
    pub fn of_untagged(v: &serde_json::Value) -> Self {
        if v.get("head_channels").is_some() {
            Family::SemanticFpn
        } else if ["fc_channels", "mask_channels", "mask_convs"]
            .iter()
            .any(|k| v.get(k).is_some())
        {
            Family::MaskRcnn
        } else {
            Family::RetinaNet
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The architecture of a model, per family.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    /// RetinaNet-PVT.
    RetinaNet(RetinaNetConfig),
    /// Mask R-CNN-PVT.
    MaskRcnn(MaskRcnnConfig),
    /// Semantic FPN-PVT.
    SemanticFpn(SemanticFpnConfig),
}

impl Architecture {
    /// The family.
    pub fn family(&self) -> Family {
        match self {
            Architecture::RetinaNet(_) => Family::RetinaNet,
            Architecture::MaskRcnn(_) => Family::MaskRcnn,
            Architecture::SemanticFpn(_) => Family::SemanticFpn,
        }
    }

    /// The backbone.
    pub fn backbone(&self) -> &BackboneConfig {
        match self {
            Architecture::RetinaNet(c) => &c.backbone,
            Architecture::MaskRcnn(c) => &c.backbone,
            Architecture::SemanticFpn(c) => &c.backbone,
        }
    }

    /// Classes the model predicts (foreground classes for detectors).
    pub fn num_classes(&self) -> usize {
        match self {
            Architecture::RetinaNet(c) => c.num_classes,
            Architecture::MaskRcnn(c) => c.num_classes,
            Architecture::SemanticFpn(c) => c.num_classes,
        }
    }

    /// Sets the number of classes (a published architecture trained on another dataset).
    pub fn set_num_classes(&mut self, k: usize) {
        match self {
            Architecture::RetinaNet(c) => c.num_classes = k,
            Architecture::MaskRcnn(c) => c.num_classes = k,
            Architecture::SemanticFpn(c) => c.num_classes = k,
        }
    }

    /// The architecture as JSON: the family's fields and its `"family"` tag.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match self {
            Architecture::RetinaNet(c) => to_value(c),
            Architecture::MaskRcnn(c) => to_value(c),
            Architecture::SemanticFpn(c) => to_value(c),
        };
        tag_json(&mut v, self.family());
        v
    }
}

fn to_value<T: Serialize>(c: &T) -> serde_json::Value {
    serde_json::to_value(c).expect("model configs are plain data")
}

/// Sets `"family": family.tag()` in a JSON object (anything else is left as is).
pub fn tag_json(v: &mut serde_json::Value, family: Family) {
    if let serde_json::Value::Object(m) = v {
        m.insert("family".into(), family.tag().into());
    }
}

/// What a training run records for testing, read from its config's `train` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestSettings {
    /// `(long, short)` test scale (`train.test_scale`); `None`: the family's published one.
    pub scale: Option<(usize, usize)>,
    /// Class names (`train.class_names`); empty: the dataset's (COCO's for 80 classes, ADE20K's
    /// for 150) or `class i`.
    pub class_names: Vec<String>,
    /// How ground-truth labels are read for mIoU (segmenters; `train.reduce_zero_label`).
    /// `None`: ADE20K's convention (`reduce_zero_label`).
    pub reduce_zero_label: Option<bool>,
}

/// A model to load: its architecture, what its training run recorded for testing, and where it
/// was described.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Architecture,
    /// Test settings recorded by a training run (defaults for a name or a plain config).
    pub test: TestSettings,
    /// The config file, when the model came from one (training reads its `train` section).
    pub source: Option<PathBuf>,
    /// The raw `train` section of a training config, if any (parsed by the training crate).
    pub train: Option<serde_json::Value>,
}

/// The names [`ModelConfig::from_name`] takes, as patterns (for messages and `--help`).
pub const MODEL_NAMES: &[&str] = &[
    "retinanet_pvt_{tiny,small,medium,large}_fpn_1x_coco",
    "retinanet_pvtv2_b{0..5}_fpn_1x_coco",
    "mask_rcnn_pvt_{tiny,small,medium,large}_fpn_1x_coco",
    "mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco",
    "fpn_pvt_{t,s,m,l}_ade20k_40k",
];

impl ModelConfig {
    fn bare(arch: Architecture) -> Self {
        Self {
            arch,
            test: TestSettings::default(),
            source: None,
            train: None,
        }
    }

    /// A published model by name (any of [`MODEL_NAMES`], with the spellings the families
    /// accept: `retinanet_pvt-t_fpn_1x_coco`, `fpn_pvt_tiny_ade20k_40k`, ...).
    pub fn from_name(name: &str) -> Result<Self> {
        let arch = if let Some(c) = MaskRcnnConfig::from_name(name) {
            Architecture::MaskRcnn(c)
        } else if let Some(c) = RetinaNetConfig::from_name(name) {
            Architecture::RetinaNet(c)
        } else if let Some(c) = SemanticFpnConfig::from_name(name) {
            Architecture::SemanticFpn(c)
        } else {
            bail!(
                "unknown model `{name}`; expected {}",
                MODEL_NAMES.join(", ")
            )
        };
        Ok(Self::bare(arch))
    }

    /// A config from JSON text: a model config, or a training config (the model's fields plus a
    /// `train` section, as `pvt train` writes it). `origin` names the text in errors (a path).
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(text).with_context(|| format!("{origin}: invalid JSON"))?;
        ensure!(
            v.is_object(),
            "{origin}: a model config must be a JSON object"
        );
        let family = match v.get("family") {
            None => Family::of_untagged(&v),
            Some(serde_json::Value::String(s)) => Family::from_tag(s).with_context(|| {
                format!(
                    "{origin}: unknown `family` \"{s}\"; expected one of {}",
                    Family::ALL.map(|f| format!("\"{}\"", f.tag())).join(", ")
                )
            })?,
            Some(other) => bail!("{origin}: `family` must be a string, not {other}"),
        };
        // the typed parse reads the text itself, so that errors carry line and column
        fn typed<T: DeserializeOwned>(text: &str, origin: &str, family: Family) -> Result<T> {
            serde_json::from_str(text)
                .with_context(|| format!("{origin}: invalid {} config", family.display_name()))
        }
        let arch = match family {
            Family::RetinaNet => Architecture::RetinaNet(typed(text, origin, family)?),
            Family::MaskRcnn => Architecture::MaskRcnn(typed(text, origin, family)?),
            Family::SemanticFpn => Architecture::SemanticFpn(typed(text, origin, family)?),
        };
        let train = v.get("train").cloned();
        let test = match &train {
            Some(t) => test_settings(t, family, origin)?,
            None => TestSettings::default(),
        };
        Ok(Self {
            arch,
            test,
            source: None,
            train,
        })
    }

    /// A config file ([`ModelConfig::from_json`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut c = Self::from_json(&text, &path.display().to_string())?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// The model of a training run's directory (its `config.json`).
    pub fn from_run_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(RUN_CONFIG);
        ensure!(
            path.is_file(),
            "{}: not a training run (no {RUN_CONFIG})",
            dir.display()
        );
        Self::from_file(path)
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.arch.family()
    }

    /// What the config is called in messages: its file, or its family.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => self.family().display_name().to_string(),
        }
    }
}

/// The config file of a training run's directory.
pub const RUN_CONFIG: &str = "config.json";

/// The test settings in a training config's `train` section; every field is optional, and a
/// present one of the wrong type is an error naming it.
fn test_settings(t: &serde_json::Value, family: Family, origin: &str) -> Result<TestSettings> {
    let scale = match t.get("test_scale") {
        None => None,
        Some(s) => {
            let pair: (usize, usize) = serde_json::from_value(s.clone()).with_context(|| {
                format!("{origin}: `train.test_scale` must be [long, short], not {s}")
            })?;
            ensure!(
                pair.0 > 0 && pair.1 > 0,
                "{origin}: `train.test_scale` must be positive, not {s}"
            );
            Some(pair)
        }
    };
    let class_names = match t.get("class_names") {
        None => Vec::new(),
        Some(s) => serde_json::from_value(s.clone())
            .with_context(|| format!("{origin}: `train.class_names` must be a list of strings"))?,
    };
    // a segmenter's training settings default to labels as they are (no reduce_zero_label)
    let reduce_zero_label = match (t.get("reduce_zero_label"), family) {
        (Some(serde_json::Value::Bool(b)), _) => Some(*b),
        (Some(other), _) => {
            bail!("{origin}: `train.reduce_zero_label` must be true or false, not {other}")
        }
        (None, Family::SemanticFpn) => Some(false),
        (None, _) => None,
    };
    Ok(TestSettings {
        scale,
        class_names,
        reduce_zero_label,
    })
}

/// How a model is loaded. Later settings (device placement, dtype) are added here, so that
/// callers written against [`LoadOptions::default`] keep compiling.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Where the tensors live (the CPU by default).
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
        }
    }
}

impl LoadOptions {
    /// Places the model on `device`.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
}

/// Class names from a run's settings, when there is one per class.
fn recorded_names(config: &ModelConfig) -> Option<Vec<String>> {
    let names = &config.test.class_names;
    (!names.is_empty() && names.len() == config.arch.num_classes()).then(|| names.clone())
}

/// A detector (RetinaNet or Mask R-CNN) from `config` and the checkpoint `weights` (official,
/// mmdetection or safetensors; loaded strictly), with the test scale and class names its
/// training run recorded.
pub fn load_detector(
    config: &ModelConfig,
    weights: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<Box<dyn ImageDetector>> {
    ensure!(
        config.family().is_detector(),
        "{} describes a {}, not a detector (RetinaNet or Mask R-CNN)",
        config.describe(),
        config.family()
    );
    let ckpt = Checkpoint::load(weights.as_ref())?;
    let dev = &opts.device;
    let names = recorded_names(config);
    Ok(match &config.arch {
        Architecture::RetinaNet(cfg) => {
            let (model, info) = RetinaNetPvt::load(&ckpt, cfg, dev)?;
            let mut det = RetinaNetDetector::new(model, dev)?.with_load_info(info);
            if let Some(s) = config.test.scale {
                det.scale = s;
            }
            if let Some(n) = names {
                det = det.with_class_names(n)?;
            }
            Box::new(det)
        }
        Architecture::MaskRcnn(cfg) => {
            let (model, info) = MaskRcnnPvt::load(&ckpt, cfg, dev)?;
            let mut det = MaskRcnnDetector::new(model, dev)?.with_load_info(info);
            if let Some(s) = config.test.scale {
                det.scale = s;
            }
            if let Some(n) = names {
                det = det.with_class_names(n)?;
            }
            Box::new(det)
        }
        Architecture::SemanticFpn(_) => bail!("a segmenter is not a detector"),
    })
}

/// A segmenter (Semantic FPN) from `config` and the checkpoint `weights`, with the test scale,
/// label convention and class names its training run recorded.
pub fn load_segmenter(
    config: &ModelConfig,
    weights: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<Box<dyn Segmenter>> {
    let Architecture::SemanticFpn(cfg) = &config.arch else {
        bail!(
            "{} describes a {}, not a segmenter (Semantic FPN)",
            config.describe(),
            config.family()
        )
    };
    let ckpt = Checkpoint::load(weights.as_ref())?;
    let (model, info) = SemanticFpnPvt::load(&ckpt, cfg, &opts.device)?;
    let mut seg = SemanticFpnSegmenter::new(model, recorded_names(config))?.with_load_info(info);
    let mut test = seg.test_config().clone();
    if let Some(s) = config.test.scale {
        test.scale = s;
    }
    seg.set_test_config(test)?;
    if let Some(r) = config.test.reduce_zero_label {
        seg.reduce_zero_label = r;
    }
    Ok(Box::new(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_the_family() {
        for (name, f) in [
            ("retinanet_pvt_tiny_fpn_1x_coco", Family::RetinaNet),
            ("retinanet_pvtv2_b0_fpn_1x_coco", Family::RetinaNet),
            ("mask_rcnn_pvt_v2_b2_fpn_1x_coco", Family::MaskRcnn),
            ("fpn_pvt_s_ade20k_40k", Family::SemanticFpn),
        ] {
            assert_eq!(ModelConfig::from_name(name).unwrap().family(), f, "{name}");
        }
        let e = ModelConfig::from_name("yolo").unwrap_err().to_string();
        assert!(
            e.contains("unknown model `yolo`") && e.contains("fpn_pvt_"),
            "{e}"
        );
    }

    #[test]
    fn json_tag_round_trip_and_untagged_files() {
        for name in [
            "retinanet_pvt_tiny_fpn_1x_coco",
            "mask_rcnn_pvt_small_fpn_1x_coco",
            "fpn_pvt_t_ade20k_40k",
        ] {
            let c = ModelConfig::from_name(name).unwrap();
            let v = c.arch.to_json();
            assert_eq!(v["family"], c.family().tag());
            let back = ModelConfig::from_json(&v.to_string(), "t").unwrap();
            assert_eq!(back.arch, c.arch);
            // the same file without its tag: the fields decide
            let mut untagged = v.clone();
            untagged.as_object_mut().unwrap().remove("family");
            let back = ModelConfig::from_json(&untagged.to_string(), "t").unwrap();
            assert_eq!(back.arch, c.arch, "{name}");
        }
    }

    #[test]
    fn a_tag_decides_and_wrong_ones_are_named() {
        // a Semantic FPN config tagged as RetinaNet is read as RetinaNet, and fails on the
        // field that family needs
        let mut v = ModelConfig::from_name("fpn_pvt_t_ade20k_40k")
            .unwrap()
            .arch
            .to_json();
        v["family"] = "retinanet".into();
        let e = format!(
            "{:#}",
            ModelConfig::from_json(&v.to_string(), "f.json").unwrap_err()
        );
        assert!(e.contains("f.json: invalid RetinaNet-PVT config"), "{e}");
        assert!(e.contains("stacked_convs"), "{e}");
        v["family"] = "detr2".into();
        let e = format!(
            "{:#}",
            ModelConfig::from_json(&v.to_string(), "f.json").unwrap_err()
        );
        assert!(e.contains("unknown `family` \"detr2\""), "{e}");
        v["family"] = 3.into();
        assert!(ModelConfig::from_json(&v.to_string(), "f.json").is_err());
        let e = format!("{:#}", ModelConfig::from_json("[1]", "f.json").unwrap_err());
        assert!(e.contains("JSON object"), "{e}");
    }

    #[test]
    fn training_settings_for_testing() {
        let mut v = ModelConfig::from_name("fpn_pvt_t_ade20k_40k")
            .unwrap()
            .arch
            .to_json();
        v["train"] = serde_json::json!({"test_scale": [240, 192], "class_names": ["a", "b"]});
        let c = ModelConfig::from_json(&v.to_string(), "t").unwrap();
        assert_eq!(c.test.scale, Some((240, 192)));
        assert_eq!(c.test.class_names, ["a", "b"]);
        // a segmenter's training run reads labels as they are unless it says otherwise
        assert_eq!(c.test.reduce_zero_label, Some(false));
        assert!(c.train.is_some());
        v["train"]["test_scale"] = serde_json::json!("big");
        let e = format!(
            "{:#}",
            ModelConfig::from_json(&v.to_string(), "t").unwrap_err()
        );
        assert!(e.contains("train.test_scale"), "{e}");
        let plain = ModelConfig::from_name("fpn_pvt_t_ade20k_40k").unwrap();
        assert_eq!(plain.test, TestSettings::default());
    }

    #[test]
    fn loaders_refuse_the_other_kind() {
        let seg = ModelConfig::from_name("fpn_pvt_t_ade20k_40k").unwrap();
        // the family is checked before the weights are read
        let e = load_detector(&seg, "/nonexistent.safetensors", &LoadOptions::default());
        let e = format!("{:#}", e.err().unwrap());
        assert!(e.contains("not a detector"), "{e}");
        let det = ModelConfig::from_name("retinanet_pvt_tiny_fpn_1x_coco").unwrap();
        let e = format!(
            "{:#}",
            load_segmenter(&det, "/nonexistent.safetensors", &LoadOptions::default())
                .err()
                .unwrap()
        );
        assert!(e.contains("not a segmenter"), "{e}");
    }

    #[test]
    fn tagging_replaces_the_family() {
        let mut v = serde_json::json!({"a": 1, "family": "x", "b": 2});
        tag_json(&mut v, Family::MaskRcnn);
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "family": "mask_rcnn", "b": 2})
        );
    }
}
