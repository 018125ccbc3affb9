//! COCO detection and instance-segmentation AP, equal to pycocotools 2.0.11.
//!
//! The engine is hotcoco 1.3.1 (IoU, matching, accumulation), measured equal to pycocotools to
//! the last bit on random data (`eval/tests/coco_parity.rs`). What this module adds:
//! - loading with strict, located errors ([`CocoGt`], [`CocoResults`]);
//! - a **fence** where hotcoco departs from pycocotools: a GT annotation with id 0 can never be
//!   matched in pycocotools (it stores matches as GT ids and tests them for being non-zero),
//!   hotcoco matches it. When the GT has such an annotation, [`evaluate`] re-accumulates from
//!   hotcoco's match records with pycocotools' rule ([`accumulate`]);
//! - the summary printed byte for byte as pycocotools prints it ([`CocoStats::summary`]);
//! - per-category AP and precision/recall curves ([`CocoEvaluation`]);
//! - streaming evaluation of model outputs ([`stream`]) and a results-JSON writer ([`writer`]).
//!
//! # Where hotcoco 1.3.1 departs from pycocotools 2.0.11, and what we do
//!
//! | hotcoco | pycocotools | here |
//! |---|---|---|
//! | matches a GT annotation with id 0 | never matches it (FP for the detection, FN for the GT) | fenced: pycocotools' rule ([`accumulate`]); streaming buffers and evaluates in batch |
//! | `summarize()` prints `Average Precision (AP)` with one space, and to stdout | `Average Precision  (AP)`, `Average Recall     (AR)` | our own [`CocoStats::summary`], byte-equal (tested) |
//! | loader rewrites `NaN`/`Infinity` to `null` and warns | `json.load` accepts them | error with line and column (bad input) |
//! | results on unknown image ids: a warning | assertion error | error naming the result |
//! | empty results list: evaluates | `IndexError` | warning, scores a run without detections (0 where GT exists) |
//! | `StreamingEval` renumbers GT ids per batch | ids from the file | irrelevant except for id 0 (fenced above) |
//!
//! Deliberate leniencies (pycocotools raises `KeyError`): a GT annotation without `area` gets
//! its mask's pixel count (else its box's `w*h`); one without `iscrowd` is not a crowd.
//! Deliberate strictness: negative box sizes, RLE sizes other than the image's, undecodable
//! RLE strings, results without `score`, and segm-branch results that are not compressed RLE
//! are errors (pycocotools computes nonsense or crashes).

pub mod accumulate;
pub mod load;
mod raster;
pub mod stats;
pub mod stream;
pub mod writer;

pub use accumulate::Accumulated;
pub use load::{load_pair, CocoGt, CocoResults};
pub use stats::CocoStats;

use anyhow::{bail, ensure, Context, Result};
use hotcoco::COCOeval;
use std::collections::HashMap;

/// The mask of a COCO polygon segmentation (the union of its parts, each a flat
/// `[x0, y0, x1, y1, ...]` list) on an image of `size`, exactly as pycocotools rasterizes it
/// (`annToRLE`: `frPyObjects` then `merge`; maskApi's `rleFrPoly`). An empty list is an empty
/// mask; a part with fewer than three points adds nothing.
pub fn polygons_to_rle(polys: &[Vec<f64>], size: pvt_types::ImageSize) -> Result<pvt_types::Rle> {
    let (h, w) = (size.height as u64, size.width as u64);
    ensure!(
        h > 0 && w > 0 && h * w <= u64::from(u32::MAX),
        "cannot rasterize polygons on a {}x{} (HxW) image",
        size.height,
        size.width
    );
    if let Some(bad) = polys.iter().flatten().find(|v| !v.is_finite()) {
        bail!("polygon coordinate {bad} is not finite");
    }
    let counts = raster::fr_polys(polys, h as u32, w as u32)
        .context("the polygon parts could not be merged")?;
    Ok(pvt_types::Rle::new(size, counts)?)
}

/// What is compared: boxes or masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    /// Box IoU (`bbox`).
    Bbox,
    /// Mask IoU on RLEs (`segm`).
    Segm,
}

impl IouType {
    pub(crate) fn to_hotcoco(self) -> hotcoco::params::IouType {
        match self {
            Self::Bbox => hotcoco::params::IouType::Bbox,
            Self::Segm => hotcoco::params::IouType::Segm,
        }
    }
}

impl std::fmt::Display for IouType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bbox => "bbox",
            Self::Segm => "segm",
        })
    }
}

impl std::str::FromStr for IouType {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bbox" => Ok(Self::Bbox),
            "segm" => Ok(Self::Segm),
            _ => bail!("unknown IoU type `{s}`; expected `bbox` or `segm`"),
        }
    }
}

/// The outcome of a COCO evaluation.
#[derive(Debug, Clone)]
pub struct CocoEvaluation {
    /// The 12 summary numbers.
    pub stats: CocoStats,
    /// The precision/recall tables they come from.
    pub accumulated: Accumulated,
    /// Category names by id, from the ground truth.
    pub category_names: HashMap<u64, String>,
    /// Whether the GT-id-0 fence was used (see the module docs).
    pub fenced_zero_id: bool,
}

impl CocoEvaluation {
    /// Per-category AP (area all, 100 detections), in category-id order, with names;
    /// `None` for categories without GT.
    pub fn per_category(&self) -> Vec<(u64, String, Option<f64>)> {
        self.accumulated
            .per_category_ap()
            .into_iter()
            .map(|(id, ap)| {
                (
                    id,
                    self.category_names.get(&id).cloned().unwrap_or_default(),
                    ap,
                )
            })
            .collect()
    }
}

/// Evaluate results against ground truth, as `COCOeval(gt, dt, iou_type)` followed by
/// `evaluate(); accumulate(); summarize()`.
pub fn evaluate(gt: &CocoGt, results: CocoResults, iou_type: IouType) -> Result<CocoEvaluation> {
    gt.check_for(iou_type)?;
    let dt = hotcoco::COCO::from_dataset(hotcoco::types::Dataset {
        images: gt.coco.dataset.images.clone(),
        categories: gt.coco.dataset.categories.clone(),
        annotations: results.anns,
        ..Default::default()
    });
    let mut ev = COCOeval::new(gt.coco.clone(), dt, iou_type.to_hotcoco());
    ev.evaluate()
        .map_err(|e| anyhow::anyhow!("evaluation failed: {e}"))?;
    let accumulated = if gt.has_zero_ann_id {
        let dt_coco = ev.coco_dt().clone();
        let area = move |id: u64| dt_coco.get_ann(id).and_then(|a| a.area).unwrap_or(0.0);
        Accumulated::fenced(&ev, &area)
    } else {
        ev.accumulate();
        match Accumulated::from_hotcoco(&ev) {
            Some(a) => a,
            None => bail!("hotcoco produced no accumulated tables"),
        }
    };
    Ok(CocoEvaluation {
        stats: accumulated.stats(),
        accumulated,
        category_names: gt.categories().into_iter().collect(),
        fenced_zero_id: gt.has_zero_ann_id,
    })
}
