//! What the evaluation commands print: pycocotools' summary and a per-category AP table, the
//! ADE20K summary line and mmseg's per-class table, and their JSON forms. Used by the `pvt`
//! command line and by library callers alike, so that every entry point reports the same text.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::ade20k::{evaluate_dirs, SegConfig, SegMetrics};
use crate::coco::{evaluate, load_pair, CocoEvaluation, CocoStats, IouType};

/// How [`coco`] reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoReport {
    /// One JSON object ([`coco_json`]) instead of the text summary.
    pub json: bool,
    /// Add the AP of each category (names from the ground truth).
    pub per_class: bool,
    /// Draw the precision/recall curves to this PNG.
    pub plot: Option<PathBuf>,
}

/// Evaluates the results file `dt` against the ground truth `gt` and returns the report:
/// pycocotools' summary byte for byte (plus the per-category table), or one JSON line.
/// Warnings about the inputs (dropped results, an annotation with id 0) go to `warn`.
pub fn coco(
    gt: &Path,
    dt: &Path,
    iou: IouType,
    opts: &CocoReport,
    warn: &mut dyn FnMut(&str),
) -> Result<String> {
    let (gt, res) = load_pair(gt, dt, iou)?;
    gt.warnings().iter().for_each(|w| warn(w));
    res.warnings().iter().for_each(|w| warn(w));
    let ev = evaluate(&gt, res, iou)?;
    if ev.fenced_zero_id {
        warn("the ground truth has an annotation with id 0; as in pycocotools it is never matched");
    }
    if let Some(p) = &opts.plot {
        let title = format!("COCO {iou} precision / recall");
        crate::plot::plot_pr_curves(&ev.accumulated, &title, p)?;
    }
    if opts.json {
        return Ok(format!("{}\n", coco_json(&ev, opts.per_class)?));
    }
    let mut out = ev.stats.summary();
    if opts.per_class {
        out.push_str(&per_category_table(&ev));
    }
    Ok(out)
}

/// One row of `per_class` in the JSON output.
#[derive(serde::Serialize)]
struct CategoryAp {
    id: u64,
    name: String,
    #[serde(rename = "AP")]
    ap: Option<f64>,
}

/// The JSON report: the 12 keys in pycocotools' order, then `per_class` when asked for.
#[derive(serde::Serialize)]
struct CocoJson<'a> {
    #[serde(flatten)]
    stats: &'a CocoStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_class: Option<Vec<CategoryAp>>,
}

/// The JSON form of a COCO evaluation: `AP`, `AP50`, ..., `ARl` as fractions (-1 where
/// undefined), and with `per_class` the list of `{id, name, AP}`.
pub fn coco_json(ev: &CocoEvaluation, per_class: bool) -> Result<String> {
    let per_class = per_class.then(|| {
        ev.per_category()
            .into_iter()
            .map(|(id, name, ap)| CategoryAp { id, name, ap })
            .collect()
    });
    Ok(serde_json::to_string(&CocoJson {
        stats: &ev.stats,
        per_class,
    })?)
}

/// The AP of each category at IoU 0.50:0.95 as a table (`-` for categories without ground
/// truth).
pub fn per_category_table(ev: &CocoEvaluation) -> String {
    let rows = ev.per_category();
    let width = rows
        .iter()
        .map(|(_, n, _)| n.len())
        .max()
        .unwrap_or(4)
        .max(8);
    let mut s = String::from("\nPer-category AP @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]\n");
    s.push_str(&format!(
        "{:>6}  {:<width$}  {:>6}\n",
        "id", "category", "AP"
    ));
    for (id, name, ap) in rows {
        let v = ap.map_or("-".to_string(), |v| format!("{v:.3}"));
        s.push_str(&format!("{id:>6}  {name:<width$}  {v:>6}\n"));
    }
    s
}

/// The label-map settings for `num_classes` classes (ADE20K's names for 150), with
/// `reduce_zero_label` as given; 0 or more than 255 classes is an error (255 is the ignore
/// label).
pub fn seg_config(num_classes: usize, reduce_zero_label: bool) -> Result<SegConfig> {
    if num_classes == 0 || num_classes > 255 {
        bail!("mIoU needs 1..=255 classes (255 is the ignore label), got {num_classes}");
    }
    let mut cfg = if num_classes == 150 {
        SegConfig::ade20k()
    } else {
        SegConfig::generic(num_classes, reduce_zero_label)
    };
    cfg.reduce_zero_label = reduce_zero_label;
    Ok(cfg)
}

/// Scores the predicted label PNGs in `pred_dir` against `gt_dir` and returns the report: the
/// summary line (with `per_class`, mmseg's table), or one JSON line with `json`.
pub fn ade20k(
    gt_dir: &Path,
    pred_dir: &Path,
    cfg: SegConfig,
    json: bool,
    per_class: bool,
) -> Result<String> {
    let m = evaluate_dirs(gt_dir, pred_dir, cfg)?;
    if json {
        return Ok(format!("{}\n", seg_json(&m)?));
    }
    Ok(seg_text(&m, per_class))
}

/// The summary line of a label-map evaluation and, with `per_class`, mmseg's per-class IoU /
/// Acc table.
pub fn seg_text(m: &SegMetrics, per_class: bool) -> String {
    let mut s = format!(
        "aAcc: {:.2}  mIoU: {:.2}  mAcc: {:.2}  ({} images, {} classes; percent, mmseg IoUMetric)\n",
        m.a_acc,
        m.miou,
        m.macc,
        m.images,
        m.per_class.len()
    );
    if per_class {
        let width = m
            .per_class
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s.push_str(&format!(
            "\n{:<width$}  {:>6}  {:>6}\n",
            "Class", "IoU", "Acc"
        ));
        let f = |v: Option<f32>| v.map_or("nan".to_string(), |v| format!("{v:.2}"));
        for c in &m.per_class {
            s.push_str(&format!(
                "{:<width$}  {:>6}  {:>6}\n",
                c.name,
                f(c.iou),
                f(c.acc)
            ));
        }
    }
    s
}

/// The JSON form of a label-map evaluation: `aAcc`, `mIoU`, `mAcc` (percent, the float32 values
/// mmseg returns, written as the decimals it prints), `per_class` (`name`, `IoU`, `Acc`, exact
/// pixel counts), `images`.
pub fn seg_json(m: &SegMetrics) -> Result<String> {
    Ok(serde_json::to_string(m)?)
}
