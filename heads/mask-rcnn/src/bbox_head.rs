//! The box head of Mask R-CNN (mmdetection 2.13 `Shared2FCBBoxHead`) and its
//! test-time post-processing (`BBoxHead.get_bboxes`).
//!
//! Forward, for `N` RoI features `[N, C, 7, 7]`: flatten channel-major (`c·49 + y·7 + x`) →
//! `shared_fcs.0` + ReLU → `shared_fcs.1` + ReLU → `fc_cls` (`K + 1` logits, softmax, the
//! **background last**) and `fc_reg` (`4·K` class-specific deltas, `class·4 + j`).
//!
//! Post-processing of one image ([`box_detections`]): softmax over the `K + 1` logits; decode
//! every class's deltas against its proposal with the R-CNN coder (stds 0.1, 0.1, 0.2, 0.2),
//! clipped to `img_shape`; divide by `scale_factor` (original-image frame); `multiclass_nms` on
//! the `K` foreground scores (score > 0.05, class-wise NMS IoU 0.5, at most 100).

use anyhow::{ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_det_ops::nms::{multiclass_nms, ClassBoxes, ClassDetection, MulticlassNmsConfig};
use pvt_det_ops::{DeltaXywhCoder, ImageMeta};
use pvt_nn::channel::Linear;

/// `Shared2FCBBoxHead` hyper-parameters (mmdetection's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BBoxHeadConfig {
    /// Channels of the RoI features (the FPN's 256).
    pub in_channels: usize,
    /// Side of the RoI features (7).
    pub roi_feat_size: usize,
    /// Width of the two shared fully connected layers (1024).
    pub fc_out_channels: usize,
    /// Foreground classes `K` (80); `fc_cls` has `K + 1` outputs.
    pub num_classes: usize,
}

impl BBoxHeadConfig {
    /// The PVT Mask R-CNN box head: 256×7×7 → 1024 → 1024 → 81 / 320.
    pub fn coco() -> Self {
        Self {
            in_channels: 256,
            roi_feat_size: 7,
            fc_out_channels: 1024,
            num_classes: 80,
        }
    }
}

/// Raw box-head outputs for `N` RoIs.
#[derive(Debug, Clone)]
pub struct BBoxOutputs {
    /// `[N, K + 1]` classification logits (background last).
    pub cls_score: Tensor,
    /// `[N, 4·K]` class-specific deltas.
    pub bbox_pred: Tensor,
}

/// The box head with loaded weights.
#[derive(Debug, Clone)]
pub struct BBoxHead {
    cfg: BBoxHeadConfig,
    shared_fcs: [Linear; 2],
    fc_cls: Linear,
    fc_reg: Linear,
}

fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(pvt_nn::channel::linear(i, o, vb)?)
}

impl BBoxHead {
    /// Reads mmdetection-named weights (`shared_fcs.{0,1}`, `fc_cls`, `fc_reg`) from `vb`
    /// (typically `vb.pp("roi_head.bbox_head")`).
    pub fn new(cfg: BBoxHeadConfig, vb: VarBuilder) -> Result<Self> {
        ensure!(
            cfg.in_channels > 0
                && cfg.roi_feat_size > 0
                && cfg.fc_out_channels > 0
                && cfg.num_classes > 0,
            "box head needs positive sizes: {cfg:?}"
        );
        let flat = cfg.in_channels * cfg.roi_feat_size * cfg.roi_feat_size;
        let fc = cfg.fc_out_channels;
        let shared_fcs = [
            linear(flat, fc, vb.pp("shared_fcs.0"))?,
            linear(fc, fc, vb.pp("shared_fcs.1"))?,
        ];
        let fc_cls = linear(fc, cfg.num_classes + 1, vb.pp("fc_cls"))?;
        let fc_reg = linear(fc, 4 * cfg.num_classes, vb.pp("fc_reg"))?;
        Ok(Self {
            cfg,
            shared_fcs,
            fc_cls,
            fc_reg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BBoxHeadConfig {
        &self.cfg
    }

    /// Runs the head on `[N, C, S, S]` RoI features.
    pub fn forward(&self, roi_feats: &Tensor) -> Result<BBoxOutputs> {
        let (n, c, h, w) = roi_feats.dims4()?;
        let s = self.cfg.roi_feat_size;
        ensure!(
            (c, h, w) == (self.cfg.in_channels, s, s),
            "box head expects RoI features [N, {}, {s}, {s}], got {:?}",
            self.cfg.in_channels,
            roi_feats.dims()
        );
        let mut x = roi_feats.reshape((n, c * h * w))?;
        for fc in &self.shared_fcs {
            x = fc.forward(&x)?.relu()?;
        }
        Ok(BBoxOutputs {
            cls_score: self.fc_cls.forward(&x)?,
            bbox_pred: self.fc_reg.forward(&x)?,
        })
    }
}

/// Row-wise softmax of `n × m` logits, as PyTorch computes it on the CPU (subtract the row
/// maximum, exponentiate, divide by the sum).
pub fn softmax_rows(logits: &[f32], m: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(m) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let start = out.len();
        let mut sum = 0.0f32;
        for &v in row {
            let e = (v - max).exp();
            sum += e;
            out.push(e);
        }
        for e in &mut out[start..] {
            *e /= sum;
        }
    }
    out
}

/// mmdetection 2.13 `BBoxHead.get_bboxes(rois, cls_score, bbox_pred, img_shape, scale_factor,
/// rescale=True, cfg)` for one image: `rois` are the proposals (resized-image frame),
/// `cls_score` row-major `N × (K + 1)` logits, `bbox_pred` row-major `N × 4K` deltas. Returns the
/// detections in the original image's frame, by descending score.
pub fn box_detections(
    rois: &[[f32; 4]],
    cls_score: &[f32],
    bbox_pred: &[f32],
    num_classes: usize,
    meta: &ImageMeta,
    cfg: &MulticlassNmsConfig,
) -> Result<Vec<ClassDetection>> {
    let n = rois.len();
    let k = num_classes;
    ensure!(
        cls_score.len() == n * (k + 1) && bbox_pred.len() == n * 4 * k,
        "box head outputs for {n} RoIs and {k} classes must be {n}x{} scores and {n}x{} deltas, \
         got {} and {}",
        k + 1,
        4 * k,
        cls_score.len(),
        bbox_pred.len()
    );
    let probs = softmax_rows(cls_score, k + 1);
    let deltas: Vec<[f32; 4]> = bbox_pred
        .chunks_exact(4)
        .map(|d| [d[0], d[1], d[2], d[3]])
        .collect();
    let mut boxes =
        DeltaXywhCoder::rcnn().decode_per_class(rois, &deltas, k, Some(meta.img_shape))?;
    let sf = meta.scale_factor;
    for b in &mut boxes {
        *b = [b[0] / sf[0], b[1] / sf[1], b[2] / sf[2], b[3] / sf[3]];
    }
    // foreground scores only: drop the background column (the last of each row)
    let fg: Vec<f32> = probs
        .chunks_exact(k + 1)
        .flat_map(|r| r[..k].iter().copied())
        .collect();
    multiclass_nms(ClassBoxes::PerClass(&boxes), &fg, k, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use pvt_det_ops::nms::NmsThreshold;
    use pvt_types::ImageSize;

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let p = softmax_rows(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 3);
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
        assert!(p[3..].iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-7));
    }

    #[test]
    fn background_last_and_class_specific_boxes() -> Result<()> {
        // two RoIs, two classes: RoI 0 is class 1 (index 1), RoI 1 is background
        let rois = [[10.0, 10.0, 30.0, 50.0], [0.0, 0.0, 5.0, 5.0]];
        let cls = [0.0, 5.0, 0.0, 0.0, 0.0, 9.0];
        let mut reg = vec![0.0f32; 2 * 8];
        reg[4] = 1.0; // RoI 0, class 1, dx = 1 → shift by 0.1 · 20 = 2 px
        let meta = ImageMeta {
            img_shape: ImageSize::new(100, 100),
            ori_shape: ImageSize::new(50, 50),
            scale_factor: [2.0; 4],
        };
        let cfg = MulticlassNmsConfig::coco_test(NmsThreshold::cpu);
        let d = box_detections(&rois, &cls, &reg, 2, &meta, &cfg)?;
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].class, 1);
        assert_eq!(d[0].row, 0);
        assert_eq!(d[0].bbox, [6.0, 5.0, 16.0, 25.0]);
        assert!(box_detections(&rois, &cls[..5], &reg, 2, &meta, &cfg).is_err());
        Ok(())
    }

    #[test]
    fn forward_shapes_and_shape_errors() -> Result<()> {
        let cfg = BBoxHeadConfig {
            in_channels: 2,
            roi_feat_size: 3,
            fc_out_channels: 4,
            num_classes: 3,
        };
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let head = BBoxHead::new(cfg, vb)?;
        let out = head.forward(&Tensor::ones((5, 2, 3, 3), DType::F32, &Device::Cpu)?)?;
        assert_eq!(out.cls_score.dims(), &[5, 4]);
        assert_eq!(out.bbox_pred.dims(), &[5, 12]);
        let err = head
            .forward(&Tensor::ones((5, 2, 7, 7), DType::F32, &Device::Cpu)?)
            .unwrap_err();
        assert!(err.to_string().contains("[N, 2, 3, 3]"), "{err}");
        Ok(())
    }
}
