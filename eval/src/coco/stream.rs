//! COCO evaluation while a dataset streams, from model outputs.
//!
//! [`CocoStreamEvaluator::process`] takes one image's [`Detections`], turns them into the
//! records [`super::writer`] would write, and matches them at once (hotcoco's
//! `StreamingEval`). What is kept per detection is its score and match bits (about 20 bytes per
//! detection and IoU type), not the detections or a results file. [`CocoStreamEvaluator::finish`]
//! adds every ground-truth image that was never processed as an image without detections (as a
//! results file without them would score) and returns the same numbers as evaluating the file
//! [`super::writer::write_results`] writes.
//!
//! Fence: when the ground truth has an annotation with id 0 (which pycocotools never matches,
//! see [`super`]), hotcoco's streaming path cannot apply that rule; the evaluator then keeps the
//! records and evaluates them in one batch at the end, trading the memory bound for equality.

use super::load::{CocoGt, CocoResults};
use super::writer::records;
use super::{evaluate, Accumulated, CocoEvaluation, IouType};
use anyhow::{anyhow, bail, Result};
use hotcoco::types::{Annotation, Image};
use hotcoco::{EvalMode, StreamingEval};
use pvt_types::{CategoryMap, Detections};
use std::collections::HashSet;
use std::sync::Arc;

/// Images per batch when unseen images are added at the end.
const FINISH_BATCH: usize = 256;

enum Mode {
    /// One hotcoco streaming evaluator per IoU type.
    Streaming(Vec<(IouType, StreamingEval)>),
    /// GT-id-0 fence: keep the records, evaluate in one batch.
    Buffered(Vec<Annotation>),
}

/// Streaming COCO evaluator for one or more IoU types at once.
pub struct CocoStreamEvaluator {
    gt: Arc<CocoGt>,
    map: CategoryMap,
    iou_types: Vec<IouType>,
    seen: HashSet<u64>,
    mode: Mode,
}

impl CocoStreamEvaluator {
    /// An evaluator against `gt`, mapping class indices through `map` (whose ids must all be GT
    /// categories), for each of `iou_types`.
    pub fn new(gt: Arc<CocoGt>, map: CategoryMap, iou_types: &[IouType]) -> Result<Self> {
        if iou_types.is_empty() {
            bail!("no IoU type to evaluate");
        }
        let gt_ids: HashSet<u64> = gt.categories().into_iter().map(|(id, _)| id).collect();
        if let Some(id) = map.ids().iter().find(|id| !gt_ids.contains(id)) {
            bail!("category map id {id} is not a category of {}", gt.source());
        }
        for &t in iou_types {
            gt.check_for(t)?;
        }
        let mode = if gt.has_zero_ann_id {
            Mode::Buffered(Vec::new())
        } else {
            let cats = gt.dataset().categories.clone();
            let evs = iou_types
                .iter()
                .map(|&t| {
                    let params = EvalMode::Coco.default_params(t.to_hotcoco());
                    StreamingEval::new(params, EvalMode::Coco, cats.clone())
                        .map(|e| (t, e))
                        .map_err(|e| anyhow!("{e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            Mode::Streaming(evs)
        };
        Ok(Self {
            gt,
            map,
            iou_types: iou_types.to_vec(),
            seen: HashSet::new(),
            mode,
        })
    }

    /// Match one image's detections. The image must be in the GT, at the GT's size, and not
    /// processed before; masks are needed for `segm`.
    pub fn process(&mut self, image_id: u64, dets: &Detections) -> Result<()> {
        let Some(size) = self.gt.image_size(image_id) else {
            bail!("image id {image_id} is not in {}", self.gt.source());
        };
        if dets.image_size() != size {
            bail!(
                "image {image_id}: detections are for an image of {}, the ground truth says {size}",
                dets.image_size()
            );
        }
        if self.iou_types.contains(&IouType::Segm) && dets.masks().is_none() && !dets.is_empty() {
            bail!("image {image_id}: segm evaluation needs masks, these detections have none");
        }
        if !self.seen.insert(image_id) {
            bail!("image {image_id} was already processed");
        }
        let dt: Vec<Annotation> = records(image_id, dets, &self.map)?
            .iter()
            .map(|r| r.to_annotation())
            .collect();
        self.feed(&[image_id], dt)
    }

    fn feed(&mut self, image_ids: &[u64], dt: Vec<Annotation>) -> Result<()> {
        match &mut self.mode {
            Mode::Buffered(all) => all.extend(dt),
            Mode::Streaming(evs) => {
                let coco = &self.gt.coco;
                let images: Vec<Image> = image_ids
                    .iter()
                    .filter_map(|&id| coco.get_img(id).cloned())
                    .collect();
                let gt_anns: Vec<Annotation> = image_ids
                    .iter()
                    .flat_map(|&id| coco.get_ann_ids_for_img(id).iter())
                    .filter_map(|&ann_id| coco.get_ann(ann_id).cloned())
                    .collect();
                let n = evs.len();
                let mut dt = Some(dt);
                for (i, (_, ev)) in evs.iter_mut().enumerate() {
                    // The last evaluator takes the detections by value; the others a copy.
                    let d = if i + 1 == n { dt.take() } else { dt.clone() }.unwrap_or_default();
                    ev.update(images.clone(), gt_anns.clone(), d)
                        .map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Number of images processed so far.
    pub fn images_seen(&self) -> usize {
        self.seen.len()
    }

    /// Add the unprocessed GT images (no detections) and evaluate, one result per IoU type in
    /// the order given to [`Self::new`].
    pub fn finish(mut self) -> Result<Vec<(IouType, CocoEvaluation)>> {
        let unseen: Vec<u64> = self
            .gt
            .image_ids()
            .into_iter()
            .filter(|id| !self.seen.contains(id))
            .collect();
        if matches!(self.mode, Mode::Streaming(_)) {
            for chunk in unseen.chunks(FINISH_BATCH) {
                self.feed(chunk, Vec::new())?;
            }
        }
        let names: std::collections::HashMap<u64, String> =
            self.gt.categories().into_iter().collect();
        match self.mode {
            Mode::Buffered(anns) => self
                .iou_types
                .iter()
                .map(|&t| {
                    let res = CocoResults::from_annotations(anns.clone(), "<in memory>", &self.gt)?;
                    Ok((t, evaluate(&self.gt, res, t)?))
                })
                .collect(),
            Mode::Streaming(evs) => evs
                .into_iter()
                .map(|(t, ev)| {
                    let mut ev = ev.finalize();
                    ev.accumulate();
                    let accumulated = Accumulated::from_hotcoco(&ev)
                        .ok_or_else(|| anyhow!("hotcoco produced no accumulated tables"))?;
                    let eval = CocoEvaluation {
                        stats: accumulated.stats(),
                        accumulated,
                        category_names: names.clone(),
                        fenced_zero_id: false,
                    };
                    Ok((t, eval))
                })
                .collect(),
        }
    }
}
