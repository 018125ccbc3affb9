//! `pvt eval coco` and `pvt eval ade20k`: evaluate result files from any detector or segmenter.
//!
//! Standard output holds only the result (the pycocotools summary, the tables, or one JSON
//! object with `--json`); warnings go to standard error.

use anyhow::{bail, Result};
use pvt_eval::ade20k::{evaluate_dirs, SegConfig, SegMetrics};
use pvt_eval::coco::{evaluate, load_pair, CocoEvaluation, CocoStats, IouType};
use std::path::PathBuf;

/// Evaluation commands.
#[derive(clap::Subcommand, Debug)]
pub enum EvalCmd {
    /// COCO AP/AR of a results file, as pycocotools' COCOeval computes and prints it.
    Coco(CocoArgs),
    /// ADE20K-style mIoU/mAcc/aAcc of label PNGs, as mmsegmentation's IoUMetric computes it.
    Ade20k(Ade20kArgs),
}

/// What `pvt eval coco` compares.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IouTypeArg {
    /// Boxes.
    Bbox,
    /// Masks (compressed RLE results).
    Segm,
}

/// Arguments of `pvt eval coco`.
#[derive(clap::Args, Debug)]
pub struct CocoArgs {
    /// Ground truth (COCO `instances_*.json`).
    #[arg(long)]
    pub gt: PathBuf,
    /// Results: a JSON array of {image_id, category_id, bbox|segmentation, score}.
    #[arg(long)]
    pub dt: PathBuf,
    /// What to compare.
    #[arg(long, value_enum)]
    pub iou_type: IouTypeArg,
    /// Print one JSON object (AP, AP50, ..., ARl as fractions, -1 where undefined) and nothing
    /// else.
    #[arg(long)]
    pub json: bool,
    /// Also give the AP of each category (names from the ground truth).
    #[arg(long)]
    pub per_class: bool,
    /// Draw the precision/recall curves to this PNG.
    #[arg(long, value_name = "PNG")]
    pub plot: Option<PathBuf>,
}

/// Arguments of `pvt eval ade20k`.
#[derive(clap::Args, Debug)]
pub struct Ade20kArgs {
    /// Folder of ground-truth label PNGs (as stored; ADE20K: 0 = other, 1..150 = classes).
    #[arg(long)]
    pub gt_dir: PathBuf,
    /// Folder of predicted label PNGs holding class indices 0..K-1, same stems as the GT.
    #[arg(long)]
    pub pred_dir: PathBuf,
    /// Apply mmseg's reduce_zero_label to the GT (0 -> ignored, v -> v-1); ADE20K needs it.
    #[arg(long)]
    pub reduce_zero_label: bool,
    /// Number of classes (150: ADE20K's names are used).
    #[arg(long, default_value_t = 150)]
    pub num_classes: usize,
    /// Print one JSON object (aAcc, mIoU, mAcc, per_class) and nothing else.
    #[arg(long)]
    pub json: bool,
    /// Also print the per-class IoU/Acc table.
    #[arg(long)]
    pub per_class: bool,
}

/// Run an evaluation command: its output to stdout, warnings to stderr.
pub fn run(cmd: EvalCmd) -> Result<()> {
    let out = execute(&cmd, &mut |w| eprintln!("warning: {w}"))?;
    print!("{out}");
    Ok(())
}

/// Run an evaluation command and return what it prints on stdout; `warn` receives warnings.
pub fn execute(cmd: &EvalCmd, warn: &mut dyn FnMut(&str)) -> Result<String> {
    match cmd {
        EvalCmd::Coco(a) => coco(a, warn),
        EvalCmd::Ade20k(a) => ade20k(a),
    }
}

fn coco(a: &CocoArgs, warn: &mut dyn FnMut(&str)) -> Result<String> {
    let iou = match a.iou_type {
        IouTypeArg::Bbox => IouType::Bbox,
        IouTypeArg::Segm => IouType::Segm,
    };
    let (gt, res) = load_pair(&a.gt, &a.dt, iou)?;
    gt.warnings().iter().for_each(|w| warn(w));
    res.warnings().iter().for_each(|w| warn(w));
    let ev = evaluate(&gt, res, iou)?;
    if ev.fenced_zero_id {
        warn("the ground truth has an annotation with id 0; as in pycocotools it is never matched");
    }
    if let Some(p) = &a.plot {
        let title = format!("COCO {iou} precision / recall");
        pvt_eval::plot::plot_pr_curves(&ev.accumulated, &title, p)?;
        eprintln!("wrote {}", p.display());
    }
    if a.json {
        return Ok(format!("{}\n", coco_json(&ev, a.per_class)?));
    }
    let mut out = ev.stats.summary();
    if a.per_class {
        out.push_str(&per_class_table(&ev));
    }
    Ok(out)
}

/// One row of `--per-class` in the JSON output.
#[derive(serde::Serialize)]
struct CategoryAp {
    id: u64,
    name: String,
    #[serde(rename = "AP")]
    ap: Option<f64>,
}

/// The `--json` object of `pvt eval coco`: the 12 keys in pycocotools' order, then
/// `per_class` when asked for.
#[derive(serde::Serialize)]
struct CocoJson<'a> {
    #[serde(flatten)]
    stats: &'a CocoStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_class: Option<Vec<CategoryAp>>,
}

/// The `--json` text of `pvt eval coco`.
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

fn per_class_table(ev: &CocoEvaluation) -> String {
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

fn ade20k(a: &Ade20kArgs) -> Result<String> {
    if a.num_classes == 0 || a.num_classes > 255 {
        bail!(
            "--num-classes must be in 1..=255 (255 is the ignore label), got {}",
            a.num_classes
        );
    }
    let mut cfg = if a.num_classes == 150 {
        SegConfig::ade20k()
    } else {
        SegConfig::generic(a.num_classes, a.reduce_zero_label)
    };
    cfg.reduce_zero_label = a.reduce_zero_label;
    let m = evaluate_dirs(&a.gt_dir, &a.pred_dir, cfg)?;
    if a.json {
        return Ok(format!("{}\n", seg_json(&m)?));
    }
    Ok(seg_report(&m, a.per_class))
}

/// The text of `pvt eval ade20k`: the summary line and, with `per_class`, mmseg's per-class
/// IoU / Acc table.
pub fn seg_report(m: &SegMetrics, per_class: bool) -> String {
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

/// The `--json` text of `pvt eval ade20k`: `aAcc`, `mIoU`, `mAcc` (percent, the float32 values
/// mmseg returns, written as the decimals it prints), `per_class` (`name`, `IoU`, `Acc`, exact
/// pixel counts), `images`.
pub fn seg_json(m: &SegMetrics) -> Result<String> {
    Ok(serde_json::to_string(m)?)
}
