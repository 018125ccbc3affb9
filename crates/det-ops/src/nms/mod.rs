//! Non-maximum suppression as mmcv 1.3 computes it: greedy NMS ([`nms`]), class-aware NMS
//! ([`batched_nms`]) and mmdet's [`multiclass_nms`]; plus the rankings they use ([`top_k`],
//! [`argsort_desc`]).
//!
//! Provenance: mmcv `mmcv/ops/nms.py` (`nms`, `batched_nms`), `mmcv/ops/csrc/pytorch/nms.cpp`
//! (`nms_cpu`), `mmcv/ops/csrc/nms_cuda_kernel.cuh` (`devIoU`), read at tags v1.3.0–v1.3.17;
//! mmdetection 2.13 `mmdet/core/post_processing/bbox_nms.py` (Apache-2.0, OpenMMLab).
//!
//! # The suppression test depends on the mmcv build
//!
//! A kept box suppresses a lower-ranked box when their overlap passes a test that mmcv spells
//! three ways ([`Suppress`]): the CPU kernel used `IoU >= thr` up to mmcv 1.3.11 and `IoU > thr`
//! from 1.3.12 on (mmcv PR #1244, "fix nms implementation of cpu", August 2021, which aligned it
//! with CUDA); the CUDA kernel has always tested `inter > thr · union` (no division). They
//! disagree only for pairs whose IoU is exactly (CPU) or within an ulp of (CUDA vs CPU) the
//! threshold. The published PVT numbers were computed on GPUs, i.e. with the CUDA test.
//!
//! # Order
//!
//! Boxes are visited by descending score with the ranking of [`argsort_desc`] (NaN first, ties
//! by lower index); [`nms`] and [`batched_nms`] return kept indices in that order. mmcv itself
//! relies on an unstable `Tensor.sort`, so its order among exactly equal scores is
//! unspecified; the lower-index rule is what a stable sort gives.

mod multiclass;
mod rank;

pub use multiclass::{multiclass_nms, ClassBoxes, ClassDetection, MulticlassNmsConfig};
pub use rank::{argsort_desc, pre_nms_top_k, top_k};

use anyhow::{ensure, Result};
use std::collections::BTreeMap;

use rank::desc_cmp;

/// When a kept box suppresses a lower-ranked one (`inter`, `union` in f32, no `+1`;
/// `union = area_kept + area_other - inter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suppress {
    /// `inter / union > thr`: mmcv's CPU kernel from 1.3.12 on.
    IouAbove,
    /// `inter / union >= thr`: mmcv's CPU kernel up to 1.3.11 (what the published PVT results used
    /// as "the CPU rule"); a pair at exactly the threshold is suppressed.
    IouAtLeast,
    /// `inter > thr · union`: mmcv's CUDA kernel (`devIoU`), every version. Intersections are
    /// computed with `fmaxf` / `fminf` (a NaN corner is ignored, not propagated). nvcc may fuse
    /// the kernel's multiply-adds, so a GPU can still differ in the last ulp near the threshold.
    InterAboveThrUnion,
}

/// An NMS IoU threshold together with its suppression test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmsThreshold {
    /// The IoU threshold (`iou_threshold`, e.g. 0.5 for RetinaNet, 0.7 for the RPN).
    pub iou: f32,
    /// The test that compares overlaps with it.
    pub suppress: Suppress,
}

impl NmsThreshold {
    /// mmcv's CUDA kernel: suppress when `inter > iou · union` (the published numbers).
    pub const fn cuda(iou: f32) -> Self {
        Self {
            iou,
            suppress: Suppress::InterAboveThrUnion,
        }
    }

    /// mmcv ≥ 1.3.12 CPU kernel: suppress when `IoU > iou`.
    pub const fn cpu(iou: f32) -> Self {
        Self {
            iou,
            suppress: Suppress::IouAbove,
        }
    }

    /// mmcv ≤ 1.3.11 CPU kernel: suppress when `IoU >= iou`.
    pub const fn cpu_legacy(iou: f32) -> Self {
        Self {
            iou,
            suppress: Suppress::IouAtLeast,
        }
    }
}

/// mmcv `batched_nms`' `split_thr`: from this many boxes on, NMS runs class by class.
pub const SPLIT_THR: usize = 10_000;

/// Greedy NMS (mmcv `nms(boxes, scores, iou_threshold, offset=0)`): visit boxes by descending
/// score; keep a box unless a kept box suppresses it. Returns the kept indices in visiting
/// order (descending score, ties by lower index). NaN scores rank first; a box with a NaN
/// coordinate never suppresses nor is suppressed under the CPU tests. Errors if the slices
/// differ in length.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], thr: NmsThreshold) -> Result<Vec<usize>> {
    ensure!(
        boxes.len() == scores.len(),
        "nms needs one score per box: {} scores for {} boxes",
        scores.len(),
        boxes.len()
    );
    let all: Vec<usize> = (0..boxes.len()).collect();
    Ok(greedy(boxes, scores, &all, thr))
}

/// Class-aware NMS (mmcv `batched_nms(boxes, scores, idxs, dict(iou_threshold=…))`): boxes
/// with different labels never suppress each other. Returns kept indices sorted by descending
/// score (ties by lower index).
///
/// Faithful to mmcv's floating point: boxes are first moved by the coordinate offset
/// `label · (max_coordinate + 1)` in f32 and every IoU is computed on the moved boxes (in both
/// of mmcv's paths: one NMS over everything below [`SPLIT_THR`] boxes, one per label above).
/// When the moved boxes of different labels cannot touch (clipped boxes: the usual case) the
/// two paths agree and this function runs the cheaper per-label one; otherwise it runs the
/// path mmcv would (e.g. with negative coordinates the offset trick can let labels interact,
/// and so it does here).
pub fn batched_nms(
    boxes: &[[f32; 4]],
    scores: &[f32],
    labels: &[usize],
    thr: NmsThreshold,
) -> Result<Vec<usize>> {
    ensure!(
        boxes.len() == scores.len() && boxes.len() == labels.len(),
        "batched_nms needs equal lengths: {} boxes, {} scores, {} labels",
        boxes.len(),
        scores.len(),
        labels.len()
    );
    if boxes.is_empty() {
        return Ok(Vec::new());
    }
    let moved = offset_boxes(boxes, labels);
    let all: Vec<usize> = (0..boxes.len()).collect();
    if boxes.len() < SPLIT_THR && !labels_separated(&moved, labels, thr) {
        return Ok(greedy(&moved, scores, &all, thr));
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(i);
    }
    let mut keep: Vec<usize> = groups
        .values()
        .flat_map(|members| greedy(&moved, scores, members, thr))
        .collect();
    keep.sort_unstable_by(|&i, &j| desc_cmp((scores[i], i), (scores[j], j)));
    Ok(keep)
}

/// `boxes + (label · (boxes.max() + 1))[:, None]` in f32; `boxes.max()` is NaN if any
/// coordinate is (as `torch.max` propagates it).
fn offset_boxes(boxes: &[[f32; 4]], labels: &[usize]) -> Vec<[f32; 4]> {
    let mut max = f32::NEG_INFINITY;
    for &c in boxes.iter().flatten() {
        if c.is_nan() || max.is_nan() {
            max = f32::NAN;
        } else if c > max {
            max = c;
        }
    }
    let step = max + 1.0;
    boxes
        .iter()
        .zip(labels)
        .map(|(b, &l)| {
            let off = l as f32 * step;
            [b[0] + off, b[1] + off, b[2] + off, b[3] + off]
        })
        .collect()
}

/// True when no box of one label can suppress a box of another in a single NMS over the moved
/// boxes, so that per-label NMS gives mmcv's single-pass result: every coordinate finite,
/// every box of non-negative size, a positive threshold (so a zero overlap never suppresses),
/// and the labels' x-extents pairwise disjoint (touching allowed: zero width).
fn labels_separated(moved: &[[f32; 4]], labels: &[usize], thr: NmsThreshold) -> bool {
    if thr.iou.is_nan() || thr.iou <= 0.0 {
        return false;
    }
    let mut extent: BTreeMap<usize, (f32, f32)> = BTreeMap::new();
    for (b, &l) in moved.iter().zip(labels) {
        if !b.iter().all(|c| c.is_finite()) || b[2] < b[0] || b[3] < b[1] {
            return false;
        }
        let e = extent.entry(l).or_insert((b[0], b[2]));
        e.0 = e.0.min(b[0]);
        e.1 = e.1.max(b[2]);
    }
    let mut spans: Vec<(f32, f32)> = extent.into_values().collect();
    spans.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut reach = f32::NEG_INFINITY;
    for (lo, hi) in spans {
        if lo < reach {
            return false;
        }
        reach = reach.max(hi);
    }
    true
}

/// The greedy loop of mmcv's `nms_cpu` over the boxes `subset` (original indices), visited in
/// [`argsort_desc`] order; returns kept original indices in that order.
fn greedy(boxes: &[[f32; 4]], scores: &[f32], subset: &[usize], thr: NmsThreshold) -> Vec<usize> {
    let mut order = subset.to_vec();
    order.sort_unstable_by(|&i, &j| desc_cmp((scores[i], i), (scores[j], j)));
    let areas: Vec<f32> = order
        .iter()
        .map(|&i| {
            let b = boxes[i];
            (b[2] - b[0]) * (b[3] - b[1])
        })
        .collect();
    let mut alive = vec![true; order.len()];
    let mut keep = Vec::new();
    for p in 0..order.len() {
        if !alive[p] {
            continue;
        }
        keep.push(order[p]);
        let bi = boxes[order[p]];
        for q in p + 1..order.len() {
            if alive[q] && suppresses(bi, areas[p], boxes[order[q]], areas[q], thr) {
                alive[q] = false;
            }
        }
    }
    keep
}

/// Whether kept box `a` (area `area_a`) suppresses box `b`, with the arithmetic of the kernel
/// that `thr.suppress` names.
#[inline]
fn suppresses(a: [f32; 4], area_a: f32, b: [f32; 4], area_b: f32, thr: NmsThreshold) -> bool {
    match thr.suppress {
        Suppress::IouAbove | Suppress::IouAtLeast => {
            // std::max / std::min semantics: `max(a, b) = a < b ? b : a`.
            let xx1 = std_max(a[0], b[0]);
            let yy1 = std_max(a[1], b[1]);
            let xx2 = std_min(a[2], b[2]);
            let yy2 = std_min(a[3], b[3]);
            let w = std_max(0.0, xx2 - xx1);
            let h = std_max(0.0, yy2 - yy1);
            let inter = w * h;
            let ovr = inter / (area_a + area_b - inter);
            if thr.suppress == Suppress::IouAbove {
                ovr > thr.iou
            } else {
                ovr >= thr.iou
            }
        }
        Suppress::InterAboveThrUnion => {
            // fmaxf / fminf: IEEE maxNum / minNum, as Rust's f32::max / f32::min.
            let left = a[0].max(b[0]);
            let right = a[2].min(b[2]);
            let top = a[1].max(b[1]);
            let bottom = a[3].min(b[3]);
            let width = (right - left).max(0.0);
            let height = (bottom - top).max(0.0);
            let inter = width * height;
            inter > thr.iou * (area_a + area_b - inter)
        }
    }
}

#[inline]
fn std_max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

#[inline]
fn std_min(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_RULES: [fn(f32) -> NmsThreshold; 3] = [
        NmsThreshold::cuda,
        NmsThreshold::cpu,
        NmsThreshold::cpu_legacy,
    ];

    /// `[0, 0, 3, 1]` and `[1, 0, 4, 1]` overlap 2 with union 4: IoU exactly 0.5.
    #[test]
    fn threshold_equality_depends_on_the_rule() {
        let boxes = [[0., 0., 3., 1.], [1., 0., 4., 1.]];
        let scores = [0.9, 0.8];
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cpu_legacy(0.5)).unwrap(),
            vec![0]
        );
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cpu(0.5)).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cuda(0.5)).unwrap(),
            vec![0, 1]
        );
        // Just above the threshold, every rule suppresses.
        for rule in ALL_RULES {
            assert_eq!(nms(&boxes, &scores, rule(0.49)).unwrap(), vec![0]);
            assert_eq!(nms(&boxes, &scores, rule(0.51)).unwrap(), vec![0, 1]);
        }
    }

    /// mmcv's `nms` docstring example: 6 boxes, IoU 0.6, keeps 3.
    #[test]
    fn mmcv_docstring_example() {
        let boxes = [
            [49.1, 32.4, 51.0, 35.9],
            [49.3, 32.9, 51.0, 35.3],
            [49.2, 31.8, 51.0, 35.4],
            [35.1, 11.5, 39.1, 15.7],
            [35.6, 11.8, 39.3, 14.2],
            [35.3, 11.5, 39.9, 14.5],
            [35.2, 11.7, 39.7, 15.7],
        ];
        let scores = [0.9, 0.9, 0.5, 0.5, 0.5, 0.4, 0.3];
        for rule in ALL_RULES {
            let keep = nms(&boxes, &scores, rule(0.6)).unwrap();
            assert_eq!(keep.len(), 3, "{rule:?}");
        }
    }

    #[test]
    fn ties_visit_lower_index_first() {
        // Identical boxes, identical scores: the lower index survives.
        let boxes = [[0., 0., 1., 1.]; 3];
        for rule in ALL_RULES {
            assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], rule(0.5)).unwrap(), vec![0]);
        }
        // NaN scores rank first.
        let keep = nms(&boxes, &[0.5, f32::NAN, 0.9], NmsThreshold::cpu(0.5)).unwrap();
        assert_eq!(keep, vec![1]);
    }

    #[test]
    fn batched_labels_do_not_interact() {
        let boxes = [[0., 0., 10., 10.], [0., 0., 10., 10.], [1., 1., 10., 10.]];
        let scores = [0.6, 0.9, 0.7];
        let labels = [3, 1, 3];
        let keep = batched_nms(&boxes, &scores, &labels, NmsThreshold::cpu(0.5)).unwrap();
        assert_eq!(keep, vec![1, 2]);
        assert!(batched_nms(&boxes, &scores, &labels[..2], NmsThreshold::cpu(0.5)).is_err());
        assert!(batched_nms(&[], &[], &[], NmsThreshold::cpu(0.5))
            .unwrap()
            .is_empty());
    }

    /// With negative coordinates mmcv's offset trick does not separate labels: label 1's
    /// boxes move by `max + 1 = 2` and land on label 0's. This is mmcv's behaviour below
    /// `SPLIT_THR` boxes, and so ours.
    #[test]
    fn offset_trick_quirk_with_negative_coordinates() {
        let boxes = [[-10., -10., 1., 1.], [-12., -12., -1., -1.]];
        let scores = [0.9, 0.8];
        let keep = batched_nms(&boxes, &scores, &[0, 1], NmsThreshold::cpu(0.5)).unwrap();
        assert_eq!(keep, vec![0]);
        assert!(!labels_separated(
            &offset_boxes(&boxes, &[0, 1]),
            &[0, 1],
            NmsThreshold::cpu(0.5)
        ));
    }

    #[test]
    fn cuda_rule_ignores_nan_corners_cpu_rules_do_not_suppress() {
        let boxes = [[0., 0., 10., 10.], [f32::NAN, 0., 10., 10.]];
        let scores = [0.9, 0.8];
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cpu(0.5)).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cpu_legacy(0.5)).unwrap(),
            vec![0, 1]
        );
        // fmaxf(0, NaN) = 0: the intersection is the whole box, but the NaN area makes the
        // union NaN, and `inter > NaN` is false.
        assert_eq!(
            nms(&boxes, &scores, NmsThreshold::cuda(0.5)).unwrap(),
            vec![0, 1]
        );
    }
}
