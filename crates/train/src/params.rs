//! The trainable parameters of a detector: named variables (official checkpoint names), their
//! initialisation as mmdetection's, frozen stages, loading an ImageNet backbone, and a
//! `VarBuilder` that builds the network over them.
//!
//! The network is rebuilt from the variables at every step: some layers derive tensors from
//! their weights when built (the softmax scale folded into `q`, patch-conv weights reshaped to
//! matmul form), and those derived copies must follow the updates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use pvt_nn::Checkpoint;
use pvt_zoo::semantic_fpn::{SemanticFpnConfig, SemanticFpnPvt};
use pvt_zoo::{BackboneConfig, MaskRcnnConfig, MaskRcnnPvt, RetinaNetConfig, RetinaNetPvt};
use rand_chacha::ChaCha8Rng;

use crate::data::{keyed_rng, uniform};

/// Named training variables.
#[derive(Debug, Clone)]
pub struct Params {
    vars: BTreeMap<String, Var>,
    frozen: BTreeSet<String>,
    device: Device,
    dtype: DType,
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller
    let u1 = uniform(rng).max(f64::MIN_POSITIVE);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// How one tensor is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    Const(f64),
    Normal(f64),
    /// Normal truncated to ±2 (timm's `trunc_normal_` with its absolute bounds).
    TruncNormal(f64),
    Uniform(f64),
}

/// mmdetection's initialisation of RetinaNet-PVT by parameter name: backbone Linear weights and
/// position tables truncated normal σ 0.02, convolutions normal with σ √(2 / fan_out),
/// LayerNorms 1 / 0, biases 0 (PVT `_init_weights`); FPN convolutions Xavier-uniform
/// (`xavier_init(distribution='uniform')`); head convolutions normal σ 0.01, with the
/// classifier's bias at `−log((1 − 0.01) / 0.01)` (prior probability 0.01).
fn init_rule(name: &str, dims: &[usize]) -> Init {
    let is_bias = name.ends_with(".bias");
    if name.starts_with("backbone.") {
        if name.contains("pos_embed") {
            return Init::TruncNormal(0.02);
        }
        if is_bias {
            return Init::Const(0.0);
        }
        return match dims.len() {
            1 => Init::Const(1.0), // LayerNorm weight
            2 => Init::TruncNormal(0.02),
            4 => {
                // groups = C for a depth-wise conv ([C, 1, k, k])
                let fan_out = dims[0] * dims[2] * dims[3] / if dims[1] == 1 { dims[0] } else { 1 };
                Init::Normal((2.0 / fan_out as f64).sqrt())
            }
            _ => Init::TruncNormal(0.02),
        };
    }
    if name.starts_with("neck.") {
        if is_bias || dims.len() != 4 {
            return Init::Const(0.0);
        }
        let rf = dims[2] * dims[3];
        let (fan_in, fan_out) = (dims[1] * rf, dims[0] * rf);
        return Init::Uniform((6.0 / (fan_in + fan_out) as f64).sqrt());
    }
    if let Some(rest) = name.strip_prefix("decode_head.") {
        // mmseg FPNHead: ConvModule convs Kaiming-normal (fan_out, ReLU), BatchNorm 1 / 0 with
        // running statistics 0 / 1; the classifier `conv_seg` N(0, 0.01²), bias 0
        if rest.ends_with("running_var") {
            return Init::Const(1.0);
        }
        if is_bias || rest.ends_with("running_mean") || rest.ends_with("num_batches_tracked") {
            return Init::Const(0.0);
        }
        if rest.starts_with("conv_seg.") {
            return Init::Normal(0.01);
        }
        return match dims.len() {
            4 => Init::Normal((2.0 / (dims[0] * dims[2] * dims[3]) as f64).sqrt()),
            _ => Init::Const(1.0),
        };
    }
    if let Some(rest) = name.strip_prefix("roi_head.") {
        // Mask R-CNN RoI heads (mmdet 2.13): shared fcs Xavier-uniform, `fc_cls` N(0, 0.01²),
        // `fc_reg` N(0, 0.001²); mask convs, `upsample` and `conv_logits` Kaiming-normal
        // (fan_out, ReLU: PyTorch's fan_out is dims[0]·k·k for convs and transposed convs);
        // biases 0. (`rpn_head.` falls through to N(0, 0.01²) below.)
        if is_bias {
            return Init::Const(0.0);
        }
        if rest.starts_with("bbox_head.fc_cls.") {
            return Init::Normal(0.01);
        }
        if rest.starts_with("bbox_head.fc_reg.") {
            return Init::Normal(0.001);
        }
        return match dims.len() {
            2 => Init::Uniform((6.0 / (dims[0] + dims[1]) as f64).sqrt()),
            4 => Init::Normal((2.0 / (dims[0] * dims[2] * dims[3]) as f64).sqrt()),
            _ => Init::Normal(0.01),
        };
    }
    if name == "bbox_head.retina_cls.bias" {
        return Init::Const(-((1.0f64 - 0.01) / 0.01).ln());
    }
    if is_bias {
        return Init::Const(0.0);
    }
    Init::Normal(0.01)
}

fn sample(init: Init, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| match init {
            Init::Const(c) => c as f32,
            Init::Normal(s) => (normal(rng) * s) as f32,
            Init::TruncNormal(s) => ((normal(rng) * s).clamp(-2.0, 2.0)) as f32,
            Init::Uniform(b) => ((uniform(rng) * 2.0 - 1.0) * b) as f32,
        })
        .collect()
}

impl Params {
    /// The parameters of a RetinaNet-PVT, initialised as mmdetection initialises it, from
    /// `seed` (each tensor from its own stream keyed by the seed and its name).
    pub fn retinanet(cfg: &RetinaNetConfig, seed: u64, device: &Device) -> Result<Self> {
        // Build once on a VarMap to learn every name and shape.
        let vm = VarMap::new();
        RetinaNetPvt::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
        Self::initialised(&vm, seed, device)
    }

    /// The parameters of a Mask R-CNN-PVT, initialised as mmdetection 2.13 initialises it,
    /// from `seed`.
    pub fn mask_rcnn(cfg: &MaskRcnnConfig, seed: u64, device: &Device) -> Result<Self> {
        let vm = VarMap::new();
        MaskRcnnPvt::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, device))?;
        Self::initialised(&vm, seed, device)
    }

    /// The parameters of a Semantic FPN-PVT for training (decode head with BatchNorm layers,
    /// whose running statistics are variables too, updated by the forward pass and never by
    /// the optimiser), initialised as mmsegmentation initialises it, from `seed`.
    pub fn semantic_fpn(cfg: &SemanticFpnConfig, seed: u64, device: &Device) -> Result<Self> {
        let vm = VarMap::new();
        SemanticFpnPvt::new_trainable(
            cfg,
            VarBuilder::from_varmap(&vm, DType::F32, device),
            device,
        )?;
        Self::initialised(&vm, seed, device)
    }

    /// Fresh variables with the names and shapes of `vm`, each drawn by [`init_rule`] from its
    /// own stream keyed by the seed and its name.
    fn initialised(vm: &VarMap, seed: u64, device: &Device) -> Result<Self> {
        let shapes: BTreeMap<String, Vec<usize>> = vm
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        let mut vars = BTreeMap::new();
        for (name, dims) in shapes {
            let n: usize = dims.iter().product();
            let mut rng = keyed_rng(&[seed, 0x1417, name_hash(&name)]);
            let vals = sample(init_rule(&name, &dims), n, &mut rng);
            let t = Tensor::from_vec(vals, dims.as_slice(), device)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self {
            vars,
            frozen: BTreeSet::new(),
            device: device.clone(),
            dtype: DType::F32,
        })
    }

    /// The same values as new variables of another dtype (f64 for finite-difference checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let vars = self
            .vars
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            vars,
            frozen: self.frozen.clone(),
            device: self.device.clone(),
            dtype,
        })
    }

    /// Freezes backbone stages `1..=n` (patch embedding, position table, blocks and the
    /// stage's norm): they keep their values and get no gradient. `0` freezes nothing.
    pub fn freeze_stages(&mut self, n: usize) {
        self.frozen = self
            .vars
            .keys()
            .filter(|k| {
                let Some(rest) = k.strip_prefix("backbone.") else {
                    return false;
                };
                (1..=n).any(|i| {
                    rest.starts_with(&format!("patch_embed{i}."))
                        || rest == format!("pos_embed{i}")
                        || rest.starts_with(&format!("block{i}."))
                        || rest.starts_with(&format!("norm{i}."))
                })
            })
            .cloned()
            .collect();
    }

    /// Names of the frozen parameters.
    pub fn frozen(&self) -> &BTreeSet<String> {
        &self.frozen
    }

    /// All variables by name.
    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// The variables that are trained (not frozen), by name.
    pub fn trainable(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter().filter(|(k, _)| !self.frozen.contains(*k))
    }

    /// Number of scalars, all and trainable.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.vars.values().map(|v| v.elem_count()).sum();
        let tr = self.trainable().map(|(_, v)| v.elem_count()).sum();
        (all, tr)
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A `VarBuilder` over the variables (frozen ones as plain tensors), for building the
    /// network for a training step.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        let backend = Backend {
            vars: Arc::new(self.vars.clone()),
            frozen: Arc::new(self.frozen.clone()),
        };
        VarBuilder::from_backend(Box::new(backend), self.dtype, self.device.clone())
    }

    /// Copies of the current values, detached from any graph (for saving and inference).
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Sets every variable from `tensors` (exactly the same names and shapes).
    pub fn load(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let missing: Vec<&String> = self
            .vars
            .keys()
            .filter(|k| !tensors.contains_key(*k))
            .collect();
        let extra: Vec<&String> = tensors
            .keys()
            .filter(|k| !self.vars.contains_key(*k))
            .collect();
        ensure!(
            missing.is_empty() && extra.is_empty(),
            "parameters do not match: missing {missing:?}, unexpected {extra:?}"
        );
        for (k, v) in &self.vars {
            let t = &tensors[k];
            ensure!(
                t.dims() == v.dims(),
                "{k}: shape {:?}, expected {:?}",
                t.dims(),
                v.dims()
            );
            v.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// mmdetection's `load_from`: sets every variable for which the whole-model checkpoint at
    /// `path` has a tensor of the same name and shape (official names, e.g. a run's
    /// `model.safetensors`; `pvt convert --to official` rewrites mmdetection names). Tensors of
    /// another shape (a classifier for another number of classes) are skipped and listed, as
    /// are the variables the file lacks; a file that fills nothing is an error. Returns a
    /// one-line summary.
    pub fn load_matching(&mut self, path: &Path) -> Result<String> {
        let ckpt = Checkpoint::load(path)?;
        let (mut loaded, mut reshaped, mut absent) = (0usize, Vec::new(), Vec::new());
        for (k, v) in &self.vars {
            match ckpt.tensors.get(k) {
                Some(t) if t.dims() == v.dims() => {
                    v.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
                    loaded += 1;
                }
                Some(t) => reshaped.push(format!("{k} {:?} (model {:?})", t.dims(), v.dims())),
                None => absent.push(k.clone()),
            }
        }
        ensure!(
            loaded > 0,
            "{}: no tensor matches the model's names and shapes",
            path.display()
        );
        let unused = ckpt
            .tensors
            .keys()
            .filter(|k| !self.vars.contains_key(*k))
            .count();
        let mut msg = format!(
            "loaded {loaded} of {} tensors from {}",
            self.vars.len(),
            path.display()
        );
        if !reshaped.is_empty() {
            msg += &format!("; skipped for their shape: {}", reshaped.join(", "));
        }
        if !absent.is_empty() {
            msg += &format!("; not in the file: {}", absent.join(", "));
        }
        if unused > 0 {
            msg += &format!("; {unused} tensor(s) of the file unused");
        }
        Ok(msg)
    }

    /// Initialises the backbone from an ImageNet classification checkpoint (or any backbone
    /// file the loaders accept: official, mmdetection or timm names, with or without
    /// `backbone.`). The file must fill the whole backbone (checked by loading it strictly);
    /// classifier-only tensors are skipped. Returns a one-line summary.
    pub fn init_backbone(&mut self, backbone: &BackboneConfig, path: &Path) -> Result<String> {
        let ckpt = Checkpoint::load(path)?;
        let (_, info) = backbone
            .arch()
            .load_dense(&ckpt, &self.device)
            .with_context(|| format!("{} does not fit the backbone", path.display()))?;
        let official = match backbone {
            BackboneConfig::V1(_) => {
                let bb = pvt_backbone::naming::split_backbone(&ckpt.tensors)?;
                match bb.dialect {
                    pvt_backbone::Dialect::Official => bb.tensors,
                    pvt_backbone::Dialect::Mmdet => {
                        pvt_backbone::naming::mmdet_to_official(&bb.tensors)?
                    }
                }
            }
            BackboneConfig::V2(_) => {
                let bb = pvt_backbone::naming_v2::split_backbone_v2(&ckpt.tensors)?;
                pvt_backbone::naming_v2::to_official_v2(bb.dialect, &bb.tensors)?
            }
        };
        let mut n = 0;
        for (k, v) in &self.vars {
            let Some(rest) = k.strip_prefix("backbone.") else {
                continue;
            };
            let Some(t) = official.get(rest) else {
                bail!("{}: no tensor for {rest}", path.display());
            };
            // the classification table of stage 4 has a leading cls row
            let t = if t.dims() != v.dims() && t.rank() == 3 && t.dim(1)? == v.dim(1)? + 1 {
                t.narrow(1, 1, v.dim(1)?)?
            } else {
                t.clone()
            };
            ensure!(
                t.dims() == v.dims(),
                "{rest}: shape {:?} in {}, expected {:?}",
                t.dims(),
                path.display(),
                v.dims()
            );
            v.set(
                &t.to_dtype(DType::F32)?
                    .to_device(&self.device)?
                    .contiguous()?,
            )?;
            n += 1;
        }
        Ok(format!(
            "backbone initialised from {} ({n} tensors; {})",
            path.display(),
            info.summary()
        ))
    }
}

/// The `VarBuilder` backend of [`Params::var_builder`].
struct Backend {
    vars: Arc<BTreeMap<String, Var>>,
    frozen: Arc<BTreeSet<String>>,
}

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle::bail!(
                "{name}: parameter has shape {:?}, the model asks for {s:?}",
                t.dims()
            )
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> candle::Result<Tensor> {
        let Some(v) = self.vars.get(name) else {
            candle::bail!("no parameter named {name}")
        };
        let t = if self.frozen.contains(name) {
            v.as_tensor().detach()
        } else {
            v.as_tensor().clone()
        };
        if t.dtype() != dtype {
            candle::bail!(
                "{name}: parameter is {:?}, the model asks for {dtype:?}",
                t.dtype()
            )
        }
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_rules() {
        assert_eq!(
            init_rule("backbone.pos_embed1", &[1, 4, 8]),
            Init::TruncNormal(0.02)
        );
        assert_eq!(
            init_rule("backbone.block1.0.mlp.fc1.weight", &[64, 8]),
            Init::TruncNormal(0.02)
        );
        assert_eq!(
            init_rule("backbone.block1.0.norm1.weight", &[8]),
            Init::Const(1.0)
        );
        assert_eq!(
            init_rule("backbone.patch_embed1.proj.weight", &[8, 3, 4, 4]),
            Init::Normal((2.0f64 / 128.0).sqrt())
        );
        assert_eq!(
            init_rule("neck.fpn_convs.0.conv.weight", &[4, 2, 3, 3]),
            Init::Uniform((6.0f64 / 54.0).sqrt())
        );
        assert_eq!(
            init_rule("bbox_head.cls_convs.0.conv.weight", &[4, 4, 3, 3]),
            Init::Normal(0.01)
        );
        match init_rule("bbox_head.retina_cls.bias", &[9]) {
            Init::Const(b) => assert!((b + 4.59512).abs() < 1e-4),
            other => panic!("{other:?}"),
        }
    }
}
