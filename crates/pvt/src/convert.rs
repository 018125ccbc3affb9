//! Checkpoint conversion between the namings PVT ships in: official (whai362/PVT), mmdetection,
//! and timm (PVT v2 only), for bare backbones and whole detectors / segmenters (the backbone
//! under `backbone.`; every other tensor is copied unchanged).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle::{DType, Tensor};

use crate::naming::{mmdet_to_official, official_to_mmdet, split_backbone, Dialect};
use crate::naming_v2::{from_official_v2, split_backbone_v2, to_official_v2, DialectV2};

/// The PVT generation of a checkpoint, by its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// PVT v1.
    V1,
    /// PVT v2.
    V2,
}

impl Generation {
    /// Every PVT v2 block has a depth-wise conv in its MLP (`dwconv`; mmdetection:
    /// `ffn.layers.1`, which moves fc2 to `ffn.layers.4`); v1 has none.
    pub fn of_keys<'a>(mut keys: impl Iterator<Item = &'a String>) -> Self {
        if keys.any(|k| k.contains("dwconv") || k.contains(".ffn.layers.4.")) {
            Generation::V2
        } else {
            Generation::V1
        }
    }
}

/// A naming to convert the backbone's tensors to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// whai362/PVT names (`patch_embed{i}`, `block{i}.{j}`, v2: `norm{i}`).
    Official,
    /// mmdetection names (`layers.{s}...`); dense backbone only (classifier tensors are
    /// dropped).
    Mmdet,
    /// timm names (`patch_embed`, `stages.{s}...`); PVT v2 only.
    Timm,
}

/// Converted tensors, and what the conversion dropped or the user should know.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The tensors, the backbone's renamed, every other one as it was.
    pub tensors: BTreeMap<String, Tensor>,
    /// One line per dropped tensor or caveat.
    pub notes: Vec<String>,
}

/// Renames the backbone tensors of `all` (any generation, any naming, with or without a
/// `backbone.` prefix) to `target`; the prefix and the tensors outside the backbone are kept.
pub fn convert_naming(all: &BTreeMap<String, Tensor>, target: Naming) -> Result<Converted> {
    match Generation::of_keys(all.keys()) {
        Generation::V2 => convert_v2(all, target),
        Generation::V1 => convert_v1(all, target),
    }
}

/// Casts every floating-point tensor to `dtype` (integer tensors are kept).
pub fn cast_floats(tensors: &mut BTreeMap<String, Tensor>, dtype: DType) -> Result<()> {
    for t in tensors.values_mut() {
        if t.dtype().is_float() {
            *t = t.to_dtype(dtype)?;
        }
    }
    Ok(())
}

/// `renamed` under `prefix`, plus the tensors of `all` outside the backbone.
fn reassemble(
    all: &BTreeMap<String, Tensor>,
    renamed: BTreeMap<String, Tensor>,
    prefix: Option<String>,
    outside: Vec<String>,
) -> BTreeMap<String, Tensor> {
    let prefix = prefix.unwrap_or_default();
    let mut out: BTreeMap<String, Tensor> = renamed
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect();
    for k in outside {
        out.insert(k.clone(), all[&k].clone());
    }
    out
}

fn convert_v1(all: &BTreeMap<String, Tensor>, target: Naming) -> Result<Converted> {
    let mut notes = Vec::new();
    let bb = split_backbone(all)?;
    let official = match bb.dialect {
        Dialect::Official => bb.tensors,
        Dialect::Mmdet => mmdet_to_official(&bb.tensors)?,
    };
    let renamed = match target {
        Naming::Official => official,
        Naming::Timm => bail!(
            "timm names exist for PVT v2 only; this is a PVT v1 checkpoint (use --naming official or mmdet)"
        ),
        Naming::Mmdet => {
            let mut dense = official;
            for k in [
                "cls_token",
                "norm.weight",
                "norm.bias",
                "head.weight",
                "head.bias",
            ] {
                if dense.remove(k).is_some() {
                    notes.push(format!(
                        "dropped classifier tensor {k} (mmdetection backbones have none)"
                    ));
                }
            }
            if let Some(p) = dense.get("pos_embed4").cloned() {
                let rows = p.dim(1)?;
                let side = (rows as f64).sqrt() as usize;
                if side * side != rows {
                    dense.insert("pos_embed4".into(), p.narrow(1, 1, rows - 1)?);
                    notes.push("dropped pos_embed4 row 0 (cls position)".into());
                }
            }
            official_to_mmdet(&dense)?
        }
    };
    Ok(Converted {
        tensors: reassemble(all, renamed, bb.prefix, bb.outside),
        notes,
    })
}

/// PVT v2: any naming to official, then to the target.
fn convert_v2(all: &BTreeMap<String, Tensor>, target: Naming) -> Result<Converted> {
    let mut notes = Vec::new();
    let bb = split_backbone_v2(all)?;
    let mut official = to_official_v2(bb.dialect, &bb.tensors)?;
    let dialect = match target {
        Naming::Official => DialectV2::Official,
        Naming::Timm => DialectV2::Timm,
        Naming::Mmdet => DialectV2::Mmdet,
    };
    if dialect == DialectV2::Mmdet {
        for k in ["head.weight", "head.bias"] {
            if official.remove(k).is_some() {
                notes.push(format!(
                    "dropped classifier tensor {k} (mmdetection backbones have none)"
                ));
            }
        }
    }
    let renamed = from_official_v2(dialect, &official)?;
    if (bb.dialect == DialectV2::Mmdet) != (dialect == DialectV2::Mmdet) {
        notes.push(format!(
            "note: loaders take the LayerNorm epsilons from the naming (mmdetection: 1e-6 everywhere; \
             official / timm: 1e-5 in the patch-embedding and spatial-reduction norms); set \
             \"norm_eps\": \"{}\" in a JSON config to keep the input's numerics",
            if bb.dialect == DialectV2::Mmdet {
                "mmdet"
            } else {
                "official"
            },
        ));
    }
    Ok(Converted {
        tensors: reassemble(all, renamed, bb.prefix, bb.outside),
        notes,
    })
}
