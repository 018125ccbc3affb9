//! mmdet's `multiclass_nms` (mmdetection 2.13 `mmdet/core/post_processing/bbox_nms.py`,
//! without `score_factors`, which no PVT head uses).

use anyhow::{ensure, Result};

use super::{batched_nms, NmsThreshold};

/// The boxes `multiclass_nms` scores, one row per candidate box.
#[derive(Debug, Clone, Copy)]
pub enum ClassBoxes<'a> {
    /// One box per row, shared by every class (mmdet's `(n, 4)` input: RetinaNet, after
    /// decoding the anchors).
    Shared(&'a [[f32; 4]]),
    /// One box per row and class, `boxes[i·K + k]` for row `i`, class `k` (mmdet's
    /// `(n, K·4)` input: Mask R-CNN's class-specific box head).
    PerClass(&'a [[f32; 4]]),
}

/// `multiclass_nms` settings (mmdet `test_cfg`: `score_thr`, `nms`, `max_per_img`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MulticlassNmsConfig {
    /// Keep `(box, class)` pairs with score **strictly greater** than this (f32 comparison).
    pub score_thr: f32,
    /// Class-wise NMS threshold and test.
    pub nms: NmsThreshold,
    /// Keep at most this many detections after NMS (`None`: all; mmdet's `-1`).
    pub max_num: Option<usize>,
}

impl MulticlassNmsConfig {
    /// RetinaNet and Mask R-CNN's box head test configs (PVT-det `retinanet_r50_fpn.py`,
    /// `mask_rcnn_r50_fpn.py`): score_thr 0.05, NMS IoU 0.5, max_per_img 100, with the given
    /// suppression test (see [`crate::Suppress`]).
    pub fn coco_test(nms: fn(f32) -> NmsThreshold) -> Self {
        Self {
            score_thr: 0.05,
            nms: nms(0.5),
            max_num: Some(100),
        }
    }
}

/// One detection out of [`multiclass_nms`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassDetection {
    /// The box, `[x1, y1, x2, y2]`, in the frame of the input boxes.
    pub bbox: [f32; 4],
    /// Its class score.
    pub score: f32,
    /// Its class, `0..K` (foreground classes only).
    pub class: usize,
    /// The input row it came from (e.g. the anchor or proposal index).
    pub row: usize,
}

/// Class-wise NMS over every `(row, class)` pair whose score exceeds `cfg.score_thr`
/// (mmdet 2.13 `multiclass_nms`):
///
/// 1. flatten pairs row-major (`i·K + k`) and keep those with `score > score_thr` (NaN scores
///    never pass);
/// 2. [`batched_nms`] with the class as label (so mmcv's coordinate-offset arithmetic applies);
/// 3. keep the first `max_num` by descending score (ties by lower pair index).
///
/// `scores` is row-major `n × num_classes` over the **foreground** classes only: drop the
/// background column mmdet appends (sigmoid heads pad a zero column, softmax heads have the
/// background last) before calling. Errors if the shapes do not match.
pub fn multiclass_nms(
    boxes: ClassBoxes<'_>,
    scores: &[f32],
    num_classes: usize,
    cfg: &MulticlassNmsConfig,
) -> Result<Vec<ClassDetection>> {
    ensure!(num_classes > 0, "multiclass_nms needs at least one class");
    let rows = scores.len() / num_classes;
    ensure!(
        rows * num_classes == scores.len(),
        "multiclass_nms: {} scores is not a whole number of rows of {num_classes} classes",
        scores.len()
    );
    let (given, needed) = match boxes {
        ClassBoxes::Shared(b) => (b.len(), rows),
        ClassBoxes::PerClass(b) => (b.len(), scores.len()),
    };
    ensure!(
        given == needed,
        "multiclass_nms: {rows} score rows of {num_classes} classes need {needed} boxes, \
         got {given}"
    );
    // In range after the check above.
    let box_of = |pair: usize| match boxes {
        ClassBoxes::Shared(b) => b[pair / num_classes],
        ClassBoxes::PerClass(b) => b[pair],
    };

    let mut pair_index = Vec::new();
    let mut cand_boxes = Vec::new();
    let mut cand_scores = Vec::new();
    let mut cand_labels = Vec::new();
    for (pair, &s) in scores.iter().enumerate() {
        if s > cfg.score_thr {
            pair_index.push(pair);
            cand_boxes.push(box_of(pair));
            cand_scores.push(s);
            cand_labels.push(pair % num_classes);
        }
    }
    let mut keep = batched_nms(&cand_boxes, &cand_scores, &cand_labels, cfg.nms)?;
    if let Some(m) = cfg.max_num {
        keep.truncate(m);
    }
    Ok(keep
        .into_iter()
        .map(|c| ClassDetection {
            bbox: cand_boxes[c],
            score: cand_scores[c],
            class: cand_labels[c],
            row: pair_index[c] / num_classes,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_num: Option<usize>) -> MulticlassNmsConfig {
        MulticlassNmsConfig {
            score_thr: 0.05,
            nms: NmsThreshold::cpu(0.5),
            max_num,
        }
    }

    #[test]
    fn shared_boxes_two_classes() {
        let boxes = [[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]];
        // 3 rows x 2 classes.
        let scores = [
            0.9, 0.05, // row 0: class 1 is not > 0.05
            0.8, 0.7, // row 1
            0.04, 0.3, // row 2: class 0 below threshold
        ];
        let dets = multiclass_nms(ClassBoxes::Shared(&boxes), &scores, 2, &cfg(None)).unwrap();
        let got: Vec<(usize, usize)> = dets.iter().map(|d| (d.row, d.class)).collect();
        // Row 1 class 0 is suppressed by row 0 (IoU 90/110); row 1 class 1 survives alone.
        assert_eq!(got, vec![(0, 0), (1, 1), (2, 1)]);
        assert_eq!(dets[1].bbox, boxes[1]);
        assert_eq!(dets[1].score, 0.7);
        let top2 = multiclass_nms(ClassBoxes::Shared(&boxes), &scores, 2, &cfg(Some(2))).unwrap();
        assert_eq!(top2, dets[..2].to_vec());
    }

    #[test]
    fn per_class_boxes_and_shape_errors() {
        let boxes = [
            [0., 0., 10., 10.],
            [20., 20., 30., 30.],
            [0., 0., 10., 10.],
            [20., 20., 31., 30.],
        ];
        let scores = [0.6, 0.9, 0.7, 0.8];
        let dets = multiclass_nms(ClassBoxes::PerClass(&boxes), &scores, 2, &cfg(None)).unwrap();
        // Class 1: rows 0 and 1 overlap (IoU 100/110) -> row 0 (0.9) keeps; class 0: row 1
        // (0.7) and row 0 (0.6) share the box -> row 1 keeps.
        let got: Vec<(usize, usize, f32)> =
            dets.iter().map(|d| (d.row, d.class, d.score)).collect();
        assert_eq!(got, vec![(0, 1, 0.9), (1, 0, 0.7)]);
        assert_eq!(dets[0].bbox, boxes[1]);
        assert!(multiclass_nms(ClassBoxes::PerClass(&boxes[..3]), &scores, 2, &cfg(None)).is_err());
        assert!(multiclass_nms(ClassBoxes::Shared(&boxes), &scores, 2, &cfg(None)).is_err());
        assert!(multiclass_nms(ClassBoxes::Shared(&boxes), &scores, 3, &cfg(None)).is_err());
        assert!(multiclass_nms(ClassBoxes::Shared(&boxes), &scores, 0, &cfg(None)).is_err());
        let none = multiclass_nms(ClassBoxes::Shared(&[]), &[], 2, &cfg(None)).unwrap();
        assert!(none.is_empty());
    }
}
