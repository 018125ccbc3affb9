//! The Semantic FPN decode head (Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR
//! 2019) exactly as mmsegmentation's `FPNHead` (`mmseg/models/decode_heads/fpn_head.py`, the same
//! in 0.13 and 1.x) computes it at inference for the PVT segmentation configs
//! (`fpn_pvt_{t,s,m,l}_ade20k_40k`):
//!
//! - one scale head per input level `i`, `max(1, log2(stride_i / stride_0))` units of
//!   conv3×3 (padding 1, **no bias**) + BatchNorm (running statistics, eps 1e-5) + ReLU, each
//!   followed by a bilinear ×2 upsampling (`align_corners=False`) **only for `i > 0`**;
//! - `out = head_0(x_0) + Σ_{i>0} resize(head_i(x_i), size of out)` (bilinear; an identity
//!   when the input sides are multiples of the coarsest stride);
//! - `Dropout2d(0.1)` (identity at inference, so not represented), then `conv_seg`, a 1×1 conv
//!   with bias, to `num_classes` logits at the finest input stride (4).
//!
//! BatchNorm is folded into the preceding conv when the weights are loaded
//! (`w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`, computed in f64), so inference runs three fused
//! conv+ReLU layers at most per level, all through [`pvt_nn::conv::Conv2d`].
//!
//! Weight names are mmseg's, relative to the head (`decode_head.` in a segmentor checkpoint):
//! `scale_heads.{i}.{j}.conv.weight`, `scale_heads.{i}.{j}.bn.{weight, bias, running_mean,
//! running_var, num_batches_tracked}` (`j` is the index in mmseg's `nn.Sequential`, where the
//! `Upsample` modules take the odd indices of levels `i > 0`: units sit at `j = 0, 2, 4`), and
//! `conv_seg.{weight, bias}`. `num_batches_tracked` is read when present (so strict loading
//! accepts it) and ignored.
//!
//! [`resize`] holds the PyTorch-exact bilinear resize used here and by the segmentation test
//! pipeline, and the per-pixel argmax.
//!
//! This crate sees only [`FeaturePyramid`] / [`PyramidSpec`]: it knows nothing of backbones,
//! necks, datasets or image preprocessing.
#![deny(missing_docs)]

pub mod resize;

use anyhow::{bail, ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_nn::conv::Conv2d;
use pvt_nn::{FeaturePyramid, PyramidSpec};
use serde::{Deserialize, Serialize};

pub use resize::{argmax_channels, resize_argmax, resize_bilinear, PixelGrid};

/// `FPNHead` hyper-parameters (mmseg's argument names where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FpnHeadConfig {
    /// Channels of each input level, fine to coarse (`in_channels`, `[256; 4]` after the FPN).
    pub in_channels: Vec<usize>,
    /// Stride of each input level (`feature_strides`, `[4, 8, 16, 32]`); the first is the
    /// smallest and sets the output stride.
    pub feature_strides: Vec<usize>,
    /// Channels of the scale heads (`channels`, 128).
    pub channels: usize,
    /// Output classes (`num_classes`, 150 for ADE20K).
    pub num_classes: usize,
    /// Sampling grid of every bilinear resize (`align_corners=False` → [`PixelGrid::HalfPixel`]).
    pub grid: PixelGrid,
    /// BatchNorm epsilon (PyTorch's default 1e-5; mmcv `SyncBN` / `BN` do not change it).
    pub bn_eps: f64,
}

impl FpnHeadConfig {
    /// The PVT ADE20K configs (`fpn_pvt_*_ade20k_40k` over mmseg's `fpn_r50.py`): 4 levels of
    /// 256 channels at strides 4–32, 128 head channels, 150 classes, `align_corners=False`.
    pub fn ade20k() -> Self {
        Self {
            in_channels: vec![256; 4],
            feature_strides: vec![4, 8, 16, 32],
            channels: 128,
            num_classes: 150,
            grid: PixelGrid::HalfPixel,
            bn_eps: 1e-5,
        }
    }

    /// A head over every level of `spec` (mmseg's `in_index = [0, 1, .., n-1]`), with the
    /// ADE20K config's grid and epsilon.
    pub fn for_input(spec: &PyramidSpec, channels: usize, num_classes: usize) -> Self {
        Self {
            in_channels: spec.levels().iter().map(|l| l.channels).collect(),
            feature_strides: spec.levels().iter().map(|l| l.stride).collect(),
            channels,
            num_classes,
            ..Self::ade20k()
        }
    }

    /// Checks the combination: equal-length non-empty level lists, positive channels and
    /// classes, strictly increasing power-of-two strides (so every head length is exact), a
    /// positive finite epsilon.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            !self.in_channels.is_empty() && self.in_channels.len() == self.feature_strides.len(),
            "FPNHead: {} in_channels for {} feature_strides",
            self.in_channels.len(),
            self.feature_strides.len()
        );
        ensure!(
            self.in_channels.iter().all(|&c| c > 0) && self.channels > 0 && self.num_classes > 0,
            "FPNHead: channels and classes must be positive (in_channels {:?}, channels {}, num_classes {})",
            self.in_channels,
            self.channels,
            self.num_classes
        );
        for (i, &s) in self.feature_strides.iter().enumerate() {
            ensure!(
                s.is_power_of_two(),
                "FPNHead: feature stride {s} (level {i}) is not a power of two"
            );
            if i > 0 && s <= self.feature_strides[i - 1] {
                bail!(
                    "FPNHead: feature_strides must increase: {:?}",
                    self.feature_strides
                );
            }
        }
        ensure!(
            self.bn_eps.is_finite() && self.bn_eps > 0.0,
            "FPNHead: BatchNorm eps must be positive, got {}",
            self.bn_eps
        );
        Ok(())
    }

    /// Conv units of scale head `i`: `max(1, log2(stride_i) − log2(stride_0))`.
    pub fn head_length(&self, i: usize) -> usize {
        let s = self.feature_strides[i].trailing_zeros();
        let s0 = self.feature_strides[0].trailing_zeros();
        (s - s0).max(1) as usize
    }

    /// Output stride of the logits (the first level's).
    pub fn output_stride(&self) -> usize {
        self.feature_strides[0]
    }
}

/// conv3×3 (no bias) + BatchNorm + ReLU: for inference the BatchNorm is folded into one biased
/// conv; for training the BatchNorm stays a layer (batch statistics in training mode, running
/// statistics updated with momentum 0.1 as PyTorch's, used in evaluation mode).
#[derive(Debug, Clone)]
enum ConvBnRelu {
    Folded {
        conv: Conv2d,
    },
    Trainable {
        conv: Conv2d,
        bn: candle_nn::BatchNorm,
    },
}

impl ConvBnRelu {
    fn new(cin: usize, cout: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((cout, cin, 3, 3), "conv.weight")?;
        let bn = vb.pp("bn");
        let gamma = bn.get(cout, "weight")?;
        let beta = bn.get(cout, "bias")?;
        let mean = bn.get(cout, "running_mean")?;
        let var = bn.get(cout, "running_var")?;
        if bn.contains_tensor("num_batches_tracked") {
            // a training counter: read so that strict loading sees it used, then ignored
            bn.get((), "num_batches_tracked")?;
        }
        let host = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(candle::DType::F64)?.to_vec1::<f64>()?)
        };
        let (g, b, m, v) = (host(&gamma)?, host(&beta)?, host(&mean)?, host(&var)?);
        // `var + eps` must be a positive number (NaN fails too)
        if let Some(o) = v
            .iter()
            .position(|&v| (v + eps).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            bail!(
                "{}: running_var[{o}] = {} makes var + eps non-positive",
                vb.prefix(),
                v[o]
            );
        }
        let scale: Vec<f64> = (0..cout).map(|o| g[o] / (v[o] + eps).sqrt()).collect();
        let bias: Vec<f32> = (0..cout).map(|o| (b[o] - m[o] * scale[o]) as f32).collect();
        let wv = w
            .to_dtype(candle::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let per_out = cin * 9;
        let folded: Vec<f32> = wv
            .iter()
            .enumerate()
            .map(|(i, &x)| (x * scale[i / per_out]) as f32)
            .collect();
        let dev = w.device();
        let weight = Tensor::from_vec(folded, (cout, cin, 3, 3), dev)?;
        let bias = Tensor::from_vec(bias, cout, dev)?;
        Ok(Self::Folded {
            conv: Conv2d::from_tensors(weight, Some(bias), 1, 1)?,
        })
    }

    /// The unfolded form, for training (e.g. `vb` from a `VarMap`): `conv.weight` and
    /// `bn.{weight, bias, running_mean, running_var}` under mmseg's names.
    fn trainable(cin: usize, cout: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let w = vb.get_with_hints(
            (cout, cin, 3, 3),
            "conv.weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bn = candle_nn::batch_norm(
            cout,
            candle_nn::BatchNormConfig {
                eps,
                remove_mean: true,
                affine: true,
                momentum: 0.1,
            },
            vb.pp("bn"),
        )?;
        Ok(Self::Trainable {
            conv: Conv2d::from_tensors(w, None, 1, 1)?,
            bn,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        use candle::ModuleT;
        Ok(match self {
            Self::Folded { conv } => conv.forward(x)?.relu()?,
            Self::Trainable { conv, bn } => bn.forward_t(&conv.forward(x)?, train)?.relu()?,
        })
    }
}

/// One level's tower: conv units, each followed by a ×2 upsampling when `upsample`.
#[derive(Debug, Clone)]
struct ScaleHead {
    units: Vec<ConvBnRelu>,
    upsample: bool,
}

/// The Semantic FPN decode head with loaded (BatchNorm-folded) weights.
#[derive(Debug, Clone)]
pub struct FpnHead {
    cfg: FpnHeadConfig,
    in_spec: PyramidSpec,
    scale_heads: Vec<ScaleHead>,
    /// 1×1, `[num_classes, channels, 1, 1]` + bias.
    conv_seg: Conv2d,
}

impl FpnHead {
    /// Builds the head for pyramids laid out as `in_spec`, which must agree with
    /// `cfg.in_channels` / `cfg.feature_strides`, reading mmseg-named weights from `vb`
    /// (typically `vb.pp("decode_head")`).
    pub fn new(cfg: FpnHeadConfig, in_spec: &PyramidSpec, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, in_spec, vb, false)
    }

    /// The head for training: the same weights and names, with the BatchNorm layers kept as
    /// layers ([`Self::forward_t`] with `train = true` normalises with batch statistics and
    /// updates the running ones). Build it from a `VarMap`-backed `vb` to train; its variables
    /// save under mmseg's names, which [`Self::new`] loads.
    pub fn new_trainable(
        cfg: FpnHeadConfig,
        in_spec: &PyramidSpec,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::build(cfg, in_spec, vb, true)
    }

    fn build(
        cfg: FpnHeadConfig,
        in_spec: &PyramidSpec,
        vb: VarBuilder,
        trainable: bool,
    ) -> Result<Self> {
        cfg.validate()?;
        let spec_channels: Vec<usize> = in_spec.levels().iter().map(|l| l.channels).collect();
        let spec_strides: Vec<usize> = in_spec.levels().iter().map(|l| l.stride).collect();
        ensure!(
            spec_channels == cfg.in_channels && spec_strides == cfg.feature_strides,
            "FPNHead configured for channels {:?} at strides {:?}, but its input pyramid has channels {:?} at strides {:?}",
            cfg.in_channels,
            cfg.feature_strides,
            spec_channels,
            spec_strides
        );
        let mut scale_heads = Vec::with_capacity(cfg.in_channels.len());
        for (i, &cin) in cfg.in_channels.iter().enumerate() {
            let upsample = i > 0;
            // nn.Sequential indices: units at 0, 2, 4, .. when Upsample modules sit between
            let step = if upsample { 2 } else { 1 };
            let units = (0..cfg.head_length(i))
                .map(|k| {
                    let c = if k == 0 { cin } else { cfg.channels };
                    let vb = vb.pp(format!("scale_heads.{i}.{}", k * step));
                    if trainable {
                        ConvBnRelu::trainable(c, cfg.channels, cfg.bn_eps, vb)
                    } else {
                        ConvBnRelu::new(c, cfg.channels, cfg.bn_eps, vb)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            scale_heads.push(ScaleHead { units, upsample });
        }
        let conv_seg = if trainable {
            // mmseg's initialisation of a new classifier: N(0, 0.01²), bias 0
            let seg = vb.pp("conv_seg");
            let w = seg.get_with_hints(
                (cfg.num_classes, cfg.channels, 1, 1),
                "weight",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )?;
            let b = seg.get_with_hints(cfg.num_classes, "bias", candle_nn::Init::Const(0.0))?;
            Conv2d::from_tensors(w, Some(b), 1, 0)?
        } else {
            Conv2d::new(
                cfg.channels,
                cfg.num_classes,
                1,
                1,
                0,
                true,
                vb.pp("conv_seg"),
            )?
        };
        Ok(Self {
            cfg,
            in_spec: in_spec.clone(),
            scale_heads,
            conv_seg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FpnHeadConfig {
        &self.cfg
    }

    /// Runs the head on `feats` (laid out as the constructor's `in_spec`). Returns logits
    /// `[B, num_classes, H_0, W_0]` at the first level's resolution (stride 4 for PVT: for an
    /// input of `H × W` with sides multiples of 32, `[B, K, H/4, W/4]`).
    pub fn forward(&self, feats: &FeaturePyramid) -> Result<Tensor> {
        self.forward_t(feats, false)
    }

    /// [`Self::forward`], with the BatchNorm layers of a [`Self::new_trainable`] head in
    /// training mode when `train` (the folded inference head ignores `train`).
    pub fn forward_t(&self, feats: &FeaturePyramid, train: bool) -> Result<Tensor> {
        ensure!(
            feats.spec() == &self.in_spec,
            "FPNHead built for {:?}, got {:?}",
            self.in_spec,
            feats.spec()
        );
        let mut out: Option<Tensor> = None;
        for (head, x) in self.scale_heads.iter().zip(feats.levels()) {
            let mut y = x.clone();
            for unit in &head.units {
                y = unit.forward_t(&y, train)?;
                if head.upsample {
                    let (_, _, h, w) = y.dims4()?;
                    y = resize_bilinear(&y, (2 * h, 2 * w), self.cfg.grid)?;
                }
            }
            out = Some(match out {
                None => y,
                Some(acc) => {
                    let (_, _, h, w) = acc.dims4()?;
                    (acc + resize_bilinear(&y, (h, w), self.cfg.grid)?)?
                }
            });
        }
        let out = out.expect("validated: at least one level");
        Ok(self.conv_seg.forward(&out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use pvt_nn::LevelSpec;
    use std::collections::BTreeMap;

    fn spec(c: usize) -> PyramidSpec {
        PyramidSpec::new(
            [4, 8, 16, 32]
                .iter()
                .map(|&stride| LevelSpec {
                    channels: c,
                    stride,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn ade20k_key_names_and_shapes() {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        // the VarMap hands out zeros (a zero running_var is valid with eps 1e-5) and records
        // every name and shape requested
        FpnHead::new(FpnHeadConfig::ade20k(), &spec(256), vb).unwrap();
        let data = vm.data().lock().unwrap();
        let shapes: BTreeMap<String, Vec<usize>> = data
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        let convs: Vec<&str> = shapes
            .keys()
            .filter(|k| k.ends_with("conv.weight"))
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            convs,
            [
                "scale_heads.0.0.conv.weight",
                "scale_heads.1.0.conv.weight",
                "scale_heads.2.0.conv.weight",
                "scale_heads.2.2.conv.weight",
                "scale_heads.3.0.conv.weight",
                "scale_heads.3.2.conv.weight",
                "scale_heads.3.4.conv.weight",
            ]
        );
        assert_eq!(shapes["scale_heads.2.0.conv.weight"], vec![128, 256, 3, 3]);
        assert_eq!(shapes["scale_heads.3.4.conv.weight"], vec![128, 128, 3, 3]);
        assert_eq!(shapes["scale_heads.3.4.bn.running_var"], vec![128]);
        assert_eq!(shapes["conv_seg.weight"], vec![150, 128, 1, 1]);
        assert_eq!(shapes["conv_seg.bias"], vec![150]);
        // 7 units x (conv + 4 bn) + 2
        assert_eq!(shapes.len(), 7 * 5 + 2);
    }

    #[test]
    fn config_checks() {
        let mut c = FpnHeadConfig::ade20k();
        assert_eq!(
            (0..4).map(|i| c.head_length(i)).collect::<Vec<_>>(),
            vec![1, 1, 2, 3]
        );
        c.feature_strides = vec![4, 8, 12, 32];
        assert!(c.validate().is_err());
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let err = FpnHead::new(FpnHeadConfig::ade20k(), &spec(64), vb)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[64, 64, 64, 64]"), "{err}");
    }

    #[test]
    fn unaligned_levels_are_resized_to_the_finest() -> Result<()> {
        // level sizes of a 52x68 input (not multiples of 32): 13x17, 7x9, 4x5, 2x3; the ×2
        // towers give 14x18, 16x20, 16x24, which the final resize brings back to 13x17
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let cfg = FpnHeadConfig::for_input(&spec(8), 4, 3);
        let head = FpnHead::new(cfg, &spec(8), vb)?;
        let levels = [(13, 17), (7, 9), (4, 5), (2, 3)]
            .iter()
            .map(|&(h, w)| Tensor::randn(0f32, 1., (2, 8, h, w), &dev))
            .collect::<candle::Result<Vec<_>>>()?;
        let out = head.forward(&FeaturePyramid::new(spec(8), levels)?)?;
        assert_eq!(out.dims(), &[2, 3, 13, 17]);
        Ok(())
    }

    #[test]
    fn batchnorm_is_folded_exactly() -> Result<()> {
        // one level, one unit: compare folded conv + ReLU with conv -> BN -> ReLU by hand
        let dev = Device::Cpu;
        let (cin, cout) = (3, 4);
        let mut t = BTreeMap::new();
        let w = Tensor::randn(0f32, 1., (cout, cin, 3, 3), &dev)?;
        let gamma = Tensor::new(&[1.5f32, -0.5, 0.8, 2.0], &dev)?;
        let beta = Tensor::new(&[0.1f32, 0.2, -0.3, 0.0], &dev)?;
        let mean = Tensor::new(&[0.5f32, -1.0, 0.0, 2.0], &dev)?;
        let var = Tensor::new(&[0.25f32, 4.0, 1e-3, 1.0], &dev)?;
        t.insert("u.conv.weight".to_string(), w.clone());
        t.insert("u.bn.weight".to_string(), gamma.clone());
        t.insert("u.bn.bias".to_string(), beta.clone());
        t.insert("u.bn.running_mean".to_string(), mean.clone());
        t.insert("u.bn.running_var".to_string(), var.clone());
        let loader = pvt_nn::StrictLoader::new(t, "test");
        let unit = ConvBnRelu::new(cin, cout, 1e-5, loader.var_builder(&dev).pp("u"))?;
        loader.finish()?;
        let x = Tensor::randn(0f32, 1., (1, cin, 5, 6), &dev)?;
        let r = |t: &Tensor| t.reshape((1, cout, 1, 1));
        let want = x
            .conv2d(&w, 1, 1, 1, 1)?
            .broadcast_sub(&r(&mean)?)?
            .broadcast_div(&r(&(var + 1e-5)?.sqrt()?)?)?
            .broadcast_mul(&r(&gamma)?)?
            .broadcast_add(&r(&beta)?)?
            .relu()?;
        let got = unit.forward_t(&x, false)?;
        let d = (got - &want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let s = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d <= 1e-5 * s, "{d} vs {s}");
        Ok(())
    }

    fn small_cfg() -> FpnHeadConfig {
        FpnHeadConfig {
            in_channels: vec![4; 4],
            feature_strides: vec![4, 8, 16, 32],
            channels: 3,
            num_classes: 5,
            grid: PixelGrid::HalfPixel,
            bn_eps: 1e-5,
        }
    }

    fn pyramid(seed: u64) -> Result<FeaturePyramid> {
        let dev = Device::Cpu;
        let levels = [(16, 24), (8, 12), (4, 6), (2, 3)]
            .iter()
            .enumerate()
            .map(|(i, &(h, w))| {
                let n = 4 * h * w;
                let v: Vec<f32> = (0..n)
                    .map(|k| {
                        (((k as u64 + 31 * i as u64 + seed) * 2654435761 % 1000) as f32) / 500.0
                            - 1.0
                    })
                    .collect();
                Tensor::from_vec(v, (1, 4, h, w), &dev)
            })
            .collect::<candle::Result<Vec<_>>>()?;
        Ok(FeaturePyramid::new(spec(4), levels)?)
    }

    #[test]
    fn trainable_head_in_eval_mode_equals_the_folded_head() -> Result<()> {
        // random weights and BatchNorm statistics through a VarMap, then the same tensors
        // loaded both ways
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let train = FpnHead::new_trainable(small_cfg(), &spec(4), vb)?;
        let mut tensors = std::collections::HashMap::new();
        for (k, v) in vm.data().lock().unwrap().iter() {
            let t = v.as_tensor().detach();
            let t = if k.ends_with("running_var") {
                t.rand_like(0.5, 2.0)?
            } else if t.sum_all()?.to_scalar::<f32>()? == 0.0 || k.ends_with("bn.weight") {
                t.randn_like(0.0, 0.5)?
            } else {
                t
            };
            tensors.insert(k.clone(), t);
        }
        let load = || VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
        let folded = FpnHead::new(small_cfg(), &spec(4), load())?;
        let unfolded = FpnHead::new_trainable(small_cfg(), &spec(4), load())?;
        let x = pyramid(3)?;
        let a = folded.forward(&x)?;
        let b = unfolded.forward_t(&x, false)?;
        let d = (&a - &b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let s = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d <= 1e-5 * s.max(1.0), "{d} vs {s}");
        drop(train);
        Ok(())
    }

    #[test]
    fn training_mode_reaches_every_parameter_and_updates_running_stats() -> Result<()> {
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let head = FpnHead::new_trainable(small_cfg(), &spec(4), vb)?;
        let x = pyramid(7)?;
        let before: Vec<(String, Tensor)> = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        let y = head.forward_t(&x, true)?;
        assert_eq!(y.dims(), &[1, 5, 16, 24]);
        let loss = y.sqr()?.sum_all()?;
        let grads = loss.backward()?;
        for (k, v) in vm.data().lock().unwrap().iter() {
            if k.contains("running_") {
                continue;
            }
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {k}"));
            let n = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(n > 0.0, "zero gradient for {k}");
        }
        // the running mean moved toward the batch mean (momentum 0.1)
        let data = vm.data().lock().unwrap();
        let moved = before.iter().any(|(k, t)| {
            k.ends_with("running_mean")
                && data[k]
                    .as_tensor()
                    .ne(t)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
        });
        assert!(moved, "running statistics were not updated");
        Ok(())
    }

    #[test]
    fn resize_gradient_matches_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 * 0.3 - 0.4).collect();
        let xv = candle::Var::from_vec(v.clone(), (1, 1, 3, 4), &dev)?;
        let r: Vec<f32> = (0..35).map(|i| ((i * 3) % 11) as f32 * 0.1 - 0.5).collect();
        let r = Tensor::from_vec(r, (1, 1, 5, 7), &dev)?;
        let f = |x: &Tensor| -> Result<Tensor> {
            Ok((resize_bilinear(x, (5, 7), PixelGrid::HalfPixel)? * &r)?.sum_all()?)
        };
        let g = f(xv.as_tensor())?.backward()?;
        let g = g
            .get(xv.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        let eps = 1e-2f32;
        for i in 0..12 {
            let mut p = v.clone();
            p[i] += eps;
            let mut m = v.clone();
            m[i] -= eps;
            let fp = f(&Tensor::from_vec(p, (1, 1, 3, 4), &dev)?)?.to_scalar::<f32>()?;
            let fm = f(&Tensor::from_vec(m, (1, 1, 3, 4), &dev)?)?.to_scalar::<f32>()?;
            let fd = (fp - fm) / (2.0 * eps);
            assert!(
                (fd - g[i]).abs() <= 1e-4,
                "x[{i}]: finite difference {fd}, backward {}",
                g[i]
            );
        }
        Ok(())
    }
}
