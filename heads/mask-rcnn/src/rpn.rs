//! The RPN head and its test-time proposals (mmdetection 2.13 `RPNHead`).
//!
//! Proposals follow `RPNHead._get_bboxes` of mmdetection 2.13.0
//! (`mmdet/models/dense_heads/rpn_head.py`, Apache-2.0, OpenMMLab), for one image:
//!
//! 1. per level: sigmoid scores in `(y, x, a)` order; when the level has more than `nms_pre`
//!    anchors, keep the `nms_pre` best by score in descending order (`scores.sort()[:nms_pre]`),
//!    otherwise every anchor in anchor order ([`pre_nms_top_k`]);
//! 2. concatenate the levels, decode against the anchors ([`DeltaXywhCoder::rpn`]), clipped to
//!    `img_shape` (the resized, unpadded image);
//! 3. drop boxes with `w <= min_bbox_size` or `h <= min_bbox_size` (`min_bbox_size = 0`: empty
//!    boxes). mmdet 2.13 applies this filter only when the **sum of the valid indices** differs
//!    from the number of boxes (`valid_ind.sum().item() != len(mlvl_proposals)`, a bug: it was
//!    meant to count them); this is reproduced, so in the rare case where the sum happens to
//!    equal the count the invalid boxes are kept, as in mmdet;
//! 4. `batched_nms` with the level index as the class (IoU 0.7), keep the `max_per_img` best.
//!
//! Boxes stay in the resized image's coordinates (no rescale: the RoI head works there).

use anyhow::{ensure, Result};
use candle::{Module, Tensor};
use candle_nn::VarBuilder;
use pvt_det_ops::nms::{batched_nms, pre_nms_top_k, NmsThreshold};
use pvt_det_ops::{AnchorGenerator, DeltaXywhCoder};
use pvt_nn::conv::Conv2d;
use pvt_nn::{FeaturePyramid, PyramidSpec};
use pvt_types::ImageSize;

/// RPNHead hyper-parameters (mmdetection's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpnHeadConfig {
    /// Channels of every input level (the FPN's `out_channels`, 256).
    pub in_channels: usize,
    /// Channels of `rpn_conv` (256).
    pub feat_channels: usize,
    /// Anchors per location `A` (1 scale × 3 ratios = 3).
    pub num_anchors: usize,
}

impl RpnHeadConfig {
    /// The Mask R-CNN RPN of the PVT configs: 256 channels, 3 anchors.
    pub fn coco() -> Self {
        Self {
            in_channels: 256,
            feat_channels: 256,
            num_anchors: 3,
        }
    }
}

/// Raw per-level RPN outputs, fine to coarse.
#[derive(Debug, Clone)]
pub struct RpnOutputs {
    /// Per level `[B, A, H, W]` objectness logits (sigmoid scores, one channel per anchor).
    pub cls_logits: Vec<Tensor>,
    /// Per level `[B, A·4, H, W]` box deltas (`channel = a·4 + j`, j over dx, dy, dw, dh).
    pub box_deltas: Vec<Tensor>,
    /// Strides of the levels.
    pub strides: Vec<usize>,
}

/// The RPN head with loaded weights.
#[derive(Debug, Clone)]
pub struct RpnHead {
    cfg: RpnHeadConfig,
    rpn_conv: Conv2d,
    rpn_cls: Conv2d,
    rpn_reg: Conv2d,
}

impl RpnHead {
    /// Reads mmdetection-named weights (`rpn_conv`, `rpn_cls`, `rpn_reg`) from `vb`
    /// (typically `vb.pp("rpn_head")`).
    pub fn new(cfg: RpnHeadConfig, vb: VarBuilder) -> Result<Self> {
        ensure!(
            cfg.in_channels > 0 && cfg.feat_channels > 0 && cfg.num_anchors > 0,
            "RPN head needs positive channel and anchor counts: {cfg:?}"
        );
        let rpn_conv = Conv2d::new(
            cfg.in_channels,
            cfg.feat_channels,
            3,
            1,
            1,
            true,
            vb.pp("rpn_conv"),
        )?;
        let rpn_cls = Conv2d::new(
            cfg.feat_channels,
            cfg.num_anchors,
            1,
            1,
            0,
            true,
            vb.pp("rpn_cls"),
        )?;
        let rpn_reg = Conv2d::new(
            cfg.feat_channels,
            cfg.num_anchors * 4,
            1,
            1,
            0,
            true,
            vb.pp("rpn_reg"),
        )?;
        Ok(Self {
            cfg,
            rpn_conv,
            rpn_cls,
            rpn_reg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RpnHeadConfig {
        &self.cfg
    }

    /// Checks that a neck's output can feed this head.
    pub fn check_input(&self, spec: &PyramidSpec) -> Result<()> {
        for l in spec.levels() {
            ensure!(
                l.channels == self.cfg.in_channels,
                "RPN head expects {} channels, level at stride {} has {}",
                self.cfg.in_channels,
                l.stride,
                l.channels
            );
        }
        Ok(())
    }

    /// Runs the head on every level: `rpn_conv` + ReLU, then `rpn_cls` and `rpn_reg`.
    pub fn forward(&self, feats: &FeaturePyramid) -> Result<RpnOutputs> {
        self.check_input(feats.spec())?;
        let mut cls_logits = vec![];
        let mut box_deltas = vec![];
        for x in feats.levels() {
            let f = self.rpn_conv.forward(x)?.relu()?;
            cls_logits.push(self.rpn_cls.forward(&f)?);
            box_deltas.push(self.rpn_reg.forward(&f)?);
        }
        Ok(RpnOutputs {
            cls_logits,
            box_deltas,
            strides: feats.spec().levels().iter().map(|l| l.stride).collect(),
        })
    }
}

/// Test configuration of the RPN (mmdet `test_cfg.rpn`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RpnProposalConfig {
    /// Candidates kept per level before decoding (1000).
    pub nms_pre: usize,
    /// Proposals kept per image after NMS (1000).
    pub max_per_img: usize,
    /// Boxes need `w > min_bbox_size` and `h > min_bbox_size` (0).
    pub min_bbox_size: f32,
    /// NMS threshold (IoU 0.7) and suppression test.
    pub nms: NmsThreshold,
}

impl RpnProposalConfig {
    /// nms_pre 1000, max_per_img 1000, min_bbox_size 0, NMS IoU 0.7 with the given suppression
    /// test (mmcv's CUDA rule produced the published numbers).
    pub fn coco(nms: fn(f32) -> NmsThreshold) -> Self {
        Self {
            nms_pre: 1000,
            max_per_img: 1000,
            min_bbox_size: 0.0,
            nms: nms(0.7),
        }
    }
}

impl Default for RpnProposalConfig {
    /// [`RpnProposalConfig::coco`] with mmcv's CUDA suppression rule.
    fn default() -> Self {
        Self::coco(NmsThreshold::cuda)
    }
}

/// Proposals of one image, by descending score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposals {
    /// `[N, 4]` boxes `(x1, y1, x2, y2)` in the resized image's coordinates.
    pub boxes: Vec<[f32; 4]>,
    /// `[N]` objectness scores (sigmoid).
    pub scores: Vec<f32>,
}

impl Proposals {
    /// Number of proposals.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}

/// One level's candidates for [`select_proposals`], all in `(y, x, a)` order.
#[derive(Debug, Clone, Copy)]
pub struct LevelCandidates<'a> {
    /// Objectness scores (after the sigmoid).
    pub scores: &'a [f32],
    /// Box deltas, one per score.
    pub deltas: &'a [[f32; 4]],
    /// Anchors, one per score.
    pub anchors: &'a [[f32; 4]],
}

/// Steps 1–4 of the module docs on already flattened levels (fine to coarse).
pub fn select_proposals(
    levels: &[LevelCandidates<'_>],
    img_shape: ImageSize,
    cfg: &RpnProposalConfig,
) -> Result<Proposals> {
    let coder = DeltaXywhCoder::rpn();
    let mut boxes: Vec<[f32; 4]> = vec![];
    let mut scores: Vec<f32> = vec![];
    let mut ids: Vec<usize> = vec![];
    for (level, c) in levels.iter().enumerate() {
        ensure!(
            c.scores.len() == c.deltas.len() && c.scores.len() == c.anchors.len(),
            "level {level}: {} scores, {} deltas, {} anchors",
            c.scores.len(),
            c.deltas.len(),
            c.anchors.len()
        );
        for i in pre_nms_top_k(c.scores, cfg.nms_pre) {
            boxes.push(coder.decode_one(c.anchors[i], c.deltas[i], Some(img_shape)));
            scores.push(c.scores[i]);
            ids.push(level);
        }
    }
    // min-size filter, including mmdet 2.13's index-sum condition (see the module docs)
    let min = cfg.min_bbox_size;
    let valid: Vec<usize> = boxes
        .iter()
        .enumerate()
        .filter(|(_, b)| b[2] - b[0] > min && b[3] - b[1] > min)
        .map(|(i, _)| i)
        .collect();
    let index_sum: u128 = valid.iter().map(|&i| i as u128).sum();
    if index_sum != boxes.len() as u128 {
        boxes = valid.iter().map(|&i| boxes[i]).collect();
        scores = valid.iter().map(|&i| scores[i]).collect();
        ids = valid.iter().map(|&i| ids[i]).collect();
    }
    let keep = batched_nms(&boxes, &scores, &ids, cfg.nms)?;
    let keep = &keep[..keep.len().min(cfg.max_per_img)];
    Ok(Proposals {
        boxes: keep.iter().map(|&i| boxes[i]).collect(),
        scores: keep.iter().map(|&i| scores[i]).collect(),
    })
}

/// A `[C, H, W]` tensor as `(y, x, c)`-ordered f32 values.
fn channel_last(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.permute((1, 2, 0))?
        .flatten_all()?
        .to_dtype(candle::DType::F32)?
        .to_vec1::<f32>()?)
}

/// Proposals of image `b` of the batch (mmdet 2.13 `RPNHead._get_bboxes` for one image), in
/// the coordinates of the resized image of size `img_shape` (unpadded).
pub fn proposals(
    out: &RpnOutputs,
    b: usize,
    anchors: &AnchorGenerator,
    img_shape: ImageSize,
    cfg: &RpnProposalConfig,
) -> Result<Proposals> {
    ensure!(
        anchors.num_levels() == out.cls_logits.len()
            && out.cls_logits.len() == out.box_deltas.len(),
        "{} anchor levels for {} score and {} delta levels",
        anchors.num_levels(),
        out.cls_logits.len(),
        out.box_deltas.len()
    );
    // per level: scores, deltas, anchors
    type Flat = (Vec<f32>, Vec<[f32; 4]>, Vec<[f32; 4]>);
    let mut flat: Vec<Flat> = vec![];
    for (level, (cls, reg)) in out.cls_logits.iter().zip(&out.box_deltas).enumerate() {
        let (batch, _, _, _) = cls.dims4()?;
        ensure!(b < batch, "image {b} requested from a batch of {batch}");
        let cls = cls.get(b)?;
        let reg = reg.get(b)?;
        let (_, h, w) = cls.dims3()?;
        let (_, rh, rw) = reg.dims3()?;
        ensure!(
            (h, w) == (rh, rw),
            "level {level}: scores are {h}x{w}, deltas {rh}x{rw}"
        );
        let s = channel_last(&candle_nn::ops::sigmoid(
            &cls.to_dtype(candle::DType::F32)?,
        )?)?;
        let d = channel_last(&reg)?;
        let a = anchors.grid_anchors(level, ImageSize::new(h, w))?;
        ensure!(
            s.len() == a.len() && d.len() == 4 * a.len(),
            "level {level}: {} anchors, {} scores, {} deltas",
            a.len(),
            s.len(),
            d.len()
        );
        let d: Vec<[f32; 4]> = d
            .chunks_exact(4)
            .map(|r| [r[0], r[1], r[2], r[3]])
            .collect();
        flat.push((s, d, a));
    }
    let levels: Vec<LevelCandidates<'_>> = flat
        .iter()
        .map(|(s, d, a)| LevelCandidates {
            scores: s,
            deltas: d,
            anchors: a,
        })
        .collect();
    select_proposals(&levels, img_shape, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(nms_pre: usize, max_per_img: usize) -> RpnProposalConfig {
        RpnProposalConfig {
            nms_pre,
            max_per_img,
            min_bbox_size: 0.0,
            nms: NmsThreshold::cpu_legacy(0.7),
        }
    }

    const Z: [f32; 4] = [0.0; 4];

    /// Zero deltas decode to the anchor itself, so anchors are the boxes.
    #[test]
    fn nms_is_per_level() -> Result<()> {
        let img = ImageSize::new(100, 100);
        // level 0: two identical boxes -> one suppressed; level 1: the same box again survives
        let a0 = [
            [10.0, 10.0, 50.0, 50.0],
            [10.0, 10.0, 50.0, 50.0],
            [60.0, 60.0, 90.0, 90.0],
        ];
        let s0 = [0.9, 0.8, 0.3];
        let a1 = [[10.0, 10.0, 50.0, 50.0]];
        let s1 = [0.5];
        let levels = [
            LevelCandidates {
                scores: &s0,
                deltas: &[Z; 3],
                anchors: &a0,
            },
            LevelCandidates {
                scores: &s1,
                deltas: &[Z; 1],
                anchors: &a1,
            },
        ];
        let p = select_proposals(&levels, img, &cfg(1000, 1000))?;
        assert_eq!(p.scores, vec![0.9, 0.5, 0.3]);
        assert_eq!(p.boxes, vec![a0[0], a1[0], a0[2]]);
        // max_per_img truncates the score-sorted list
        let p = select_proposals(&levels, img, &cfg(1000, 2))?;
        assert_eq!(p.scores, vec![0.9, 0.5]);
        // nms_pre keeps the best per level: level 0 keeps 0.9 only
        let p = select_proposals(&levels, img, &cfg(1, 1000))?;
        assert_eq!(p.scores, vec![0.9, 0.5]);
        Ok(())
    }

    #[test]
    fn iou_at_threshold_uses_the_legacy_cpu_rule() -> Result<()> {
        let img = ImageSize::new(100, 100);
        // IoU = 70 / 100 = 0.7 exactly: suppressed by `>=` (mmcv ≤ 1.3.11 CPU), kept by `>`
        let a = [[0.0, 0.0, 10.0, 10.0], [0.0, 3.0, 10.0, 10.0]];
        let s = [0.9, 0.8];
        let d = [Z; 2];
        let levels = [LevelCandidates {
            scores: &s,
            deltas: &d,
            anchors: &a,
        }];
        let p = select_proposals(&levels, img, &cfg(1000, 1000))?;
        assert_eq!(p.scores, vec![0.9]);
        let mut c = cfg(1000, 1000);
        c.nms = NmsThreshold::cpu(0.7);
        let p = select_proposals(&levels, img, &c)?;
        assert_eq!(p.scores, vec![0.9, 0.8]);
        Ok(())
    }

    #[test]
    fn min_size_filter_drops_empty_boxes() -> Result<()> {
        let img = ImageSize::new(100, 100);
        // box 0 is clipped to zero width (x beyond the image); box 1 has zero height
        let a = [
            [120.0, 10.0, 150.0, 40.0],
            [10.0, 20.0, 40.0, 20.0],
            [10.0, 10.0, 40.0, 40.0],
            [60.0, 60.0, 70.0, 70.0],
        ];
        let s = [0.9, 0.8, 0.7, 0.6];
        let d = [Z; 4];
        let levels = [LevelCandidates {
            scores: &s,
            deltas: &d,
            anchors: &a,
        }];
        // valid indices [2, 3]: sum 5 != 4, so the filter applies
        let p = select_proposals(&levels, img, &cfg(1000, 1000))?;
        assert_eq!(p.scores, vec![0.7, 0.6]);
        assert_eq!(p.boxes, vec![a[2], a[3]]);
        Ok(())
    }

    #[test]
    fn min_size_filter_index_sum_quirk() -> Result<()> {
        let img = ImageSize::new(100, 100);
        // valid indices [1, 3] sum to 4 == number of boxes: mmdet 2.13 skips the filter
        let a = [
            [120.0, 10.0, 150.0, 40.0],
            [10.0, 10.0, 40.0, 40.0],
            [10.0, 20.0, 40.0, 20.0],
            [60.0, 60.0, 70.0, 70.0],
        ];
        let s = [0.9, 0.8, 0.7, 0.6];
        let d = [Z; 4];
        let levels = [LevelCandidates {
            scores: &s,
            deltas: &d,
            anchors: &a,
        }];
        let p = select_proposals(&levels, img, &cfg(1000, 1000))?;
        assert_eq!(p.len(), 4);
        assert_eq!(p.boxes[0], [100.0, 10.0, 100.0, 40.0]);
        Ok(())
    }

    #[test]
    fn mismatched_lengths_are_errors() {
        let s = [0.9, 0.8];
        let levels = [LevelCandidates {
            scores: &s,
            deltas: &[Z; 1],
            anchors: &[Z; 2],
        }];
        assert!(select_proposals(&levels, ImageSize::new(10, 10), &cfg(10, 10)).is_err());
    }
}
