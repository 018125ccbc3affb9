//! Precision/recall tables and the 12 summary numbers, as pycocotools' `accumulate` and
//! `summarize` form them.
//!
//! Normally the tables come from hotcoco's `accumulate()`. When the ground truth has an
//! annotation with id 0, hotcoco matches it where pycocotools cannot (item 11), so this module
//! re-accumulates from hotcoco's per-image match records with that one rule restored: a
//! detection whose match is the id-0 annotation counts as unmatched, and is then ignored only
//! if its own area is outside the range.

use super::stats::CocoStats;
use crate::numpy::mean_f64;
use hotcoco::{COCOeval, EvalImg};
use std::collections::HashMap;

/// `np.spacing(1)`: the epsilon in pycocotools' `pr = tp / (fp + tp + eps)`.
const EPS: f64 = f64::EPSILON;

/// Accumulated precision `[T, R, K, A, M]` and recall `[T, K, A, M]`, C order, -1 where no GT.
#[derive(Debug, Clone)]
pub struct Accumulated {
    /// Interpolated precision at 101 recall points.
    pub precision: Vec<f64>,
    /// Final recall.
    pub recall: Vec<f64>,
    /// IoU thresholds (T).
    pub iou_thrs: Vec<f64>,
    /// Recall thresholds (R).
    pub rec_thrs: Vec<f64>,
    /// Category ids (K), ascending.
    pub cat_ids: Vec<u64>,
    /// Area ranges `[lo, hi]` (A): all, small, medium, large.
    pub area_rngs: Vec<[f64; 2]>,
    /// Detection caps (M): 1, 10, 100.
    pub max_dets: Vec<usize>,
}

impl Accumulated {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let t = self.iou_thrs.len();
        let r = self.rec_thrs.len();
        (
            t,
            r,
            self.cat_ids.len(),
            self.area_rngs.len(),
            self.max_dets.len(),
        )
    }

    /// Flat index of precision `[t, r, k, a, m]`.
    pub fn p_idx(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        let (_, nr, nk, na, nm) = self.dims();
        (((t * nr + r) * nk + k) * na + a) * nm + m
    }

    /// Flat index of recall `[t, k, a, m]`.
    pub fn r_idx(&self, t: usize, k: usize, a: usize, m: usize) -> usize {
        let (_, _, nk, na, nm) = self.dims();
        ((t * nk + k) * na + a) * nm + m
    }

    /// Copy hotcoco's tables.
    pub(crate) fn from_hotcoco(ev: &COCOeval) -> Option<Self> {
        let acc = ev.accumulated()?;
        let p = &ev.params;
        Some(Self {
            precision: acc.precision.clone(),
            recall: acc.recall.clone(),
            iou_thrs: p.iou_thrs.clone(),
            rec_thrs: p.rec_thrs.clone(),
            cat_ids: acc.cat_ids.clone(),
            area_rngs: p.area_ranges.iter().map(|a| a.range).collect(),
            max_dets: p.max_dets.clone(),
        })
    }

    /// pycocotools' `accumulate` over hotcoco's per-image records, with matches to a GT of id 0
    /// undone; `dt_area` gives each detection's area by id.
    pub(crate) fn fenced(ev: &COCOeval, dt_area: &dyn Fn(u64) -> f64) -> Self {
        let p = &ev.params;
        let mut cat_ids = p.cat_ids.clone();
        cat_ids.sort_unstable();
        let mut acc = Self {
            precision: Vec::new(),
            recall: Vec::new(),
            iou_thrs: p.iou_thrs.clone(),
            rec_thrs: p.rec_thrs.clone(),
            cat_ids,
            area_rngs: p.area_ranges.iter().map(|a| a.range).collect(),
            max_dets: p.max_dets.clone(),
        };
        let (nt, nr, nk, na, nm) = acc.dims();
        acc.precision = vec![-1.0; nt * nr * nk * na * nm];
        acc.recall = vec![-1.0; nt * nk * na * nm];
        // Group the records by (category, area range), images ascending.
        let mut groups: HashMap<(usize, usize), Vec<&EvalImg>> = HashMap::new();
        let k_of: HashMap<u64, usize> = acc
            .cat_ids
            .iter()
            .enumerate()
            .map(|(k, &c)| (c, k))
            .collect();
        for e in ev.eval_imgs().iter().flatten() {
            let a = acc.area_rngs.iter().position(|r| *r == e.area_rng);
            if let (Some(&k), Some(a)) = (k_of.get(&e.category_id), a) {
                groups.entry((k, a)).or_default().push(e);
            }
        }
        for ((k, a), mut cells) in groups {
            cells.sort_by_key(|e| e.image_id);
            let rng = acc.area_rngs[a];
            for m in 0..nm {
                let cap = acc.max_dets[m];
                acc.fill_cell(&cells, k, a, m, cap, rng, dt_area);
            }
        }
        acc
    }

    #[allow(clippy::too_many_arguments)]
    fn fill_cell(
        &mut self,
        cells: &[&EvalImg],
        k: usize,
        a: usize,
        m: usize,
        cap: usize,
        rng: [f64; 2],
        dt_area: &dyn Fn(u64) -> f64,
    ) {
        let nt = self.iou_thrs.len();
        let npig: usize = cells
            .iter()
            .map(|e| e.gt_ignore.iter().filter(|&&g| !g).count())
            .sum();
        if npig == 0 {
            return;
        }
        // Per detection: score, and per threshold (tp, fp).
        let mut scores = Vec::new();
        let mut flags: Vec<Vec<(bool, bool)>> = vec![Vec::new(); nt];
        for e in cells {
            let nd = e.dt_ids.len().min(cap);
            scores.extend_from_slice(&e.dt_scores[..nd]);
            for (t, row) in flags.iter_mut().enumerate() {
                for d in 0..nd {
                    let mut matched = e.dt_matched[(t, d)];
                    let mut ignored = e.dt_ignore[(t, d)];
                    if matched && e.dt_matches[(t, d)] == 0 && !ignored {
                        // pycocotools stores the match as the GT id and tests it for being
                        // non-zero: a match with GT id 0 is no match, and the detection's own
                        // area decides whether it is ignored.
                        matched = false;
                        let area = dt_area(e.dt_ids[d]);
                        ignored = area < rng[0] || area > rng[1];
                    }
                    row.push((matched && !ignored, !matched && !ignored));
                }
            }
        }
        // Stable sort by descending score (np.argsort(-scores, kind='mergesort')); `+ 0.0`
        // makes -0.0 and 0.0 compare equal, as numpy does.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&i, &j| (scores[j] + 0.0).total_cmp(&(scores[i] + 0.0)));
        for (t, row) in flags.iter().enumerate() {
            let (mut tp, mut fp) = (0u64, 0u64);
            let mut rc = Vec::with_capacity(order.len());
            let mut pr = Vec::with_capacity(order.len());
            for &i in &order {
                let (is_tp, is_fp) = row[i];
                tp += u64::from(is_tp);
                fp += u64::from(is_fp);
                let (tpf, fpf) = (tp as f64, fp as f64);
                rc.push(tpf / npig as f64);
                pr.push(tpf / (fpf + tpf + EPS));
            }
            let ri = self.r_idx(t, k, a, m);
            self.recall[ri] = rc.last().copied().unwrap_or(0.0);
            for i in (1..pr.len()).rev() {
                if pr[i] > pr[i - 1] {
                    pr[i - 1] = pr[i];
                }
            }
            for r in 0..self.rec_thrs.len() {
                // np.searchsorted(rc, recThrs, side='left'); past the end stays 0.
                let thr = self.rec_thrs[r];
                let idx = rc.partition_point(|&x| x < thr);
                let pi = self.p_idx(t, r, k, a, m);
                self.precision[pi] = pr.get(idx).copied().unwrap_or(0.0);
            }
        }
    }

    /// pycocotools' `summarize()`: the 12 numbers.
    pub fn stats(&self) -> CocoStats {
        let area = |lo: f64, hi: f64| self.area_rngs.iter().position(|r| *r == [lo, hi]);
        let all = area(0.0, 1e10);
        let m100 = self.max_dets.iter().position(|&m| m == 100);
        let ap = |thr: Option<f64>, a: Option<usize>| self.mean_ap(thr, a, m100);
        let ar = |a: Option<usize>, md: usize| {
            self.mean_ar(a, self.max_dets.iter().position(|&m| m == md))
        };
        CocoStats {
            ap: ap(None, all),
            ap50: ap(Some(0.5), all),
            ap75: ap(Some(0.75), all),
            ap_small: ap(None, area(0.0, 1024.0)),
            ap_medium: ap(None, area(1024.0, 9216.0)),
            ap_large: ap(None, area(9216.0, 1e10)),
            ar1: ar(all, 1),
            ar10: ar(all, 10),
            ar100: ar(all, 100),
            ar_small: ar(area(0.0, 1024.0), 100),
            ar_medium: ar(area(1024.0, 9216.0), 100),
            ar_large: ar(area(9216.0, 1e10), 100),
        }
    }

    fn thr_rows(&self, thr: Option<f64>) -> Vec<usize> {
        match thr {
            // `np.where(iouThr == p.iouThrs)`: exact equality.
            Some(v) => (0..self.iou_thrs.len())
                .filter(|&t| self.iou_thrs[t] == v)
                .collect(),
            None => (0..self.iou_thrs.len()).collect(),
        }
    }

    fn mean_ap(&self, thr: Option<f64>, a: Option<usize>, m: Option<usize>) -> f64 {
        let (Some(a), Some(m)) = (a, m) else {
            return -1.0;
        };
        let mut v = Vec::new();
        for t in self.thr_rows(thr) {
            for r in 0..self.rec_thrs.len() {
                for k in 0..self.cat_ids.len() {
                    v.push(self.precision[self.p_idx(t, r, k, a, m)]);
                }
            }
        }
        v.retain(|&x| x > -1.0);
        mean_f64(&v).unwrap_or(-1.0)
    }

    fn mean_ar(&self, a: Option<usize>, m: Option<usize>) -> f64 {
        let (Some(a), Some(m)) = (a, m) else {
            return -1.0;
        };
        let mut v = Vec::new();
        for t in 0..self.iou_thrs.len() {
            for k in 0..self.cat_ids.len() {
                v.push(self.recall[self.r_idx(t, k, a, m)]);
            }
        }
        v.retain(|&x| x > -1.0);
        mean_f64(&v).unwrap_or(-1.0)
    }

    /// Per-category AP at area `all`, 100 detections: the mean of the category's precision
    /// entries `> -1` over IoU thresholds and recall points (detectron2's per-category table);
    /// `None` for a category with no GT.
    pub fn per_category_ap(&self) -> Vec<(u64, Option<f64>)> {
        let all = self.area_rngs.iter().position(|r| *r == [0.0, 1e10]);
        let m = self.max_dets.iter().position(|&m| m == 100);
        let (Some(a), Some(m)) = (all, m) else {
            return self.cat_ids.iter().map(|&c| (c, None)).collect();
        };
        (0..self.cat_ids.len())
            .map(|k| {
                let mut v = Vec::new();
                for t in 0..self.iou_thrs.len() {
                    for r in 0..self.rec_thrs.len() {
                        v.push(self.precision[self.p_idx(t, r, k, a, m)]);
                    }
                }
                v.retain(|&x| x > -1.0);
                (self.cat_ids[k], mean_f64(&v))
            })
            .collect()
    }

    /// Precision at each recall point for IoU threshold row `t` (area all, 100 detections),
    /// averaged over the categories that have GT; `None` if none has.
    pub fn mean_pr_curve(&self, t: usize) -> Option<Vec<f64>> {
        let a = self.area_rngs.iter().position(|r| *r == [0.0, 1e10])?;
        let m = self.max_dets.iter().position(|&m| m == 100)?;
        let ks: Vec<usize> = (0..self.cat_ids.len())
            .filter(|&k| self.precision[self.p_idx(t, 0, k, a, m)] > -1.0)
            .collect();
        if ks.is_empty() {
            return None;
        }
        Some(
            (0..self.rec_thrs.len())
                .map(|r| {
                    let v: Vec<f64> = ks
                        .iter()
                        .map(|&k| self.precision[self.p_idx(t, r, k, a, m)])
                        .collect();
                    mean_f64(&v).unwrap_or(0.0)
                })
                .collect(),
        )
    }
}
