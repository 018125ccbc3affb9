//! The RetinaNet training loss (mmdet `AnchorHead.loss` with RetinaNet's settings): anchors
//! and targets per image, sigmoid focal loss over all valid anchors, L1 on the positives'
//! deltas, both averaged by the number of positives (at least one per image).

use anyhow::{ensure, Result};
use candle::Tensor;
use pvt_det_ops::{AnchorConfig, AnchorGenerator, DeltaXywhCoder};
use pvt_retinanet::DenseOutputs;
use pvt_types::ImageSize;
use rayon::prelude::*;

use crate::assign::{anchor_targets, batch_anchors, valid_flags, AnchorTargets, MaxIouAssigner};
use crate::data::Batch;
use crate::losses::{l1_sum, FocalLoss};

/// The loss of one batch.
#[derive(Debug, Clone)]
pub struct RetinaLoss {
    /// `cls + bbox`, a scalar to call `backward` on.
    pub total: Tensor,
    /// The focal loss (averaged).
    pub cls: Tensor,
    /// The L1 box loss (averaged).
    pub bbox: Tensor,
    /// Positive anchors in the batch.
    pub num_pos: usize,
}

/// What the loss needs besides the network outputs.
#[derive(Debug, Clone)]
pub struct RetinaCriterion {
    anchors: AnchorGenerator,
    coder: DeltaXywhCoder,
    /// The assigner.
    pub assigner: MaxIouAssigner,
    /// The classification loss.
    pub focal: FocalLoss,
    num_classes: usize,
}

impl RetinaCriterion {
    /// RetinaNet's anchors and coder with the given assigner and focal loss.
    pub fn new(num_classes: usize, assigner: MaxIouAssigner, focal: FocalLoss) -> Result<Self> {
        Ok(Self {
            anchors: AnchorGenerator::new(&AnchorConfig::retinanet())?,
            coder: DeltaXywhCoder::retinanet(),
            assigner,
            focal,
            num_classes,
        })
    }

    /// Targets of every image of `batch` for outputs with these per-level map sizes.
    pub fn targets(&self, featmaps: &[ImageSize], batch: &Batch) -> Result<Vec<AnchorTargets>> {
        let anchors = batch_anchors(&self.anchors, featmaps)?;
        (0..batch.boxes.len())
            .into_par_iter()
            .map(|i| {
                let valid = valid_flags(&self.anchors, featmaps, batch.pad_shapes[i])?;
                anchor_targets(
                    &anchors,
                    &valid,
                    &batch.boxes[i],
                    &batch.labels[i],
                    self.num_classes,
                    &self.assigner,
                    &self.coder,
                )
            })
            .collect()
    }

    /// The loss of `out` (the head's raw outputs for `batch.images`).
    pub fn loss(&self, out: &DenseOutputs, batch: &Batch) -> Result<RetinaLoss> {
        let k = self.num_classes;
        let b = batch.boxes.len();
        let featmaps: Vec<ImageSize> = out
            .cls_logits
            .iter()
            .map(|t| ImageSize::new(t.dim(2).unwrap_or(0), t.dim(3).unwrap_or(0)))
            .collect();
        let targets = self.targets(&featmaps, batch)?;
        // [B, A·K, H, W] per level -> [B, H·W·A, K] -> concatenated -> [B·N, K]
        let flat = |ts: &[Tensor], c: usize| -> Result<Tensor> {
            let parts = ts
                .iter()
                .map(|t| {
                    let (bb, _, h, w) = t.dims4()?;
                    t.permute((0, 2, 3, 1))?
                        .reshape((bb, h * w * (t.dim(1)? / c), c))
                })
                .collect::<candle::Result<Vec<_>>>()?;
            Ok(Tensor::cat(&parts, 1)?.reshape(((), c))?)
        };
        let logits = flat(&out.cls_logits, k)?;
        let deltas = flat(&out.box_deltas, 4)?;
        let n = logits.dim(0)? / b;
        ensure!(
            targets.iter().all(|t| t.labels.len() == n),
            "{n} outputs per image, targets for {}",
            targets[0].labels.len()
        );
        let dev = logits.device();
        let mut onehot = vec![0f32; b * n * k];
        let mut weights = Vec::with_capacity(b * n);
        let mut pos_rows = Vec::new();
        let mut pos_targets = Vec::new();
        let mut avg = 0usize;
        for (i, t) in targets.iter().enumerate() {
            for (j, &l) in t.labels.iter().enumerate() {
                if (l as usize) < k {
                    onehot[(i * n + j) * k + l as usize] = 1.0;
                }
            }
            weights.extend_from_slice(&t.label_weights);
            pos_rows.extend(t.pos.iter().map(|&j| (i * n + j) as u32));
            pos_targets.extend(t.bbox_targets.iter().flatten().copied());
            avg += t.num_pos().max(1);
        }
        let onehot = Tensor::from_vec(onehot, (b * n, k), dev)?.to_dtype(logits.dtype())?;
        let weights = Tensor::from_vec(weights, (b * n, 1), dev)?.to_dtype(logits.dtype())?;
        let cls = (self.focal.sum(&logits, &onehot, &weights)? / avg as f64)?;
        let num_pos = pos_rows.len();
        let bbox = if num_pos > 0 {
            let idx = Tensor::from_vec(pos_rows, num_pos, dev)?;
            let pred = deltas.index_select(&idx, 0)?;
            let tgt = Tensor::from_vec(pos_targets, (num_pos, 4), dev)?.to_dtype(pred.dtype())?;
            let ones = Tensor::ones((1, 1), pred.dtype(), dev)?;
            (l1_sum(&pred, &tgt, &ones)? / avg as f64)?
        } else {
            // keep the graph connected: zero times the deltas
            (deltas.sum_all()? * 0.0)?
        };
        let total = (&cls + &bbox)?;
        Ok(RetinaLoss {
            total,
            cls,
            bbox,
            num_pos,
        })
    }
}
