//! RetinaNet training: the configuration, the validation AP and the [`train`] entry point, plus
//! the run-directory helpers every family uses (the loop itself is [`crate::driver`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use candle::{DType, Device, Tensor};
use pvt_eval::coco::stream::CocoStreamEvaluator;
use pvt_eval::coco::{CocoGt, IouType};
use pvt_nn::image::load_rgb;
use pvt_zoo::{Family, ImageDetector, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt};
use serde::{Deserialize, Serialize};

use crate::assign::MaxIouAssigner;
use crate::data::{split_paths, Augment, CocoDetDataset, Loader};
use crate::driver::{self, IterLog, Log, LoopSettings, Outcome, Task, ValLog};
use crate::losses::FocalLoss;
use crate::optim::scalar;
use crate::optim::{AdamWConfig, LrSchedule};
use crate::params::Params;
use crate::retinanet::RetinaCriterion;
use crate::run_dir::{claim_run_dir, model_tensors, TrainOptions};

/// How to train (everything but the architecture).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Epochs.
    pub epochs: usize,
    /// Images per iteration.
    pub batch_size: usize,
    /// Seed of the initialisation, the data order and the augmentation.
    #[serde(default)]
    pub seed: u64,
    /// The optimiser.
    #[serde(default)]
    pub optimizer: AdamWConfig,
    /// The learning-rate schedule.
    #[serde(default = "LrSchedule::mmdet_1x")]
    pub schedule: LrSchedule,
    /// Clip the gradients' global L2 norm to this.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Backbone stages `1..=n` keep their initial values.
    #[serde(default)]
    pub frozen_stages: usize,
    /// The training pipeline.
    pub augment: Augment,
    /// `(long, short)` scale of the test resize (validation and `RetinaNetDetector::scale`).
    pub test_scale: (usize, usize),
    /// Names of the classes, for testing (`pvt detect --config`); empty: COCO's for 80
    /// classes, `class i` otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// The classification loss.
    #[serde(default)]
    pub focal: FocalLoss,
    /// The anchor assigner.
    #[serde(default)]
    pub assigner: MaxIouAssigner,
    /// Save a resume point every this many iterations (and at every epoch end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Validate every this many epochs (0: never; the last epoch is always validated when a
    /// validation split exists and this is not 0).
    #[serde(default = "one")]
    pub val_every: usize,
    /// Shuffle the training images every epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
}

fn default_checkpoint_every() -> usize {
    100
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl TrainSettings {
    /// The PVT detection 1x schedule on COCO: 12 epochs of 2 images, AdamW 1e-4 / 1e-4,
    /// warm-up 500, ×0.1 after epochs 8 and 11, 1333x800 with flips, no clipping.
    pub fn mmdet_1x() -> Self {
        Self {
            epochs: 12,
            batch_size: 2,
            seed: 0,
            optimizer: AdamWConfig::default(),
            schedule: LrSchedule::mmdet_1x(),
            grad_clip: None,
            frozen_stages: 0,
            augment: Augment {
                scale: (1333, 800),
                ratio_range: None,
                flip_prob: 0.5,
            },
            test_scale: (1333, 800),
            class_names: Vec::new(),
            focal: FocalLoss::default(),
            assigner: MaxIouAssigner::retinanet(),
            checkpoint_every: default_checkpoint_every(),
            val_every: 1,
            shuffle: true,
        }
    }
}

/// A training configuration: the detector's fields at the top level (so that the file is also a
/// detector config for `pvt detect --config`) and the settings under `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture.
    #[serde(flatten)]
    pub model: RetinaNetConfig,
    /// How to train it.
    pub train: TrainSettings,
}

impl TrainConfig {
    /// Reads a JSON file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid training config", path.display()))
    }
}

/// One logged iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    /// Iterations done (1-based).
    pub step: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Total loss.
    pub loss: f64,
    /// Focal loss.
    pub cls: f64,
    /// L1 box loss.
    pub bbox: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Positive anchors in the batch.
    pub num_pos: usize,
}

/// One validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValRecord {
    /// Epochs done (1-based).
    pub epoch: usize,
    /// Iterations done.
    pub step: u64,
    /// COCO AP @[.5:.95].
    pub ap: f64,
    /// AP at IoU 0.5.
    pub ap50: f64,
    /// AP at IoU 0.75.
    pub ap75: f64,
}

/// Everything logged by a RetinaNet run.
pub type History = Log<IterRecord, ValRecord>;

impl IterLog for IterRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn loss(&self) -> f64 {
        self.loss
    }
    fn parts(&self) -> Vec<(&'static str, f64)> {
        vec![("cls (focal)", self.cls), ("bbox (L1)", self.bbox)]
    }
}

impl ValLog for ValRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn epoch(&self) -> usize {
        self.epoch
    }
    fn summary(&self) -> String {
        format!(
            "bbox AP {:.4} AP50 {:.4} AP75 {:.4}",
            self.ap, self.ap50, self.ap75
        )
    }
}

/// A validation split.
pub struct ValData {
    /// The images (all of them, with or without boxes).
    pub dataset: CocoDetDataset,
    /// The ground truth for COCO AP.
    pub gt: Arc<CocoGt>,
}

impl ValData {
    /// The split `split` of `dir` (see [`CocoDetDataset::from_dir`]).
    pub fn from_dir(dir: &Path, split: &str) -> Result<Self> {
        let (ann, imgs) = split_paths(dir, split)?;
        Ok(Self {
            dataset: CocoDetDataset::load(&ann, &imgs, false)?,
            gt: Arc::new(CocoGt::from_file(&ann)?),
        })
    }
}

/// What a call to [`train`] did.
pub type TrainOutcome = Outcome<IterRecord, ValRecord>;

/// COCO box AP of `weights` on `val`, at the test scale of `settings`.
pub fn validate(
    model: &RetinaNetConfig,
    weights: &BTreeMap<String, Tensor>,
    val: &ValData,
    test_scale: (usize, usize),
    device: &Device,
) -> Result<pvt_eval::coco::CocoStats> {
    let vb = candle_nn::VarBuilder::from_tensors(
        weights
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        DType::F32,
        device,
    );
    let net = RetinaNetPvt::new(model, vb)?;
    let mut det = RetinaNetDetector::new(net, device)?;
    det.scale = test_scale;
    let mut ev = CocoStreamEvaluator::new(
        val.gt.clone(),
        val.dataset.category_map()?,
        &[IouType::Bbox],
    )?;
    for rec in &val.dataset.records {
        let img = load_rgb(&rec.path)?;
        let dets = det.detect(&img)?;
        ev.process(rec.id, &dets)?;
    }
    let mut res = ev.finish()?;
    Ok(res.remove(0).1.stats)
}

/// The RetinaNet part of the loop.
struct RetinaTask<'a> {
    cfg: &'a TrainConfig,
    loader: Loader,
    crit: RetinaCriterion,
    val: Option<&'a ValData>,
    device: Device,
}

impl Task for RetinaTask<'_> {
    type Iter = IterRecord;
    type Val = ValRecord;
    type Parts = (f64, f64, usize);

    fn batches_per_epoch(&self) -> u64 {
        self.loader.batches_per_epoch() as u64
    }

    fn lr(&self, epoch: usize, step: u64, _total: u64) -> f64 {
        let s = &self.cfg.train;
        s.schedule.lr(s.optimizer.lr, epoch, step as usize)
    }

    fn loss(
        &self,
        params: &Params,
        epoch: usize,
        index: usize,
        _step: u64,
    ) -> Result<(Tensor, Self::Parts)> {
        let batch = self.loader.batch(epoch, index, &self.device)?;
        let model = RetinaNetPvt::new(&self.cfg.model, params.var_builder())?;
        let (_, out) = model.forward_raw(&batch.images)?;
        let loss = self.crit.loss(&out, &batch)?;
        let parts = (scalar(&loss.cls)?, scalar(&loss.bbox)?, loss.num_pos);
        Ok((loss.total, parts))
    }

    fn record(
        &self,
        step: u64,
        epoch: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        (cls, bbox, num_pos): Self::Parts,
    ) -> Result<IterRecord> {
        Ok(IterRecord {
            step,
            epoch,
            loss,
            cls,
            bbox,
            lr,
            grad_norm,
            num_pos,
        })
    }

    fn validate(&self, params: &Params, epoch: usize, step: u64) -> Result<Option<ValRecord>> {
        let Some(v) = self.val else { return Ok(None) };
        let stats = validate(
            &self.cfg.model,
            &model_tensors(params)?,
            v,
            self.cfg.train.test_scale,
            &self.device,
        )?;
        Ok(Some(ValRecord {
            epoch,
            step,
            ap: stats.ap,
            ap50: stats.ap50,
            ap75: stats.ap75,
        }))
    }
}

/// Trains `cfg` on `train_data` (validating on `val` at epoch ends), writing into `run`.
/// When `run` holds a resume point of the same configuration, training continues from it.
pub fn train(
    cfg: &TrainConfig,
    train_data: CocoDetDataset,
    val: Option<&ValData>,
    run: &Path,
    opts: &TrainOptions,
) -> Result<TrainOutcome> {
    let s = &cfg.train;
    ensure!(
        s.epochs > 0 && s.batch_size > 0,
        "epochs and batch size must be positive"
    );
    ensure!(
        train_data.num_classes() == cfg.model.num_classes,
        "the dataset has {} classes, the model {}",
        train_data.num_classes(),
        cfg.model.num_classes
    );
    let device = Device::Cpu;
    claim_run_dir(run, cfg, Family::RetinaNet)?;
    let mut params = Params::retinanet(&cfg.model, s.seed, &device)?;
    params.freeze_stages(s.frozen_stages);
    let task = RetinaTask {
        cfg,
        loader: Loader {
            dataset: train_data,
            augment: s.augment,
            batch_size: s.batch_size,
            seed: s.seed,
            shuffle: s.shuffle,
        },
        crit: RetinaCriterion::new(cfg.model.num_classes, s.assigner, s.focal)?,
        val,
        device,
    };
    let spec = LoopSettings {
        epochs: s.epochs,
        checkpoint_every: s.checkpoint_every,
        val_every: s.val_every,
        grad_clip: s.grad_clip,
        optimizer: s.optimizer,
        backbone: &cfg.model.backbone,
        model: Family::RetinaNet.display_name().into(),
        classes: cfg.model.num_classes,
        images: task.loader.dataset.len(),
        val_images: val.map(|v| v.dataset.len()),
    };
    driver::run(&task, params, spec, run, opts)
}
