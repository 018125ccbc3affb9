//! Mask R-CNN training losses with mmdetection 2.13's `mask_rcnn_r50_fpn` train_cfg (the PVT
//! detection configs): RPN targets, training proposals, RoI assignment and sampling, the box
//! and mask head losses, ground-truth instance masks, and a differentiable multi-level
//! RoIAlign.
//!
//! # What is computed, per batch (mmdet `TwoStageDetector.forward_train`)
//!
//! 1. **RPN** (`RPNHead` = `AnchorHead.loss` with `sampling=True`): anchors of P2–P6 (scales
//!    `[8]`, ratios `[0.5, 1, 2]`); per image, the anchors inside the image's padded shape
//!    (`allowed_border = −1`: the valid flags) are assigned by [`MaxIouAssigner::rpn`]
//!    (positive ≥ 0.7, negative < 0.3, low-quality matches ≥ 0.3) and sampled by
//!    [`RandomSampler::rpn`] (256, half positive at most, `add_gt_as_proposals` off).
//!    Objectness: sigmoid binary cross entropy (target 1 for positives, 0 for negatives), summed
//!    over the sampled anchors; deltas: L1 against the RPN coder's targets (means 0, stds 1) on
//!    the positives. Both are divided by `avg_factor = Σ_img max(#pos, 1) + Σ_img max(#neg, 1)`
//!    (mmdet's `num_total_samples`).
//! 2. **Proposals** (`train_cfg.rpn_proposal`: nms_pre 2000, max_per_img 1000, NMS 0.7,
//!    min_bbox_size 0) through the test-time proposal code ([`pvt_mask_rcnn::proposals`]), on the
//!    host, hence detached.
//! 3. **RoI targets** (`StandardRoIHead.forward_train`): per image, proposals assigned by
//!    [`MaxIouAssigner::rcnn`] (0.5 / 0.5 / 0.5, low-quality matches), ground truths prepended
//!    as proposals of themselves, [`RandomSampler::rcnn`] (512, 25 % positive at most). RoIs are
//!    the sampled positives then negatives, per image, images in batch order.
//! 4. **Box head** (`BBoxHead.loss`): softmax cross entropy over `K + 1` classes (background
//!    `K`) summed over the sampled RoIs and divided by their number; L1 on the class-specific
//!    deltas of the positives against the R-CNN coder's targets (stds 0.1, 0.1, 0.2, 0.2),
//!    divided by the number of sampled RoIs as well (`avg_factor = bbox_targets.size(0)`).
//! 5. **Mask head** (`FCNMaskHead.loss`, `mask_target`): for each positive RoI, the target is
//!    its ground-truth mask cropped and resized to 28×28 by aligned RoIAlign on the binary mask
//!    (scale 1, adaptive sampling, `BitmapMasks.crop_and_resize`) and binarised at ≥ 0.5; the
//!    loss is binary cross entropy with logits on the channel of the ground-truth class,
//!    averaged over `#pos × 28 × 28`.
//!
//! The RoI features go through [`roi_align_levels`], a candle op over the FPN levels whose
//! forward is `pvt_det_ops::multi_level_roi_align` bit for bit and whose backward is its exact
//! adjoint ([`pvt_det_ops::RoiAlignPlan`]); gradients therefore reach the neck and backbone
//! from all five losses.
//!
//! # Determinism
//!
//! The samplers draw from ChaCha8 streams keyed by `(seed, step, image, stage)`
//! ([`crate::data::keyed_rng`]); a step's loss is a pure function of the parameters, the batch
//! and `(seed, step)`, so training is reproducible and resumable.

use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use candle::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use pvt_data::coco::CocoFile;
use pvt_det_ops::roi::FINEST_SCALE;
use pvt_det_ops::{
    roi_align, AnchorConfig, AnchorGenerator, DeltaXywhCoder, LevelShape, RoiAlignPlan,
};
use pvt_mask_rcnn::{proposals, RpnOutputs, RpnProposalConfig};
use pvt_nn::image::load_rgb;
use pvt_nn::FeaturePyramid;
use pvt_types::{BitMask, ImageSize, Rle};
use pvt_zoo::MaskRcnnPvt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::assign::{batch_anchors, valid_flags, Assigned, MaxIouAssigner};
use crate::data::{collate, epoch_order, keyed_rng, prepare, uniform, Batch, CocoDetDataset};
use crate::data::{Augment, Prepared};
use crate::losses::l1_sum;

// ---------------------------------------------------------------------------------------------
// Differentiable RoIAlign
// ---------------------------------------------------------------------------------------------

/// The candle op: input = every level flattened and concatenated, output `[N, C, out, out]`.
struct RoiAlignOp {
    plan: Arc<RoiAlignPlan>,
}

fn split_levels<'a, T>(v: &'a [T], levels: &[LevelShape]) -> Vec<&'a [T]> {
    let mut out = Vec::with_capacity(levels.len());
    let mut off = 0;
    for l in levels {
        out.push(&v[off..off + l.numel()]);
        off += l.numel();
    }
    out
}

impl CustomOp1 for RoiAlignOp {
    fn name(&self) -> &'static str {
        "pvt-multi-level-roi-align"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle::Error::msg("RoIAlign: input levels must be contiguous"))?;
        let total: usize = self.plan.levels().iter().map(|l| l.numel()).sum();
        if end - start != total {
            candle::bail!(
                "RoIAlign: {} input values for levels of {total} values",
                end - start
            );
        }
        let shape = Shape::from(self.plan.out_shape().to_vec());
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(
                self.plan
                    .forward(&split_levels(&v[start..end], self.plan.levels()))
                    .map_err(candle::Error::msg)?,
            ),
            CpuStorage::F64(v) => CpuStorage::F64(
                self.plan
                    .forward(&split_levels(&v[start..end], self.plan.levels()))
                    .map_err(candle::Error::msg)?,
            ),
            _ => candle::bail!("RoIAlign: only f32 and f64 feature maps are supported"),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle::Result<Option<Tensor>> {
        let g = grad_res.flatten_all()?;
        let grads = match arg.dtype() {
            DType::F32 => {
                let v = g.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let gl = self.plan.backward(&v).map_err(candle::Error::msg)?;
                Tensor::from_vec(gl.concat(), arg.shape(), arg.device())?
            }
            DType::F64 => {
                let v = g.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                let gl = self.plan.backward(&v).map_err(candle::Error::msg)?;
                Tensor::from_vec(gl.concat(), arg.shape(), arg.device())?
            }
            d => candle::bail!("RoIAlign backward: unsupported dtype {d:?}"),
        };
        Ok(Some(grads))
    }
}

/// mmdet's `SingleRoIExtractor` (aligned RoIAlign, adaptive sampling, finest scale 56) over
/// `levels` (`[B, C, H, W]` each, fine to coarse, with their `strides`), for RoIs in input
/// pixels of image `images[i]`: `[N, C, out, out]`, differentiable with respect to the levels
/// (f32 or f64; the op runs on the CPU, tensors on other devices are moved there and back).
pub fn roi_align_levels(
    levels: &[Tensor],
    strides: &[usize],
    rois: &[[f32; 4]],
    images: &[usize],
    out: usize,
) -> Result<Tensor> {
    ensure!(
        levels.len() == strides.len() && !levels.is_empty(),
        "RoIAlign: {} levels with {} strides",
        levels.len(),
        strides.len()
    );
    let mut shapes = Vec::with_capacity(levels.len());
    for (t, &stride) in levels.iter().zip(strides) {
        let (batch, channels, height, width) = t
            .dims4()
            .with_context(|| format!("RoIAlign: a level has shape {:?}", t.dims()))?;
        shapes.push(LevelShape {
            batch,
            channels,
            height,
            width,
            stride,
        });
    }
    let plan = RoiAlignPlan::new(&shapes, rois, images, out, FINEST_SCALE)?;
    let device = levels[0].device().clone();
    let dtype = levels[0].dtype();
    if rois.is_empty() {
        return Ok(Tensor::zeros(plan.out_shape().to_vec(), dtype, &device)?);
    }
    let flat = levels
        .iter()
        .map(|t| t.flatten_all())
        .collect::<candle::Result<Vec<_>>>()?;
    let x = Tensor::cat(&flat, 0)?.to_device(&Device::Cpu)?;
    let y = x.apply_op1(RoiAlignOp {
        plan: Arc::new(plan),
    })?;
    Ok(y.to_device(&device)?)
}

// ---------------------------------------------------------------------------------------------
// Assigners and samplers
// ---------------------------------------------------------------------------------------------

impl MaxIouAssigner {
    /// `train_cfg.rpn.assigner`: positive ≥ 0.7, negative < 0.3, low-quality matches ≥ 0.3.
    pub fn rpn() -> Self {
        Self {
            pos_iou_thr: 0.7,
            neg_iou_thr: 0.3,
            min_pos_iou: 0.3,
            gt_max_assign_all: true,
            match_low_quality: true,
        }
    }

    /// `train_cfg.rcnn.assigner`: positive ≥ 0.5, negative < 0.5, low-quality matches ≥ 0.5.
    pub fn rcnn() -> Self {
        Self {
            pos_iou_thr: 0.5,
            neg_iou_thr: 0.5,
            min_pos_iou: 0.5,
            gt_max_assign_all: true,
            match_low_quality: true,
        }
    }
}

/// mmdet `RandomSampler`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomSampler {
    /// Samples per image.
    pub num: usize,
    /// At most `⌊num · pos_fraction⌋` positives.
    pub pos_fraction: f64,
    /// Negatives at most `neg_pos_ub · max(#pos, 1)` when `≥ 0`; −1: no bound.
    pub neg_pos_ub: i64,
    /// Whether the ground truths join the candidates as positives of themselves (RoI stage).
    pub add_gt_as_proposals: bool,
}

/// A sample: indices of the positive and the negative candidates, each ascending (mmdet's
/// `.unique()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sampled {
    /// Positive candidates.
    pub pos: Vec<usize>,
    /// Negative candidates.
    pub neg: Vec<usize>,
}

/// `num` elements of `gallery` drawn without replacement (`randperm(n)[:num]`), ascending;
/// all of them when there are at most `num`.
fn random_choice(mut gallery: Vec<usize>, num: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    if gallery.len() > num {
        let n = gallery.len();
        for i in 0..num {
            let j = i + ((uniform(rng) * (n - i) as f64) as usize).min(n - i - 1);
            gallery.swap(i, j);
        }
        gallery.truncate(num);
    }
    gallery.sort_unstable();
    gallery
}

impl RandomSampler {
    /// `train_cfg.rpn.sampler`: 256 anchors, half positive at most, no ground truth added.
    pub fn rpn() -> Self {
        Self {
            num: 256,
            pos_fraction: 0.5,
            neg_pos_ub: -1,
            add_gt_as_proposals: false,
        }
    }

    /// `train_cfg.rcnn.sampler`: 512 RoIs, a quarter positive at most, ground truths added.
    pub fn rcnn() -> Self {
        Self {
            num: 512,
            pos_fraction: 0.25,
            neg_pos_ub: -1,
            add_gt_as_proposals: true,
        }
    }

    /// Samples positives (`Gt`) and negatives among `assigned` (ignored candidates are never
    /// drawn): the positives first, up to `⌊num · pos_fraction⌋`, then `num − #pos` negatives
    /// (bounded by `neg_pos_ub`).
    pub fn sample(&self, assigned: &[Assigned], rng: &mut ChaCha8Rng) -> Sampled {
        let pos_all: Vec<usize> = (0..assigned.len())
            .filter(|&i| matches!(assigned[i], Assigned::Gt(_)))
            .collect();
        let neg_all: Vec<usize> = (0..assigned.len())
            .filter(|&i| assigned[i] == Assigned::Negative)
            .collect();
        let num_pos = (self.num as f64 * self.pos_fraction) as usize;
        let pos = random_choice(pos_all, num_pos, rng);
        let mut num_neg = self.num.saturating_sub(pos.len());
        if self.neg_pos_ub >= 0 {
            let ub = (self.neg_pos_ub as f64 * pos.len().max(1) as f64) as usize;
            num_neg = num_neg.min(ub);
        }
        let neg = random_choice(neg_all, num_neg, rng);
        Sampled { pos, neg }
    }
}

/// The training settings of Mask R-CNN (mmdet 2.13 `mask_rcnn_r50_fpn.py` `train_cfg`).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskRcnnTrainConfig {
    /// RPN anchor assigner.
    pub rpn_assigner: MaxIouAssigner,
    /// RPN anchor sampler.
    pub rpn_sampler: RandomSampler,
    /// Proposals during training (nms_pre 2000, max_per_img 1000, NMS 0.7 with mmcv's CUDA
    /// suppression rule, as the reference trained on GPUs, min size 0).
    pub rpn_proposal: RpnProposalConfig,
    /// RoI assigner.
    pub rcnn_assigner: MaxIouAssigner,
    /// RoI sampler.
    pub rcnn_sampler: RandomSampler,
    /// Side of the mask targets (28).
    pub mask_size: usize,
}

impl Default for MaskRcnnTrainConfig {
    fn default() -> Self {
        Self {
            rpn_assigner: MaxIouAssigner::rpn(),
            rpn_sampler: RandomSampler::rpn(),
            rpn_proposal: RpnProposalConfig {
                nms_pre: 2000,
                ..RpnProposalConfig::default()
            },
            rcnn_assigner: MaxIouAssigner::rcnn(),
            rcnn_sampler: RandomSampler::rcnn(),
            mask_size: 28,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth with masks
// ---------------------------------------------------------------------------------------------

/// A padded batch with instance masks: `masks[i][j]` is the binary mask of box `j` of image `i`
/// in the network input's frame (resized, flipped, zero-padded to the image's `pad_shape` as
/// mmdet's pipeline leaves `gt_masks`; any size covering the boxes works).
#[derive(Debug, Clone)]
pub struct MaskBatch {
    /// Images, boxes and labels.
    pub batch: Batch,
    /// Per image, per box: its mask.
    pub masks: Vec<Vec<BitMask>>,
}

impl MaskBatch {
    /// Checks that every box has a mask.
    pub fn validate(&self) -> Result<()> {
        let b = &self.batch;
        ensure!(
            b.boxes.len() == self.masks.len() && b.labels.len() == b.boxes.len(),
            "batch of {} box lists, {} label lists and {} mask lists",
            b.boxes.len(),
            b.labels.len(),
            self.masks.len()
        );
        for (i, (bx, m)) in b.boxes.iter().zip(&self.masks).enumerate() {
            ensure!(
                bx.len() == m.len() && b.labels[i].len() == bx.len(),
                "image {i}: {} boxes, {} labels, {} masks",
                bx.len(),
                b.labels[i].len(),
                m.len()
            );
        }
        Ok(())
    }
}

/// mmdet's mask pipeline for one image after [`prepare`]: nearest-neighbour rescale to
/// `img_shape` (`BitmapMasks.rescale`, OpenCV `INTER_NEAREST`: source index
/// `min(⌊x · (1 / (dst_size / src_size))⌋, src_size − 1)`), horizontal flip when the image was
/// flipped, zero padding to `pad_shape` (bottom / right).
pub fn prepare_masks(
    masks: &[BitMask],
    img_shape: ImageSize,
    flipped: bool,
    pad_shape: ImageSize,
) -> Result<Vec<BitMask>> {
    ensure!(
        pad_shape.height >= img_shape.height && pad_shape.width >= img_shape.width,
        "pad shape {pad_shape:?} is smaller than the image {img_shape:?}"
    );
    masks
        .iter()
        .map(|m| {
            let s = m.size();
            ensure!(
                s.height > 0 && s.width > 0,
                "empty instance mask {}x{}",
                s.height,
                s.width
            );
            // OpenCV: ifx = 1 / (dst / src), source index floor(x · ifx)
            let (fy, fx) = (
                1.0 / (img_shape.height as f64 / s.height as f64),
                1.0 / (img_shape.width as f64 / s.width as f64),
            );
            let src = m.data();
            let mut data = vec![0u8; pad_shape.area()];
            for y in 0..img_shape.height {
                let sy = ((y as f64 * fy).floor() as usize).min(s.height - 1);
                for x in 0..img_shape.width {
                    let sx = ((x as f64 * fx).floor() as usize).min(s.width - 1);
                    let dx = if flipped { img_shape.width - 1 - x } else { x };
                    data[y * pad_shape.width + dx] = src[sy * s.width + sx];
                }
            }
            Ok(BitMask::new(pad_shape, data)?)
        })
        .collect()
}

/// The instance masks of a COCO-format split, aligned with `dataset.records` (the same
/// annotations [`CocoDetDataset::load`] keeps, in the same order; checked box by box).
/// Segmentations may be polygons (rasterized as pycocotools' `annToRLE` does, like most of
/// COCO's own annotations) or RLE, compressed or not, as `pvt synth` writes them.
pub fn load_instance_masks(dataset: &CocoDetDataset) -> Result<Vec<Vec<Rle>>> {
    let path = &dataset.ann_file;
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let coco: CocoFile = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a COCO instances file", path.display()))?;
    let index_of = |id: u64| dataset.categories.iter().position(|c| c.0 == id);
    let mut by_image: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for (i, a) in coco.annotations.iter().enumerate() {
        by_image.entry(a.image_id).or_default().push(i);
    }
    let sizes: std::collections::HashMap<u64, (f64, f64)> = coco
        .images
        .iter()
        .map(|im| (im.id, (im.width as f64, im.height as f64)))
        .collect();
    let mut out = Vec::with_capacity(dataset.records.len());
    for rec in &dataset.records {
        let (w, h) = sizes
            .get(&rec.id)
            .copied()
            .with_context(|| format!("image {} is not in {}", rec.id, path.display()))?;
        let mut masks = Vec::new();
        let mut boxes = Vec::new();
        for &ai in by_image.get(&rec.id).map(Vec::as_slice).unwrap_or(&[]) {
            let a = &coco.annotations[ai];
            let [x1, y1, bw, bh] = a.bbox;
            let inter_w = ((x1 + bw).min(w) - x1.max(0.0)).max(0.0);
            let inter_h = ((y1 + bh).min(h) - y1.max(0.0)).max(0.0);
            if inter_w * inter_h == 0.0 || a.area <= 0.0 || bw < 1.0 || bh < 1.0 {
                continue;
            }
            if index_of(a.category_id).is_none() || a.iscrowd != 0 {
                continue;
            }
            let rle = a.segmentation.to_rle(rec.size).with_context(|| {
                format!("{}: segmentation of annotation {}", path.display(), a.id)
            })?;
            boxes.push([x1 as f32, y1 as f32, (x1 + bw) as f32, (y1 + bh) as f32]);
            masks.push(rle);
        }
        ensure!(
            boxes == rec.boxes,
            "image {}: the masks do not line up with the dataset's boxes",
            rec.id
        );
        out.push(masks);
    }
    Ok(out)
}

/// [`crate::data::Loader`]'s batches (same order, same augmentation draws, same images and
/// boxes) with the instance masks through [`prepare_masks`].
#[derive(Debug, Clone)]
pub struct MaskLoader {
    /// The dataset (boxes and labels).
    pub dataset: CocoDetDataset,
    /// `masks[r][j]`: mask of box `j` of record `r`.
    pub masks: Vec<Vec<Rle>>,
    /// The pipeline.
    pub augment: Augment,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Shuffle every epoch.
    pub shuffle: bool,
}

impl MaskLoader {
    /// Loads the masks of `dataset`.
    pub fn new(
        dataset: CocoDetDataset,
        augment: Augment,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
    ) -> Result<Self> {
        let masks = load_instance_masks(&dataset)?;
        Ok(Self {
            dataset,
            masks,
            augment,
            batch_size: batch_size.max(1),
            seed,
            shuffle,
        })
    }

    /// Batches per epoch (as [`crate::data::Loader`]).
    pub fn batches_per_epoch(&self) -> usize {
        (self.dataset.len() / self.batch_size).max(1)
    }

    /// Batch `index` of `epoch`, with masks.
    pub fn batch(&self, epoch: usize, index: usize, device: &Device) -> Result<MaskBatch> {
        let order = epoch_order(self.dataset.len(), self.seed, epoch, self.shuffle);
        let bs = self.batch_size.min(order.len());
        ensure!(
            index < self.batches_per_epoch(),
            "batch {index} out of range"
        );
        let positions: Vec<usize> = (index * bs..(index + 1) * bs).collect();
        let items = positions
            .par_iter()
            .map(|&pos| -> Result<(Prepared, Vec<BitMask>)> {
                let r = order[pos];
                let rec = &self.dataset.records[r];
                let img = load_rgb(&rec.path)?;
                ensure!(
                    img.width() as usize == rec.size.width
                        && img.height() as usize == rec.size.height,
                    "{}: the image is {}x{}, the annotation file says {}x{} (WxH)",
                    rec.path.display(),
                    img.width(),
                    img.height(),
                    rec.size.width,
                    rec.size.height
                );
                // the same stream as `Loader::batch`
                let mut rng = keyed_rng(&[self.seed, 0xA06, epoch as u64, pos as u64]);
                let p = prepare(
                    &img,
                    &rec.boxes,
                    &rec.labels,
                    &self.augment,
                    &mut rng,
                    device,
                )?;
                let pad = ImageSize::new(
                    p.img_shape.height.div_ceil(32) * 32,
                    p.img_shape.width.div_ceil(32) * 32,
                );
                let decoded: Vec<BitMask> = self.masks[r].iter().map(Rle::decode).collect();
                let m = prepare_masks(&decoded, p.img_shape, p.flipped, pad)?;
                Ok((p, m))
            })
            .collect::<Result<Vec<_>>>()?;
        let ids = positions
            .iter()
            .map(|&p| self.dataset.records[order[p]].id)
            .collect();
        let (prepared, masks): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        Ok(MaskBatch {
            batch: collate(prepared, ids)?,
            masks,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// RPN targets of one image (indices into the concatenated anchors of all levels).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RpnTargets {
    /// Sampled positive anchors.
    pub pos: Vec<usize>,
    /// Sampled negative anchors.
    pub neg: Vec<usize>,
    /// RPN coder targets of the positives (same order).
    pub bbox_targets: Vec<[f32; 4]>,
}

/// RoI targets of one image: the sampled RoIs, positives first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoiTargets {
    /// RoIs (resized-image frame): the `num_pos` positives, then the negatives.
    pub rois: Vec<[f32; 4]>,
    /// Number of positives.
    pub num_pos: usize,
    /// Class of each positive.
    pub pos_labels: Vec<u32>,
    /// Ground truth index of each positive.
    pub pos_gt: Vec<usize>,
    /// R-CNN coder targets of the positives.
    pub bbox_targets: Vec<[f32; 4]>,
}

/// Binary 28×28 mask targets (`mask_target`): each RoI's ground-truth mask cropped and resized
/// by aligned RoIAlign (scale 1, adaptive sampling) and thresholded at 0.5; row-major
/// `[N, size, size]` as 0 / 1.
pub fn mask_targets(
    masks: &[BitMask],
    rois: &[[f32; 4]],
    gt: &[usize],
    size: usize,
) -> Result<Vec<f32>> {
    ensure!(
        rois.len() == gt.len(),
        "{} RoIs, {} ground truth indices",
        rois.len(),
        gt.len()
    );
    let mut out = vec![0f32; rois.len() * size * size];
    // one RoIAlign call per ground truth mask
    let mut by_gt: Vec<Vec<usize>> = vec![Vec::new(); masks.len()];
    for (i, &g) in gt.iter().enumerate() {
        ensure!(g < masks.len(), "ground truth {g} of {} masks", masks.len());
        by_gt[g].push(i);
    }
    for (g, idx) in by_gt.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        let m = &masks[g];
        let s = m.size();
        let f: Vec<f32> = m.data().iter().map(|&v| f32::from(v)).collect();
        let r: Vec<[f32; 4]> = idx.iter().map(|&i| rois[i]).collect();
        let v = roi_align(&f, (1, s.height, s.width), &r, 1.0, size, true, 0)?;
        for (k, &i) in idx.iter().enumerate() {
            for (d, &x) in out[i * size * size..(i + 1) * size * size]
                .iter_mut()
                .zip(&v[k * size * size..(k + 1) * size * size])
            {
                *d = if x >= 0.5 { 1.0 } else { 0.0 };
            }
        }
    }
    Ok(out)
}

/// The loss terms of one batch (scalars; `total` is their sum).
#[derive(Debug, Clone)]
pub struct MaskRcnnLoss {
    /// RPN objectness (sigmoid BCE).
    pub rpn_cls: Tensor,
    /// RPN deltas (L1).
    pub rpn_bbox: Tensor,
    /// Box head classification (softmax cross entropy).
    pub cls: Tensor,
    /// Box head deltas (L1).
    pub bbox: Tensor,
    /// Mask BCE.
    pub mask: Tensor,
    /// The sum of the five.
    pub total: Tensor,
    /// Sampled positive anchors in the batch.
    pub num_rpn_pos: usize,
    /// Sampled RoIs in the batch.
    pub num_rois: usize,
    /// Positive RoIs in the batch.
    pub num_pos_rois: usize,
}

/// The Mask R-CNN criterion: anchors, coders, assigners, samplers.
#[derive(Debug, Clone)]
pub struct MaskRcnnCriterion {
    anchors: AnchorGenerator,
    rpn_coder: DeltaXywhCoder,
    rcnn_coder: DeltaXywhCoder,
    /// The train_cfg.
    pub cfg: MaskRcnnTrainConfig,
    num_classes: usize,
    /// Seed of the samplers.
    pub seed: u64,
}

/// Stream tags of the samplers.
const RPN_STREAM: u64 = 0x5250;
const RCNN_STREAM: u64 = 0x5243;

/// RoI levels of the extractor: P2–P5.
const ROI_LEVELS: usize = 4;

impl MaskRcnnCriterion {
    /// The criterion for `num_classes` foreground classes.
    pub fn new(num_classes: usize, cfg: MaskRcnnTrainConfig, seed: u64) -> Result<Self> {
        ensure!(num_classes > 0, "Mask R-CNN needs at least one class");
        Ok(Self {
            anchors: AnchorGenerator::new(&AnchorConfig::rpn())?,
            rpn_coder: DeltaXywhCoder::rpn(),
            rcnn_coder: DeltaXywhCoder::rcnn(),
            cfg,
            num_classes,
            seed,
        })
    }

    fn check_gt(&self, batch: &Batch) -> Result<()> {
        for (i, (b, l)) in batch.boxes.iter().zip(&batch.labels).enumerate() {
            ensure!(
                b.len() == l.len(),
                "image {i}: {} boxes, {} labels",
                b.len(),
                l.len()
            );
            if let Some(&bad) = l.iter().find(|&&c| c as usize >= self.num_classes) {
                bail!(
                    "image {i}: label {bad} out of range for {} classes",
                    self.num_classes
                );
            }
        }
        Ok(())
    }

    /// RPN targets of every image for outputs with these per-level map sizes, sampled at `step`.
    pub fn rpn_targets(
        &self,
        featmaps: &[ImageSize],
        batch: &Batch,
        step: u64,
    ) -> Result<Vec<RpnTargets>> {
        let anchors = batch_anchors(&self.anchors, featmaps)?;
        (0..batch.boxes.len())
            .into_par_iter()
            .map(|i| {
                let valid = valid_flags(&self.anchors, featmaps, batch.pad_shapes[i])?;
                let inside: Vec<usize> = (0..anchors.len()).filter(|&j| valid[j]).collect();
                let sub: Vec<[f32; 4]> = inside.iter().map(|&j| anchors[j]).collect();
                let gts = &batch.boxes[i];
                let assigned = self.cfg.rpn_assigner.assign(&sub, gts);
                let mut rng = keyed_rng(&[self.seed, RPN_STREAM, step, i as u64]);
                let s = self.cfg.rpn_sampler.sample(&assigned, &mut rng);
                let bbox_targets = s
                    .pos
                    .iter()
                    .map(|&k| match assigned[k] {
                        Assigned::Gt(g) => self.rpn_coder.encode_one(sub[k], gts[g]),
                        _ => unreachable!("positives are assigned"),
                    })
                    .collect();
                Ok(RpnTargets {
                    pos: s.pos.iter().map(|&k| inside[k]).collect(),
                    neg: s.neg.iter().map(|&k| inside[k]).collect(),
                    bbox_targets,
                })
            })
            .collect()
    }

    /// Training proposals of every image (detached, resized-image frame).
    pub fn proposals(&self, rpn: &RpnOutputs, batch: &Batch) -> Result<Vec<Vec<[f32; 4]>>> {
        (0..batch.boxes.len())
            .map(|i| {
                Ok(proposals(
                    rpn,
                    i,
                    &self.anchors,
                    batch.img_shapes[i],
                    &self.cfg.rpn_proposal,
                )?
                .boxes)
            })
            .collect()
    }

    /// RoI targets of one image from its proposals, sampled with `rng`.
    pub fn roi_targets(
        &self,
        proposals: &[[f32; 4]],
        gt_boxes: &[[f32; 4]],
        gt_labels: &[u32],
        rng: &mut ChaCha8Rng,
    ) -> RoiTargets {
        let mut assigned = self.cfg.rcnn_assigner.assign(proposals, gt_boxes);
        let mut cands: Vec<[f32; 4]> = proposals.to_vec();
        if self.cfg.rcnn_sampler.add_gt_as_proposals && !gt_boxes.is_empty() {
            let mut a: Vec<Assigned> = (0..gt_boxes.len()).map(Assigned::Gt).collect();
            a.extend(assigned);
            assigned = a;
            let mut c = gt_boxes.to_vec();
            c.extend_from_slice(proposals);
            cands = c;
        }
        let s = self.cfg.rcnn_sampler.sample(&assigned, rng);
        let pos_gt: Vec<usize> = s
            .pos
            .iter()
            .map(|&k| match assigned[k] {
                Assigned::Gt(g) => g,
                _ => unreachable!("positives are assigned"),
            })
            .collect();
        let pos_boxes: Vec<[f32; 4]> = s.pos.iter().map(|&k| cands[k]).collect();
        let bbox_targets = pos_boxes
            .iter()
            .zip(&pos_gt)
            .map(|(&b, &g)| self.rcnn_coder.encode_one(b, gt_boxes[g]))
            .collect();
        let mut rois = pos_boxes;
        rois.extend(s.neg.iter().map(|&k| cands[k]));
        RoiTargets {
            num_pos: s.pos.len(),
            pos_labels: pos_gt.iter().map(|&g| gt_labels[g]).collect(),
            pos_gt,
            bbox_targets,
            rois,
        }
    }

    /// The loss of `model` on `batch` at training step `step` (the samplers' key).
    pub fn loss(&self, model: &MaskRcnnPvt, batch: &MaskBatch, step: u64) -> Result<MaskRcnnLoss> {
        let (feats, rpn) = model.forward_rpn(&batch.batch.images)?;
        let props = self.proposals(&rpn, &batch.batch)?;
        self.loss_with_proposals(model, &feats, &rpn, batch, &props, step)
    }

    /// The loss from the network's FPN levels and RPN outputs with given proposals (per
    /// image). [`loss`](Self::loss) computes the proposals from `rpn`; fixing them makes the
    /// loss a smooth function of the parameters (the finite-difference tests).
    pub fn loss_with_proposals(
        &self,
        model: &MaskRcnnPvt,
        feats: &FeaturePyramid,
        rpn: &RpnOutputs,
        batch: &MaskBatch,
        proposals: &[Vec<[f32; 4]>],
        step: u64,
    ) -> Result<MaskRcnnLoss> {
        batch.validate()?;
        let b = &batch.batch;
        self.check_gt(b)?;
        let nimg = b.boxes.len();
        ensure!(
            proposals.len() == nimg,
            "{} proposal lists for {nimg} images",
            proposals.len()
        );
        // ---- RPN ----
        let featmaps: Vec<ImageSize> = rpn
            .cls_logits
            .iter()
            .map(|t| Ok(ImageSize::new(t.dim(2)?, t.dim(3)?)))
            .collect::<Result<_>>()?;
        let targets = self.rpn_targets(&featmaps, b, step)?;
        let flat = |ts: &[Tensor], c: usize| -> Result<Tensor> {
            let parts = ts
                .iter()
                .map(|t| {
                    let (bb, ch, h, w) = t.dims4()?;
                    t.permute((0, 2, 3, 1))?.reshape((bb, h * w * (ch / c), c))
                })
                .collect::<candle::Result<Vec<_>>>()?;
            Ok(Tensor::cat(&parts, 1)?.reshape(((), c))?)
        };
        let logits = flat(&rpn.cls_logits, 1)?;
        let deltas = flat(&rpn.box_deltas, 4)?;
        let dtype = logits.dtype();
        let dev = logits.device().clone();
        let n = logits.dim(0)? / nimg.max(1);
        let mut rows = Vec::new();
        let mut tgt = Vec::new();
        let mut pos_rows = Vec::new();
        let mut pos_tgt = Vec::new();
        let mut avg_rpn = 0usize;
        for (i, t) in targets.iter().enumerate() {
            for &j in &t.pos {
                rows.push((i * n + j) as u32);
                tgt.push(1f32);
                pos_rows.push((i * n + j) as u32);
            }
            for &j in &t.neg {
                rows.push((i * n + j) as u32);
                tgt.push(0f32);
            }
            pos_tgt.extend(t.bbox_targets.iter().flatten().copied());
            avg_rpn += t.pos.len().max(1) + t.neg.len().max(1);
        }
        let num_rpn_pos = pos_rows.len();
        let rpn_cls = if rows.is_empty() {
            (logits.sum_all()? * 0.0)?
        } else {
            let k = rows.len();
            let x = logits.index_select(&Tensor::from_vec(rows, k, &dev)?, 0)?;
            let t = Tensor::from_vec(tgt, (k, 1), &dev)?.to_dtype(dtype)?;
            (bce_with_logits_sum(&x, &t)? / avg_rpn as f64)?
        };
        let rpn_bbox = if num_rpn_pos == 0 {
            (deltas.sum_all()? * 0.0)?
        } else {
            let pred = deltas.index_select(&Tensor::from_vec(pos_rows, num_rpn_pos, &dev)?, 0)?;
            let t = Tensor::from_vec(pos_tgt, (num_rpn_pos, 4), &dev)?.to_dtype(dtype)?;
            let ones = Tensor::ones((1, 1), dtype, &dev)?;
            (l1_sum(&pred, &t, &ones)? / avg_rpn as f64)?
        };
        // ---- RoI sampling ----
        let roi_t: Vec<RoiTargets> = (0..nimg)
            .map(|i| {
                let mut rng = keyed_rng(&[self.seed, RCNN_STREAM, step, i as u64]);
                self.roi_targets(&proposals[i], &b.boxes[i], &b.labels[i], &mut rng)
            })
            .collect();
        let levels = &feats.levels()[..ROI_LEVELS.min(feats.levels().len())];
        ensure!(
            levels.len() == ROI_LEVELS,
            "RoI extractor needs {ROI_LEVELS} levels, the pyramid has {}",
            levels.len()
        );
        let strides: Vec<usize> = feats.spec().levels()[..ROI_LEVELS]
            .iter()
            .map(|l| l.stride)
            .collect();
        let mut rois = Vec::new();
        let mut images = Vec::new();
        let mut labels = Vec::new();
        let mut pos_rows = Vec::new();
        let mut box_tgt = Vec::new();
        let mut mask_rois = Vec::new();
        let mut mask_images = Vec::new();
        let mut mask_labels = Vec::new();
        let mut mask_tgt = Vec::new();
        let k = self.num_classes;
        let msz = self.cfg.mask_size;
        for (i, t) in roi_t.iter().enumerate() {
            let base = rois.len();
            for (j, r) in t.rois.iter().enumerate() {
                rois.push(*r);
                images.push(i);
                if j < t.num_pos {
                    labels.push(t.pos_labels[j] as usize);
                    pos_rows.push(((base + j) * k + t.pos_labels[j] as usize) as u32);
                } else {
                    labels.push(k);
                }
            }
            box_tgt.extend(t.bbox_targets.iter().flatten().copied());
            let pos = &t.rois[..t.num_pos];
            mask_rois.extend_from_slice(pos);
            mask_images.extend(std::iter::repeat_n(i, t.num_pos));
            mask_labels.extend(t.pos_labels.iter().map(|&l| l as usize));
            mask_tgt.extend(mask_targets(&batch.masks[i], pos, &t.pos_gt, msz)?);
        }
        let num_rois = rois.len();
        let num_pos_rois = mask_rois.len();
        // ---- box head ----
        let head = &model.roi_head;
        let bs = head.bbox_head.config().roi_feat_size;
        let (cls, bbox) = if num_rois == 0 {
            let z = (levels[0].sum_all()? * 0.0)?;
            (z.clone(), z)
        } else {
            let x = roi_align_levels(levels, &strides, &rois, &images, bs)?;
            let out = head.bbox_head.forward(&x)?;
            let mut onehot = vec![0f32; num_rois * (k + 1)];
            for (r, &l) in labels.iter().enumerate() {
                onehot[r * (k + 1) + l] = 1.0;
            }
            let onehot = Tensor::from_vec(onehot, (num_rois, k + 1), &dev)?.to_dtype(dtype)?;
            let logp = candle_nn::ops::log_softmax(&out.cls_score, candle::D::Minus1)?;
            let cls = ((logp * onehot)?.sum_all()?.neg()? / num_rois as f64)?;
            let bbox = if num_pos_rois == 0 {
                (out.bbox_pred.sum_all()? * 0.0)?
            } else {
                let pred = out
                    .bbox_pred
                    .reshape((num_rois * k, 4))?
                    .index_select(&Tensor::from_vec(pos_rows, num_pos_rois, &dev)?, 0)?;
                let t = Tensor::from_vec(box_tgt, (num_pos_rois, 4), &dev)?.to_dtype(dtype)?;
                let ones = Tensor::ones((1, 1), dtype, &dev)?;
                (l1_sum(&pred, &t, &ones)? / num_rois as f64)?
            };
            (cls, bbox)
        };
        // ---- mask head ----
        let mask = if num_pos_rois == 0 {
            (levels[0].sum_all()? * 0.0)?
        } else {
            let ms = head.mask_head.config().roi_feat_size;
            let x = roi_align_levels(levels, &strides, &mask_rois, &mask_images, ms)?;
            let pred = head.mask_head.forward_labels(&x, &mask_labels)?;
            let (_, h, w) = pred.dims3()?;
            ensure!(
                (h, w) == (msz, msz),
                "mask head predicts {h}x{w} masks, the targets are {msz}x{msz}"
            );
            let t = Tensor::from_vec(mask_tgt, (num_pos_rois, msz, msz), &dev)?.to_dtype(dtype)?;
            (bce_with_logits_sum(&pred, &t)? / (num_pos_rois * msz * msz) as f64)?
        };
        let total = ((((&rpn_cls + &rpn_bbox)? + &cls)? + &bbox)? + &mask)?;
        Ok(MaskRcnnLoss {
            rpn_cls,
            rpn_bbox,
            cls,
            bbox,
            mask,
            total,
            num_rpn_pos,
            num_rois,
            num_pos_rois,
        })
    }
}

/// `Σ BCE_with_logits(x, t)`, stable: `max(x, 0) − x·t + log(1 + e^{−|x|})`.
pub fn bce_with_logits_sum(x: &Tensor, t: &Tensor) -> Result<Tensor> {
    let v = ((x.relu()? - (x * t)?)? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(v.sum_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpn_sampler_takes_at_most_half_positives_and_fills_with_negatives() {
        // 300 positives, 1000 negatives, 50 ignored
        let mut a = vec![Assigned::Gt(0); 300];
        a.extend(vec![Assigned::Negative; 1000]);
        a.extend(vec![Assigned::Ignore; 50]);
        let s = RandomSampler::rpn();
        let mut rng = keyed_rng(&[1, 2]);
        let r = s.sample(&a, &mut rng);
        assert_eq!((r.pos.len(), r.neg.len()), (128, 128));
        assert!(r.pos.windows(2).all(|w| w[0] < w[1]), "ascending, unique");
        assert!(r.neg.windows(2).all(|w| w[0] < w[1]));
        assert!(r.pos.iter().all(|&i| i < 300));
        assert!(r.neg.iter().all(|&i| (300..1300).contains(&i)));
        // few positives: all of them, negatives fill up to 256
        let mut a = vec![Assigned::Gt(1); 10];
        a.extend(vec![Assigned::Negative; 1000]);
        let r = s.sample(&a, &mut rng);
        assert_eq!(r.pos, (0..10).collect::<Vec<_>>());
        assert_eq!(r.neg.len(), 246);
        // the same stream gives the same sample, another stream another one
        let r1 = s.sample(&a, &mut keyed_rng(&[7, 0]));
        let r2 = s.sample(&a, &mut keyed_rng(&[7, 0]));
        let r3 = s.sample(&a, &mut keyed_rng(&[7, 1]));
        assert_eq!(r1, r2);
        assert_ne!(r1.neg, r3.neg);
        // neg_pos_ub bounds the negatives
        let ub = RandomSampler {
            neg_pos_ub: 3,
            ..RandomSampler::rpn()
        };
        let r = ub.sample(&a, &mut rng);
        assert_eq!((r.pos.len(), r.neg.len()), (10, 30));
    }

    #[test]
    fn roi_sampler_quarter_positives_and_ground_truth_as_proposals() -> Result<()> {
        let crit = MaskRcnnCriterion::new(3, MaskRcnnTrainConfig::default(), 5)?;
        assert_eq!(crit.cfg.rcnn_sampler.num, 512);
        let gt = [[10.0, 10.0, 50.0, 50.0], [60.0, 20.0, 90.0, 80.0]];
        // 400 near-copies of gt 0 (IoU > 0.5), 1000 far boxes (negatives)
        let mut props: Vec<[f32; 4]> = (0..400)
            .map(|i| {
                let d = (i % 5) as f32;
                [10.0 + d, 10.0, 50.0 + d, 50.0]
            })
            .collect();
        props.extend((0..1000).map(|i| {
            let x = 100.0 + (i % 50) as f32;
            [x, 100.0, x + 20.0, 130.0]
        }));
        let t = crit.roi_targets(&props, &gt, &[2, 0], &mut keyed_rng(&[3]));
        assert_eq!(t.num_pos, 128);
        assert_eq!(t.rois.len(), 512);
        // the ground truths were candidates (indices 0 and 1) and may be drawn; every positive
        // is matched to a ground truth it overlaps by at least 0.5
        for (j, r) in t.rois[..t.num_pos].iter().enumerate() {
            let g = t.pos_gt[j];
            assert!(pvt_det_ops::iou(*r, gt[g]) >= 0.5);
            assert_eq!(t.pos_labels[j], [2, 0][g]);
        }
        // gt 1 has no overlapping proposal: only itself can be its positive
        assert!(t.pos_gt.iter().filter(|&&g| g == 1).count() <= 1);
        // few candidates: ground truths are positives, all negatives are kept
        let t = crit.roi_targets(&props[400..410], &gt, &[2, 0], &mut keyed_rng(&[3]));
        assert_eq!(t.num_pos, 2);
        assert_eq!(&t.rois[..2], &gt);
        assert_eq!(t.bbox_targets, vec![[0.0; 4]; 2]);
        assert_eq!(t.rois.len(), 12);
        // no ground truth: everything negative
        let t = crit.roi_targets(&props[..20], &[], &[], &mut keyed_rng(&[3]));
        assert_eq!((t.num_pos, t.rois.len()), (0, 20));
        Ok(())
    }

    #[test]
    fn rpn_and_rcnn_assigners_thresholds() {
        let gt = [[0.0, 0.0, 10.0, 10.0]];
        let anchors = [
            [0.0, 0.0, 10.0, 14.0], // 0.714: positive for both
            [0.0, 0.0, 10.0, 16.0], // 0.625: ignored by the RPN, positive for the RoIs
            [0.0, 0.0, 10.0, 25.0], // 0.4: ignored / negative
            [0.0, 0.0, 10.0, 40.0], // 0.25: negative
        ];
        let neg = Assigned::Negative;
        assert_eq!(
            MaxIouAssigner::rpn().assign(&anchors, &gt),
            vec![Assigned::Gt(0), Assigned::Ignore, Assigned::Ignore, neg]
        );
        assert_eq!(
            MaxIouAssigner::rcnn().assign(&anchors, &gt),
            vec![Assigned::Gt(0), Assigned::Gt(0), neg, neg]
        );
        // low quality: the best anchor at IoU 0.4 ≥ 0.3 is positive for the RPN
        assert_eq!(
            MaxIouAssigner::rpn().assign(&anchors[2..], &gt),
            vec![Assigned::Gt(0), neg]
        );
    }

    #[test]
    fn mask_targets_crop_resize_and_binarise() -> Result<()> {
        // a 40x40 mask with the left half of a square set
        let mut d = vec![0u8; 40 * 40];
        for y in 10..30 {
            for x in 10..20 {
                d[y * 40 + x] = 1;
            }
        }
        let m = BitMask::new(ImageSize::new(40, 40), d)?;
        let t = mask_targets(&[m], &[[10.0, 10.0, 30.0, 30.0]], &[0], 4)?;
        let want = [1., 1., 0., 0.];
        for row in t.chunks(4) {
            assert_eq!(row, want);
        }
        assert!(mask_targets(&[], &[[0.0; 4]], &[0], 4).is_err());
        Ok(())
    }

    #[test]
    fn mask_pipeline_resizes_flips_and_pads() -> Result<()> {
        // 2x4 mask: column 0 set; resized to 4x8 (nearest), flipped, padded to 32x32
        let m = BitMask::new(ImageSize::new(2, 4), vec![1, 0, 0, 0, 1, 0, 0, 0])?;
        let p = prepare_masks(
            &[m.clone()],
            ImageSize::new(4, 8),
            false,
            ImageSize::new(32, 32),
        )?;
        let d = p[0].data();
        assert_eq!(p[0].size(), ImageSize::new(32, 32));
        for y in 0..32 {
            for x in 0..32 {
                let want = u8::from(y < 4 && x < 2);
                assert_eq!(d[y * 32 + x], want, "({y}, {x})");
            }
        }
        let p = prepare_masks(&[m], ImageSize::new(4, 8), true, ImageSize::new(32, 32))?;
        assert_eq!(p[0].area(), 8);
        assert_eq!(p[0].data()[7], 1);
        assert_eq!(p[0].data()[6], 1);
        assert_eq!(p[0].data()[0], 0);
        Ok(())
    }

    #[test]
    fn roi_align_op_forward_equals_the_inference_path_and_backward_the_adjoint() -> Result<()> {
        use candle::Var;
        let dev = Device::Cpu;
        let shapes = [
            (2, 3, 20, 24, 4),
            (2, 3, 10, 12, 8),
            (2, 3, 5, 6, 16),
            (2, 3, 3, 3, 32),
        ];
        let mut levels = vec![];
        for (i, &(b, c, h, w, _)) in shapes.iter().enumerate() {
            let n = b * c * h * w;
            let v: Vec<f32> = (0..n)
                .map(|j| (j as f32 * 0.37 + i as f32).sin() * 2.0)
                .collect();
            levels.push(Var::from_vec(v, (b, c, h, w), &dev)?);
        }
        let strides: Vec<usize> = shapes.iter().map(|s| s.4).collect();
        let rois = [
            [3.0, 4.0, 40.0, 50.0],
            [0.0, 0.0, 150.0, 120.0],
            [-8.0, 5.0, 300.0, 250.0],
            [10.0, 10.0, 12.5, 13.0],
            [0.0, 0.0, 500.0, 480.0],
        ];
        let images = [1, 0, 1, 0, 1];
        let ts: Vec<Tensor> = levels.iter().map(|v| v.as_tensor().clone()).collect();
        let y = roi_align_levels(&ts, &strides, &rois, &images, 7)?;
        assert_eq!(y.dims(), &[5, 3, 7, 7]);
        let got = y.flatten_all()?.to_vec1::<f32>()?;
        for (i, (&r, &b)) in rois.iter().zip(&images).enumerate() {
            let maps: Vec<Vec<f32>> = ts
                .iter()
                .map(|t| t.get(b)?.flatten_all()?.to_vec1::<f32>())
                .collect::<candle::Result<_>>()?;
            let lv: Vec<pvt_det_ops::RoiLevel<'_>> = maps
                .iter()
                .zip(&shapes)
                .map(|(m, s)| (m.as_slice(), (s.1, s.2, s.3), s.4))
                .collect();
            let want = pvt_det_ops::multi_level_roi_align(&lv, &[r], 7, FINEST_SCALE)?;
            assert_eq!(&got[i * 147..(i + 1) * 147], want.as_slice(), "RoI {i}");
        }
        // backward: d/dx Σ w·y equals the plan's adjoint, and reaches every level
        let w = Tensor::from_vec(
            (0..got.len()).map(|j| (j as f32 * 0.11).cos()).collect(),
            y.shape(),
            &dev,
        )?;
        let grads = (&y * &w)?.sum_all()?.backward()?;
        for (l, v) in levels.iter().enumerate() {
            let g = grads.get(v.as_tensor()).expect("gradient");
            let s = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(s > 0.0, "level {l} gets no gradient");
        }
        Ok(())
    }
}
