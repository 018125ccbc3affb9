//! The Mask R-CNN training loop: the losses of [`crate::mask_rcnn`] over a COCO-format
//! instance dataset (boxes and masks), the same run directory, checkpoints, resume contract and
//! progress as [`crate::trainer`], with box and mask AP at epoch ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle::{DType, Device, Tensor};
use pvt_eval::coco::stream::CocoStreamEvaluator;
use pvt_eval::coco::{CocoGt, IouType};
use pvt_nn::image::load_rgb;
use pvt_zoo::{ImageDetector, MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
use serde::{Deserialize, Serialize};

use crate::data::{split_paths, CocoDetDataset};
use crate::mask_rcnn::{MaskLoader, MaskRcnnCriterion, MaskRcnnTrainConfig};
use crate::optim::{clip_grad_norm, collect_grads, global_norm, AdamW};
use crate::params::Params;
use crate::retinanet::scalar;
use crate::trainer::{
    claim_run_dir, files, load_state, model_tensors, progress_bar, read_history, save_state,
    save_tensors, write_json, TrainOptions, TrainSettings,
};

/// A Mask R-CNN training configuration: the detector's fields at the top level (so that the file
/// is also a config for `pvt detect --config`) and the settings under `train` (the RetinaNet
/// fields `focal` and `assigner` are not used; the two-stage assigners and samplers are
/// mmdetection's, [`MaskRcnnTrainConfig::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnRunConfig {
    /// The architecture.
    #[serde(flatten)]
    pub model: MaskRcnnConfig,
    /// How to train it.
    pub train: TrainSettings,
}

impl MaskRcnnRunConfig {
    /// Reads a JSON file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid Mask R-CNN training config", path.display()))
    }
}

/// One logged iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnIterRecord {
    /// Iterations done (1-based).
    pub step: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Total loss.
    pub loss: f64,
    /// RPN objectness.
    pub rpn_cls: f64,
    /// RPN deltas.
    pub rpn_bbox: f64,
    /// Box head classification.
    pub cls: f64,
    /// Box head deltas.
    pub bbox: f64,
    /// Mask BCE.
    pub mask: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// One validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnValRecord {
    /// Epochs done (1-based).
    pub epoch: usize,
    /// Iterations done.
    pub step: u64,
    /// Box AP @[.5:.95].
    pub bbox_ap: f64,
    /// Mask AP @[.5:.95].
    pub segm_ap: f64,
}

/// Everything logged so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaskRcnnHistory {
    /// Per iteration.
    pub iters: Vec<MaskRcnnIterRecord>,
    /// Per validation.
    pub val: Vec<MaskRcnnValRecord>,
}

/// What a call to [`train_mask_rcnn`] did.
#[derive(Debug, Clone)]
pub struct MaskRcnnOutcome {
    /// Iterations done in total.
    pub steps: u64,
    /// The iteration the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Whether it stopped early (`crash_after`).
    pub interrupted: bool,
    /// The log.
    pub history: MaskRcnnHistory,
}

/// A validation split with its ground truth.
pub struct MaskValData {
    /// The images.
    pub dataset: CocoDetDataset,
    /// Boxes and masks for COCO AP.
    pub gt: Arc<CocoGt>,
}

impl MaskValData {
    /// The split `split` of `dir` (see [`CocoDetDataset::from_dir`]).
    pub fn from_dir(dir: &Path, split: &str) -> Result<Self> {
        let (ann, imgs) = split_paths(dir, split)?;
        Ok(Self {
            dataset: CocoDetDataset::load(&ann, &imgs, false)?,
            gt: Arc::new(CocoGt::from_file(&ann)?),
        })
    }
}

/// Box and mask AP of `weights` on `val` at `test_scale` (mmdetection's test path).
pub fn validate_mask_rcnn(
    model: &MaskRcnnConfig,
    weights: &BTreeMap<String, Tensor>,
    val: &MaskValData,
    test_scale: (usize, usize),
    device: &Device,
) -> Result<(f64, f64)> {
    let vb = candle_nn::VarBuilder::from_tensors(
        weights
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        DType::F32,
        device,
    );
    let mut det = MaskRcnnDetector::new(MaskRcnnPvt::new(model, vb)?, device)?;
    det.scale = test_scale;
    let mut ev = CocoStreamEvaluator::new(
        val.gt.clone(),
        val.dataset.category_map()?,
        &[IouType::Bbox, IouType::Segm],
    )?;
    for rec in &val.dataset.records {
        let img = load_rgb(&rec.path)?;
        ev.process(rec.id, &det.detect(&img)?)?;
    }
    let res = ev.finish()?;
    let ap = |t: IouType| {
        res.iter()
            .find(|(k, _)| *k == t)
            .map(|(_, e)| e.stats.ap)
            .unwrap_or(f64::NAN)
    };
    Ok((ap(IouType::Bbox), ap(IouType::Segm)))
}

fn plot(history: &MaskRcnnHistory, title: &str, run: &Path) -> Result<()> {
    let total: Vec<f64> = history.iters.iter().map(|r| r.loss).collect();
    let rpn: Vec<f64> = history
        .iters
        .iter()
        .map(|r| r.rpn_cls + r.rpn_bbox)
        .collect();
    let mask: Vec<f64> = history.iters.iter().map(|r| r.mask).collect();
    let note = history.val.last().map(|v| {
        format!(
            "val AP box {:.3} mask {:.3} (ep {})",
            v.bbox_ap, v.segm_ap, v.epoch
        )
    });
    crate::plot::plot_curves(
        title,
        &total,
        &[("rpn", rpn), ("mask", mask)],
        note.as_deref(),
        &run.join(files::LOSS_PNG),
    )
}

/// Trains `cfg` on `train_data` (box and mask AP on `val` at epoch ends) into `run`, resuming
/// a run found there (the contract of [`crate::trainer::train`]). The samplers are keyed by
/// the seed and the step, so a resumed run ends with the weights of an uninterrupted one.
pub fn train_mask_rcnn(
    cfg: &MaskRcnnRunConfig,
    train_data: CocoDetDataset,
    val: Option<&MaskValData>,
    run: &Path,
    opts: &TrainOptions,
) -> Result<MaskRcnnOutcome> {
    let s = &cfg.train;
    ensure!(
        s.epochs > 0 && s.batch_size > 0,
        "epochs and batch size must be positive"
    );
    ensure!(s.checkpoint_every > 0, "checkpoint_every must be positive");
    ensure!(
        train_data.num_classes() == cfg.model.num_classes,
        "the dataset has {} classes, the model {}",
        train_data.num_classes(),
        cfg.model.num_classes
    );
    let device = Device::Cpu;
    claim_run_dir(run, cfg)?;
    let mut params = Params::mask_rcnn(&cfg.model, s.seed, &device)?;
    params.freeze_stages(s.frozen_stages);
    let mut opt = AdamW::new(s.optimizer);
    let mut step = 0u64;
    let mut history = MaskRcnnHistory::default();
    let mut resumed_from = None;
    if run.join(files::STATE).exists() {
        step = load_state(run, &mut params, &mut opt)?;
        history = read_history(run)?;
        history.iters.retain(|r| r.step <= step);
        history.val.retain(|r| r.step <= step);
        resumed_from = Some(step);
        if opts.verbose {
            eprintln!("resuming {} at iteration {step}", run.display());
        }
    } else {
        opts.initialise(&mut params, &cfg.model.backbone)?;
    }
    let loader = MaskLoader::new(train_data, s.augment, s.batch_size, s.seed, s.shuffle)?;
    let crit = MaskRcnnCriterion::new(
        cfg.model.num_classes,
        MaskRcnnTrainConfig::default(),
        s.seed,
    )?;
    let bpe = loader.batches_per_epoch() as u64;
    let total = s.epochs as u64 * bpe;
    let title = format!("Mask R-CNN-PVT training, {} classes", cfg.model.num_classes);
    let pb = progress_bar(opts.progress, total, step)?;
    let val_due = |epoch_done: usize| {
        val.is_some()
            && s.val_every > 0
            && (epoch_done % s.val_every == 0 || epoch_done == s.epochs)
    };
    let run_val = |params: &Params,
                   step: u64,
                   history: &mut MaskRcnnHistory,
                   epoch_done: usize|
     -> Result<()> {
        let Some(v) = val else { return Ok(()) };
        let t0 = Instant::now();
        let (bbox_ap, segm_ap) = validate_mask_rcnn(
            &cfg.model,
            &model_tensors(params)?,
            v,
            s.test_scale,
            &device,
        )?;
        history.val.push(MaskRcnnValRecord {
            epoch: epoch_done,
            step,
            bbox_ap,
            segm_ap,
        });
        if opts.verbose {
            let line = format!(
                "epoch {epoch_done}: val bbox AP {bbox_ap:.4} segm AP {segm_ap:.4} ({:.1} s)",
                t0.elapsed().as_secs_f64()
            );
            pb.suspend(|| eprintln!("{line}"));
        }
        write_json(&run.join(files::HISTORY), &*history)?;
        plot(history, &title, run)
    };
    if step > 0 && step % bpe == 0 {
        let done = (step / bpe) as usize;
        if val_due(done) && !history.val.iter().any(|r| r.epoch == done) {
            run_val(&params, step, &mut history, done)?;
        }
    }
    while step < total {
        let epoch = (step / bpe) as usize;
        let index = (step % bpe) as usize;
        let batch = loader.batch(epoch, index, &device)?;
        let lr = s.schedule.lr(s.optimizer.lr, epoch, step as usize);
        let model = MaskRcnnPvt::new(&cfg.model, params.var_builder())?;
        let loss = crit.loss(&model, &batch, step)?;
        let grads = loss.total.backward()?;
        let mut g = collect_grads(&params, &grads);
        drop(grads);
        let grad_norm = match s.grad_clip {
            Some(max) => clip_grad_norm(&mut g, max)?,
            None => global_norm(&g)?,
        };
        opt.step(&params, &g, lr)?;
        step += 1;
        let rec = MaskRcnnIterRecord {
            step,
            epoch,
            loss: scalar(&loss.total)?,
            rpn_cls: scalar(&loss.rpn_cls)?,
            rpn_bbox: scalar(&loss.rpn_bbox)?,
            cls: scalar(&loss.cls)?,
            bbox: scalar(&loss.bbox)?,
            mask: scalar(&loss.mask)?,
            lr,
            grad_norm,
        };
        ensure!(
            rec.loss.is_finite(),
            "the loss is {} at iteration {step} (lr {lr:e}); lower the learning rate or clip the gradients",
            rec.loss
        );
        pb.set_message(format!(
            "ep {}/{} loss {:.4} (rpn {:.3} cls {:.3} box {:.3} mask {:.3}) lr {:.2e}",
            epoch + 1,
            s.epochs,
            rec.loss,
            rec.rpn_cls + rec.rpn_bbox,
            rec.cls,
            rec.bbox,
            rec.mask,
            lr
        ));
        pb.set_position(step);
        history.iters.push(rec);
        if opts.crash_after == Some(step) {
            return Ok(MaskRcnnOutcome {
                steps: step,
                resumed_from,
                interrupted: true,
                history,
            });
        }
        let epoch_end = step % bpe == 0;
        if epoch_end || step % s.checkpoint_every as u64 == 0 {
            write_json(&run.join(files::HISTORY), &history)?;
            save_state(run, &params, &opt, step)?;
            plot(&history, &title, run)?;
        }
        if epoch_end {
            let done = (step / bpe) as usize;
            save_tensors(
                &model_tensors(&params)?,
                &run.join(format!("epoch_{done}.safetensors")),
            )?;
            if opts.verbose {
                let n = bpe as usize;
                let recent = &history.iters[history.iters.len().saturating_sub(n)..];
                let mean = recent.iter().map(|r| r.loss).sum::<f64>() / recent.len() as f64;
                pb.suspend(|| eprintln!("epoch {done}/{}: mean loss {mean:.4}", s.epochs));
            }
            if val_due(done) {
                run_val(&params, step, &mut history, done)?;
            }
        }
    }
    pb.finish_and_clear();
    Ok(MaskRcnnOutcome {
        steps: step,
        resumed_from,
        interrupted: false,
        history,
    })
}
