//! Strict loading of PVT v1 checkpoints into the dense and classifier forms.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle::{Device, Tensor};
use pvt_nn::checkpoint::{Checkpoint, Container};
use pvt_nn::StrictLoader;

use crate::config::{Numerics, PvtConfig, PvtV1};
use crate::model::{PvtClassifier, PvtDense};
use crate::naming::{mmdet_to_official, split_backbone, Dialect};

/// What loading found and set aside.
#[derive(Debug, Clone)]
pub struct LoadInfo {
    /// Container of the file.
    pub container: Container,
    /// Top-level key the state dict was under (`state_dict`, `model`), if any.
    pub wrapper: Option<String>,
    /// Prefix removed from backbone keys (`backbone.`), if any.
    pub prefix: Option<String>,
    /// Naming scheme of the backbone tensors.
    pub dialect: Dialect,
    /// Numerics the model was built with.
    pub numerics: Numerics,
    /// Tensors (or rows) dropped on purpose, e.g. the classifier's `cls_token`, `norm.*`,
    /// `head.*` when loading the dense form.
    pub dropped: Vec<String>,
    /// Keys outside the backbone (necks, heads) that this model does not use.
    pub outside: Vec<String>,
}

impl LoadInfo {
    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        summary(
            self.container,
            self.wrapper.as_deref(),
            self.prefix.as_deref(),
            &self.dialect,
            &self.dropped,
            &self.outside,
        )
    }
}

/// The one-paragraph load summary both generations print.
pub(crate) fn summary(
    container: Container,
    wrapper: Option<&str>,
    prefix: Option<&str>,
    dialect: &dyn std::fmt::Display,
    dropped: &[String],
    outside: &[String],
) -> String {
    let mut s = format!("{container} container");
    if let Some(w) = wrapper {
        s += &format!(", state dict under `{w}`");
    }
    if let Some(p) = prefix {
        s += &format!(", backbone under `{p}`");
    }
    s += &format!(", {dialect} naming");
    if !dropped.is_empty() {
        s += &format!(
            "; dropped {} tensor(s) the dense backbone does not use: {}",
            dropped.len(),
            dropped.join(", ")
        );
    }
    if !outside.is_empty() {
        s += &format!(
            "; {} tensor(s) outside the backbone (neck, heads)",
            outside.len()
        );
    }
    s
}

struct Prepared {
    tensors: BTreeMap<String, Tensor>,
    info: LoadInfo,
}

fn prepare(ckpt: &Checkpoint, cfg: &PvtConfig) -> Result<Prepared> {
    let bb = split_backbone(&ckpt.tensors).with_context(|| format!("{}", ckpt.path.display()))?;
    let tensors = match bb.dialect {
        Dialect::Official => bb.tensors,
        Dialect::Mmdet => mmdet_to_official(&bb.tensors)?,
    };
    let numerics = cfg.numerics.unwrap_or(match bb.dialect {
        Dialect::Official => Numerics::OFFICIAL,
        Dialect::Mmdet => Numerics::MMDET,
    });
    let info = LoadInfo {
        container: ckpt.container,
        wrapper: ckpt.wrapper.clone(),
        prefix: bb.prefix,
        dialect: bb.dialect,
        numerics,
        dropped: vec![],
        outside: bb.outside,
    };
    Ok(Prepared { tensors, info })
}

/// Loads the dense backbone from any supported checkpoint: official classification or
/// detection files, mmdetection files, with or without `backbone.` prefix. Classifier-only
/// tensors are dropped and reported in [`LoadInfo::dropped`]; anything else that does not fit
/// is an error listing every missing, unexpected and wrong-shaped tensor.
pub fn load_dense(
    ckpt: &Checkpoint,
    cfg: &PvtConfig,
    device: &Device,
) -> Result<(PvtDense, LoadInfo)> {
    let Prepared {
        mut tensors,
        mut info,
    } = prepare(ckpt, cfg)?;
    for k in [
        "cls_token",
        "norm.weight",
        "norm.bias",
        "head.weight",
        "head.bias",
    ] {
        if tensors.remove(k).is_some() {
            info.dropped.push(k.to_string());
        }
    }
    let g = cfg.pos_grid(3);
    if let Some(p) = tensors.get("pos_embed4") {
        if p.rank() == 3 && p.dim(1)? == g * g + 1 {
            let spatial = p.narrow(1, 1, g * g)?;
            tensors.insert("pos_embed4".into(), spatial);
            info.dropped.push("pos_embed4[:, 0] (cls position)".into());
        }
    }
    let loader = StrictLoader::new(tensors, ckpt.path.display().to_string());
    let model = PvtDense::new(cfg, info.numerics, loader.var_builder(device))?;
    loader.finish()?;
    Ok((model, info))
}

/// Loads the ImageNet classifier (official classification checkpoints).
pub fn load_classifier(
    ckpt: &Checkpoint,
    cfg: &PvtConfig,
    device: &Device,
) -> Result<(PvtClassifier, LoadInfo)> {
    let Prepared { tensors, info } = prepare(ckpt, cfg)?;
    let has_head = tensors.contains_key("head.weight");
    let loader = StrictLoader::new(tensors, ckpt.path.display().to_string());
    let model = PvtClassifier::new(cfg, info.numerics, loader.var_builder(device))?;
    loader.finish().map_err(|e| {
        if has_head {
            e
        } else {
            e.context("this checkpoint has no classifier (cls_token, norm, head): it is a dense backbone; use it with `pvt features`")
        }
    })?;
    Ok((model, info))
}

/// Guesses which published size a backbone state dict holds, from its widths and depths.
pub fn guess_variant(tensors: &BTreeMap<String, Tensor>) -> Option<PvtV1> {
    let bb = split_backbone(tensors).ok()?;
    let t = match bb.dialect {
        Dialect::Official => bb.tensors,
        Dialect::Mmdet => mmdet_to_official(&bb.tensors).ok()?,
    };
    let mut depths = [0usize; 4];
    let mut dims = [0usize; 4];
    for (i, (d, c)) in depths.iter_mut().zip(dims.iter_mut()).enumerate() {
        let prefix = format!("block{}.", i + 1);
        *d = t
            .keys()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        *c = t
            .get(&format!("patch_embed{}.proj.weight", i + 1))
            .and_then(|w| w.dim(0).ok())
            .unwrap_or(0);
    }
    PvtV1::ALL.into_iter().find(|v| {
        let cfg = v.config();
        v.depths() == depths && cfg.stages.iter().zip(dims).all(|(s, c)| s.embed_dim == c)
    })
}
