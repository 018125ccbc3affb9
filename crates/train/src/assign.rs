//! Anchor assignment and the RetinaNet training targets, as mmdetection 2.x computes them
//! (`MaxIoUAssigner.assign_wrt_overlaps`, `AnchorGenerator.valid_flags`,
//! `AnchorHead._get_targets_single` with `allowed_border = -1`, no sampling).

use anyhow::{ensure, Result};
use pvt_det_ops::{iou_matrix, AnchorGenerator, DeltaXywhCoder};
use pvt_types::ImageSize;

/// What an anchor is assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    /// Not used by the losses (IoU between the thresholds, or outside the image's padded area).
    Ignore,
    /// Background.
    Negative,
    /// The ground-truth box with this index.
    Gt(usize),
}

/// mmdet `MaxIoUAssigner` (without `gt_bboxes_ignore`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaxIouAssigner {
    /// An anchor whose best IoU is at least this is positive.
    pub pos_iou_thr: f32,
    /// An anchor whose best IoU is in `[0, neg_iou_thr)` is negative.
    pub neg_iou_thr: f32,
    /// Low-quality matches: a ground truth whose best IoU is at least this keeps its best
    /// anchor(s) even below `pos_iou_thr`.
    pub min_pos_iou: f32,
    /// Whether every anchor tying for a ground truth's best IoU gets it (else the first).
    pub gt_max_assign_all: bool,
    /// Whether low-quality matches are made at all.
    pub match_low_quality: bool,
}

impl Default for MaxIouAssigner {
    fn default() -> Self {
        Self::retinanet()
    }
}

impl MaxIouAssigner {
    /// RetinaNet's `train_cfg.assigner`: positive ≥ 0.5, negative < 0.4, `min_pos_iou` 0,
    /// `gt_max_assign_all` and low-quality matching on.
    pub fn retinanet() -> Self {
        Self {
            pos_iou_thr: 0.5,
            neg_iou_thr: 0.4,
            min_pos_iou: 0.0,
            gt_max_assign_all: true,
            match_low_quality: true,
        }
    }

    /// Assigns each anchor. The steps and their order are mmdetection's: all anchors start
    /// ignored; those whose best IoU is in `[0, neg)` become negative; those with best IoU
    /// `≥ pos` take their best ground truth (the first on ties); then, ground truth by ground
    /// truth in order, each one whose best IoU is `≥ min_pos_iou` takes every anchor with that
    /// IoU (later ground truths win). With `min_pos_iou = 0` a ground truth that overlaps no
    /// anchor therefore takes every anchor with IoU 0 to it, as upstream — which is why
    /// [`crate::data`] drops empty boxes. Without ground truth every anchor is negative.
    pub fn assign(&self, anchors: &[[f32; 4]], gts: &[[f32; 4]]) -> Vec<Assigned> {
        let n = anchors.len();
        if gts.is_empty() {
            return vec![Assigned::Negative; n];
        }
        if n == 0 {
            return vec![];
        }
        // overlaps [num_gts, num_anchors]
        let ov = iou_matrix(gts, anchors);
        let mut max_ov = vec![f32::NEG_INFINITY; n];
        let mut argmax = vec![0usize; n];
        for g in 0..gts.len() {
            let row = ov.row(g).expect("in range");
            for (j, &v) in row.iter().enumerate() {
                if v > max_ov[j] {
                    max_ov[j] = v;
                    argmax[j] = g;
                }
            }
        }
        let mut out = vec![Assigned::Ignore; n];
        for j in 0..n {
            if max_ov[j] >= 0.0 && max_ov[j] < self.neg_iou_thr {
                out[j] = Assigned::Negative;
            }
            if max_ov[j] >= self.pos_iou_thr {
                out[j] = Assigned::Gt(argmax[j]);
            }
        }
        if self.match_low_quality {
            for g in 0..gts.len() {
                let row = ov.row(g).expect("in range");
                let (best_j, best) =
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |(bj, b), (j, &v)| {
                                if v > b {
                                    (j, v)
                                } else {
                                    (bj, b)
                                }
                            },
                        );
                if best >= self.min_pos_iou {
                    if self.gt_max_assign_all {
                        for (j, &v) in row.iter().enumerate() {
                            if v == best {
                                out[j] = Assigned::Gt(g);
                            }
                        }
                    } else {
                        out[best_j] = Assigned::Gt(g);
                    }
                }
            }
        }
        out
    }
}

/// The anchors of every level for a padded batch input, concatenated in the head's output
/// order (level, then `(y, x, a)`), with each level's feature-map size.
pub fn batch_anchors(generator: &AnchorGenerator, featmaps: &[ImageSize]) -> Result<Vec<[f32; 4]>> {
    Ok(generator
        .multi_level_grid_anchors(featmaps)?
        .into_iter()
        .flatten()
        .collect())
}

/// mmdet `AnchorGenerator.valid_flags` for one image: on each level, anchors at cells
/// `y < ceil(pad_h / stride)`, `x < ceil(pad_w / stride)` (capped at the map) are valid; the
/// others lie in padding added for other images of the batch.
pub fn valid_flags(
    generator: &AnchorGenerator,
    featmaps: &[ImageSize],
    pad_shape: ImageSize,
) -> Result<Vec<bool>> {
    ensure!(
        featmaps.len() == generator.num_levels(),
        "{} feature maps for {} anchor levels",
        featmaps.len(),
        generator.num_levels()
    );
    let a = generator.num_base_anchors();
    let mut out = Vec::new();
    for (level, f) in featmaps.iter().enumerate() {
        let s = generator.strides()[level];
        let vh = pad_shape.height.div_ceil(s).min(f.height);
        let vw = pad_shape.width.div_ceil(s).min(f.width);
        for y in 0..f.height {
            for x in 0..f.width {
                let v = y < vh && x < vw;
                out.extend(std::iter::repeat_n(v, a));
            }
        }
    }
    Ok(out)
}

/// One image's RetinaNet targets over all anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorTargets {
    /// Class index per anchor; `num_classes` for background (and ignored anchors).
    pub labels: Vec<u32>,
    /// 1 for positives and negatives, 0 for ignored and invalid anchors.
    pub label_weights: Vec<f32>,
    /// Indices of the positive anchors, ascending.
    pub pos: Vec<usize>,
    /// Regression targets of the positives (encoded deltas), in `pos` order.
    pub bbox_targets: Vec<[f32; 4]>,
}

impl AnchorTargets {
    /// Number of positive anchors.
    pub fn num_pos(&self) -> usize {
        self.pos.len()
    }
}

/// `AnchorHead._get_targets_single` for RetinaNet: assigns the valid anchors (`valid`),
/// labels positives with their ground truth's class and encodes their regression targets with
/// `coder`. `gt_labels` are class indices `< num_classes`.
pub fn anchor_targets(
    anchors: &[[f32; 4]],
    valid: &[bool],
    gt_boxes: &[[f32; 4]],
    gt_labels: &[u32],
    num_classes: usize,
    assigner: &MaxIouAssigner,
    coder: &DeltaXywhCoder,
) -> Result<AnchorTargets> {
    ensure!(
        anchors.len() == valid.len(),
        "{} anchors, {} valid flags",
        anchors.len(),
        valid.len()
    );
    ensure!(
        gt_boxes.len() == gt_labels.len(),
        "{} boxes, {} labels",
        gt_boxes.len(),
        gt_labels.len()
    );
    ensure!(
        gt_labels.iter().all(|&l| (l as usize) < num_classes),
        "a label is not below {num_classes}"
    );
    let inside: Vec<usize> = (0..anchors.len()).filter(|&i| valid[i]).collect();
    let sub: Vec<[f32; 4]> = inside.iter().map(|&i| anchors[i]).collect();
    let assigned = assigner.assign(&sub, gt_boxes);
    let n = anchors.len();
    let mut labels = vec![num_classes as u32; n];
    let mut label_weights = vec![0f32; n];
    let mut pos = Vec::new();
    let mut bbox_targets = Vec::new();
    for (k, &i) in inside.iter().enumerate() {
        match assigned[k] {
            Assigned::Ignore => {}
            Assigned::Negative => label_weights[i] = 1.0,
            Assigned::Gt(g) => {
                label_weights[i] = 1.0;
                labels[i] = gt_labels[g];
                pos.push(i);
                bbox_targets.push(coder.encode_one(anchors[i], gt_boxes[g]));
            }
        }
    }
    Ok(AnchorTargets {
        labels,
        label_weights,
        pos,
        bbox_targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvt_det_ops::AnchorConfig;

    #[test]
    fn thresholds_and_low_quality_matches() {
        let gt = [[0.0, 0.0, 10.0, 10.0]];
        let anchors = [
            [0.0, 0.0, 10.0, 10.0],   // IoU 1: positive
            [0.0, 0.0, 10.0, 20.0],   // IoU 0.5: positive
            [0.0, 0.0, 10.0, 22.0],   // IoU 0.4545: ignored
            [0.0, 0.0, 10.0, 30.0],   // IoU 0.333: negative
            [50.0, 50.0, 60.0, 60.0], // IoU 0: negative
        ];
        let a = MaxIouAssigner::retinanet().assign(&anchors, &gt);
        assert_eq!(
            a,
            vec![
                Assigned::Gt(0),
                Assigned::Gt(0),
                Assigned::Ignore,
                Assigned::Negative,
                Assigned::Negative
            ]
        );
        // a ground truth whose best anchor is below 0.5 still gets it (and every tie)
        let gt = [[0.0, 0.0, 10.0, 10.0]];
        let anchors = [
            [0.0, 0.0, 10.0, 30.0], // 0.333
            [0.0, 0.0, 30.0, 10.0], // 0.333 (tie)
            [0.0, 0.0, 10.0, 40.0], // 0.25
        ];
        let a = MaxIouAssigner::retinanet().assign(&anchors, &gt);
        assert_eq!(
            a,
            vec![Assigned::Gt(0), Assigned::Gt(0), Assigned::Negative]
        );
        let first_only = MaxIouAssigner {
            gt_max_assign_all: false,
            ..MaxIouAssigner::retinanet()
        };
        assert_eq!(
            first_only.assign(&anchors, &gt),
            vec![Assigned::Gt(0), Assigned::Negative, Assigned::Negative]
        );
    }

    #[test]
    fn best_gt_wins_and_later_low_quality_overrides() {
        let gts = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 12.0]];
        let anchors = [[0.0, 0.0, 10.0, 11.0], [100.0, 100.0, 110.0, 110.0]];
        // anchor 0: IoU 10/11 with gt0, 11/12 with gt1 -> gt1 (argmax); gt0's best anchor is
        // anchor 0 as well, and the low-quality pass for gt0 comes first, gt1 second: gt1
        let a = MaxIouAssigner::retinanet().assign(&anchors, &gts);
        assert_eq!(a, vec![Assigned::Gt(1), Assigned::Negative]);
        // no ground truth: all negative
        let a = MaxIouAssigner::retinanet().assign(&anchors, &[]);
        assert_eq!(a, vec![Assigned::Negative; 2]);
        // the upstream quirk: a box overlapping nothing takes every IoU-0 anchor
        let a = MaxIouAssigner::retinanet().assign(&anchors, &[[500.0, 500.0, 501.0, 501.0]]);
        assert_eq!(a, vec![Assigned::Gt(0); 2]);
    }

    #[test]
    fn valid_flags_follow_the_pad_shape() {
        let g = AnchorGenerator::new(&AnchorConfig::retinanet()).unwrap();
        // batch padded to 64x96; this image padded to 64x64
        let maps: Vec<ImageSize> = [8, 16, 32, 64, 128]
            .iter()
            .map(|s| ImageSize::new(64usize.div_ceil(*s), 96usize.div_ceil(*s)))
            .collect();
        let v = valid_flags(&g, &maps, ImageSize::new(64, 64)).unwrap();
        assert_eq!(v.len(), batch_anchors(&g, &maps).unwrap().len());
        // level 0: 8x12 cells, the first 8 columns valid
        assert!(v[..9].iter().all(|&b| b));
        assert!(v[8 * 9..9 * 9].iter().all(|&b| !b)); // cell (0, 8)
        let n0 = 8 * 12 * 9;
        assert_eq!(v[..n0].iter().filter(|&&b| b).count(), 8 * 8 * 9);
    }

    #[test]
    fn targets_encode_positives_and_weight_out_invalid_anchors() {
        let anchors = [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 20.0],
            [0.0, 0.0, 10.0, 22.0],
            [50.0, 50.0, 60.0, 60.0],
        ];
        let valid = [true, true, true, false];
        let coder = DeltaXywhCoder::retinanet();
        let t = anchor_targets(
            &anchors,
            &valid,
            &[[0.0, 0.0, 10.0, 10.0]],
            &[3],
            5,
            &MaxIouAssigner::retinanet(),
            &coder,
        )
        .unwrap();
        assert_eq!(t.labels, vec![3, 3, 5, 5]);
        assert_eq!(t.label_weights, vec![1.0, 1.0, 0.0, 0.0]);
        assert_eq!(t.pos, vec![0, 1]);
        assert_eq!(t.bbox_targets[0], [0.0, 0.0, 0.0, 0.0]);
        let d = t.bbox_targets[1];
        assert!((d[1] + 0.25).abs() < 1e-6 && (d[3] - 0.5f32.ln()).abs() < 1e-6);
    }
}
