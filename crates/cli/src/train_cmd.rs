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
use pvt_train::params::Params;
use pvt_train::segmentation::{
    dataset_class_names, train_segmenter, SegDataset, SegTrainConfig, SegTrainSettings,
};
use pvt_train::trainer::{files, train, TrainConfig, TrainOptions, TrainSettings, ValData};
use pvt_zoo::{MaskRcnnConfig, RetinaNetConfig, SemanticFpnConfig};
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

/// The model family the arguments name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    RetinaNet,
    MaskRcnn,
    Segmenter,
}

/// The `--config` file as JSON.
fn config_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// `--model` by its name; `--config` by its fields (`head_channels`: a segmenter;
/// `fc_channels`, `mask_channels` or `mask_convs`: a Mask R-CNN).
fn family(a: &TrainArgs) -> Result<Family> {
    if let Some(name) = &a.model {
        return Ok(if SemanticFpnConfig::from_name(name).is_some() {
            Family::Segmenter
        } else if MaskRcnnConfig::from_name(name).is_some() {
            Family::MaskRcnn
        } else {
            Family::RetinaNet
        });
    }
    let v = config_json(
        a.config
            .as_ref()
            .expect("clap enforces --model or --config"),
    )?;
    Ok(if v.get("head_channels").is_some() {
        Family::Segmenter
    } else if ["fc_channels", "mask_channels", "mask_convs"]
        .iter()
        .any(|k| v.get(k).is_some())
    {
        Family::MaskRcnn
    } else {
        Family::RetinaNet
    })
}

/// A `--config` file: a training config (model fields plus `train`) as it is, or a plain model
/// config with `default` settings.
fn from_config<C: DeserializeOwned, M: DeserializeOwned>(
    path: &Path,
    wrap: impl FnOnce(M) -> C,
) -> Result<C> {
    let v = config_json(path)?;
    if v.get("train").is_some() {
        serde_json::from_value(v)
            .with_context(|| format!("{}: invalid training config", path.display()))
    } else {
        let model = serde_json::from_value(v)
            .with_context(|| format!("{}: invalid model config", path.display()))?;
        Ok(wrap(model))
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

/// The first line of a run.
fn announce(
    what: &str,
    classes: usize,
    params: &Params,
    images: usize,
    batch_size: usize,
    epochs: usize,
    val_images: Option<usize>,
) {
    let (all, trainable) = params.counts();
    eprintln!(
        "training {what} ({classes} classes, {:.2} M parameters, {:.2} M trained) on {images} images ({} iterations/epoch, {epochs} epochs){}",
        all as f64 / 1e6,
        trainable as f64 / 1e6,
        (images / batch_size.max(1)).max(1),
        val_images
            .map(|n| format!(", validating on {n} images"))
            .unwrap_or_default()
    );
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

fn run_retinanet(a: &TrainArgs) -> Result<()> {
    let data = CocoDetDataset::from_dir(&a.data, &a.train_split, true)?;
    let mut cfg = match (&a.model, &a.config) {
        (Some(name), _) => {
            let mut model = RetinaNetConfig::from_name(name).with_context(|| {
                format!("unknown model `{name}`; expected retinanet_pvt_{{tiny,small,medium,large}}_fpn_1x_coco, retinanet_pvtv2_b{{0..5}}_fpn_1x_coco, mask_rcnn_pvt_{{t,s,m,l}}_fpn_1x_coco, mask_rcnn_pvt_v2_b{{0..5}}_fpn_1x_coco or fpn_pvt_{{t,s,m,l}}_ade20k_40k")
            })?;
            model.num_classes = data.num_classes();
            TrainConfig {
                model,
                train: TrainSettings::mmdet_1x(),
            }
        }
        (None, Some(path)) => from_config(path, |model| TrainConfig {
            model,
            train: TrainSettings::mmdet_1x(),
        })?,
        (None, None) => unreachable!("clap enforces --model or --config"),
    };
    check_classes(a, cfg.model.num_classes, data.num_classes())?;
    let t = &mut cfg.train;
    apply_overrides(
        a,
        &mut t.epochs,
        &mut t.batch_size,
        &mut t.optimizer,
        &mut t.seed,
    );
    let val = if a.no_val || split_paths(&a.data, &a.val_split).is_err() {
        None
    } else {
        Some(ValData::from_dir(&a.data, &a.val_split)?)
    };
    let mut p = Params::retinanet(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
    p.freeze_stages(cfg.train.frozen_stages);
    let s = &cfg.train;
    announce(
        "RetinaNet-PVT",
        cfg.model.num_classes,
        &p,
        data.len(),
        s.batch_size,
        s.epochs,
        val.as_ref().map(|v| v.dataset.len()),
    );
    let t0 = Instant::now();
    let out = train(&cfg, data, val.as_ref(), &a.out, &options(a))?;
    report(&out, t0, &a.out, "detect with: pvt detect");
    Ok(())
}

fn run_mask_rcnn(a: &TrainArgs) -> Result<()> {
    let data = CocoDetDataset::from_dir(&a.data, &a.train_split, true)?;
    let mut cfg = match (&a.model, &a.config) {
        (Some(name), _) => {
            let mut model = MaskRcnnConfig::from_name(name).context("Mask R-CNN name")?;
            model.num_classes = data.num_classes();
            MaskRcnnRunConfig {
                model,
                train: TrainSettings::mmdet_1x(),
            }
        }
        (None, Some(path)) => from_config(path, |model| MaskRcnnRunConfig {
            model,
            train: TrainSettings::mmdet_1x(),
        })?,
        (None, None) => unreachable!("clap enforces --model or --config"),
    };
    check_classes(a, cfg.model.num_classes, data.num_classes())?;
    let t = &mut cfg.train;
    apply_overrides(
        a,
        &mut t.epochs,
        &mut t.batch_size,
        &mut t.optimizer,
        &mut t.seed,
    );
    let val = if a.no_val || split_paths(&a.data, &a.val_split).is_err() {
        None
    } else {
        Some(MaskValData::from_dir(&a.data, &a.val_split)?)
    };
    let mut p = Params::mask_rcnn(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
    p.freeze_stages(cfg.train.frozen_stages);
    let s = &cfg.train;
    announce(
        "Mask R-CNN-PVT",
        cfg.model.num_classes,
        &p,
        data.len(),
        s.batch_size,
        s.epochs,
        val.as_ref().map(|v| v.dataset.len()),
    );
    let t0 = Instant::now();
    let out = train_mask_rcnn(&cfg, data, val.as_ref(), &a.out, &options(a))?;
    report(&out, t0, &a.out, "detect with: pvt detect");
    Ok(())
}

fn run_segmenter(a: &TrainArgs) -> Result<()> {
    let mut cfg = match (&a.model, &a.config) {
        (Some(name), _) => {
            let mut model = SemanticFpnConfig::from_name(name).context("segmenter name")?;
            let train = SegTrainSettings::ade20k();
            if let Some(names) = dataset_class_names(&a.data, train.reduce_zero_label)? {
                model.num_classes = names.len();
            }
            SegTrainConfig { model, train }
        }
        (None, Some(path)) => from_config(path, |model| SegTrainConfig {
            model,
            train: SegTrainSettings::ade20k(),
        })?,
        (None, None) => unreachable!("clap enforces --model or --config"),
    };
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
    let val = if a.no_val || !a.data.join("images").join(&a.val_split).is_dir() {
        None
    } else {
        Some(SegDataset::from_dir(&a.data, &a.val_split, rzl)?)
    };
    let mut p = Params::semantic_fpn(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
    p.freeze_stages(cfg.train.frozen_stages);
    let s = &cfg.train;
    announce(
        "Semantic FPN-PVT",
        cfg.model.num_classes,
        &p,
        data.len(),
        s.batch_size,
        s.epochs,
        val.as_ref().map(|v| v.len()),
    );
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
    match family(&a)? {
        Family::RetinaNet => run_retinanet(&a),
        Family::MaskRcnn => run_mask_rcnn(&a),
        Family::Segmenter => run_segmenter(&a),
    }
}
