//! `pvt train`: train or fine-tune RetinaNet-PVT on a COCO-format dataset, or Semantic FPN-PVT
//! on an ADE20K-style folder (pvt-train).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use pvt_train::data::{split_paths, CocoDetDataset};
use pvt_train::mask_rcnn_loop::{train_mask_rcnn, MaskRcnnRunConfig, MaskValData};
use pvt_train::params::Params;
use pvt_train::segmentation::{
    dataset_class_names, train_segmenter, SegDataset, SegTrainConfig, SegTrainSettings,
};
use pvt_train::trainer::{files, train, TrainConfig, TrainOptions, TrainSettings, ValData};
use pvt_zoo::{MaskRcnnConfig, RetinaNetConfig, SemanticFpnConfig};

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("arch").required(true).multiple(false))]
pub struct TrainArgs {
    /// Published architecture with its published training settings: detectors
    /// retinanet_pvt_{tiny,small,medium,large}_fpn_1x_coco, retinanet_pvtv2_b{0..5}_fpn_1x_coco,
    /// mask_rcnn_pvt_{t,s,m,l}_fpn_1x_coco, mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco (mmdetection 1x;
    /// classes from the COCO file; Mask R-CNN needs RLE instance masks), segmenters fpn_pvt_{t,s,m,l}_ade20k_40k
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
    /// (`pvt synth`) or {split}2017/ (COCO).
    #[arg(long)]
    data: PathBuf,
    /// Training split.
    #[arg(long, default_value = "train")]
    train_split: String,
    /// Validation split (COCO box AP at epoch ends); skipped when absent.
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

fn resolve(a: &TrainArgs, num_classes: usize) -> Result<TrainConfig> {
    let mut cfg = if let Some(name) = &a.model {
        let mut model = RetinaNetConfig::from_name(name).with_context(|| {
            format!("unknown model `{name}`; expected retinanet_pvt_{{tiny,small,medium,large}}_fpn_1x_coco or retinanet_pvtv2_b{{0..5}}_fpn_1x_coco")
        })?;
        model.num_classes = num_classes;
        TrainConfig {
            model,
            train: TrainSettings::mmdet_1x(),
        }
    } else {
        let path = a
            .config
            .as_ref()
            .expect("clap enforces --model or --config");
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", path.display()))?;
        let cfg = if v.get("train").is_some() {
            TrainConfig::from_file(path)?
        } else {
            TrainConfig {
                model: serde_json::from_value(v)
                    .with_context(|| format!("{}: invalid detector config", path.display()))?,
                train: TrainSettings::mmdet_1x(),
            }
        };
        if cfg.model.num_classes != num_classes {
            bail!(
                "{} has {} classes, the dataset {num_classes}",
                path.display(),
                cfg.model.num_classes
            );
        }
        cfg
    };
    let t = &mut cfg.train;
    if let Some(e) = a.epochs {
        t.epochs = e;
    }
    if let Some(b) = a.batch_size {
        t.batch_size = b;
    }
    if let Some(lr) = a.lr {
        t.optimizer.lr = lr;
    }
    if let Some(s) = a.seed {
        t.seed = s;
    }
    Ok(cfg)
}

/// Whether the arguments name a segmenter (a `fpn_pvt_*` model, or a config with the
/// segmenter's `head_channels` field).
fn is_segmenter(a: &TrainArgs) -> Result<bool> {
    if let Some(name) = &a.model {
        return Ok(SemanticFpnConfig::from_name(name).is_some());
    }
    let path = a
        .config
        .as_ref()
        .expect("clap enforces --model or --config");
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    Ok(v.get("head_channels").is_some())
}

fn resolve_seg(a: &TrainArgs) -> Result<SegTrainConfig> {
    let mut cfg = if let Some(name) = &a.model {
        let mut model = SemanticFpnConfig::from_name(name).context("segmenter name")?;
        let train = SegTrainSettings::ade20k();
        if let Some(names) = dataset_class_names(&a.data, train.reduce_zero_label)? {
            model.num_classes = names.len();
        }
        SegTrainConfig { model, train }
    } else {
        let path = a
            .config
            .as_ref()
            .expect("clap enforces --model or --config");
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", path.display()))?;
        if v.get("train").is_some() {
            SegTrainConfig::from_file(path)?
        } else {
            SegTrainConfig {
                model: serde_json::from_value(v)
                    .with_context(|| format!("{}: invalid segmenter config", path.display()))?,
                train: SegTrainSettings::ade20k(),
            }
        }
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
    if let Some(e) = a.epochs {
        t.epochs = e;
    }
    if let Some(b) = a.batch_size {
        t.batch_size = b;
    }
    if let Some(lr) = a.lr {
        t.optimizer.lr = lr;
    }
    if let Some(s) = a.seed {
        t.seed = s;
    }
    Ok(cfg)
}

fn run_seg(a: TrainArgs) -> Result<()> {
    let cfg = resolve_seg(&a)?;
    let rzl = cfg.train.reduce_zero_label;
    let data = SegDataset::from_dir(&a.data, &a.train_split, rzl)?;
    let val = if a.no_val || !a.data.join("images").join(&a.val_split).is_dir() {
        None
    } else {
        Some(SegDataset::from_dir(&a.data, &a.val_split, rzl)?)
    };
    let (all, trainable) = {
        let mut p = Params::semantic_fpn(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
        p.freeze_stages(cfg.train.frozen_stages);
        p.counts()
    };
    let bpe = (data.len() / cfg.train.batch_size).max(1);
    eprintln!(
        "training Semantic FPN-PVT ({} classes, {:.2} M parameters, {:.2} M trained) on {} images ({} iterations/epoch, {} epochs){}",
        cfg.model.num_classes,
        all as f64 / 1e6,
        trainable as f64 / 1e6,
        data.len(),
        bpe,
        cfg.train.epochs,
        match &val {
            Some(v) => format!(", validating on {} images", v.len()),
            None => String::new(),
        }
    );
    let t0 = Instant::now();
    let out = train_segmenter(
        &cfg,
        data,
        val.as_ref(),
        &a.out,
        &TrainOptions {
            init: a.init.clone(),
            load_from: a.load_from.clone(),
            progress: !a.quiet,
            verbose: true,
            crash_after: None,
        },
    )?;
    let last = out.history.iters.last();
    eprintln!(
        "done: {} iterations{} in {:.0} s; final loss {}",
        out.steps,
        out.resumed_from
            .map(|s| format!(" (resumed at {s})"))
            .unwrap_or_default(),
        t0.elapsed().as_secs_f64(),
        last.map(|r| format!("{:.4}", r.loss)).unwrap_or("-".into())
    );
    if let Some(v) = out.history.val.last() {
        eprintln!(
            "val mIoU {:.2} (mAcc {:.2}) after epoch {}",
            v.miou, v.macc, v.epoch
        );
    }
    let run = a.out.display();
    eprintln!(
        "weights: {run}/{}, loss curve: {run}/{}; segment with: pvt segment --config {run}/{} --weights {run}/{} --image IMG --out OUT.png --vis VIS.png",
        files::MODEL,
        files::LOSS_PNG,
        files::CONFIG,
        files::MODEL
    );
    Ok(())
}

/// Whether the arguments name a Mask R-CNN (a `mask_rcnn_*` model, or a config with one of
/// its head fields).
fn is_mask_rcnn(a: &TrainArgs) -> Result<bool> {
    if let Some(name) = &a.model {
        return Ok(MaskRcnnConfig::from_name(name).is_some());
    }
    let path = a
        .config
        .as_ref()
        .expect("clap enforces --model or --config");
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    Ok(["fc_channels", "mask_channels", "mask_convs"]
        .iter()
        .any(|k| v.get(k).is_some()))
}

fn resolve_mask_rcnn(a: &TrainArgs, num_classes: usize) -> Result<MaskRcnnRunConfig> {
    let mut cfg = if let Some(name) = &a.model {
        let mut model = MaskRcnnConfig::from_name(name).context("Mask R-CNN name")?;
        model.num_classes = num_classes;
        MaskRcnnRunConfig {
            model,
            train: TrainSettings::mmdet_1x(),
        }
    } else {
        let path = a
            .config
            .as_ref()
            .expect("clap enforces --model or --config");
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", path.display()))?;
        let cfg = if v.get("train").is_some() {
            MaskRcnnRunConfig::from_file(path)?
        } else {
            MaskRcnnRunConfig {
                model: serde_json::from_value(v)
                    .with_context(|| format!("{}: invalid Mask R-CNN config", path.display()))?,
                train: TrainSettings::mmdet_1x(),
            }
        };
        if cfg.model.num_classes != num_classes {
            bail!(
                "{} has {} classes, the dataset {num_classes}",
                path.display(),
                cfg.model.num_classes
            );
        }
        cfg
    };
    let t = &mut cfg.train;
    if let Some(e) = a.epochs {
        t.epochs = e;
    }
    if let Some(b) = a.batch_size {
        t.batch_size = b;
    }
    if let Some(lr) = a.lr {
        t.optimizer.lr = lr;
    }
    if let Some(s) = a.seed {
        t.seed = s;
    }
    Ok(cfg)
}

fn run_mask_rcnn(a: TrainArgs) -> Result<()> {
    let data = CocoDetDataset::from_dir(&a.data, &a.train_split, true)?;
    let cfg = resolve_mask_rcnn(&a, data.num_classes())?;
    let val = if a.no_val || split_paths(&a.data, &a.val_split).is_err() {
        None
    } else {
        Some(MaskValData::from_dir(&a.data, &a.val_split)?)
    };
    let (all, trainable) = {
        let mut p = Params::mask_rcnn(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
        p.freeze_stages(cfg.train.frozen_stages);
        p.counts()
    };
    let bpe = (data.len() / cfg.train.batch_size).max(1);
    eprintln!(
        "training Mask R-CNN-PVT ({} classes, {:.2} M parameters, {:.2} M trained) on {} images ({} iterations/epoch, {} epochs){}",
        cfg.model.num_classes,
        all as f64 / 1e6,
        trainable as f64 / 1e6,
        data.len(),
        bpe,
        cfg.train.epochs,
        match &val {
            Some(v) => format!(", validating on {} images", v.dataset.len()),
            None => String::new(),
        }
    );
    let t0 = Instant::now();
    let out = train_mask_rcnn(
        &cfg,
        data,
        val.as_ref(),
        &a.out,
        &TrainOptions {
            init: a.init.clone(),
            load_from: a.load_from.clone(),
            progress: !a.quiet,
            verbose: true,
            crash_after: None,
        },
    )?;
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
            .map(|r| format!("{:.4}", r.loss))
            .unwrap_or("-".into())
    );
    if let Some(v) = out.history.val.last() {
        eprintln!(
            "val bbox AP {:.4}, segm AP {:.4} after epoch {}",
            v.bbox_ap, v.segm_ap, v.epoch
        );
    }
    let run = a.out.display();
    eprintln!(
        "weights: {run}/{}, loss curve: {run}/{}; detect with: pvt detect --config {run}/{} --weights {run}/{} --image IMG",
        files::MODEL,
        files::LOSS_PNG,
        files::CONFIG,
        files::MODEL
    );
    Ok(())
}

pub fn run(a: TrainArgs) -> Result<()> {
    if is_segmenter(&a)? {
        return run_seg(a);
    }
    if is_mask_rcnn(&a)? {
        return run_mask_rcnn(a);
    }
    let data = CocoDetDataset::from_dir(&a.data, &a.train_split, true)?;
    let cfg = resolve(&a, data.num_classes())?;
    let val = if a.no_val || split_paths(&a.data, &a.val_split).is_err() {
        None
    } else {
        Some(ValData::from_dir(&a.data, &a.val_split)?)
    };
    let (all, trainable) = {
        let mut p = Params::retinanet(&cfg.model, cfg.train.seed, &candle::Device::Cpu)?;
        p.freeze_stages(cfg.train.frozen_stages);
        p.counts()
    };
    let bpe = (data.len() / cfg.train.batch_size).max(1);
    eprintln!(
        "training RetinaNet-PVT ({} classes, {:.2} M parameters, {:.2} M trained) on {} images ({} iterations/epoch, {} epochs){}",
        cfg.model.num_classes,
        all as f64 / 1e6,
        trainable as f64 / 1e6,
        data.len(),
        bpe,
        cfg.train.epochs,
        match &val {
            Some(v) => format!(", validating on {} images", v.dataset.len()),
            None => String::new(),
        }
    );
    let t0 = Instant::now();
    let out = train(
        &cfg,
        data,
        val.as_ref(),
        &a.out,
        &TrainOptions {
            init: a.init.clone(),
            load_from: a.load_from.clone(),
            progress: !a.quiet,
            verbose: true,
            crash_after: None,
        },
    )?;
    let last = out.history.iters.last();
    eprintln!(
        "done: {} iterations{} in {:.0} s; final loss {}",
        out.steps,
        out.resumed_from
            .map(|s| format!(" (resumed at {s})"))
            .unwrap_or_default(),
        t0.elapsed().as_secs_f64(),
        last.map(|r| format!("{:.4}", r.loss)).unwrap_or("-".into())
    );
    if let Some(v) = out.history.val.last() {
        eprintln!(
            "val bbox AP {:.4} (AP50 {:.4}) after epoch {}",
            v.ap, v.ap50, v.epoch
        );
    }
    let run = a.out.display();
    eprintln!(
        "weights: {run}/{}, loss curve: {run}/{}; detect with: pvt detect --config {run}/{} --weights {run}/{} --image IMG",
        files::MODEL,
        files::LOSS_PNG,
        files::CONFIG,
        files::MODEL
    );
    Ok(())
}
