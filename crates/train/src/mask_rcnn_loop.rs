//! Mask R-CNN training: the losses of [`crate::mask_rcnn`] over a COCO-format instance dataset
//! (boxes and masks) in the shared loop of [`crate::driver`], with box and mask AP at epoch
//! ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use candle::{DType, Device, Tensor};
use pvt_eval::coco::stream::CocoStreamEvaluator;
use pvt_eval::coco::{CocoGt, IouType};
use pvt_nn::image::load_rgb;
use pvt_zoo::{Family, ImageDetector, MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
use serde::{Deserialize, Serialize};

use crate::data::{split_paths, CocoDetDataset};
use crate::driver::{self, IterLog, Log, LoopSettings, Outcome, Task, ValLog};
use crate::mask_rcnn::{MaskLoader, MaskRcnnCriterion, MaskRcnnTrainConfig};
use crate::optim::scalar;
use crate::params::Params;
use crate::run_dir::{claim_run_dir, model_tensors, TrainOptions};
use crate::trainer::TrainSettings;

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

/// Everything logged by a Mask R-CNN run.
pub type MaskRcnnHistory = Log<MaskRcnnIterRecord, MaskRcnnValRecord>;

/// What a call to [`train_mask_rcnn`] did.
pub type MaskRcnnOutcome = Outcome<MaskRcnnIterRecord, MaskRcnnValRecord>;

impl IterLog for MaskRcnnIterRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn loss(&self) -> f64 {
        self.loss
    }
    fn parts(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("rpn", self.rpn_cls + self.rpn_bbox),
            ("cls", self.cls),
            ("box", self.bbox),
            ("mask", self.mask),
        ]
    }
}

impl ValLog for MaskRcnnValRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn epoch(&self) -> usize {
        self.epoch
    }
    fn summary(&self) -> String {
        format!("bbox AP {:.4} segm AP {:.4}", self.bbox_ap, self.segm_ap)
    }
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

/// The Mask R-CNN part of the loop.
struct MaskRcnnTask<'a> {
    cfg: &'a MaskRcnnRunConfig,
    loader: MaskLoader,
    crit: MaskRcnnCriterion,
    val: Option<&'a MaskValData>,
    device: Device,
}

impl Task for MaskRcnnTask<'_> {
    type Iter = MaskRcnnIterRecord;
    type Val = MaskRcnnValRecord;
    type Parts = [f64; 5];

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
        step: u64,
    ) -> Result<(Tensor, [f64; 5])> {
        let batch = self.loader.batch(epoch, index, &self.device)?;
        let model = MaskRcnnPvt::new(&self.cfg.model, params.var_builder())?;
        let l = self.crit.loss(&model, &batch, step)?;
        let parts = [
            scalar(&l.rpn_cls)?,
            scalar(&l.rpn_bbox)?,
            scalar(&l.cls)?,
            scalar(&l.bbox)?,
            scalar(&l.mask)?,
        ];
        Ok((l.total, parts))
    }

    fn record(
        &self,
        step: u64,
        epoch: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        [rpn_cls, rpn_bbox, cls, bbox, mask]: [f64; 5],
    ) -> Result<MaskRcnnIterRecord> {
        Ok(MaskRcnnIterRecord {
            step,
            epoch,
            loss,
            rpn_cls,
            rpn_bbox,
            cls,
            bbox,
            mask,
            lr,
            grad_norm,
        })
    }

    fn validate(
        &self,
        params: &Params,
        epoch: usize,
        step: u64,
    ) -> Result<Option<MaskRcnnValRecord>> {
        let Some(v) = self.val else { return Ok(None) };
        let (bbox_ap, segm_ap) = validate_mask_rcnn(
            &self.cfg.model,
            &model_tensors(params)?,
            v,
            self.cfg.train.test_scale,
            &self.device,
        )?;
        Ok(Some(MaskRcnnValRecord {
            epoch,
            step,
            bbox_ap,
            segm_ap,
        }))
    }
}

/// Trains `cfg` on `train_data` (box and mask AP on `val` at epoch ends) into `run`, resuming
/// a run found there (the contract of [`crate::driver`]). The samplers are keyed by the seed
/// and the step, so a resumed run ends with the weights of an uninterrupted one.
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
    ensure!(
        train_data.num_classes() == cfg.model.num_classes,
        "the dataset has {} classes, the model {}",
        train_data.num_classes(),
        cfg.model.num_classes
    );
    let device = Device::Cpu;
    claim_run_dir(run, cfg, Family::MaskRcnn)?;
    let mut params = Params::mask_rcnn(&cfg.model, s.seed, &device)?;
    params.freeze_stages(s.frozen_stages);
    let task = MaskRcnnTask {
        cfg,
        loader: MaskLoader::new(train_data, s.augment, s.batch_size, s.seed, s.shuffle)?,
        crit: MaskRcnnCriterion::new(
            cfg.model.num_classes,
            MaskRcnnTrainConfig::default(),
            s.seed,
        )?,
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
        model: Family::MaskRcnn.display_name().into(),
        classes: cfg.model.num_classes,
        images: task.loader.dataset.len(),
        val_images: val.map(|v| v.dataset.len()),
    };
    driver::run(&task, params, spec, run, opts)
}
