//! The training loop every model family shares: resume or initialise, seeded batches, loss,
//! backward, clipping, AdamW, atomic checkpoints, epoch snapshots, validation, the log and the
//! loss curve. A family (RetinaNet, Mask R-CNN and Semantic FPN in this crate, or one of a
//! user's) supplies its batches, loss, schedule and validation as a [`Task`].
//!
//! # Run directory
//!
//! ```text
//! RUN/config.json               model + training settings (the model part is a config for the
//!                               inference commands)
//! RUN/model.safetensors         latest weights, official names (backbone.*, neck.*, heads)
//! RUN/epoch_N.safetensors       weights at the end of epoch N (1-based)
//! RUN/train_state.safetensors   resume point: `param.*`, AdamW `m.*` / `v.*`, `meta.step`
//! RUN/history.json              loss per iteration, validation per epoch
//! RUN/loss.png                  the loss curve
//! ```
//!
//! Every file is written to a temporary name and renamed. The resume point is the single file
//! `train_state.safetensors`; `history.json` is written just before it and is cut back to the
//! resume step when a run resumes. A run killed at any moment resumes from its last checkpoint
//! (every `checkpoint_every` iterations and at every epoch end) and, because the data order,
//! the augmentation, the samplers and the initialisation are functions of the seed and the step
//! alone (see [`crate::data`]), ends with the same weights as a run that was never interrupted.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use candle::Tensor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::optim::{clip_grad_norm, collect_grads, global_norm, scalar, AdamW, AdamWConfig};
use crate::params::Params;
use crate::run_dir::{
    files, load_state, model_tensors, progress_bar, read_history, save_state, save_tensors,
    write_json, TrainOptions,
};

/// A logged iteration.
pub trait IterLog {
    /// Iterations done when it was logged (1-based).
    fn step(&self) -> u64;
    /// The total loss.
    fn loss(&self) -> f64;
    /// The named loss terms (plotted and shown in the progress bar).
    fn parts(&self) -> Vec<(&'static str, f64)>;
}

/// A logged validation.
pub trait ValLog {
    /// Iterations done.
    fn step(&self) -> u64;
    /// Epochs done (1-based).
    fn epoch(&self) -> usize;
    /// One line of the metrics, e.g. `bbox AP 0.5123 AP50 0.8 AP75 0.55`.
    fn summary(&self) -> String;
}

/// Everything logged so far (`RUN/history.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log<I, V> {
    /// Per iteration.
    pub iters: Vec<I>,
    /// Per validation.
    pub val: Vec<V>,
}

impl<I, V> Default for Log<I, V> {
    fn default() -> Self {
        Self {
            iters: Vec::new(),
            val: Vec::new(),
        }
    }
}

/// What a training call did.
#[derive(Debug, Clone)]
pub struct Outcome<I, V> {
    /// Iterations done in total.
    pub steps: u64,
    /// The iteration the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// Whether it stopped early (`crash_after`).
    pub interrupted: bool,
    /// The log.
    pub history: Log<I, V>,
}

/// A model family's part of the loop: its batches, loss, learning-rate schedule and validation.
/// Implement it (with [`crate::params::Params`] holding the family's variables) to train a
/// family this crate does not know, and run it with [`run`].
pub trait Task {
    /// The per-iteration record.
    type Iter: IterLog + Serialize + DeserializeOwned + Clone;
    /// The per-validation record.
    type Val: ValLog + Serialize + DeserializeOwned + Clone;
    /// What [`Task::loss`] reports besides the loss tensor, for [`Task::record`].
    type Parts;

    /// Batches per epoch.
    fn batches_per_epoch(&self) -> u64;
    /// The learning rate at global iteration `step` (0-based) of epoch `epoch`, `total`
    /// iterations in all.
    fn lr(&self, epoch: usize, step: u64, total: u64) -> f64;
    /// The loss of batch `index` of `epoch` (global iteration `step`, 0-based) for the network
    /// built over `params`.
    fn loss(
        &self,
        params: &Params,
        epoch: usize,
        index: usize,
        step: u64,
    ) -> Result<(Tensor, Self::Parts)>;
    /// The record of an iteration.
    fn record(
        &self,
        step: u64,
        epoch: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        parts: Self::Parts,
    ) -> Result<Self::Iter>;
    /// Validation of the current weights (`None` when there is no validation split).
    fn validate(&self, params: &Params, epoch_done: usize, step: u64) -> Result<Option<Self::Val>>;
}

/// The settings of the loop itself, the same for every family.
pub struct LoopSettings<'a> {
    /// Epochs.
    pub epochs: usize,
    /// Save a resume point every this many iterations (and at every epoch end).
    pub checkpoint_every: usize,
    /// Validate every this many epochs (0: never; the last epoch always otherwise).
    pub val_every: usize,
    /// Clip the gradients' global L2 norm to this.
    pub grad_clip: Option<f64>,
    /// The optimiser.
    pub optimizer: AdamWConfig,
    /// The backbone, for `TrainOptions::init`.
    pub backbone: &'a pvt_zoo::BackboneConfig,
    /// The model, for the loss curve's title and the first line of a run (`RetinaNet-PVT`).
    pub model: String,
    /// Classes the model predicts.
    pub classes: usize,
    /// Training images.
    pub images: usize,
    /// Validation images, when there is a validation split.
    pub val_images: Option<usize>,
}

impl LoopSettings<'_> {
    fn title(&self) -> String {
        format!("{} training, {} classes", self.model, self.classes)
    }
}

fn plot<I: IterLog, V: ValLog>(history: &Log<I, V>, title: &str, run: &Path) -> Result<()> {
    let total: Vec<f64> = history.iters.iter().map(IterLog::loss).collect();
    let names: Vec<&'static str> = history
        .iters
        .first()
        .map(|r| r.parts().iter().map(|p| p.0).collect())
        .unwrap_or_default();
    let parts: Vec<(&str, Vec<f64>)> = names
        .iter()
        .enumerate()
        .map(|(k, &n)| (n, history.iters.iter().map(|r| r.parts()[k].1).collect()))
        .collect();
    let note = history
        .val
        .last()
        .map(|v| format!("val {} (epoch {})", v.summary(), v.epoch()));
    crate::plot::plot_curves(
        title,
        &total,
        &parts,
        note.as_deref(),
        &run.join(files::LOSS_PNG),
    )
}

/// One optimisation step from a loss: backward, the gradients of `params` collected, clipped
/// to `grad_clip` (global L2 norm) when set, and one AdamW update at `lr`. Returns the global
/// gradient norm before clipping.
pub fn apply_gradients(
    loss: &Tensor,
    params: &Params,
    opt: &mut AdamW,
    grad_clip: Option<f64>,
    lr: f64,
) -> Result<f64> {
    let grads = loss.backward()?;
    let mut g = collect_grads(params, &grads);
    drop(grads);
    let grad_norm = match grad_clip {
        Some(max) => clip_grad_norm(&mut g, max)?,
        None => global_norm(&g)?,
    };
    opt.step(params, &g, lr)?;
    Ok(grad_norm)
}

/// Runs (or resumes) the loop of `task` over `params` in `run` (claimed by the caller with
/// [`crate::run_dir::claim_run_dir`]).
pub fn run<T: Task>(
    task: &T,
    mut params: Params,
    spec: LoopSettings<'_>,
    run: &Path,
    opts: &TrainOptions,
) -> Result<Outcome<T::Iter, T::Val>> {
    ensure!(spec.epochs > 0, "epochs must be positive");
    ensure!(
        spec.checkpoint_every > 0,
        "checkpoint_every must be positive"
    );
    let mut opt = AdamW::new(spec.optimizer);
    let mut step = 0u64;
    let mut history: Log<T::Iter, T::Val> = Log::default();
    let mut resumed_from = None;
    if run.join(files::STATE).exists() {
        step = load_state(run, &mut params, &mut opt)?;
        history = read_history(run)?;
        history.iters.retain(|r| r.step() <= step);
        history.val.retain(|r| r.step() <= step);
        resumed_from = Some(step);
        if opts.verbose {
            eprintln!("resuming {} at iteration {step}", run.display());
        }
    } else {
        opts.initialise(&mut params, spec.backbone)?;
    }
    let bpe = task.batches_per_epoch();
    let total = spec.epochs as u64 * bpe;
    if opts.verbose {
        let (all, trainable) = params.counts();
        eprintln!(
            "training {} ({} classes, {:.2} M parameters, {:.2} M trained) on {} images ({bpe} iterations/epoch, {} epochs){}",
            spec.model,
            spec.classes,
            all as f64 / 1e6,
            trainable as f64 / 1e6,
            spec.images,
            spec.epochs,
            spec.val_images
                .map(|n| format!(", validating on {n} images"))
                .unwrap_or_default()
        );
    }
    let pb = progress_bar(opts.progress, total, step)?;
    let val_due = |epoch_done: usize| {
        spec.val_every > 0 && (epoch_done % spec.val_every == 0 || epoch_done == spec.epochs)
    };
    let run_val = |params: &Params,
                   step: u64,
                   history: &mut Log<T::Iter, T::Val>,
                   done: usize|
     -> Result<()> {
        let t0 = Instant::now();
        let Some(v) = task.validate(params, done, step)? else {
            return Ok(());
        };
        if opts.verbose {
            let line = format!(
                "epoch {done}: val {} ({:.1} s)",
                v.summary(),
                t0.elapsed().as_secs_f64()
            );
            pb.suspend(|| eprintln!("{line}"));
        }
        history.val.push(v);
        write_json(&run.join(files::HISTORY), &*history)?;
        plot(history, &spec.title(), run)
    };
    // a run killed during the validation that follows an epoch-end checkpoint redoes it
    if step > 0 && step % bpe == 0 {
        let done = (step / bpe) as usize;
        if val_due(done) && !history.val.iter().any(|r| r.epoch() == done) {
            run_val(&params, step, &mut history, done)?;
        }
    }
    while step < total {
        let epoch = (step / bpe) as usize;
        let index = (step % bpe) as usize;
        let lr = task.lr(epoch, step, total);
        let (loss, parts) = task.loss(&params, epoch, index, step)?;
        let grad_norm = apply_gradients(&loss, &params, &mut opt, spec.grad_clip, lr)?;
        step += 1;
        let value = scalar(&loss)?;
        ensure!(
            value.is_finite(),
            "the loss is {value} at iteration {step} (lr {lr:e}); lower the learning rate or clip the gradients"
        );
        let rec = task.record(step, epoch, value, lr, grad_norm, parts)?;
        let terms: Vec<String> = rec
            .parts()
            .iter()
            .map(|(n, v)| format!("{} {v:.3}", n.split(' ').next().unwrap_or(n)))
            .collect();
        pb.set_message(format!(
            "ep {}/{} loss {value:.4} ({}) lr {lr:.2e}",
            epoch + 1,
            spec.epochs,
            terms.join(" ")
        ));
        pb.set_position(step);
        history.iters.push(rec);
        if opts.crash_after == Some(step) {
            return Ok(Outcome {
                steps: step,
                resumed_from,
                interrupted: true,
                history,
            });
        }
        let epoch_end = step % bpe == 0;
        if epoch_end || step % spec.checkpoint_every as u64 == 0 {
            write_json(&run.join(files::HISTORY), &history)?;
            save_state(run, &params, &opt, step)?;
            plot(&history, &spec.title(), run)?;
        }
        if epoch_end {
            let done = (step / bpe) as usize;
            save_tensors(
                &model_tensors(&params)?,
                &run.join(format!("epoch_{done}.safetensors")),
            )?;
            if opts.verbose {
                let recent = &history.iters[history.iters.len().saturating_sub(bpe as usize)..];
                let mean = recent.iter().map(IterLog::loss).sum::<f64>() / recent.len() as f64;
                pb.suspend(|| eprintln!("epoch {done}/{}: mean loss {mean:.4}", spec.epochs));
            }
            if val_due(done) {
                run_val(&params, step, &mut history, done)?;
            }
        }
    }
    pb.finish_and_clear();
    Ok(Outcome {
        steps: step,
        resumed_from,
        interrupted: false,
        history,
    })
}
