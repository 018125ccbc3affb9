//! Score rankings with PyTorch's NaN placement and a deterministic tie rule.
//!
//! mmcv's NMS orders boxes with `scores.sort(0, descending=True)` and mmdet's `nms_pre`
//! selection uses `topk`; neither promises an order among equal scores (PyTorch's default sort
//! is not stable, and its CUDA small-size sort is a bitonic network). This crate fixes the
//! order that a stable sort gives: **equal scores keep index order** (lower index first).
//! NaN ranks **above** every number, as PyTorch's descending `sort` and `topk` place it, and
//! `-0.0` ties with `0.0` (they compare equal in PyTorch's comparator).

use std::cmp::Ordering;

/// Descending order of `(score, index)` pairs: NaN first, then larger scores, then lower
/// indices.
#[inline]
pub(crate) fn desc_cmp(a: (f32, usize), b: (f32, usize)) -> Ordering {
    let by_score = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        // `+ 0.0` turns -0.0 into 0.0, so that total_cmp treats them as equal.
        (false, false) => (b.0 + 0.0).total_cmp(&(a.0 + 0.0)),
    };
    by_score.then(a.1.cmp(&b.1))
}

/// All indices of `scores`, sorted by descending score (NaN first, ties by lower index).
pub fn argsort_desc(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&i, &j| desc_cmp((scores[i], i), (scores[j], j)));
    order
}

/// Indices of the `k` largest scores (all of them if `k >= scores.len()`), in descending
/// order with the ranking of [`argsort_desc`]: the first `k` entries of `argsort_desc(scores)`,
/// found in `O(n + k log k)`. For mmdet's `nms_pre` use [`pre_nms_top_k`].
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let cmp = |&i: &usize, &j: &usize| desc_cmp((scores[i], i), (scores[j], j));
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    order
}

/// mmdet's per-level `nms_pre` selection (RetinaNet's `max_scores.topk(nms_pre)`, the RPN's
/// `scores.sort(descending=True)[:nms_pre]`), which runs **only when the level has more than
/// `nms_pre` candidates**: then [`top_k`] (descending order), otherwise every index in its
/// original (anchor) order. The order matters downstream, where equal scores are ranked by
/// position.
pub fn pre_nms_top_k(scores: &[f32], nms_pre: usize) -> Vec<usize> {
    if scores.len() > nms_pre {
        top_k(scores, nms_pre)
    } else {
        (0..scores.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_nan_and_signed_zero() {
        let s = [0.5, f32::NAN, 0.7, 0.5, -0.0, 0.0, 0.7, -f32::NAN];
        assert_eq!(argsort_desc(&s), vec![1, 7, 2, 6, 0, 3, 4, 5]);
        assert_eq!(top_k(&s, 3), vec![1, 7, 2]);
        assert_eq!(top_k(&s, 5), vec![1, 7, 2, 6, 0]);
        assert_eq!(top_k(&s, 100), argsort_desc(&s));
        assert!(top_k(&s, 0).is_empty());
        assert!(top_k(&[], 3).is_empty());
        assert_eq!(pre_nms_top_k(&s, 3), vec![1, 7, 2]);
        assert_eq!(pre_nms_top_k(&s, 8), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn top_k_matches_argsort_prefix() {
        // Many ties: values in {0, 0.25, 0.5, 0.75}.
        let s: Vec<f32> = (0..200u32)
            .map(|i| ((i * 7919) % 4) as f32 * 0.25)
            .collect();
        let full = argsort_desc(&s);
        for k in [1, 2, 49, 50, 51, 199, 200] {
            assert_eq!(top_k(&s, k), full[..k].to_vec(), "k = {k}");
        }
    }
}
