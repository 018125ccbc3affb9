//! `pvt eval coco` and `pvt eval ade20k`: evaluate result files from any detector or segmenter.
//!
//! Standard output holds only the result (the pycocotools summary, the tables, or one JSON
//! object with `--json`); warnings go to standard error.

use anyhow::{Context, Result};
use pvt_eval::coco::IouType;
use pvt_eval::report::{self, CocoReport};
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

impl From<IouTypeArg> for IouType {
    fn from(a: IouTypeArg) -> Self {
        match a {
            IouTypeArg::Bbox => IouType::Bbox,
            IouTypeArg::Segm => IouType::Segm,
        }
    }
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

/// Runs an evaluation command: its report to stdout, warnings to stderr.
pub fn run(cmd: EvalCmd) -> Result<()> {
    let warn = &mut |w: &str| eprintln!("warning: {w}");
    let out = match &cmd {
        EvalCmd::Coco(a) => {
            let opts = CocoReport {
                json: a.json,
                per_class: a.per_class,
                plot: a.plot.clone(),
            };
            let out = report::coco(&a.gt, &a.dt, a.iou_type.into(), &opts, warn)?;
            if let Some(p) = &a.plot {
                eprintln!("wrote {}", p.display());
            }
            out
        }
        EvalCmd::Ade20k(a) => {
            let cfg =
                report::seg_config(a.num_classes, a.reduce_zero_label).context("--num-classes")?;
            report::ade20k(&a.gt_dir, &a.pred_dir, cfg, a.json, a.per_class)?
        }
    };
    print!("{out}");
    Ok(())
}
