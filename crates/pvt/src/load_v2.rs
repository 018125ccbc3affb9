//! Strict loading of PVT v2 checkpoints (official, timm, mmdetection names) into the dense and
//! classifier forms.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle::{Device, Tensor};
use pvt_nn::checkpoint::{Checkpoint, Container};
use pvt_nn::StrictLoader;

use crate::config::NormEps;
use crate::config_v2::{KvReduction, PvtV2, PvtV2Config};
use crate::naming_v2::{split_backbone_v2, to_official_v2, DialectV2};
use crate::v2::{PvtV2Classifier, PvtV2Dense};

/// Classifier-only tensors of the official / timm namings.
const HEAD_KEYS: [&str; 2] = ["head.weight", "head.bias"];

/// What loading a PVT v2 checkpoint found and set aside.
#[derive(Debug, Clone)]
pub struct LoadInfoV2 {
    /// Container of the file.
    pub container: Container,
    /// Top-level key the state dict was under (`state_dict`, `model`), if any.
    pub wrapper: Option<String>,
    /// Prefix removed from backbone keys (`backbone.`), if any.
    pub prefix: Option<String>,
    /// Naming scheme of the backbone tensors.
    pub dialect: DialectV2,
    /// LayerNorm epsilons the model was built with.
    pub norm_eps: NormEps,
    /// Tensors dropped on purpose (`head.*` when loading the dense form).
    pub dropped: Vec<String>,
    /// Keys outside the backbone (necks, heads) that this model does not use.
    pub outside: Vec<String>,
}

impl LoadInfoV2 {
    /// A one-paragraph human summary.
    pub fn summary(&self) -> String {
        crate::load::summary(
            self.container,
            self.wrapper.as_deref(),
            self.prefix.as_deref(),
            &self.dialect,
            &self.dropped,
            &self.outside,
        )
    }
}

/// Official-named tensors, the load report so far, and the config with its epsilons resolved.
fn prepare(
    ckpt: &Checkpoint,
    cfg: &PvtV2Config,
) -> Result<(BTreeMap<String, Tensor>, LoadInfoV2, PvtV2Config)> {
    let bb =
        split_backbone_v2(&ckpt.tensors).with_context(|| format!("{}", ckpt.path.display()))?;
    let tensors = to_official_v2(bb.dialect, &bb.tensors)?;
    let norm_eps = cfg.norm_eps.unwrap_or(match bb.dialect {
        DialectV2::Official | DialectV2::Timm => NormEps::Official,
        DialectV2::Mmdet => NormEps::Mmdet,
    });
    let mut cfg = cfg.clone();
    cfg.norm_eps = Some(norm_eps);
    let info = LoadInfoV2 {
        container: ckpt.container,
        wrapper: ckpt.wrapper.clone(),
        prefix: bb.prefix,
        dialect: bb.dialect,
        norm_eps,
        dropped: vec![],
        outside: bb.outside,
    };
    Ok((tensors, info, cfg))
}

/// Loads the dense backbone from any supported checkpoint: official classification or detection
/// files, timm files, mmdetection files, with or without `backbone.` prefix. The classifier's
/// `head.*` is dropped and reported in [`LoadInfoV2::dropped`]; anything else that does not fit
/// is an error listing every missing, unexpected and wrong-shaped tensor. LayerNorm epsilons
/// follow the checkpoint's origin unless `cfg.norm_eps` says otherwise.
pub fn load_dense_v2(
    ckpt: &Checkpoint,
    cfg: &PvtV2Config,
    device: &Device,
) -> Result<(PvtV2Dense, LoadInfoV2)> {
    let (mut tensors, mut info, cfg) = prepare(ckpt, cfg)?;
    for k in HEAD_KEYS {
        if tensors.remove(k).is_some() {
            info.dropped.push(k.to_string());
        }
    }
    let loader = StrictLoader::new(tensors, ckpt.path.display().to_string());
    let model = PvtV2Dense::new(&cfg, loader.var_builder(device))?;
    loader.finish()?;
    Ok((model, info))
}

/// Loads the ImageNet classifier (official or timm classification checkpoints).
pub fn load_classifier_v2(
    ckpt: &Checkpoint,
    cfg: &PvtV2Config,
    device: &Device,
) -> Result<(PvtV2Classifier, LoadInfoV2)> {
    let (tensors, info, cfg) = prepare(ckpt, cfg)?;
    let has_head = tensors.contains_key("head.weight");
    let loader = StrictLoader::new(tensors, ckpt.path.display().to_string());
    let model = PvtV2Classifier::new(&cfg, loader.var_builder(device))?;
    loader.finish().map_err(|e| {
        if has_head {
            e
        } else {
            e.context("this checkpoint has no classifier head: it is a dense backbone; use it with `pvt features`")
        }
    })?;
    Ok((model, info))
}

/// Guesses which published PVT v2 size a backbone state dict holds, from its widths, depths,
/// MLP widths and whether stage 4 has a key/value reduction (only linear SRA has one there).
pub fn guess_variant_v2(tensors: &BTreeMap<String, Tensor>) -> Option<PvtV2> {
    let bb = split_backbone_v2(tensors).ok()?;
    let t = to_official_v2(bb.dialect, &bb.tensors).ok()?;
    let mut depths = [0usize; 4];
    let mut dims = [0usize; 4];
    let mut ratios = [0usize; 4];
    for i in 0..4 {
        let prefix = format!("block{}.", i + 1);
        depths[i] = t
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
        dims[i] = t
            .get(&format!("patch_embed{}.proj.weight", i + 1))
            .and_then(|w| w.dim(0).ok())
            .unwrap_or(0);
        let hidden = t
            .get(&format!("block{}.0.mlp.fc1.weight", i + 1))
            .and_then(|w| w.dim(0).ok())
            .unwrap_or(0);
        ratios[i] = hidden.checked_div(dims[i]).unwrap_or(0);
    }
    let linear = t.contains_key("block4.0.attn.sr.weight");
    PvtV2::ALL.into_iter().find(|v| {
        let cfg = v.config();
        v.depths() == depths
            && v.embed_dims() == dims
            && v.mlp_ratios() == ratios
            && matches!(cfg.kv_reduction, KvReduction::LinearPool { .. }) == linear
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::DType;
    use candle_nn::{VarBuilder, VarMap};

    /// The tensors a full-size model asks for (random values), with their official names.
    fn full_size_tensors(v: PvtV2) -> BTreeMap<String, Tensor> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        PvtV2Classifier::new(&v.config(), vb).unwrap();
        let data = varmap.data().lock().unwrap();
        data.iter()
            .map(|(k, t)| (k.clone(), t.as_tensor().clone()))
            .collect()
    }

    #[test]
    fn full_size_key_sets_count_and_are_recognised() {
        for v in [PvtV2::B0, PvtV2::B2Li] {
            let t = full_size_tensors(v);
            let n: usize = t.values().map(|t| t.elem_count()).sum();
            assert_eq!(n, v.config().num_params_classifier(), "{}", v.name());
            // 178 / 346 tensors in timm's state dicts
            assert_eq!(t.len(), if v == PvtV2::B0 { 178 } else { 346 });
            assert_eq!(guess_variant_v2(&t), Some(v));
            let mmdet_like: BTreeMap<String, Tensor> = t
                .iter()
                .map(|(k, v)| (format!("backbone.{k}"), v.clone()))
                .collect();
            assert_eq!(guess_variant_v2(&mmdet_like), Some(v));
        }
    }
}
