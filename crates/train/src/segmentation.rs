//! Semantic FPN training: ADE20K-style folders, mmsegmentation's training pipeline, the
//! pixel-wise cross entropy, and a resumable loop validated by mIoU.
//!
//! # Data
//!
//! `DIR/images/{split}/NAME.{jpg,png,…}` with labels `DIR/labels/{split}/NAME.png` or
//! `DIR/annotations/{split}/NAME.png` (ADE20K's own layout, e.g. `annotations/training`): 8-bit
//! single-channel PNGs. With `reduce_zero_label` (ADE20K) label 0 becomes 255 (ignored) and `v`
//! becomes `v − 1`, as mmseg's `LoadAnnotations` does.
//!
//! # Pipeline (mmseg `train_pipeline` of the PVT ADE20K configs)
//!
//! keep-ratio `Resize` to `scale` × a ratio from `ratio_range` (OpenCV bilinear for the image,
//! nearest for the labels) → `RandomCrop(crop, cat_max_ratio)` (up to 10 tries for a crop in which
//! no class covers more than `cat_max_ratio` of the labelled pixels) → `RandomFlip` →
//! `Normalize` → `Pad` to the crop size (image 0, labels 255). `PhotoMetricDistortion` is not
//! applied.
//!
//! # Loss
//!
//! The decode head's logits (stride 4) are resized bilinearly (`align_corners=False`) to the
//! labels' size and scored with softmax cross entropy, `ignore_index` 255, averaged over all
//! pixels (mmseg 0.x `CrossEntropyLoss`, `avg_non_ignore=False`) or over the labelled ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle::{DType, Device, Tensor};
use image::RgbImage;
use pvt_eval::ade20k::{load_label_png, SegConfig, SegEvaluator, SegMetrics};
use pvt_nn::cv_resize::mmdet_resize;
use pvt_nn::image::{load_rgb, normalize_255};
use pvt_semantic_fpn::{resize_bilinear, PixelGrid};
use pvt_types::SegMap;
use pvt_zoo::semantic_fpn::{Inference, SegTestConfig, SemanticFpnConfig, SemanticFpnPvt};
use pvt_zoo::Family;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{epoch_order, keyed_rng, uniform};
use crate::driver::{self, IterLog, Log, LoopSettings, Outcome, Task, ValLog};
use crate::optim::{AdamWConfig, PolySchedule};
use crate::params::Params;
use crate::run_dir::{claim_run_dir, model_tensors, TrainOptions};

/// The label that is not scored.
pub const IGNORE: u8 = 255;

/// The training pipeline's geometry (mmseg `Resize`, `RandomCrop`, `RandomFlip`, `Pad`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegAugment {
    /// `(long, short)` scale of the keep-ratio resize (`img_scale`; ADE20K: 2048, 512).
    pub scale: (usize, usize),
    /// The scale is multiplied by a ratio drawn uniformly from this range (ADE20K: 0.5, 2.0).
    #[serde(default)]
    pub ratio_range: Option<(f64, f64)>,
    /// Crop `(height, width)` (ADE20K: 512, 512); every batch is padded to it. Multiples of 32.
    pub crop: (usize, usize),
    /// A crop is redrawn (up to 10 times) while one class covers this share of its labelled
    /// pixels or more (0.75; 1 disables).
    #[serde(default = "default_cat_max_ratio")]
    pub cat_max_ratio: f64,
    /// Probability of a horizontal flip.
    #[serde(default)]
    pub flip_prob: f64,
}

fn default_cat_max_ratio() -> f64 {
    0.75
}

/// How to train a segmenter (everything but the architecture).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegTrainSettings {
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
    /// The learning-rate schedule (poly by iteration over the whole run).
    #[serde(default = "PolySchedule::pvt_seg")]
    pub schedule: PolySchedule,
    /// Clip the gradients' global L2 norm to this.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Backbone stages `1..=n` keep their initial values.
    #[serde(default)]
    pub frozen_stages: usize,
    /// The training pipeline.
    pub augment: SegAugment,
    /// `(long, short)` scale of the test resize (validation, `pvt segment --config`).
    pub test_scale: (usize, usize),
    /// Read labels with mmseg's `reduce_zero_label` (0 ignored, `v` → `v − 1`).
    #[serde(default)]
    pub reduce_zero_label: bool,
    /// Average the loss over labelled pixels only (mmseg `avg_non_ignore`; off in mmseg 0.x
    /// and the PVT configs: the mean runs over every pixel, ignored ones counting 0).
    #[serde(default)]
    pub avg_non_ignore: bool,
    /// Class names in index order (for pictures and per-class results); filled from the
    /// dataset's `classes.txt` when empty.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Save a resume point every this many iterations (and at every epoch end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Validate every this many epochs (0: never; the last epoch always when validating).
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

impl SegTrainSettings {
    /// The PVT Semantic FPN ADE20K settings (`fpn_pvt_*_ade20k_40k`): AdamW 1e-4 / 1e-4, poly
    /// 0.9, batch 16 (4 GPUs × 4), 40k iterations ≈ 32 epochs of the 20,210 training images,
    /// scale (2048, 512) × 0.5–2.0, crop 512², flips, reduce_zero_label.
    pub fn ade20k() -> Self {
        Self {
            epochs: 32,
            batch_size: 16,
            seed: 0,
            optimizer: AdamWConfig::default(),
            schedule: PolySchedule::pvt_seg(),
            grad_clip: None,
            frozen_stages: 0,
            augment: SegAugment {
                scale: (2048, 512),
                ratio_range: Some((0.5, 2.0)),
                crop: (512, 512),
                cat_max_ratio: 0.75,
                flip_prob: 0.5,
            },
            test_scale: (2048, 512),
            reduce_zero_label: true,
            avg_non_ignore: false,
            class_names: Vec::new(),
            checkpoint_every: default_checkpoint_every(),
            val_every: 1,
            shuffle: true,
        }
    }

    /// The test pipeline of this run: its scale, whole-image inference.
    pub fn test_config(&self) -> SegTestConfig {
        SegTestConfig {
            scale: self.test_scale,
            size_divisor: 32,
            inference: Inference::Whole,
            aug: None,
        }
    }
}

/// A segmenter training configuration: the segmenter's fields at the top level (so that the
/// file is also a config for `pvt segment --config`) and the settings under `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegTrainConfig {
    /// The architecture.
    #[serde(flatten)]
    pub model: SemanticFpnConfig,
    /// How to train it.
    pub train: SegTrainSettings,
}

impl SegTrainConfig {
    /// Reads a JSON file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid segmenter training config", path.display()))
    }
}

/// One image and its label file.
#[derive(Debug, Clone, PartialEq)]
pub struct SegRecord {
    /// The picture.
    pub image: PathBuf,
    /// Its label PNG.
    pub label: PathBuf,
}

/// An ADE20K-style split (module docs).
#[derive(Debug, Clone)]
pub struct SegDataset {
    /// Sorted by image file name.
    pub records: Vec<SegRecord>,
    /// Apply `reduce_zero_label` when reading labels.
    pub reduce_zero_label: bool,
}

const IMAGE_EXTS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"];

impl SegDataset {
    /// The split `split` of `dir`: every image of `images/{split}` with its label PNG of the same
    /// stem in `labels/{split}` or `annotations/{split}`. A missing label is an error naming it.
    pub fn from_dir(dir: &Path, split: &str, reduce_zero_label: bool) -> Result<Self> {
        let img_dir = dir.join("images").join(split);
        let label_dir = ["labels", "annotations"]
            .iter()
            .map(|d| dir.join(d).join(split))
            .find(|p| p.is_dir())
            .with_context(|| {
                format!(
                    "{}: no labels/{split} or annotations/{split} folder of label PNGs",
                    dir.display()
                )
            })?;
        let mut images: Vec<PathBuf> = std::fs::read_dir(&img_dir)
            .with_context(|| format!("cannot list {}", img_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        images.sort();
        ensure!(!images.is_empty(), "{}: no images", img_dir.display());
        let records = images
            .into_iter()
            .map(|image| {
                let stem = image.file_stem().unwrap_or_default().to_string_lossy();
                let label = label_dir.join(format!("{stem}.png"));
                ensure!(
                    label.is_file(),
                    "{}: no label {}",
                    image.display(),
                    label.display()
                );
                Ok(SegRecord { image, label })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            records,
            reduce_zero_label,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The labels of record `i` as stored, or reduced (`reduce_zero_label`).
    pub fn labels(&self, i: usize) -> Result<SegMap> {
        let map = load_label_png(&self.records[i].label)?;
        if !self.reduce_zero_label {
            return Ok(map);
        }
        let reduced = map.labels().iter().map(|&v| reduce_zero(v)).collect();
        Ok(SegMap::new(map.size(), reduced)?)
    }
}

/// mmseg's `reduce_zero_label` on one stored label (uint8 arithmetic).
fn reduce_zero(v: u16) -> u16 {
    match v {
        0 | 255 => IGNORE as u16,
        v => v - 1,
    }
}

/// Class names of a dataset folder: `classes.txt` (one per line), with "background" first when
/// label 0 is a class (no `reduce_zero_label`). `None` when the folder has no `classes.txt`.
pub fn dataset_class_names(dir: &Path, reduce_zero_label: bool) -> Result<Option<Vec<String>>> {
    let p = dir.join("classes.txt");
    if !p.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let mut names: Vec<String> = Vec::new();
    if !reduce_zero_label {
        names.push("background".into());
    }
    names.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string),
    );
    Ok(Some(names))
}

/// Nearest-neighbour resize of a label map as OpenCV's `INTER_NEAREST` (mmcv `imrescale` with
/// `interpolation='nearest'`): output pixel `x` reads `floor(x · w / new_w)`.
pub fn resize_labels_nearest(map: &SegMap, new_h: usize, new_w: usize) -> Result<SegMap> {
    let (h, w) = (map.size().height, map.size().width);
    ensure!(
        h > 0 && w > 0 && new_h > 0 && new_w > 0,
        "label resize {h}x{w} -> {new_h}x{new_w}"
    );
    let src = map.labels();
    let xs: Vec<usize> = (0..new_w)
        .map(|x| ((x as f64 * (w as f64 / new_w as f64)).floor() as usize).min(w - 1))
        .collect();
    let mut out = Vec::with_capacity(new_h * new_w);
    for y in 0..new_h {
        let sy = ((y as f64 * (h as f64 / new_h as f64)).floor() as usize).min(h - 1);
        out.extend(xs.iter().map(|&sx| src[sy * w + sx]));
    }
    Ok(SegMap::new(pvt_types::ImageSize::new(new_h, new_w), out)?)
}

/// One training sample after the pipeline, padded to the crop.
#[derive(Debug, Clone)]
pub struct SegSample {
    /// `[3, crop_h, crop_w]`, normalised, zero padding.
    pub image: Tensor,
    /// `crop_h · crop_w` labels, 255 in the padding.
    pub labels: Vec<u8>,
}

/// mmseg `RandomCrop.get_crop_bbox`: `(y0, x0)` uniform over the margins.
fn crop_origin(h: usize, w: usize, crop: (usize, usize), rng: &mut ChaCha8Rng) -> (usize, usize) {
    let mh = h.saturating_sub(crop.0);
    let mw = w.saturating_sub(crop.1);
    let y = ((uniform(rng) * (mh + 1) as f64) as usize).min(mh);
    let x = ((uniform(rng) * (mw + 1) as f64) as usize).min(mw);
    (y, x)
}

/// Runs the training pipeline (module docs) on one image and its labels (already reduced).
pub fn prepare_seg(
    img: &RgbImage,
    labels: &SegMap,
    aug: &SegAugment,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<SegSample> {
    ensure!(
        labels.size().height == img.height() as usize
            && labels.size().width == img.width() as usize,
        "the label map is {}x{}, the image {}x{} (HxW)",
        labels.size().height,
        labels.size().width,
        img.height(),
        img.width()
    );
    let scale = match aug.ratio_range {
        Some((lo, hi)) => {
            let r = uniform(rng) * (hi - lo) + lo;
            (
                (aug.scale.0 as f64 * r) as usize,
                (aug.scale.1 as f64 * r) as usize,
            )
        }
        None => aug.scale,
    };
    let resized = mmdet_resize(img, scale)?.img;
    let (h, w) = (resized.height() as usize, resized.width() as usize);
    let lab = resize_labels_nearest(labels, h, w)?;
    // random crop, redrawn while one class dominates
    let (ch, cw) = aug.crop;
    let mut origin = crop_origin(h, w, aug.crop, rng);
    if aug.cat_max_ratio < 1.0 {
        for _ in 0..10 {
            let (y0, x0) = origin;
            let mut counts = [0u64; 256];
            for y in y0..(y0 + ch).min(h) {
                for &v in &lab.labels()[y * w + x0..y * w + (x0 + cw).min(w)] {
                    counts[v.min(255) as usize] += 1;
                }
            }
            counts[IGNORE as usize] = 0;
            let present = counts.iter().filter(|&&c| c > 0).count();
            let total: u64 = counts.iter().sum();
            let max = counts.iter().copied().max().unwrap_or(0);
            if present > 1 && (max as f64) / (total as f64) < aug.cat_max_ratio {
                break;
            }
            origin = crop_origin(h, w, aug.crop, rng);
        }
    }
    let (y0, x0) = origin;
    let (vh, vw) = ((h - y0).min(ch), (w - x0).min(cw));
    let mut crop_img =
        image::imageops::crop_imm(&resized, x0 as u32, y0 as u32, vw as u32, vh as u32).to_image();
    let mut crop_lab = vec![IGNORE; ch * cw];
    for y in 0..vh {
        for x in 0..vw {
            crop_lab[y * cw + x] = lab.labels()[(y0 + y) * w + x0 + x].min(255) as u8;
        }
    }
    if aug.flip_prob > 0.0 && uniform(rng) < aug.flip_prob {
        image::imageops::flip_horizontal_in_place(&mut crop_img);
        for row in crop_lab.chunks_mut(cw) {
            row[..vw].reverse();
        }
    }
    let t = normalize_255(&crop_img, device)?;
    let t = t
        .pad_with_zeros(1, 0, ch - vh)?
        .pad_with_zeros(2, 0, cw - vw)?;
    Ok(SegSample {
        image: t,
        labels: crop_lab,
    })
}

/// A batch: images `[B, 3, crop_h, crop_w]` and labels `[B, crop_h, crop_w]` (u32).
#[derive(Debug, Clone)]
pub struct SegBatch {
    /// The images.
    pub images: Tensor,
    /// The labels, 255 ignored.
    pub labels: Tensor,
}

/// Batches of a split in the seeded order, prepared in parallel.
#[derive(Debug, Clone)]
pub struct SegLoader {
    /// The data.
    pub dataset: SegDataset,
    /// The pipeline.
    pub augment: SegAugment,
    /// Images per batch (an incomplete last batch is dropped).
    pub batch_size: usize,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Shuffle every epoch.
    pub shuffle: bool,
}

impl SegLoader {
    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        (self.dataset.len() / self.batch_size).max(1)
    }

    /// Batch `index` of `epoch` (0-based).
    pub fn batch(&self, epoch: usize, index: usize, device: &Device) -> Result<SegBatch> {
        let order = epoch_order(self.dataset.len(), self.seed, epoch, self.shuffle);
        let bs = self.batch_size.min(order.len());
        ensure!(
            index < self.batches_per_epoch(),
            "batch {index} out of range"
        );
        let samples = (index * bs..(index + 1) * bs)
            .into_par_iter()
            .map(|pos| {
                let i = order[pos];
                let rec = &self.dataset.records[i];
                let img = load_rgb(&rec.image)?;
                let labels = self.dataset.labels(i)?;
                let mut rng = keyed_rng(&[self.seed, 0x5E6, epoch as u64, pos as u64]);
                prepare_seg(&img, &labels, &self.augment, &mut rng, device)
                    .with_context(|| format!("{}", rec.image.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let (ch, cw) = self.augment.crop;
        let images = Tensor::stack(&samples.iter().map(|s| &s.image).collect::<Vec<_>>(), 0)?;
        let labels: Vec<u32> = samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|&v| v as u32))
            .collect();
        let labels = Tensor::from_vec(labels, (samples.len(), ch, cw), device)?;
        Ok(SegBatch { images, labels })
    }
}

/// The cross entropy of the decode head's `logits` `[B, K, h, w]` against `labels`
/// `[B, H, W]` (u32, `ignore` not scored): logits resized bilinearly to `H×W`
/// (`align_corners=False`), log-softmax over classes, negative log-likelihood of the label,
/// summed and divided by `B·H·W` (or by the labelled pixels with `avg_non_ignore`). Returns the
/// loss and the number of labelled pixels. A label `≥ K` other than `ignore` is an error.
pub fn seg_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    ignore: u32,
    avg_non_ignore: bool,
) -> Result<(Tensor, usize)> {
    let (b, k, _, _) = logits.dims4()?;
    let (lb, h, w) = labels.dims3()?;
    ensure!(lb == b, "{b} logit maps for {lb} label maps");
    let up = resize_bilinear(logits, (h, w), PixelGrid::HalfPixel)?;
    let logp = candle_nn::ops::log_softmax(&up, 1)?;
    let host = labels.flatten_all()?.to_vec1::<u32>()?;
    if let Some(bad) = host.iter().find(|&&v| v != ignore && v as usize >= k) {
        anyhow::bail!("label {bad} is out of range for {k} classes (ignore index {ignore})");
    }
    let valid = host.iter().filter(|&&v| v != ignore).count();
    let idx: Vec<u32> = host
        .iter()
        .map(|&v| if v == ignore { 0 } else { v })
        .collect();
    let mask: Vec<f64> = host
        .iter()
        .map(|&v| if v == ignore { 0.0 } else { 1.0 })
        .collect();
    let dev = logits.device();
    let idx = Tensor::from_vec(idx, (b, 1, h, w), dev)?;
    let mask = Tensor::from_vec(mask, (b, 1, h, w), dev)?.to_dtype(logits.dtype())?;
    let picked = logp.gather(&idx, 1)?;
    let denom = if avg_non_ignore {
        valid.max(1)
    } else {
        b * h * w
    };
    let loss = ((picked * mask)?.sum_all()? * (-1.0 / denom as f64))?;
    Ok((loss, valid))
}

/// One logged iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegIterRecord {
    /// Iterations done (1-based).
    pub step: u64,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Cross entropy.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

/// One validation (percent, as mmseg reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegValRecord {
    /// Epochs done (1-based).
    pub epoch: usize,
    /// Iterations done.
    pub step: u64,
    /// Mean IoU.
    pub miou: f64,
    /// Mean class accuracy.
    pub macc: f64,
    /// Pixel accuracy.
    pub aacc: f64,
}

/// Everything logged by a segmenter run.
pub type SegHistory = Log<SegIterRecord, SegValRecord>;

/// What a call to [`train_segmenter`] did.
pub type SegTrainOutcome = Outcome<SegIterRecord, SegValRecord>;

impl IterLog for SegIterRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn loss(&self) -> f64 {
        self.loss
    }
    fn parts(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

impl ValLog for SegValRecord {
    fn step(&self) -> u64 {
        self.step
    }
    fn epoch(&self) -> usize {
        self.epoch
    }
    fn summary(&self) -> String {
        format!(
            "mIoU {:.2} mAcc {:.2} aAcc {:.2}",
            self.miou, self.macc, self.aacc
        )
    }
}

/// mIoU of `weights` on `val` with the test pipeline `test` (BatchNorm folded with its running
/// statistics, as the saved model is used).
pub fn validate_segmenter(
    model: &SemanticFpnConfig,
    weights: &BTreeMap<String, Tensor>,
    val: &SegDataset,
    test: &SegTestConfig,
    class_names: &[String],
    device: &Device,
) -> Result<SegMetrics> {
    let vb = candle_nn::VarBuilder::from_tensors(
        weights
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        DType::F32,
        device,
    );
    let net = SemanticFpnPvt::new(model, vb, device)?;
    let mut cfg = SegConfig::generic(model.num_classes, false);
    if class_names.len() == model.num_classes {
        cfg.class_names = class_names.to_vec();
    }
    let mut ev = SegEvaluator::new(cfg)?;
    for i in 0..val.len() {
        let img = load_rgb(&val.records[i].image)?;
        let pred = net.segment_with(&img, test)?;
        ev.process(&pred, &val.labels(i)?)?;
    }
    Ok(ev.metrics())
}

/// The segmenter's part of the loop.
struct SegTask<'a> {
    cfg: &'a SegTrainConfig,
    loader: SegLoader,
    val: Option<&'a SegDataset>,
    device: Device,
}

impl Task for SegTask<'_> {
    type Iter = SegIterRecord;
    type Val = SegValRecord;
    type Parts = ();

    fn batches_per_epoch(&self) -> u64 {
        self.loader.batches_per_epoch() as u64
    }

    fn lr(&self, _epoch: usize, step: u64, total: u64) -> f64 {
        let s = &self.cfg.train;
        s.schedule.lr(s.optimizer.lr, step as usize, total as usize)
    }

    fn loss(
        &self,
        params: &Params,
        epoch: usize,
        index: usize,
        _step: u64,
    ) -> Result<(Tensor, ())> {
        let batch = self.loader.batch(epoch, index, &self.device)?;
        let model =
            SemanticFpnPvt::new_trainable(&self.cfg.model, params.var_builder(), &self.device)?;
        let logits = model.forward_logits_t(&batch.images, true)?;
        let (loss, _) = seg_cross_entropy(
            &logits,
            &batch.labels,
            IGNORE as u32,
            self.cfg.train.avg_non_ignore,
        )?;
        Ok((loss, ()))
    }

    fn record(
        &self,
        step: u64,
        epoch: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        _: (),
    ) -> Result<SegIterRecord> {
        Ok(SegIterRecord {
            step,
            epoch,
            loss,
            lr,
            grad_norm,
        })
    }

    fn validate(&self, params: &Params, epoch: usize, step: u64) -> Result<Option<SegValRecord>> {
        let Some(v) = self.val else { return Ok(None) };
        let s = &self.cfg.train;
        let m = validate_segmenter(
            &self.cfg.model,
            &model_tensors(params)?,
            v,
            &s.test_config(),
            &s.class_names,
            &self.device,
        )?;
        Ok(Some(SegValRecord {
            epoch,
            step,
            miou: m.miou as f64,
            macc: m.macc as f64,
            aacc: m.a_acc as f64,
        }))
    }
}

/// Trains `cfg` on `train_data` (mIoU on `val` at epoch ends) into `run`, resuming a run found
/// there (the contract of [`crate::driver`]: atomic checkpoints every `checkpoint_every`
/// iterations and at epoch ends, seeded order and augmentation, so that an interrupted run ends
/// with the weights of an uninterrupted one).
pub fn train_segmenter(
    cfg: &SegTrainConfig,
    train_data: SegDataset,
    val: Option<&SegDataset>,
    run: &Path,
    opts: &TrainOptions,
) -> Result<SegTrainOutcome> {
    let s = &cfg.train;
    ensure!(
        s.epochs > 0 && s.batch_size > 0,
        "epochs and batch size must be positive"
    );
    let (ch, cw) = s.augment.crop;
    ensure!(
        ch > 0 && cw > 0 && ch % 32 == 0 && cw % 32 == 0,
        "the crop {ch}x{cw} must be positive multiples of 32"
    );
    let device = Device::Cpu;
    claim_run_dir(run, cfg, Family::SemanticFpn)?;
    let mut params = Params::semantic_fpn(&cfg.model, s.seed, &device)?;
    params.freeze_stages(s.frozen_stages);
    let task = SegTask {
        cfg,
        loader: SegLoader {
            dataset: train_data,
            augment: s.augment,
            batch_size: s.batch_size,
            seed: s.seed,
            shuffle: s.shuffle,
        },
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
        model: Family::SemanticFpn.display_name().into(),
        classes: cfg.model.num_classes,
        images: task.loader.dataset.len(),
        val_images: val.map(|v| v.len()),
    };
    driver::run(&task, params, spec, run, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_label_resize_follows_opencv() {
        let m = SegMap::new(pvt_types::ImageSize::new(2, 3), vec![0, 1, 2, 3, 4, 5]).unwrap();
        let up = resize_labels_nearest(&m, 4, 6).unwrap();
        assert_eq!(
            up.labels(),
            &[0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5]
        );
        let down = resize_labels_nearest(&m, 1, 2).unwrap();
        // x: floor(0 * 1.5) = 0, floor(1 * 1.5) = 1
        assert_eq!(down.labels(), &[0, 1]);
    }

    #[test]
    fn reduce_zero_label_as_mmseg() {
        assert_eq!(reduce_zero(0), 255);
        assert_eq!(reduce_zero(1), 0);
        assert_eq!(reduce_zero(150), 149);
        assert_eq!(reduce_zero(255), 255);
    }

    #[test]
    fn cross_entropy_by_hand() {
        let dev = Device::Cpu;
        // logits at the label size: no resize; 2 classes, 1x1x3 pixels
        let logits = Tensor::new(&[[[[1.0f64, 0.0, 2.0]], [[0.0, 3.0, 2.0]]]], &dev).unwrap();
        let labels = Tensor::new(&[[[0u32, 1, 255]]], &dev).unwrap();
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        let nll = (lse(1.0, 0.0) - 1.0) + (lse(0.0, 3.0) - 3.0);
        let (l, valid) = seg_cross_entropy(&logits, &labels, 255, false).unwrap();
        assert_eq!(valid, 2);
        assert!((l.to_scalar::<f64>().unwrap() - nll / 3.0).abs() < 1e-12);
        let (l, _) = seg_cross_entropy(&logits, &labels, 255, true).unwrap();
        assert!((l.to_scalar::<f64>().unwrap() - nll / 2.0).abs() < 1e-12);
        let bad = Tensor::new(&[[[0u32, 2, 255]]], &dev).unwrap();
        let e = seg_cross_entropy(&logits, &bad, 255, false).unwrap_err();
        assert!(
            format!("{e:#}").contains("label 2 is out of range"),
            "{e:#}"
        );
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        // 3 classes at 2x3, labels at 4x6 (bilinear upsampling in the loss)
        let vals: Vec<f64> = (0..18)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.3)
            .collect();
        let x = candle::Var::from_vec(vals.clone(), (1, 3, 2, 3), &dev).unwrap();
        let lab: Vec<u32> = (0..24)
            .map(|i| if i % 7 == 3 { 255 } else { (i * 5 % 3) as u32 })
            .collect();
        let labels = Tensor::from_vec(lab, (1, 4, 6), &dev).unwrap();
        let (loss, _) = seg_cross_entropy(x.as_tensor(), &labels, 255, false).unwrap();
        let g = loss.backward().unwrap();
        let g = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let f = |v: &[f64]| {
            let t = Tensor::from_vec(v.to_vec(), (1, 3, 2, 3), &dev).unwrap();
            seg_cross_entropy(&t, &labels, 255, false)
                .unwrap()
                .0
                .to_scalar::<f64>()
                .unwrap()
        };
        let eps = 1e-6;
        for i in 0..vals.len() {
            let mut p = vals.clone();
            p[i] += eps;
            let mut m = vals.clone();
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps);
            assert!((fd - g[i]).abs() < 1e-7, "{i}: fd {fd} analytic {}", g[i]);
        }
    }

    #[test]
    fn pipeline_crops_pads_and_flips_labels_with_pixels() {
        // a 40x20 image whose left half is white, labelled 1 (right half 0)
        let mut img = RgbImage::new(40, 20);
        let mut lab = vec![0u16; 800];
        for y in 0..20 {
            for x in 0..20 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
                lab[y as usize * 40 + x as usize] = 1;
            }
        }
        let labels = SegMap::new(pvt_types::ImageSize::new(20, 40), lab).unwrap();
        let aug = SegAugment {
            scale: (40, 20),
            ratio_range: None,
            crop: (32, 32),
            cat_max_ratio: 1.0,
            flip_prob: 1.0,
        };
        let s = prepare_seg(&img, &labels, &aug, &mut keyed_rng(&[3]), &Device::Cpu).unwrap();
        assert_eq!(s.image.dims(), &[3, 32, 32]);
        // rows 20.. are padding: ignored labels, zero pixels
        assert!(s.labels[20 * 32..].iter().all(|&v| v == IGNORE));
        let px = s.image.to_vec3::<f32>().unwrap();
        assert_eq!(px[0][25][5], 0.0);
        // every labelled pixel agrees with its (flipped) picture: white <=> class 1
        for y in 0..20 {
            for x in 0..32 {
                let white = px[0][y][x] > 2.0;
                assert_eq!(white, s.labels[y * 32 + x] == 1, "({y}, {x})");
            }
        }
    }
}
