//! The checkpoint dialects of PVT v1 backbones and the conversions between them.
//!
//! The model is built from the **official** key names (whai362/PVT: `patch_embed{i}`,
//! `pos_embed{i}`, `block{i}.{j}`). mmdetection's reimplementation names the same
//! tensors `layers.{s}.{0|1}...` with the position table in slot 0 of each stage (so blocks are
//! shifted by one), a fused attention `in_proj` (= `[q; kv]`) and 1×1-conv MLP weights; its
//! stage-4 table has no cls row. Detector and segmentor checkpoints prefix the backbone with
//! `backbone.`. Everything here is a pure rename / reshape / split: values are untouched.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use candle::Tensor;

/// Which naming scheme a backbone state dict uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// whai362/PVT naming (classification releases and the official detection/segmentation
    /// checkpoints).
    Official,
    /// mmdetection / mmsegmentation `PyramidVisionTransformer` naming.
    Mmdet,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Official => "official PVT (patch_embed{i} / block{i}.{j})",
            Dialect::Mmdet => "mmdetection (layers.{s}.{0|1}.*)",
        })
    }
}

/// A backbone state dict cut out of a checkpoint.
#[derive(Debug)]
pub struct BackboneTensors {
    /// The prefix removed from the keys (`"backbone."` for detector checkpoints), if any.
    pub prefix: Option<String>,
    /// The tensors with the prefix removed.
    pub tensors: BTreeMap<String, Tensor>,
    /// Keys outside the backbone (neck, heads), left for other models.
    pub outside: Vec<String>,
    /// The dialect of `tensors`.
    pub dialect: Dialect,
}

/// Splits off the tensors under `prefix` (e.g. `"backbone."`) when any key has it: returns the
/// prefix if it was found, the tensors with it removed, and the keys outside it. Without such a
/// key, everything is returned as is.
pub fn split_prefix(
    all: &BTreeMap<String, Tensor>,
    prefix: &str,
) -> (Option<String>, BTreeMap<String, Tensor>, Vec<String>) {
    if !all.keys().any(|k| k.starts_with(prefix)) {
        return (None, all.clone(), vec![]);
    }
    let mut inside = BTreeMap::new();
    let mut outside = vec![];
    for (k, v) in all {
        match k.strip_prefix(prefix) {
            Some(rest) => {
                inside.insert(rest.to_string(), v.clone());
            }
            None => outside.push(k.clone()),
        }
    }
    (Some(prefix.to_string()), inside, outside)
}

/// Finds the backbone part of a checkpoint and its dialect.
pub fn split_backbone(all: &BTreeMap<String, Tensor>) -> Result<BackboneTensors> {
    let (prefix, tensors, outside) = split_prefix(all, "backbone.");
    let dialect = detect_dialect(tensors.keys().map(String::as_str))?;
    Ok(BackboneTensors {
        prefix,
        tensors,
        outside,
        dialect,
    })
}

/// Detects the dialect from the key names.
pub fn detect_dialect<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Result<Dialect> {
    if keys
        .clone()
        .any(|k| k.starts_with("patch_embed1.") || k.starts_with("block1."))
    {
        return Ok(Dialect::Official);
    }
    if keys
        .clone()
        .any(|k| k.starts_with("layers.0.0.projection.") || k.starts_with("layers.0.1."))
    {
        return Ok(Dialect::Mmdet);
    }
    let sample: Vec<&str> = keys.take(6).collect();
    if sample
        .iter()
        .any(|k| k.starts_with("stages.") || k.starts_with("patch_embed."))
    {
        bail!("this looks like a timm PVT v2 checkpoint (keys such as {sample:?}); PVT v1 loading expects official or mmdetection names");
    }
    if sample.iter().any(|k| k.starts_with("pvt.")) {
        bail!("this looks like a Hugging Face transformers PVT checkpoint (keys such as {sample:?}); convert it to the official names first");
    }
    Err(anyhow!("unrecognised key names for a PVT v1 backbone (first keys: {sample:?}); expected `patch_embed1.proj.weight` (official) or `layers.0.0.projection.weight` (mmdetection)"))
}

fn parse_usize(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// Renames an mmdetection-named PVT v1 state dict to official names. Keys that do not fit the
/// grammar are passed through unchanged so that strict loading reports them.
pub fn mmdet_to_official(src: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (k, v) in src {
        let parts: Vec<&str> = k.split('.').collect();
        let renamed: Option<Vec<(String, Tensor)>> = (|| {
            if parts.len() < 4 || parts[0] != "layers" {
                return None;
            }
            let stage = parse_usize(parts[1])? + 1;
            match (parts[2], parts[3]) {
                ("0", "projection") => Some(vec![(
                    format!("patch_embed{stage}.proj.{}", parts[4..].join(".")),
                    v.clone(),
                )]),
                ("0", "norm") => Some(vec![(
                    format!("patch_embed{stage}.norm.{}", parts[4..].join(".")),
                    v.clone(),
                )]),
                ("1", "0") if parts.len() == 5 && parts[4] == "pos_embed" => {
                    Some(vec![(format!("pos_embed{stage}"), v.clone())])
                }
                ("1", j) => {
                    let j = parse_usize(j)?.checked_sub(1)?;
                    let rest = parts[4..].join(".");
                    let b = format!("block{stage}.{j}");
                    match rest.as_str() {
                        "attn.attn.in_proj_weight" | "attn.attn.in_proj_bias" => {
                            let rows = v.dim(0).ok()?;
                            if rows % 3 != 0 {
                                return None;
                            }
                            let c = rows / 3;
                            let suffix = if rest.ends_with("weight") {
                                "weight"
                            } else {
                                "bias"
                            };
                            Some(vec![
                                (
                                    format!("{b}.attn.q.{suffix}"),
                                    v.narrow(0, 0, c).ok()?.contiguous().ok()?,
                                ),
                                (
                                    format!("{b}.attn.kv.{suffix}"),
                                    v.narrow(0, c, 2 * c).ok()?.contiguous().ok()?,
                                ),
                            ])
                        }
                        _ => {
                            let (new_rest, squeeze) =
                                if let Some(t) = rest.strip_prefix("attn.attn.out_proj.") {
                                    (format!("attn.proj.{t}"), false)
                                } else if let Some(t) = rest.strip_prefix("ffn.layers.0.") {
                                    (format!("mlp.fc1.{t}"), t == "weight")
                                } else if let Some(t) = rest.strip_prefix("ffn.layers.3.") {
                                    (format!("mlp.fc2.{t}"), t == "weight")
                                } else {
                                    (rest.clone(), false)
                                };
                            let v = if squeeze && v.rank() == 4 {
                                v.squeeze(3).ok()?.squeeze(2).ok()?
                            } else {
                                v.clone()
                            };
                            Some(vec![(format!("{b}.{new_rest}"), v)])
                        }
                    }
                }
                _ => None,
            }
        })();
        match renamed {
            Some(items) => out.extend(items),
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

/// Renames an official-named dense backbone state dict to mmdetection names (the inverse of
/// [`mmdet_to_official`]). Classifier tensors must have been removed and `pos_embed4` must be
/// the spatial 49-row table.
pub fn official_to_mmdet(src: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let mut q_parts: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (k, v) in src {
        let parts: Vec<&str> = k.split('.').collect();
        let new_key = if let Some(i) = k.strip_prefix("pos_embed").and_then(parse_usize) {
            format!("layers.{}.1.0.pos_embed", i - 1)
        } else if let Some(rest) = parts[0].strip_prefix("patch_embed").and_then(parse_usize) {
            let what = match parts.get(1) {
                Some(&"proj") => "projection",
                Some(&"norm") => "norm",
                _ => bail!("unexpected key {k}"),
            };
            format!("layers.{}.0.{what}.{}", rest - 1, parts[2..].join("."))
        } else if let Some(stage) = parts[0].strip_prefix("block").and_then(parse_usize) {
            let j: usize = parts
                .get(1)
                .and_then(|s| parse_usize(s))
                .ok_or_else(|| anyhow!("unexpected key {k}"))?;
            let base = format!("layers.{}.1.{}", stage - 1, j + 1);
            let rest = parts[2..].join(".");
            match rest.as_str() {
                "attn.q.weight" | "attn.q.bias" | "attn.kv.weight" | "attn.kv.bias" => {
                    let suffix = if rest.ends_with("weight") {
                        "in_proj_weight"
                    } else {
                        "in_proj_bias"
                    };
                    let e = q_parts
                        .entry(format!("{base}.attn.attn.{suffix}"))
                        .or_default();
                    if rest.starts_with("attn.q.") {
                        e.0 = Some(v.clone());
                    } else {
                        e.1 = Some(v.clone());
                    }
                    continue;
                }
                _ => {}
            }
            let (new_rest, unsqueeze) = if let Some(t) = rest.strip_prefix("attn.proj.") {
                (format!("attn.attn.out_proj.{t}"), false)
            } else if let Some(t) = rest.strip_prefix("mlp.fc1.") {
                (format!("ffn.layers.0.{t}"), t == "weight")
            } else if let Some(t) = rest.strip_prefix("mlp.fc2.") {
                (format!("ffn.layers.3.{t}"), t == "weight")
            } else {
                (rest.clone(), false)
            };
            let v = if unsqueeze {
                v.unsqueeze(2)?.unsqueeze(3)?
            } else {
                v.clone()
            };
            out.insert(format!("{base}.{new_rest}"), v);
            continue;
        } else {
            bail!("key {k} has no mmdetection counterpart in a dense PVT v1 backbone");
        };
        out.insert(new_key, v.clone());
    }
    for (k, (q, kv)) in q_parts {
        let (q, kv) = q
            .zip(kv)
            .ok_or_else(|| anyhow!("{k}: q and kv must both be present"))?;
        out.insert(k, Tensor::cat(&[q, kv], 0)?);
    }
    Ok(out)
}
