//! Semantic FPN with a PVT backbone (v1 in the published models), as the official PVT segmentation configs build it
//! (`segmentation/configs/sem_fpn/PVT/fpn_pvt_{t,s,m,l}_ade20k_40k.py` over mmseg 0.13's
//! `_base_/models/fpn_r50.py`), and their ADE20K test pipeline:
//!
//! 1. PVT-seg `AlignResize(img_scale=(2048, 512), keep_ratio=True, size_divisor=32)`: mmcv
//!    `imrescale` (OpenCV-exact bilinear on 8-bit pixels) then a second bilinear stretch to the
//!    next multiples of 32 — no padding ([`pvt_nn::cv_resize::align_resize`]);
//! 2. `Normalize` with the ImageNet mean / std on 0..255, RGB;
//! 3. the network: backbone → FPN (4 levels, 256 channels) → `FPNHead` → logits at stride 4;
//! 4. `EncoderDecoder` test: the logits are bilinearly resized (`align_corners=False`) to the
//!    network input size ([`Inference::Whole`], the configs' `mode='whole'`; or averaged over
//!    overlapping crops, [`Inference::Slide`], mmseg's `slide_inference`), then resized again to
//!    the original image size; per-pixel argmax (the reference takes a softmax first, which only
//!    matters where the two best logits are equal to float precision; ties go to the lower class
//!    index here).
//! 5. optionally, mmseg's multi-scale + flip test ([`SegAug`], `tools/test.py --aug-test`): the
//!    argmax of the mean softmax over rescaled and mirrored passes.
//!
//! Checkpoints: the official PVT-seg releases (mmseg `save_checkpoint`: a `state_dict` with
//! `backbone.*` in the official PVT naming, `neck.*`, `decode_head.*`). The configs have no
//! auxiliary head; `auxiliary_head.*` tensors, if a file has them, are dropped and reported in
//! [`AnyLoadInfo::dropped`]. Everything else must be used by the model.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use candle::{Device, Tensor};
use image::RgbImage;
use pvt_backbone::{AnyDense, AnyLoadInfo, PvtV1};

use crate::retinanet::BackboneConfig;
use pvt_fpn::{Fpn, FpnConfig};
use pvt_nn::cv_resize::{align_resize, PVT_ADE20K_SCALE};
use pvt_nn::image::normalize_255;
use pvt_nn::{Backbone, Checkpoint, PyramidSpec, StrictLoader};
use pvt_semantic_fpn::{
    argmax_channels, resize_argmax, resize_bilinear, FpnHead, FpnHeadConfig, PixelGrid,
};
use pvt_types::{ImageSize, SegMap};
use serde::{Deserialize, Serialize};

/// A Semantic FPN-PVT architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticFpnConfig {
    /// The backbone (PVT v1 in the published models; v2 works the same way).
    pub backbone: BackboneConfig,
    /// FPN output channels (256).
    pub fpn_channels: usize,
    /// Scale-head channels of the decode head (128).
    pub head_channels: usize,
    /// Classes (150 for ADE20K).
    pub num_classes: usize,
}

impl SemanticFpnConfig {
    /// `fpn_pvt_{t,s,m,l}_ade20k_40k`.
    pub fn ade20k(variant: PvtV1) -> Self {
        Self {
            backbone: BackboneConfig::V1(variant.config()),
            fpn_channels: 256,
            head_channels: 128,
            num_classes: 150,
        }
    }

    /// Parses `fpn_pvt_t_ade20k_40k` (the config file names) and the spellings
    /// `fpn_pvt_tiny_ade20k_40k`, `fpn_pvt-t_ade20k_40k`.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let size = n
            .strip_prefix("fpn_pvt")?
            .trim_start_matches(['_', '-'])
            .strip_suffix("_ade20k_40k")?;
        Some(Self::ade20k(PvtV1::from_name(size)?))
    }

    /// The names [`SemanticFpnConfig::from_name`] is documented with, one per variant.
    pub const NAMES: [&'static str; 4] = [
        "fpn_pvt_t_ade20k_40k",
        "fpn_pvt_s_ade20k_40k",
        "fpn_pvt_m_ade20k_40k",
        "fpn_pvt_l_ade20k_40k",
    ];

    fn fpn(&self) -> FpnConfig {
        FpnConfig {
            out_channels: self.fpn_channels,
            ..FpnConfig::semantic_fpn()
        }
    }

    fn head(&self, input: &PyramidSpec) -> FpnHeadConfig {
        FpnHeadConfig::for_input(input, self.head_channels, self.num_classes)
    }
}

/// How the logits at the network input size are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inference {
    /// One forward pass over the whole image, logits resized to its size (`mode='whole'`, what
    /// the PVT configs use).
    Whole,
    /// mmseg `slide_inference`: crops of `crop` `(h, w)` every `stride` `(h, w)` (the last crop
    /// of a row / column is moved back inside the image; images smaller than a crop are run
    /// whole), each crop's logits resized to the crop, summed where crops overlap and divided
    /// by the number of crops covering each pixel.
    Slide {
        /// Crop size `(h, w)`.
        crop: (usize, usize),
        /// Step between crops `(h, w)`.
        stride: (usize, usize),
    },
}

impl Inference {
    /// mmseg's usual ADE20K sliding window: 512×512 crops every 341 pixels.
    pub const ADE20K_SLIDE: Inference = Inference::Slide {
        crop: (512, 512),
        stride: (341, 341),
    };
}

/// The test pipeline's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegTestConfig {
    /// `AlignResize` `img_scale` `(long, short)` limits: (2048, 512).
    pub scale: (usize, usize),
    /// `AlignResize` `size_divisor`: 32.
    pub size_divisor: usize,
    /// Whole-image or sliding-window inference.
    pub inference: Inference,
    /// Test-time augmentation (mmseg `MultiScaleFlipAug` + `aug_test`); `None`: one pass.
    #[serde(default)]
    pub aug: Option<SegAug>,
}

impl SegTestConfig {
    /// The PVT-seg ADE20K test pipeline (whole-image inference).
    pub fn ade20k() -> Self {
        Self {
            scale: PVT_ADE20K_SCALE,
            size_divisor: 32,
            inference: Inference::Whole,
            aug: None,
        }
    }
}

/// Test-time augmentation as mmseg's `MultiScaleFlipAug(img_ratios=..., flip=...)` with
/// `EncoderDecoder.aug_test`: for each ratio `r` the image is resized with the scale
/// `(int(long·r), int(short·r))` (then `AlignResize` as usual), run as it is and, with `flip`,
/// mirrored left-right; each pass's logits are resized to the original image, turned into
/// class probabilities (softmax) and mirrored back, and the label map is the argmax of their
/// mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegAug {
    /// Scale ratios, in order (mmseg's `--aug-test`: 0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
    pub ratios: Vec<f64>,
    /// Add a left-right mirrored pass at every ratio.
    pub flip: bool,
}

impl SegAug {
    /// mmseg's `tools/test.py --aug-test`: six ratios from 0.5 to 1.75, with flips.
    pub fn mmseg_aug_test() -> Self {
        Self {
            ratios: vec![0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
            flip: true,
        }
    }

    /// The `(long, short)` scale limits of each ratio, as mmseg computes them (truncated).
    pub fn scales(&self, base: (usize, usize)) -> Result<Vec<(usize, usize)>> {
        ensure!(
            !self.ratios.is_empty(),
            "test-time augmentation: no scale ratios"
        );
        self.ratios
            .iter()
            .map(|&r| {
                ensure!(
                    r.is_finite() && r > 0.0,
                    "test-time augmentation: ratio {r} must be positive"
                );
                let s = ((base.0 as f64 * r) as usize, (base.1 as f64 * r) as usize);
                ensure!(
                    s.0 > 0 && s.1 > 0,
                    "test-time augmentation: ratio {r} gives the empty scale {s:?}"
                );
                Ok(s)
            })
            .collect()
    }
}

/// An image prepared by the test pipeline.
#[derive(Debug, Clone)]
pub struct SegInput {
    /// `[1, 3, H, W]`, normalised; `H`, `W` multiples of the size divisor.
    pub pixels: Tensor,
    /// The original image size (`ori_shape`): the label map's size.
    pub ori_shape: ImageSize,
}

/// `AlignResize` + `Normalize` on `img`, onto `device`.
pub fn preprocess_seg(img: &RgbImage, test: &SegTestConfig, device: &Device) -> Result<SegInput> {
    let ori_shape = ImageSize::new(img.height() as usize, img.width() as usize);
    let r = align_resize(img, test.scale, test.size_divisor)?;
    let pixels = normalize_255(&r.img, device)?.unsqueeze(0)?;
    Ok(SegInput { pixels, ori_shape })
}

/// Semantic FPN: PVT backbone → FPN (P2–P5) → FPNHead.
#[derive(Debug, Clone)]
pub struct SemanticFpnPvt {
    /// The backbone.
    pub backbone: AnyDense,
    /// The neck.
    pub neck: Fpn,
    /// The decode head.
    pub head: FpnHead,
    /// The architecture.
    pub config: SemanticFpnConfig,
    device: Device,
}

impl SemanticFpnPvt {
    /// Loads a segmentor checkpoint (official PVT-seg files; the backbone may also use
    /// mmdetection's naming). Every tensor must be used, except `auxiliary_head.*` (dropped and
    /// listed in [`AnyLoadInfo::dropped`]); anything else is an error listing the keys.
    pub fn load(
        ckpt: &Checkpoint,
        config: &SemanticFpnConfig,
        device: &Device,
    ) -> Result<(Self, AnyLoadInfo)> {
        let (backbone, mut info) = config.backbone.arch().load_dense(ckpt, device)?;
        if info.prefix().is_none() {
            bail!(
                "{}: no `backbone.` tensors: this is a bare backbone, not a Semantic FPN checkpoint (neck and decode head missing)",
                ckpt.path.display()
            );
        }
        info.drop_outside(|k| k.starts_with("auxiliary_head."));
        let tensors: BTreeMap<String, Tensor> = info
            .outside()
            .iter()
            .map(|k| (k.clone(), ckpt.tensors[k].clone()))
            .collect();
        let loader = StrictLoader::new(tensors, ckpt.path.display().to_string());
        let vb = loader.var_builder(device);
        let neck = Fpn::new(config.fpn(), backbone.output_spec(), vb.pp("neck"))?;
        let head = FpnHead::new(
            config.head(neck.output_spec()),
            neck.output_spec(),
            vb.pp("decode_head"),
        )?;
        loader.finish().context("neck / decode head tensors")?;
        Ok((
            Self {
                backbone,
                neck,
                head,
                config: config.clone(),
                device: device.clone(),
            },
            info,
        ))
    }

    /// Builds the network from official-named tensors in `vb` (`backbone.`, `neck.`,
    /// `decode_head.`), e.g. random weights for benchmarks.
    pub fn new(
        config: &SemanticFpnConfig,
        vb: candle_nn::VarBuilder,
        device: &Device,
    ) -> Result<Self> {
        Self::build(config, vb, device, false)
    }

    fn build(
        config: &SemanticFpnConfig,
        vb: candle_nn::VarBuilder,
        device: &Device,
        trainable: bool,
    ) -> Result<Self> {
        let backbone = config.backbone.build(vb.pp("backbone"))?;
        let neck = Fpn::new(config.fpn(), backbone.output_spec(), vb.pp("neck"))?;
        let (cfg, spec, vb) = (
            config.head(neck.output_spec()),
            neck.output_spec(),
            vb.pp("decode_head"),
        );
        let head = if trainable {
            FpnHead::new_trainable(cfg, spec, vb)?
        } else {
            FpnHead::new(cfg, spec, vb)?
        };
        Ok(Self {
            backbone,
            neck,
            head,
            config: config.clone(),
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The decode head's logits for a normalised batch `[B, 3, H, W]` (sides multiples of 32):
    /// `[B, num_classes, H/4, W/4]`.
    pub fn forward_logits(&self, images: &Tensor) -> Result<Tensor> {
        self.forward_logits_t(images, false)
    }

    /// [`Self::forward_logits`] with the decode head's BatchNorm layers in training mode when
    /// `train` (only a [`Self::new_trainable`] model has BatchNorm layers; the loaded model's are
    /// folded into its convs).
    pub fn forward_logits_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let feats = self.backbone.forward_pyramid(images)?;
        let p = self.neck.forward(&feats)?;
        self.head.forward_t(&p, train)
    }

    /// The network for training from tensors in `vb` (typically a `VarMap`): like
    /// [`Self::new`], with the decode head's BatchNorm kept as layers
    /// (`pvt_semantic_fpn::FpnHead::new_trainable`). Its variables use the checkpoint names
    /// (`backbone.`, `neck.`, `decode_head.`), so a saved `VarMap` loads with [`Self::load`].
    pub fn new_trainable(
        config: &SemanticFpnConfig,
        vb: candle_nn::VarBuilder,
        device: &Device,
    ) -> Result<Self> {
        Self::build(config, vb, device, true)
    }

    /// Logits at the network input size, `[B, num_classes, H, W]` (mmseg `EncoderDecoder`
    /// `whole_inference` / `slide_inference` before rescaling).
    pub fn input_logits(&self, images: &Tensor, inference: &Inference) -> Result<Tensor> {
        let (_, _, h, w) = images.dims4()?;
        match *inference {
            Inference::Whole => self.encode_decode(images, (h, w)),
            Inference::Slide { crop, stride } => self.slide(images, crop, stride),
        }
    }

    /// Logits resized to `ori` (the original image size), `[B, num_classes, h, w]`: the two
    /// bilinear resizes of the test pipeline.
    pub fn output_logits(
        &self,
        images: &Tensor,
        ori: ImageSize,
        inference: &Inference,
    ) -> Result<Tensor> {
        let at_input = self.input_logits(images, inference)?;
        resize_bilinear(&at_input, (ori.height, ori.width), PixelGrid::HalfPixel)
    }

    /// The whole test pipeline of the PVT ADE20K configs on an RGB image: a label map at the
    /// image's size (class indices `0..num_classes`).
    pub fn segment(&self, img: &RgbImage) -> Result<SegMap> {
        self.segment_with(img, &SegTestConfig::ade20k())
    }

    /// [`SemanticFpnPvt::segment`] with other test settings (e.g. sliding-window inference).
    pub fn segment_with(&self, img: &RgbImage, test: &SegTestConfig) -> Result<SegMap> {
        if let Some(aug) = &test.aug {
            return seg_map_from_logits(&self.aug_probs(img, test, aug)?);
        }
        let input = preprocess_seg(img, test, &self.device)?;
        let at_input = self.input_logits(&input.pixels, &test.inference)?;
        // the second resize fused with the argmax: same labels as `image_logits` + argmax,
        // without the [K, h, w] logits in memory
        let ori = input.ori_shape;
        let labels = resize_argmax(&at_input, (ori.height, ori.width), PixelGrid::HalfPixel)?;
        Ok(SegMap::new(ori, labels)?)
    }

    /// The scores the label map of [`SemanticFpnPvt::segment_with`] is the argmax of:
    /// `[1, num_classes, h, w]` at the image's size. Logits for a single pass; with test-time
    /// augmentation ([`SegTestConfig::aug`]) the mean class probabilities, as mmseg's
    /// `aug_test`.
    pub fn image_logits(&self, img: &RgbImage, test: &SegTestConfig) -> Result<Tensor> {
        if let Some(aug) = &test.aug {
            return self.aug_probs(img, test, aug);
        }
        let input = preprocess_seg(img, test, &self.device)?;
        self.output_logits(&input.pixels, input.ori_shape, &test.inference)
    }

    /// mmseg `aug_test`: the mean over ratios (and flips) of the softmax of each pass's logits
    /// at the original size, flipped passes mirrored back.
    fn aug_probs(&self, img: &RgbImage, test: &SegTestConfig, aug: &SegAug) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        let mut passes = 0usize;
        for scale in aug.scales(test.scale)? {
            let one = SegTestConfig {
                scale,
                aug: None,
                ..test.clone()
            };
            let input = preprocess_seg(img, &one, &self.device)?;
            for flip in [false, true].into_iter().take(1 + aug.flip as usize) {
                let px = if flip {
                    flip_width(&input.pixels)?
                } else {
                    input.pixels.clone()
                };
                let logits = self.output_logits(&px, input.ori_shape, &test.inference)?;
                let probs = candle_nn::ops::softmax(&logits, 1)?;
                let probs = if flip { flip_width(&probs)? } else { probs };
                sum = Some(match sum {
                    None => probs,
                    Some(s) => (s + probs)?,
                });
                passes += 1;
            }
        }
        let sum = sum.context("test-time augmentation: no passes")?;
        Ok((sum / passes as f64)?)
    }

    /// `encode_decode`: head logits resized to `size`.
    fn encode_decode(&self, images: &Tensor, size: (usize, usize)) -> Result<Tensor> {
        let logits = self.forward_logits(images)?;
        resize_bilinear(&logits, size, self.head.config().grid)
    }

    fn slide(
        &self,
        images: &Tensor,
        (crop_h, crop_w): (usize, usize),
        (stride_h, stride_w): (usize, usize),
    ) -> Result<Tensor> {
        ensure!(
            crop_h > 0 && crop_w > 0 && stride_h > 0 && stride_w > 0,
            "sliding window: crop {crop_h}x{crop_w} and stride {stride_h}x{stride_w} must be positive"
        );
        let (b, _, h, w) = images.dims4()?;
        let k = self.config.num_classes;
        let rows = slide_windows(h, crop_h, stride_h);
        let cols = slide_windows(w, crop_w, stride_w);
        let mut preds = Tensor::zeros((b, k, h, w), images.dtype(), images.device())?;
        let mut count = vec![0f32; h * w];
        for &(y1, y2) in &rows {
            for &(x1, x2) in &cols {
                let crop = images
                    .narrow(2, y1, y2 - y1)?
                    .narrow(3, x1, x2 - x1)?
                    .contiguous()?;
                let logit = self.encode_decode(&crop, (y2 - y1, x2 - x1))?;
                let cur = preds.narrow(2, y1, y2 - y1)?.narrow(3, x1, x2 - x1)?;
                preds = preds.slice_assign(&[0..b, 0..k, y1..y2, x1..x2], &(cur + logit)?)?;
                for row in count[y1 * w..y2 * w].chunks_exact_mut(w) {
                    row[x1..x2].iter_mut().for_each(|c| *c += 1.0);
                }
            }
        }
        let count =
            Tensor::from_vec(count, (1, 1, h, w), images.device())?.to_dtype(preds.dtype())?;
        Ok(preds.broadcast_div(&count)?)
    }
}

/// ADE20K's 150 class colours (RGB), in class-index order (`assets/ade20k_palette.txt`, mmseg's
/// `ADE20KDataset` palette; the class names are `pvt_eval::ade20k::ade20k_class_names`).
pub fn ade20k_palette() -> Vec<[u8; 3]> {
    include_str!("../../../assets/ade20k_palette.txt")
        .lines()
        .map(|l| {
            let mut c = [0u8; 3];
            for (dst, v) in c.iter_mut().zip(l.split_ascii_whitespace()) {
                *dst = v.parse().expect("bundled palette: integers 0..=255");
            }
            c
        })
        .collect()
}

/// The `(start, end)` windows of mmseg's `slide_inference` along one axis:
/// `max(len − crop + stride − 1, 0) / stride + 1` windows starting every `stride`, the last
/// ones moved back to end at the border (one window over everything when `len ≤ crop`).
fn slide_windows(len: usize, crop: usize, stride: usize) -> Vec<(usize, usize)> {
    let n = (len + stride - 1).saturating_sub(crop) / stride + 1;
    (0..n)
        .map(|i| {
            let end = (i * stride + crop).min(len);
            (end.saturating_sub(crop), end)
        })
        .collect()
}

/// `[B, C, H, W]` mirrored left-right (mmcv `imflip(direction='horizontal')`).
fn flip_width(x: &Tensor) -> Result<Tensor> {
    let w = x.dim(3)?;
    let idx: Vec<u32> = (0..w as u32).rev().collect();
    let idx = Tensor::new(idx.as_slice(), x.device())?;
    Ok(x.index_select(&idx, 3)?)
}

/// Per-pixel argmax of `[1, K, h, w]` logits as a label map (ties to the lower class index).
pub fn seg_map_from_logits(logits: &Tensor) -> Result<SegMap> {
    let (labels, (h, w)) = argmax_channels(logits)?;
    Ok(SegMap::new(ImageSize::new(h, w), labels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small Semantic FPN (two-block PVT) trained one step from a `VarMap`: every parameter
    /// receives a gradient, and the saved variables load back through the checkpoint loader
    /// into a network whose evaluation-mode logits equal the training network's.
    #[test]
    fn trainable_network_backpropagates_and_saves_a_loadable_checkpoint() -> Result<()> {
        use pvt_backbone::StageConfig;
        let dev = Device::Cpu;
        let st = |patch_size, embed_dim, num_heads, sr_ratio| StageConfig {
            patch_size,
            embed_dim,
            num_heads,
            mlp_ratio: 2,
            sr_ratio,
            depth: 1,
        };
        let config = SemanticFpnConfig {
            backbone: BackboneConfig::V1(pvt_backbone::PvtConfig {
                stages: [
                    st(4, 8, 1, 4),
                    st(2, 8, 1, 2),
                    st(2, 16, 2, 1),
                    st(2, 16, 2, 1),
                ],
                in_channels: 3,
                pretrain_img_size: 64,
                num_classes: 10,
                qkv_bias: true,
                numerics: None,
            }),
            fpn_channels: 8,
            head_channels: 4,
            num_classes: 3,
        };
        let vm = candle_nn::VarMap::new();
        let net = SemanticFpnPvt::new_trainable(
            &config,
            candle_nn::VarBuilder::from_varmap(&vm, candle::DType::F32, &dev),
            &dev,
        )?;
        // position tables start at zero in a VarMap: give everything non-trivial values
        for (k, v) in vm.data().lock().unwrap().iter() {
            if !k.contains("running_") && v.as_tensor().sum_all()?.to_scalar::<f32>()? == 0.0 {
                v.set(&v.as_tensor().randn_like(0.0, 0.1)?)?;
            }
        }
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &dev)?;
        let y = net.forward_logits_t(&x, true)?;
        assert_eq!(y.dims(), &[2, 3, 16, 16]);
        let grads = y.sqr()?.mean_all()?.backward()?;
        let mut missing = vec![];
        for (k, v) in vm.data().lock().unwrap().iter() {
            if k.contains("running_") {
                continue;
            }
            match grads.get(v.as_tensor()) {
                Some(g) if g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0 => {}
                _ => missing.push(k.clone()),
            }
        }
        missing.sort();
        assert!(missing.is_empty(), "no or zero gradient for {missing:?}");
        let path = std::env::temp_dir().join(format!(
            "pvt-semfpn-train-{}.safetensors",
            std::process::id()
        ));
        vm.save(&path)?;
        let (loaded, _) = SemanticFpnPvt::load(&Checkpoint::load(&path)?, &config, &dev)?;
        std::fs::remove_file(&path).ok();
        let a = net.forward_logits_t(&x, false)?;
        let b = loaded.forward_logits(&x)?;
        let d = (&a - &b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let m = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d <= 1e-4 * m.max(1e-3), "{d} vs {m}");
        Ok(())
    }

    #[test]
    fn names() {
        for (name, v) in SemanticFpnConfig::NAMES.iter().zip(PvtV1::ALL) {
            assert_eq!(
                SemanticFpnConfig::from_name(name).unwrap().backbone,
                BackboneConfig::V1(v.config())
            );
        }
        let c = SemanticFpnConfig::from_name("fpn_pvt_tiny_ade20k_40k").unwrap();
        assert_eq!(c.backbone, BackboneConfig::V1(PvtV1::Tiny.config()));
        assert_eq!(
            (c.fpn_channels, c.head_channels, c.num_classes),
            (256, 128, 150)
        );
        assert!(SemanticFpnConfig::from_name("FPN_PVT-L_ADE20K_40K").is_some());
        assert!(SemanticFpnConfig::from_name("retinanet_pvt_t_fpn_1x_coco").is_none());
        assert!(SemanticFpnConfig::from_name("fpn_pvt_huge_ade20k_40k").is_none());
    }

    #[test]
    fn palette_has_a_colour_per_class() {
        let p = ade20k_palette();
        assert_eq!(p.len(), 150);
        assert_eq!(p[0], [120, 120, 120]); // wall
        assert_eq!(p[149], [92, 0, 255]); // flag
    }

    #[test]
    fn slide_windows_follow_mmseg() {
        // a 512x704 ADE input with 512/341 windows: 1 row, 2 columns ending at 512 and 704
        let windows = slide_windows;
        assert_eq!(windows(512, 512, 341), vec![(0, 512)]);
        assert_eq!(windows(704, 512, 341), vec![(0, 512), (192, 704)]);
        // smaller than the crop: one window over everything
        assert_eq!(windows(300, 512, 341), vec![(0, 300)]);
        assert_eq!(
            windows(160, 64, 43),
            vec![(0, 64), (43, 107), (86, 150), (96, 160)]
        );
    }
}
