//! The checkpoint dialects of PVT v2 backbones and the renamings between them (each to and from
//! the official names).
//!
//! The model is built from the **official** whai362/PVT v2 names:
//! `patch_embed{i}.{proj,norm}`, `block{i}.{j}.{norm1, attn.q, attn.kv, attn.proj, attn.sr,
//! attn.norm, norm2, mlp.fc1, mlp.dwconv.dwconv, mlp.fc2}`, `norm{i}`, `head`.
//! Two other namings hold the same tensors:
//!
//! - **timm** (`timm/models/pvt_v2.py`, whose `checkpoint_filter_fn` maps official → timm):
//!   `patch_embed.*` (stage-1 stem), `stages.{s}.downsample.*` (s = 1..3),
//!   `stages.{s}.blocks.{j}.*` with `mlp.dwconv.*` instead of `mlp.dwconv.dwconv.*`,
//!   `stages.{s}.norm.*`, `head.*` (a plain `Linear`, also in timm ≥ 0.9).
//! - **mmdetection** `PyramidVisionTransformerV2` (`mmdet/models/backbones/pvt.py`, inverse of its
//!   `pvt_convert`): `layers.{s}.0.{projection,norm}`, blocks at `layers.{s}.1.{j}` (no
//!   position-embedding slot, so no index shift), fused `attn.attn.in_proj_{weight,bias}` =
//!   `[q; kv]`, `attn.attn.out_proj`, `ffn.layers.{0,1,4}` = fc1 (1×1 conv), depth-wise conv, fc2
//!   (1×1 conv), and `layers.{s}.2` = the stage norm. mmdetection has no linear-SRA option.
//!
//! Detector checkpoints prefix the backbone with `backbone.`. Everything here is a pure rename /
//! reshape / split: values are untouched. Keys that fit no grammar pass through unchanged so that
//! strict loading reports them.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use candle::Tensor;

use crate::naming::split_prefix;

/// Which naming scheme a PVT v2 backbone state dict uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectV2 {
    /// whai362/PVT v2 names (classification releases, official detection / segmentation).
    Official,
    /// timm `pvt_v2_*` names.
    Timm,
    /// mmdetection `PyramidVisionTransformerV2` names.
    Mmdet,
}

impl std::fmt::Display for DialectV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DialectV2::Official => "official PVT v2 (patch_embed{i} / block{i}.{j} / norm{i})",
            DialectV2::Timm => "timm (patch_embed / stages.{s}.*)",
            DialectV2::Mmdet => "mmdetection (layers.{s}.{0|1|2}.*)",
        })
    }
}

/// A PVT v2 backbone state dict cut out of a checkpoint, in its own dialect.
#[derive(Debug)]
pub struct BackboneTensorsV2 {
    /// The prefix removed from the keys (`"backbone."`), if any.
    pub prefix: Option<String>,
    /// The tensors with the prefix removed.
    pub tensors: BTreeMap<String, Tensor>,
    /// Keys outside the backbone (neck, heads), left for other models.
    pub outside: Vec<String>,
    /// The dialect of `tensors`.
    pub dialect: DialectV2,
}

/// Finds the backbone part of a checkpoint and its dialect.
pub fn split_backbone_v2(all: &BTreeMap<String, Tensor>) -> Result<BackboneTensorsV2> {
    let (prefix, tensors, outside) = split_prefix(all, "backbone.");
    let dialect = detect_dialect_v2(tensors.keys().map(String::as_str))?;
    Ok(BackboneTensorsV2 {
        prefix,
        tensors,
        outside,
        dialect,
    })
}

/// Detects the dialect from the key names, with a hint when the file holds a PVT v1 model.
pub fn detect_dialect_v2<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Result<DialectV2> {
    let any = |p: &dyn Fn(&str) -> bool| keys.clone().any(p);
    if any(&|k| k.starts_with("pos_embed") || k == "cls_token" || k.ends_with(".1.0.pos_embed")) {
        bail!("this is a PVT v1 checkpoint (it has position embeddings, which PVT v2 does not); use a pvt_tiny ... pvt_large architecture");
    }
    if any(&|k| k.starts_with("patch_embed1.") || k.starts_with("block1.")) {
        return Ok(DialectV2::Official);
    }
    if any(&|k| k.starts_with("patch_embed.") || k.starts_with("stages.")) {
        return Ok(DialectV2::Timm);
    }
    if any(&|k| k.starts_with("layers.0.0.projection.") || k.starts_with("layers.0.1.")) {
        return Ok(DialectV2::Mmdet);
    }
    let sample: Vec<&str> = keys.take(6).collect();
    if sample.iter().any(|k| k.starts_with("pvt_v2.")) {
        bail!("this looks like a Hugging Face transformers PVT v2 checkpoint (keys such as {sample:?}); convert it to the official or timm names first");
    }
    Err(anyhow!("unrecognised key names for a PVT v2 backbone (first keys: {sample:?}); expected `patch_embed1.proj.weight` (official), `patch_embed.proj.weight` (timm) or `layers.0.0.projection.weight` (mmdetection)"))
}

/// Converts a backbone state dict of any dialect to official names.
pub fn to_official_v2(
    dialect: DialectV2,
    src: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    match dialect {
        DialectV2::Official => Ok(src.clone()),
        DialectV2::Timm => Ok(timm_to_official(src)),
        DialectV2::Mmdet => mmdet_v2_to_official(src),
    }
}

fn parse_usize(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// Renames timm keys to official ones (the inverse of timm's `checkpoint_filter_fn`).
pub fn timm_to_official(src: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    src.iter()
        .map(|(k, v)| {
            (
                timm_key_to_official(k).unwrap_or_else(|| k.clone()),
                v.clone(),
            )
        })
        .collect()
}

fn timm_key_to_official(k: &str) -> Option<String> {
    if let Some(rest) = k.strip_prefix("patch_embed.") {
        return Some(format!("patch_embed1.{rest}"));
    }
    let rest = k.strip_prefix("stages.")?;
    let (s, rest) = rest.split_once('.')?;
    let i = parse_usize(s)? + 1;
    if let Some(r) = rest.strip_prefix("downsample.") {
        return (i > 1).then(|| format!("patch_embed{i}.{r}"));
    }
    if let Some(r) = rest.strip_prefix("norm.") {
        return Some(format!("norm{i}.{r}"));
    }
    let r = rest.strip_prefix("blocks.")?;
    let (j, leaf) = r.split_once('.')?;
    let j = parse_usize(j)?;
    let leaf = match leaf.strip_prefix("mlp.dwconv.") {
        Some(t) => format!("mlp.dwconv.dwconv.{t}"),
        None => leaf.to_string(),
    };
    Some(format!("block{i}.{j}.{leaf}"))
}

/// Renames mmdetection `PyramidVisionTransformerV2` keys to official ones: splits the fused
/// `in_proj` into q and kv, squeezes the 1×1-conv FFN weights to linear ones.
pub fn mmdet_v2_to_official(src: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (k, v) in src {
        match mmdet_item_to_official(k, v)? {
            Some(items) => out.extend(items),
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

fn squeeze_1x1(v: &Tensor) -> Result<Tensor> {
    Ok(if v.rank() == 4 && v.dim(2)? == 1 && v.dim(3)? == 1 {
        v.squeeze(3)?.squeeze(2)?
    } else {
        v.clone()
    })
}

fn mmdet_item_to_official(k: &str, v: &Tensor) -> Result<Option<Vec<(String, Tensor)>>> {
    let parts: Vec<&str> = k.split('.').collect();
    if parts.len() < 4 || parts[0] != "layers" {
        return Ok(None);
    }
    let Some(stage) = parse_usize(parts[1]).map(|s| s + 1) else {
        return Ok(None);
    };
    let one = |name: String, t: Tensor| Ok(Some(vec![(name, t)]));
    match parts[2] {
        "0" => {
            let what = match parts[3] {
                "projection" => "proj",
                "norm" => "norm",
                _ => return Ok(None),
            };
            one(
                format!("patch_embed{stage}.{what}.{}", parts[4..].join(".")),
                v.clone(),
            )
        }
        "2" => one(format!("norm{stage}.{}", parts[3..].join(".")), v.clone()),
        "1" => {
            let Some(j) = parse_usize(parts[3]) else {
                return Ok(None);
            };
            let b = format!("block{stage}.{j}");
            let rest = parts[4..].join(".");
            match rest.as_str() {
                "attn.attn.in_proj_weight" | "attn.attn.in_proj_bias" => {
                    let rows = v.dim(0)?;
                    if rows % 3 != 0 {
                        // leave it for strict loading to report
                        return Ok(None);
                    }
                    let c = rows / 3;
                    let leaf = if rest.ends_with("weight") {
                        "weight"
                    } else {
                        "bias"
                    };
                    Ok(Some(vec![
                        (
                            format!("{b}.attn.q.{leaf}"),
                            v.narrow(0, 0, c)?.contiguous()?,
                        ),
                        (
                            format!("{b}.attn.kv.{leaf}"),
                            v.narrow(0, c, 2 * c)?.contiguous()?,
                        ),
                    ]))
                }
                _ => {
                    if let Some(t) = rest.strip_prefix("attn.attn.out_proj.") {
                        return one(format!("{b}.attn.proj.{t}"), v.clone());
                    }
                    if let Some(t) = rest.strip_prefix("ffn.layers.0.") {
                        return one(format!("{b}.mlp.fc1.{t}"), squeeze_1x1(v)?);
                    }
                    if let Some(t) = rest.strip_prefix("ffn.layers.1.") {
                        return one(format!("{b}.mlp.dwconv.dwconv.{t}"), v.clone());
                    }
                    if let Some(t) = rest.strip_prefix("ffn.layers.4.") {
                        return one(format!("{b}.mlp.fc2.{t}"), squeeze_1x1(v)?);
                    }
                    // norm1, norm2, attn.sr.*, attn.norm.*
                    one(format!("{b}.{rest}"), v.clone())
                }
            }
        }
        _ => Ok(None),
    }
}

/// Renames an official-named state dict to `dialect` (the inverse of [`to_official_v2`]); see
/// [`official_to_timm`] and [`official_to_mmdet_v2`] for what each refuses.
pub fn from_official_v2(
    dialect: DialectV2,
    src: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    match dialect {
        DialectV2::Official => Ok(src.clone()),
        DialectV2::Timm => official_to_timm(src),
        DialectV2::Mmdet => official_to_mmdet_v2(src),
    }
}

/// Renames official keys to timm ones, as timm's `checkpoint_filter_fn` does (`head.*` keeps its
/// name). A key outside the official grammar is an error naming it.
pub fn official_to_timm(src: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    src.iter()
        .map(|(k, v)| {
            let nk = official_key_to_timm(k)
                .ok_or_else(|| anyhow!("key {k} has no timm counterpart in a PVT v2 model"))?;
            Ok((nk, v.clone()))
        })
        .collect()
}

fn official_key_to_timm(k: &str) -> Option<String> {
    if k.starts_with("head.") {
        return Some(k.to_string());
    }
    let (first, rest) = k.split_once('.')?;
    if let Some(i) = first.strip_prefix("patch_embed").and_then(parse_usize) {
        return match i {
            1 => Some(format!("patch_embed.{rest}")),
            2..=4 => Some(format!("stages.{}.downsample.{rest}", i - 1)),
            _ => None,
        };
    }
    if let Some(i) = first.strip_prefix("norm").and_then(parse_usize) {
        return (1..=4)
            .contains(&i)
            .then(|| format!("stages.{}.norm.{rest}", i - 1));
    }
    let i = first.strip_prefix("block").and_then(parse_usize)?;
    if !(1..=4).contains(&i) {
        return None;
    }
    let (j, leaf) = rest.split_once('.')?;
    let j = parse_usize(j)?;
    let leaf = match leaf.strip_prefix("mlp.dwconv.dwconv.") {
        Some(t) => format!("mlp.dwconv.{t}"),
        None => leaf.to_string(),
    };
    Some(format!("stages.{}.blocks.{j}.{leaf}", i - 1))
}

/// Whether an official-named state dict uses linear spatial-reduction attention (b2_li): its
/// key/value reduction is a 1×1 conv, while a strided one (b0-b5) has kernel = ratio > 1.
pub fn is_linear_sra(official: &BTreeMap<String, Tensor>) -> bool {
    official.iter().any(|(k, v)| {
        k.ends_with(".attn.sr.weight") && v.rank() == 4 && v.dims()[2] == 1 && v.dims()[3] == 1
    })
}

/// Renames an official-named dense backbone to mmdetection `PyramidVisionTransformerV2` names, as
/// mmdetection's `pvt_convert` does: fuses q and kv into `attn.attn.in_proj_*`, reshapes the FFN
/// linears to 1×1 convs. The classifier's `head.*` must have been removed; linear SRA (b2_li) has
/// no mmdetection counterpart and is refused.
pub fn official_to_mmdet_v2(src: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    if is_linear_sra(src) {
        bail!("this PVT v2 model uses linear spatial-reduction attention (b2_li), which mmdetection's PyramidVisionTransformerV2 does not implement: there are no mmdetection names for it");
    }
    let mut out = BTreeMap::new();
    for (k, v) in src {
        let bad = || anyhow!("key {k} has no mmdetection counterpart in a dense PVT v2 backbone");
        let (first, rest) = k.split_once('.').ok_or_else(bad)?;
        let stage = |p: &str| {
            first
                .strip_prefix(p)
                .and_then(parse_usize)
                .filter(|i| (1..=4).contains(i))
        };
        if let Some(i) = stage("patch_embed") {
            let rest = match rest.split_once('.') {
                Some(("proj", t)) => format!("projection.{t}"),
                Some(("norm", t)) => format!("norm.{t}"),
                _ => return Err(bad()),
            };
            out.insert(format!("layers.{}.0.{rest}", i - 1), v.clone());
            continue;
        }
        if let Some(i) = stage("norm") {
            out.insert(format!("layers.{}.2.{rest}", i - 1), v.clone());
            continue;
        }
        let i = stage("block").ok_or_else(bad)?;
        let (j, leaf) = rest.split_once('.').ok_or_else(bad)?;
        let j = parse_usize(j).ok_or_else(bad)?;
        let b = format!("layers.{}.1.{j}", i - 1);
        let conv1x1 = |v: &Tensor| -> Result<Tensor> { Ok(v.unsqueeze(2)?.unsqueeze(3)?) };
        let (nk, nv) = if let Some(t) = leaf.strip_prefix("attn.q.") {
            let kv = src
                .get(&format!("block{i}.{j}.attn.kv.{t}"))
                .ok_or_else(|| anyhow!("{k}: block{i}.{j}.attn.kv.{t} is missing"))?;
            (
                format!("{b}.attn.attn.in_proj_{t}"),
                Tensor::cat(&[v, kv], 0)?,
            )
        } else if let Some(t) = leaf.strip_prefix("attn.kv.") {
            if !src.contains_key(&format!("block{i}.{j}.attn.q.{t}")) {
                bail!("{k}: block{i}.{j}.attn.q.{t} is missing");
            }
            continue; // fused with q
        } else if let Some(t) = leaf.strip_prefix("attn.proj.") {
            (format!("{b}.attn.attn.out_proj.{t}"), v.clone())
        } else if let Some(t) = leaf.strip_prefix("mlp.fc1.") {
            let v = if t == "weight" {
                conv1x1(v)?
            } else {
                v.clone()
            };
            (format!("{b}.ffn.layers.0.{t}"), v)
        } else if let Some(t) = leaf.strip_prefix("mlp.dwconv.dwconv.") {
            (format!("{b}.ffn.layers.1.{t}"), v.clone())
        } else if let Some(t) = leaf.strip_prefix("mlp.fc2.") {
            let v = if t == "weight" {
                conv1x1(v)?
            } else {
                v.clone()
            };
            (format!("{b}.ffn.layers.4.{t}"), v)
        } else if ["norm1.", "norm2.", "attn.sr.", "attn.norm."]
            .iter()
            .any(|p| leaf.starts_with(p))
        {
            (format!("{b}.{leaf}"), v.clone())
        } else {
            return Err(bad());
        };
        out.insert(nk, nv);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    fn t(dims: &[usize]) -> Tensor {
        Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn timm_keys() {
        for (timm, official) in [
            ("patch_embed.proj.weight", "patch_embed1.proj.weight"),
            ("stages.2.downsample.norm.bias", "patch_embed3.norm.bias"),
            (
                "stages.0.blocks.1.attn.kv.weight",
                "block1.1.attn.kv.weight",
            ),
            (
                "stages.3.blocks.0.mlp.dwconv.weight",
                "block4.0.mlp.dwconv.dwconv.weight",
            ),
            ("stages.1.norm.weight", "norm2.weight"),
        ] {
            assert_eq!(timm_key_to_official(timm).as_deref(), Some(official));
        }
        assert_eq!(timm_key_to_official("head.weight"), None);
        // stage 1 has no downsample in timm: left alone so that strict loading reports it
        assert_eq!(
            timm_key_to_official("stages.0.downsample.proj.weight"),
            None
        );
    }

    #[test]
    fn mmdet_keys() {
        let mut src = BTreeMap::new();
        src.insert(
            "layers.1.1.0.attn.attn.in_proj_weight".to_string(),
            t(&[12, 4]),
        );
        src.insert(
            "layers.1.1.0.ffn.layers.0.weight".to_string(),
            t(&[32, 4, 1, 1]),
        );
        src.insert(
            "layers.1.1.0.ffn.layers.1.weight".to_string(),
            t(&[32, 1, 3, 3]),
        );
        src.insert(
            "layers.1.1.0.ffn.layers.4.weight".to_string(),
            t(&[4, 32, 1, 1]),
        );
        src.insert("layers.1.1.0.attn.attn.out_proj.bias".to_string(), t(&[4]));
        src.insert("layers.1.1.0.attn.sr.weight".to_string(), t(&[4, 4, 4, 4]));
        src.insert("layers.1.0.projection.weight".to_string(), t(&[4, 2, 3, 3]));
        src.insert("layers.1.2.weight".to_string(), t(&[4]));
        let out = mmdet_v2_to_official(&src).unwrap();
        let shapes: Vec<(&str, Vec<usize>)> = out
            .iter()
            .map(|(k, v)| (k.as_str(), v.dims().to_vec()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("block2.0.attn.kv.weight", vec![8, 4]),
                ("block2.0.attn.proj.bias", vec![4]),
                ("block2.0.attn.q.weight", vec![4, 4]),
                ("block2.0.attn.sr.weight", vec![4, 4, 4, 4]),
                ("block2.0.mlp.dwconv.dwconv.weight", vec![32, 1, 3, 3]),
                ("block2.0.mlp.fc1.weight", vec![32, 4]),
                ("block2.0.mlp.fc2.weight", vec![4, 32]),
                ("norm2.weight", vec![4]),
                ("patch_embed2.proj.weight", vec![4, 2, 3, 3]),
            ]
        );
    }

    #[test]
    fn official_names_round_trip_through_timm_and_mmdet() {
        let mut src = BTreeMap::new();
        for (k, d) in [
            ("patch_embed1.proj.weight", vec![4, 3, 7, 7]),
            ("patch_embed2.norm.bias", vec![8]),
            ("block2.0.attn.q.weight", vec![8, 8]),
            ("block2.0.attn.kv.weight", vec![16, 8]),
            ("block2.0.attn.kv.bias", vec![16]),
            ("block2.0.attn.q.bias", vec![8]),
            ("block2.0.attn.proj.weight", vec![8, 8]),
            ("block2.0.attn.sr.weight", vec![8, 8, 4, 4]),
            ("block2.0.attn.norm.weight", vec![8]),
            ("block2.0.norm1.weight", vec![8]),
            ("block2.0.mlp.fc1.weight", vec![64, 8]),
            ("block2.0.mlp.dwconv.dwconv.weight", vec![64, 1, 3, 3]),
            ("block2.0.mlp.fc2.weight", vec![8, 64]),
            ("block2.0.mlp.fc2.bias", vec![8]),
            ("norm2.weight", vec![8]),
        ] {
            src.insert(k.to_string(), t(&d));
        }
        let timm = official_to_timm(&src).unwrap();
        assert!(timm.contains_key("patch_embed.proj.weight"));
        assert!(timm.contains_key("stages.1.downsample.norm.bias"));
        assert!(timm.contains_key("stages.1.blocks.0.mlp.dwconv.weight"));
        assert!(timm.contains_key("stages.1.norm.weight"));
        let back = timm_to_official(&timm);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            src.keys().collect::<Vec<_>>()
        );
        let mm = official_to_mmdet_v2(&src).unwrap();
        assert_eq!(mm["layers.1.1.0.attn.attn.in_proj_weight"].dims(), &[24, 8]);
        assert_eq!(
            mm["layers.1.1.0.ffn.layers.4.weight"].dims(),
            &[8, 64, 1, 1]
        );
        assert!(mm.contains_key("layers.1.2.weight"));
        let back = mmdet_v2_to_official(&mm).unwrap();
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            src.keys().collect::<Vec<_>>()
        );
        for (k, v) in &src {
            assert_eq!(back[k].dims(), v.dims(), "{k}");
        }
        // a classifier head has no mmdetection name; linear SRA has no mmdetection model
        let mut with_head = src.clone();
        with_head.insert("head.weight".into(), t(&[10, 8]));
        assert!(official_to_mmdet_v2(&with_head).is_err());
        assert!(official_to_timm(&with_head)
            .unwrap()
            .contains_key("head.weight"));
        let mut linear = src.clone();
        linear.insert("block2.0.attn.sr.weight".into(), t(&[8, 8, 1, 1]));
        let e = official_to_mmdet_v2(&linear).unwrap_err().to_string();
        assert!(e.contains("linear"), "{e}");
        let mut odd = src;
        odd.insert("pos_embed1".into(), t(&[1, 4, 4]));
        assert!(official_to_timm(&odd).is_err());
        assert!(official_to_mmdet_v2(&odd).is_err());
    }

    #[test]
    fn dialects() {
        let d = |keys: &[&str]| detect_dialect_v2(keys.iter().copied());
        assert_eq!(
            d(&["head.weight", "patch_embed1.proj.weight"]).unwrap(),
            DialectV2::Official
        );
        assert_eq!(d(&["patch_embed.proj.weight"]).unwrap(), DialectV2::Timm);
        assert_eq!(
            d(&["layers.0.0.projection.weight"]).unwrap(),
            DialectV2::Mmdet
        );
        let e = d(&["patch_embed1.proj.weight", "pos_embed1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PVT v1"), "{e}");
        let e = d(&["layers.0.1.0.pos_embed"]).unwrap_err().to_string();
        assert!(e.contains("PVT v1"), "{e}");
        assert!(d(&["foo.bar"]).is_err());
    }
}
