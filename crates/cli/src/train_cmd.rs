//! `pvt train`: train or fine-tune RetinaNet-PVT or Mask R-CNN-PVT on a COCO-format dataset, or
//! Semantic FPN-PVT on an ADE20K-style folder (pvt-train).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use pvt_train::data::{split_paths, CocoDetDataset};
use pvt_train::driver::{IterLog, Outcome, ValLog};
use pvt_train::mask_rcnn_loop::{train_mask_rcnn, MaskRcnnRunConfig, MaskValData};
use pvt_train::optim::AdamWConfig;
use pvt_train::run_dir::{files, TrainOptions};
use pvt_train::segmentation::{
    dataset_class_names, train_segmenter, SegDataset, SegTrainConfig, SegTrainSettings,
};
use pvt_train::trainer::{train, TrainConfig, TrainSettings, ValData};
use pvt_zoo::{Architecture, MaskRcnnConfig, ModelConfig, RetinaNetConfig, SemanticFpnConfig};
use serde::de::DeserializeOwned;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("arch").required(true).multiple(false))]
pub struct TrainArgs {
    /// Published architecture with its published training settings: detectors
    /// retinanet_pvt_{tiny,small,medium,large}_fpn_1x_coco, retinanet_pvtv2_b{0..5}_fpn_1x_coco,
    /// mask_rcnn_pvt_{t,s,m,l}_fpn_1x_coco, mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco (mmdetection 1x;
    /// classes from the COCO file; Mask R-CNN reads polygon or RLE instance masks), segmenters fpn_pvt_{t,s,m,l}_ade20k_40k
    /// (mmseg 40k as epochs, reduce_zero_label; classes from the folder's classes.txt when
    /// present, else 150).
    #[arg(long, group = "arch")]
    model: Option<String>,
    /// A training config (detector fields plus a `train` section, e.g.
    /// assets/configs/retinanet_pvt_synth.json), or a plain detector config (1x settings).
    #[arg(long, value_name = "JSON", group = "arch")]
    config: Option<PathBuf>,
    /// Dataset folder. Detectors: annotations/instances_{split}.json with images in
    /// images/{split}/. Segmenters: images/{split}/ with label PNGs in labels/{split}/ or
    /// annotations/{split}/ (ADE20K layout). `pvt synth` writes both.
    #[arg(long)]
    data: PathBuf,
    /// Training split.
    #[arg(long, default_value = "train")]
    train_split: String,
    /// Validation split (box / mask AP or mIoU at epoch ends); skipped when absent.
    #[arg(long, default_value = "val")]
    val_split: String,
    /// ImageNet (or any PVT backbone) checkpoint to initialise the backbone from.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Whole-model checkpoint to start from (mmdetection's `load_from`): every tensor whose name
    /// and shape match (e.g. a run's model.safetensors; heads for another class count are
    /// skipped and reported). Applied after --init, when the run starts.
    #[arg(long, value_name = "FILE")]
    load_from: Option<PathBuf>,
    /// Override the number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the images per iteration.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (weights, resume point, log, loss curve). A run found there resumes.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// No validation.
    #[arg(long)]
    no_val: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A training config from the model the arguments name: the `--config` file as it is when it
/// has a `train` section (parsed again by its training type, so that errors carry the line and
/// column), else the architecture with `default` settings.
fn train_config<C: DeserializeOwned>(mc: &ModelConfig, default: impl FnOnce() -> C) -> Result<C> {
    match (&mc.train, &mc.source) {
        (Some(_), Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid training config", path.display()))
        }
        _ => Ok(default()),
    }
}

/// The command-line overrides every family's settings share.
fn apply_overrides(
    a: &TrainArgs,
    epochs: &mut usize,
    batch_size: &mut usize,
    optimizer: &mut AdamWConfig,
    seed: &mut u64,
) {
    if let Some(e) = a.epochs {
        *epochs = e;
    }
    if let Some(b) = a.batch_size {
        *batch_size = b;
    }
    if let Some(lr) = a.lr {
        optimizer.lr = lr;
    }
    if let Some(s) = a.seed {
        *seed = s;
    }
}

fn check_classes(a: &TrainArgs, model: usize, data: usize) -> Result<()> {
    if model != data {
        let what = a
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the model".into());
        bail!("{what} has {model} classes, the dataset {data}");
    }
    Ok(())
}

fn options(a: &TrainArgs) -> TrainOptions {
    TrainOptions {
        init: a.init.clone(),
        load_from: a.load_from.clone(),
        progress: !a.quiet,
        verbose: true,
        crash_after: None,
    }
}

/// The last lines of a run: totals, the last validation, where the weights are and how to use
/// them (`use_with`: the inference command).
fn report<I: IterLog, V: ValLog>(out: &Outcome<I, V>, t0: Instant, run: &Path, use_with: &str) {
    eprintln!(
        "done: {} iterations{} in {:.0} s; final loss {}",
        out.steps,
        out.resumed_from
            .map(|s| format!(" (resumed at {s})"))
            .unwrap_or_default(),
        t0.elapsed().as_secs_f64(),
        out.history
            .iters
            .last()
            .map(|r| format!("{:.4}", r.loss()))
            .unwrap_or("-".into())
    );
    if let Some(v) = out.history.val.last() {
        eprintln!("val {} after epoch {}", v.summary(), v.epoch());
    }
    let run = run.display();
    eprintln!(
        "weights: {run}/{}, loss curve: {run}/{}; {use_with} --config {run}/{} --weights {run}/{} --image IMG",
        files::MODEL,
        files::LOSS_PNG,
        files::CONFIG,
        files::MODEL
    );
}

/// Whether the validation split is there and wanted.
fn wants_val(a: &TrainArgs, present: bool) -> bool {
    !a.no_val && present
}

/// What the detectors' training configs (RetinaNet, Mask R-CNN) share: classes and settings.
trait DetectorRun: DeserializeOwned {
    fn classes_and_settings(&mut self) -> (&mut usize, &mut TrainSettings);
}

impl DetectorRun for TrainConfig {
    fn classes_and_settings(&mut self) -> (&mut usize, &mut TrainSettings) {
        (&mut self.model.num_classes, &mut self.train)
    }
}

impl DetectorRun for MaskRcnnRunConfig {
    fn classes_and_settings(&mut self) -> (&mut usize, &mut TrainSettings) {
        (&mut self.model.num_classes, &mut self.train)
    }
}

/// Trains a detector on a COCO-format dataset: `default` builds the config of a published
/// name or plain model config (1x settings), `load_val` reads the validation split, `train`
/// runs the family's loop.
fn run_detector<C: DetectorRun, V, I: IterLog, W: ValLog>(
    a: &TrainArgs,
    mc: &ModelConfig,
    default: impl FnOnce() -> C,
    load_val: impl FnOnce(&Path, &str) -> Result<V>,
    train: impl FnOnce(&C, CocoDetDataset, Option<&V>, &Path, &TrainOptions) -> Result<Outcome<I, W>>,
) -> Result<()> {
    let data = CocoDetDataset::from_dir(&a.data, &a.train_split, true)?;
    let mut cfg = train_config(mc, default)?;
    let (classes, t) = cfg.classes_and_settings();
    if a.model.is_some() {
        *classes = data.num_classes();
    }
    check_classes(a, *classes, data.num_classes())?;
    apply_overrides(
        a,
        &mut t.epochs,
        &mut t.batch_size,
        &mut t.optimizer,
        &mut t.seed,
    );
    let val = if wants_val(a, split_paths(&a.data, &a.val_split).is_ok()) {
        Some(load_val(&a.data, &a.val_split)?)
    } else {
        None
    };
    let t0 = Instant::now();
    let out = train(&cfg, data, val.as_ref(), &a.out, &options(a))?;
    report(&out, t0, &a.out, "detect with: pvt detect");
    Ok(())
}

fn run_retinanet(a: &TrainArgs, mc: &ModelConfig, model: RetinaNetConfig) -> Result<()> {
    let default = || TrainConfig {
        model,
        train: TrainSettings::mmdet_1x(),
    };
    run_detector(a, mc, default, ValData::from_dir, train)
}

fn run_mask_rcnn(a: &TrainArgs, mc: &ModelConfig, model: MaskRcnnConfig) -> Result<()> {
    let default = || MaskRcnnRunConfig {
        model,
        train: TrainSettings::mmdet_1x(),
    };
    run_detector(a, mc, default, MaskValData::from_dir, train_mask_rcnn)
}

fn run_segmenter(a: &TrainArgs, mc: &ModelConfig, mut model: SemanticFpnConfig) -> Result<()> {
    if a.model.is_some() {
        let rzl = SegTrainSettings::ade20k().reduce_zero_label;
        if let Some(names) = dataset_class_names(&a.data, rzl)? {
            model.num_classes = names.len();
        }
    }
    let mut cfg = train_config(mc, || SegTrainConfig {
        model,
        train: SegTrainSettings::ade20k(),
    })?;
    let t = &mut cfg.train;
    if t.class_names.is_empty() {
        if let Some(names) = dataset_class_names(&a.data, t.reduce_zero_label)? {
            t.class_names = names;
        }
    }
    if !t.class_names.is_empty() && t.class_names.len() != cfg.model.num_classes {
        bail!(
            "the model has {} classes, the dataset's classes.txt {} ({}background as class 0)",
            cfg.model.num_classes,
            t.class_names.len(),
            if t.reduce_zero_label { "no " } else { "with " }
        );
    }
    apply_overrides(
        a,
        &mut t.epochs,
        &mut t.batch_size,
        &mut t.optimizer,
        &mut t.seed,
    );
    let rzl = cfg.train.reduce_zero_label;
    let data = SegDataset::from_dir(&a.data, &a.train_split, rzl)?;
    let val = if wants_val(a, a.data.join("images").join(&a.val_split).is_dir()) {
        Some(SegDataset::from_dir(&a.data, &a.val_split, rzl)?)
    } else {
        None
    };
    let t0 = Instant::now();
    let out = train_segmenter(&cfg, data, val.as_ref(), &a.out, &options(a))?;
    report(
        &out,
        t0,
        &a.out,
        "segment with: pvt segment --out OUT.png --vis VIS.png",
    );
    Ok(())
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mc = crate::model_args::resolve(a.model.as_deref(), a.config.as_deref())?;
    match mc.arch.clone() {
        Architecture::RetinaNet(m) => run_retinanet(&a, &mc, m),
        Architecture::MaskRcnn(m) => run_mask_rcnn(&a, &mc, m),
        Architecture::SemanticFpn(m) => run_segmenter(&a, &mc, m),
    }
}
