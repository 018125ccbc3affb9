//! RetinaNet test-time post-processing as the published PVT numbers were produced
//! (mmdetection ≤ 2.17 `AnchorHead._get_bboxes`):
//!
//! 1. per level: sigmoid scores `[H·W·A, K]`, deltas `[H·W·A, 4]`, anchors in `(y, x, a)` order;
//!    when there are more than `nms_pre` anchors keep the `nms_pre` with the highest **max class
//!    score** (mmdet ≥ 2.18 filters by `score_thr` first and takes the top pairs instead — a
//!    different, not the published, algorithm);
//! 2. decode against the anchors, clipped to the resized unpadded image (`img_shape`);
//! 3. concatenate the levels, divide the boxes by `scale_factor` (back to the original image);
//! 4. `multiclass_nms`: every (box, class) with score > `score_thr`, class-wise NMS, the
//!    `max_per_img` best.

use anyhow::{ensure, Result};
use candle::Tensor;
use pvt_det_ops::nms::{multiclass_nms, top_k, ClassBoxes, MulticlassNmsConfig, NmsThreshold};
use pvt_det_ops::{AnchorGenerator, DeltaXywhCoder};
use pvt_types::{ClassIdx, Detections, ImageSize};

use crate::DenseOutputs;

/// Test configuration (mmdet `test_cfg` of the RetinaNet configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetinaPostprocess {
    /// Candidates kept per level before decoding (1000).
    pub nms_pre: usize,
    /// `score_thr`, NMS and `max_per_img`.
    pub nms: MulticlassNmsConfig,
}

impl RetinaPostprocess {
    /// nms_pre 1000, score_thr 0.05, NMS IoU 0.5, 100 per image, with the given suppression
    /// test (mmcv's CUDA rule produced the published numbers; its CPU rules are the
    /// alternatives).
    pub fn coco(nms: fn(f32) -> NmsThreshold) -> Self {
        Self {
            nms_pre: 1000,
            nms: MulticlassNmsConfig::coco_test(nms),
        }
    }
}

impl Default for RetinaPostprocess {
    /// [`RetinaPostprocess::coco`] with mmcv's CUDA suppression rule.
    fn default() -> Self {
        Self::coco(NmsThreshold::cuda)
    }
}

pub use pvt_det_ops::ImageMeta;

/// Rows of a `[C, H, W]` head output as `[H·W·(C/k), k]` (channel-last per location).
fn rows(t: &Tensor, k: usize) -> Result<Vec<f32>> {
    let (c, _, _) = t.dims3()?;
    ensure!(c % k == 0, "{c} channels are not a multiple of {k}");
    Ok(t.permute((1, 2, 0))?.flatten_all()?.to_vec1::<f32>()?)
}

/// Detections of image `b` of the batch in original-image coordinates.
pub fn postprocess(
    out: &DenseOutputs,
    b: usize,
    anchors: &AnchorGenerator,
    meta: &ImageMeta,
    num_classes: usize,
    cfg: &RetinaPostprocess,
) -> Result<Detections> {
    ensure!(
        anchors.num_levels() == out.cls_logits.len(),
        "{} anchor levels for {} output levels",
        anchors.num_levels(),
        out.cls_logits.len()
    );
    let coder = DeltaXywhCoder::retinanet();
    let k = num_classes;
    let mut boxes: Vec<[f32; 4]> = vec![];
    let mut scores: Vec<f32> = vec![];
    for (level, (cls, reg)) in out.cls_logits.iter().zip(&out.box_deltas).enumerate() {
        let cls = cls.get(b)?;
        let reg = reg.get(b)?;
        let (_, h, w) = cls.dims3()?;
        let s = rows(&candle_nn::ops::sigmoid(&cls)?, k)?;
        let d = rows(&reg, 4)?;
        let a = anchors.grid_anchors(level, ImageSize::new(h, w))?;
        let n = a.len();
        ensure!(
            s.len() == n * k && d.len() == n * 4,
            "level {level}: {n} anchors, {} scores, {} deltas",
            s.len(),
            d.len()
        );
        let keep: Vec<usize> = if n > cfg.nms_pre {
            let max_scores: Vec<f32> = s
                .chunks_exact(k)
                .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                .collect();
            top_k(&max_scores, cfg.nms_pre)
        } else {
            (0..n).collect()
        };
        for i in keep {
            let delta = [d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]];
            boxes.push(coder.decode_one(a[i], delta, Some(meta.img_shape)));
            scores.extend_from_slice(&s[i * k..(i + 1) * k]);
        }
    }
    // back to the original image: divide by the scale factor (mmdet 2.x divides; 3.x multiplies
    // by its inverse, which can differ in the last bit)
    let sf = meta.scale_factor;
    for bx in &mut boxes {
        *bx = [bx[0] / sf[0], bx[1] / sf[1], bx[2] / sf[2], bx[3] / sf[3]];
    }
    let dets = multiclass_nms(ClassBoxes::Shared(&boxes), &scores, k, &cfg.nms)?;
    Ok(Detections::new(
        meta.ori_shape,
        dets.iter().map(|d| d.bbox).collect(),
        dets.iter().map(|d| d.score).collect(),
        dets.iter().map(|d| ClassIdx(d.class as u32)).collect(),
        None,
    )?)
}
