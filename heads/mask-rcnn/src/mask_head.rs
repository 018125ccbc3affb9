//! The mask head of Mask R-CNN (mmdetection 2.13 `FCNMaskHead`).
//!
//! For `N` RoI features `[N, C, 14, 14]`: `num_convs` × [3×3 conv (pad 1, bias) + ReLU]
//! (`convs.{i}.conv`) → `upsample`, a 2×2 stride-2 transposed convolution (weight
//! `[in, out, 2, 2]`, bias) + ReLU → `conv_logits`, 1×1 to `K` channels: `[N, K, 28, 28]` logits.
//! Test time keeps each detection's own class channel and applies the sigmoid; the pasting into
//! the image is `pvt_det_ops::paste_masks`.
//!
//! The transposed convolution has no overlap between output pixels (kernel = stride = 2), so it
//! is one matrix product: `out[n, o, 2y + dy, 2x + dx] = b[o] + Σ_c x[n, c, y, x] · W[c, o, dy,
//! dx]`. [`MaskHead::forward_labels`] computes only the requested class channel of
//! `conv_logits` per RoI (a batched dot product instead of the full 1×1 convolution).

use anyhow::{ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_nn::channel::{add_bias, broadcast_left};
use pvt_nn::conv::Conv2d;

/// `FCNMaskHead` hyper-parameters (mmdetection's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskHeadConfig {
    /// Channels of the RoI features (256).
    pub in_channels: usize,
    /// Number of 3×3 convs (4).
    pub num_convs: usize,
    /// Channels of the convs and the upsampling (256).
    pub conv_out_channels: usize,
    /// Classes `K` (80): one mask channel per class.
    pub num_classes: usize,
    /// Side of the RoI features (14); masks are twice that.
    pub roi_feat_size: usize,
}

impl MaskHeadConfig {
    /// The PVT Mask R-CNN mask head: 4 convs of 256, 80 classes, 14 → 28.
    pub fn coco() -> Self {
        Self {
            in_channels: 256,
            num_convs: 4,
            conv_out_channels: 256,
            num_classes: 80,
            roi_feat_size: 14,
        }
    }

    /// Side of the predicted masks (28).
    pub fn mask_size(&self) -> usize {
        2 * self.roi_feat_size
    }
}

/// The mask head with loaded weights.
#[derive(Debug, Clone)]
pub struct MaskHead {
    cfg: MaskHeadConfig,
    convs: Vec<Conv2d>,
    /// `upsample.weight` `[in, out, 2, 2]` as `[in, out·4]`.
    up_weight: Tensor,
    /// `[1, out, 1, 1]`.
    up_bias: Tensor,
    /// `conv_logits.weight` as `[K, out]`.
    logits_weight: Tensor,
    /// `[K]`.
    logits_bias: Tensor,
}

impl MaskHead {
    /// Reads mmdetection-named weights (`convs.{i}.conv`, `upsample`, `conv_logits`) from `vb`
    /// (typically `vb.pp("roi_head.mask_head")`).
    pub fn new(cfg: MaskHeadConfig, vb: VarBuilder) -> Result<Self> {
        ensure!(
            cfg.in_channels > 0
                && cfg.conv_out_channels > 0
                && cfg.num_classes > 0
                && cfg.roi_feat_size > 0,
            "mask head needs positive sizes: {cfg:?}"
        );
        let c = cfg.conv_out_channels;
        let mut convs = Vec::with_capacity(cfg.num_convs);
        for i in 0..cfg.num_convs {
            let cin = if i == 0 { cfg.in_channels } else { c };
            convs.push(Conv2d::new(
                cin,
                c,
                3,
                1,
                1,
                true,
                vb.pp(format!("convs.{i}.conv")),
            )?);
        }
        let up_in = if cfg.num_convs == 0 {
            cfg.in_channels
        } else {
            c
        };
        let up = vb.pp("upsample");
        let up_weight = up
            .get((up_in, c, 2, 2), "weight")?
            .reshape((up_in, c * 4))?;
        let up_bias = up.get(c, "bias")?.reshape((1, c, 1, 1))?;
        let lg = vb.pp("conv_logits");
        let logits_weight = lg
            .get((cfg.num_classes, c, 1, 1), "weight")?
            .reshape((cfg.num_classes, c))?;
        let logits_bias = lg.get(cfg.num_classes, "bias")?;
        Ok(Self {
            cfg,
            convs,
            up_weight,
            up_bias,
            logits_weight,
            logits_bias,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MaskHeadConfig {
        &self.cfg
    }

    /// The convs and the upsampling: `[N, C, S, S]` → `[N, out, 2S, 2S]` (after the ReLU).
    pub fn features(&self, roi_feats: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = roi_feats.dims4()?;
        let s = self.cfg.roi_feat_size;
        ensure!(
            (c, h, w) == (self.cfg.in_channels, s, s),
            "mask head expects RoI features [N, {}, {s}, {s}], got {:?}",
            self.cfg.in_channels,
            roi_feats.dims()
        );
        let mut x = roi_feats.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?.relu()?;
        }
        let (_, cin, _, _) = x.dims4()?;
        let o = self.cfg.conv_out_channels;
        // [N·H·W, Cin] × [Cin, O·4] → [N, H, W, O, 2, 2] → [N, O, H, 2, W, 2]
        let y = x
            .permute((0, 2, 3, 1))?
            .reshape((n * h * w, cin))?
            .matmul(&self.up_weight)?
            .reshape((n, h, w, o, 2, 2))?
            .permute((0, 3, 1, 4, 2, 5))?
            .reshape((n, o, 2 * h, 2 * w))?;
        Ok(add_bias(&y, &self.up_bias, 1)?.relu()?)
    }

    /// All `K` mask logits: `[N, K, 2S, 2S]`.
    pub fn forward(&self, roi_feats: &Tensor) -> Result<Tensor> {
        let f = self.features(roi_feats)?;
        let (n, o, h, w) = f.dims4()?;
        let k = self.cfg.num_classes;
        // [N, O, HW] with [K, O] → [N, K, HW]
        let y = broadcast_left(&self.logits_weight, n)?.matmul(&f.reshape((n, o, h * w))?)?;
        let y = add_bias(&y, &self.logits_bias, 1)?;
        Ok(y.reshape((n, k, h, w))?)
    }

    /// The logits of one class per RoI (`labels[i]` for RoI `i`): `[N, 2S, 2S]`, equal to
    /// `forward(x)[i, labels[i]]`.
    pub fn forward_labels(&self, roi_feats: &Tensor, labels: &[usize]) -> Result<Tensor> {
        let n = roi_feats.dim(0)?;
        ensure!(
            labels.len() == n,
            "mask head: {} labels for {n} RoIs",
            labels.len()
        );
        let k = self.cfg.num_classes;
        if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
            anyhow::bail!("mask head: label {bad} out of range for {k} classes");
        }
        let f = self.features(roi_feats)?;
        let (_, o, h, w) = f.dims4()?;
        if n == 0 {
            return Ok(Tensor::zeros((0, h, w), f.dtype(), f.device())?);
        }
        let idx = Tensor::new(
            labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            f.device(),
        )?;
        let wsel = self.logits_weight.index_select(&idx, 0)?; // [N, O]
        let bsel = self.logits_bias.index_select(&idx, 0)?; // [N]
        let y = wsel
            .unsqueeze(1)?
            .matmul(&f.reshape((n, o, h * w))?)? // [N, 1, HW]
            .squeeze(1)?;
        let y = add_bias(&y, &bsel, 0)?; // one bias per RoI
        Ok(y.reshape((n, h, w))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use std::collections::HashMap;

    fn tiny() -> Result<MaskHead> {
        let dev = Device::Cpu;
        let cfg = MaskHeadConfig {
            in_channels: 3,
            num_convs: 2,
            conv_out_channels: 4,
            num_classes: 5,
            roi_feat_size: 3,
        };
        let mut t = HashMap::new();
        let mut seed = 1u32;
        let mut rnd = |shape: &[usize]| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            Ok(Tensor::from_vec(v, shape, &dev)?)
        };
        t.insert("convs.0.conv.weight".into(), rnd(&[4, 3, 3, 3])?);
        t.insert("convs.0.conv.bias".into(), rnd(&[4])?);
        t.insert("convs.1.conv.weight".into(), rnd(&[4, 4, 3, 3])?);
        t.insert("convs.1.conv.bias".into(), rnd(&[4])?);
        t.insert("upsample.weight".into(), rnd(&[4, 4, 2, 2])?);
        t.insert("upsample.bias".into(), rnd(&[4])?);
        t.insert("conv_logits.weight".into(), rnd(&[5, 4, 1, 1])?);
        t.insert("conv_logits.bias".into(), rnd(&[5])?);
        MaskHead::new(cfg, VarBuilder::from_tensors(t, DType::F32, &dev))
    }

    #[test]
    fn deconv_as_matmul_matches_candle_conv_transpose() -> Result<()> {
        let head = tiny()?;
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 3, 3), &dev)?;
        let mut r = x.clone();
        for c in &head.convs {
            r = c.forward(&r)?.relu()?;
        }
        let w = head.up_weight.reshape((4, 4, 2, 2))?;
        let r = r
            .conv_transpose2d(&w, 0, 0, 2, 1)?
            .broadcast_add(&head.up_bias)?
            .relu()?;
        let got = head.features(&x)?;
        assert_eq!(got.dims(), &[2, 4, 6, 6]);
        let d = (got - r)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-5, "max diff {d}");
        Ok(())
    }

    #[test]
    fn label_channel_equals_full_logits() -> Result<()> {
        let head = tiny()?;
        let x = Tensor::randn(0f32, 1.0, (3, 3, 3, 3), &Device::Cpu)?;
        let all = head.forward(&x)?;
        assert_eq!(all.dims(), &[3, 5, 6, 6]);
        let labels = [4, 0, 2];
        let sel = head.forward_labels(&x, &labels)?;
        for (i, &l) in labels.iter().enumerate() {
            let d = (sel.get(i)? - all.get(i)?.get(l)?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(d < 1e-5, "roi {i}: {d}");
        }
        assert!(head.forward_labels(&x, &[0, 1]).is_err());
        assert!(head.forward_labels(&x, &[0, 1, 5]).is_err());
        Ok(())
    }
}
