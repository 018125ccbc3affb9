//! Loading and checking COCO ground truth and results, as pycocotools' `COCO()` and `loadRes`.
//!
//! The checks reject what pycocotools rejects (results on unknown images) or crashes on (no
//! score, polygon segm results without a box), and what makes its numbers meaningless (negative
//! box sizes, RLE sizes other than the image's), with the file and the record's position. Unknown
//! category ids are dropped as pycocotools drops them, but counted and reported.

use super::IouType;
use crate::json_error;
use anyhow::{anyhow, bail, Result};
use hotcoco::types::{Annotation, Dataset, Segmentation};
use hotcoco::COCO;
use pvt_types::{CategoryMap, ImageSize};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// COCO ground truth: images, categories and annotations, checked and indexed.
pub struct CocoGt {
    pub(crate) coco: Arc<COCO>,
    pub(crate) source: String,
    /// Whether an annotation has id 0, which pycocotools can never match.
    pub(crate) has_zero_ann_id: bool,
    warnings: Vec<String>,
}

impl CocoGt {
    /// Load a COCO annotation file (`instances_*.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = json_error::read_file(path)?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Parse COCO annotation JSON; `source` names it in errors.
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self> {
        let dataset: Dataset = json_error::parse(bytes, source)?;
        Self::from_dataset(dataset, source)
    }

    /// Load ground truth prepared for `iou_type`: for `segm`, polygons are rasterized to RLE
    /// here, in parallel (the same maskApi-exact rasterizer hotcoco would run during matching).
    pub fn from_file_for(path: &Path, iou_type: IouType) -> Result<Self> {
        let bytes = json_error::read_file(path)?;
        let source = path.display().to_string();
        let mut dataset: Dataset = json_error::parse(&bytes, &source)?;
        drop(bytes);
        if iou_type == IouType::Segm {
            check_dataset(&dataset, &source)?;
            rasterize_polygons(&mut dataset);
        }
        Self::from_dataset(dataset, &source)
    }

    /// Check and index an already-parsed dataset.
    pub fn from_dataset(dataset: Dataset, source: &str) -> Result<Self> {
        let warnings = check_dataset(&dataset, source)?;
        let has_zero_ann_id = dataset.annotations.iter().any(|a| a.id == 0);
        let mut coco = COCO::from_dataset(dataset);
        // pycocotools requires `area`; we derive a missing one (mask pixels, else box w*h) once
        // here rather than in every evaluation.
        coco.fill_missing_areas();
        Ok(Self {
            coco: Arc::new(coco),
            source: source.to_string(),
            has_zero_ann_id,
            warnings,
        })
    }

    /// Where the ground truth came from (a path or a caller-given name).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Non-fatal problems found while loading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The underlying hotcoco dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.coco.dataset
    }

    /// Image ids in ascending order (the order pycocotools evaluates them in).
    pub fn image_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.coco.dataset.images.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The size of an image, `None` for an unknown id.
    pub fn image_size(&self, image_id: u64) -> Option<ImageSize> {
        self.coco
            .get_img(image_id)
            .map(|i| ImageSize::new(i.height as usize, i.width as usize))
    }

    /// Category ids in ascending order (pycocotools' K axis) and their names.
    pub fn categories(&self) -> Vec<(u64, String)> {
        let mut c: Vec<(u64, String)> = self
            .coco
            .dataset
            .categories
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect();
        c.sort_by_key(|(id, _)| *id);
        c
    }

    /// Contiguous class index <-> category id, in ascending id order (mmdetection's order for
    /// COCO, where the file lists categories by id).
    pub fn category_map(&self) -> Result<CategoryMap> {
        let (ids, names) = self.categories().into_iter().unzip();
        CategoryMap::new(ids, names).map_err(|e| anyhow!("{}: {e}", self.source))
    }

    /// Check that every annotation of an evaluated image has what `iou_type` reads.
    pub(crate) fn check_for(&self, iou_type: IouType) -> Result<()> {
        let anns = &self.coco.dataset.annotations;
        let missing = anns.iter().position(|a| {
            self.coco.get_img(a.image_id).is_some()
                && match iou_type {
                    IouType::Bbox => a.bbox.is_none(),
                    IouType::Segm => a.segmentation.is_none(),
                }
        });
        if let Some(i) = missing {
            let what = match iou_type {
                IouType::Bbox => "bbox",
                IouType::Segm => "segmentation",
            };
            bail!(
                "{}: annotations[{i}] (id {}) has no `{what}`, which {iou_type} evaluation needs",
                self.source,
                anns[i].id
            );
        }
        Ok(())
    }
}

impl std::fmt::Debug for CocoGt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.coco.dataset;
        f.debug_struct("CocoGt")
            .field("source", &self.source)
            .field("images", &d.images.len())
            .field("annotations", &d.annotations.len())
            .field("categories", &d.categories.len())
            .finish()
    }
}

impl std::fmt::Debug for CocoResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CocoResults")
            .field("results", &self.anns.len())
            .field("dropped_unknown_category", &self.dropped_unknown_category)
            .finish()
    }
}

/// Load ground truth and results for `iou_type` concurrently (the results file is parsed while
/// the ground truth is loaded and, for `segm`, rasterized), then check the results against it.
pub fn load_pair(gt: &Path, results: &Path, iou_type: IouType) -> Result<(CocoGt, CocoResults)> {
    let source = results.display().to_string();
    let (gt, anns) = rayon::join(
        || CocoGt::from_file_for(gt, iou_type),
        || -> Result<Vec<Annotation>> {
            let bytes = json_error::read_file(results)?;
            json_error::parse(&bytes, &source)
        },
    );
    let gt = gt?;
    let res = CocoResults::from_annotations(anns?, &source, &gt)?;
    Ok((gt, res))
}

/// Check a ground-truth dataset; returns warnings.
fn check_dataset(dataset: &Dataset, source: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut sizes = HashMap::with_capacity(dataset.images.len());
    for (i, img) in dataset.images.iter().enumerate() {
        if sizes.insert(img.id, (img.height, img.width)).is_some() {
            bail!("{source}: images[{i}]: image id {} appears twice", img.id);
        }
    }
    let mut cats = HashSet::new();
    for (i, c) in dataset.categories.iter().enumerate() {
        if !cats.insert(c.id) {
            bail!(
                "{source}: categories[{i}]: category id {} appears twice",
                c.id
            );
        }
    }
    let mut orphans = 0usize;
    for (i, ann) in dataset.annotations.iter().enumerate() {
        let Some(&(h, w)) = sizes.get(&ann.image_id) else {
            orphans += 1;
            continue;
        };
        let at = || format!("{source}: annotations[{i}] (id {})", ann.id);
        if let Some(b) = ann.bbox {
            if b[2] < 0.0 || b[3] < 0.0 {
                bail!("{}: bbox {b:?} has a negative width or height", at());
            }
        }
        if let Some(a) = ann.area {
            if a < 0.0 {
                bail!("{}: negative area {a}", at());
            }
        }
        if let Some(seg) = &ann.segmentation {
            check_segmentation(seg, h, w).map_err(|e| anyhow!("{}: {e}", at()))?;
        }
    }
    if orphans > 0 {
        warnings.push(format!(
            "{source}: {orphans} annotation(s) name an image id absent from `images`; \
             they are never evaluated (as in pycocotools)"
        ));
    }
    Ok(warnings)
}

/// Replace every polygon segmentation by its RLE (maskApi's `rleFrPoly` at the image size, as
/// hotcoco's `ann_to_rle` and pycocotools' `annToRLE` rasterize it; see [`super::raster`]), in
/// parallel.
fn rasterize_polygons(dataset: &mut Dataset) {
    let sizes: HashMap<u64, (u32, u32)> = dataset
        .images
        .iter()
        .map(|i| (i.id, (i.height, i.width)))
        .collect();
    dataset.annotations.par_iter_mut().for_each(|a| {
        let Some(&(h, w)) = sizes.get(&a.image_id) else {
            return;
        };
        if h == 0 || w == 0 || u64::from(h) * u64::from(w) > u64::from(u32::MAX) {
            return;
        }
        if let Some(Segmentation::Polygon(polys)) = &a.segmentation {
            if let Some(counts) = super::raster::fr_polys(polys, h, w) {
                a.segmentation = Some(Segmentation::UncompressedRle {
                    size: [h, w],
                    counts,
                });
            }
        }
    });
}

/// Check a segmentation against its image's `h x w`.
fn check_segmentation(seg: &Segmentation, h: u32, w: u32) -> Result<()> {
    let check_size = |size: &[u32; 2]| -> Result<()> {
        if size[0] != h || size[1] != w {
            bail!(
                "RLE size {}x{} differs from the image's {h}x{w} (HxW)",
                size[0],
                size[1]
            );
        }
        Ok(())
    };
    match seg {
        Segmentation::CompressedRle { size, counts } => {
            check_size(size)?;
            // Decodes and validates without building the run list.
            hotcoco::mask::area_from_string(counts, h, w)
                .map_err(|e| anyhow!("bad compressed RLE: {e}"))?;
        }
        Segmentation::UncompressedRle { size, counts } => {
            check_size(size)?;
            // Runs that stop short are background, as pycocotools decodes them; an overrun is not.
            hotcoco::mask::check_counts(counts, h, w).map_err(|e| anyhow!("bad RLE: {e}"))?;
        }
        Segmentation::Polygon(polys) => {
            // pycocotools 2.0.11 reads a first polygon of 4 numbers as a box and fails, and
            // cannot read an empty list or a shorter polygon at all.
            if polys.first().is_none_or(|p| p.len() <= 4) {
                bail!("polygon list is empty or its first polygon has fewer than 3 points");
            }
            if let Some(p) = polys.iter().find(|p| p.len() % 2 == 1) {
                bail!("polygon with an odd number of coordinates ({})", p.len());
            }
        }
        Segmentation::Rect(_) => {}
        _ => bail!("unsupported segmentation format"),
    }
    Ok(())
}

/// Which `loadRes` branch a results list takes: decided by its **first** result (item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultKind {
    /// The first result has a box: every area is `w * h`.
    Bbox,
    /// The first result has no box: areas are mask pixel counts.
    Segm,
}

/// Detections in COCO results form, checked against a ground truth and completed as
/// pycocotools' `loadRes` completes them (ids, areas, boxes from masks, box polygons).
pub struct CocoResults {
    pub(crate) anns: Vec<Annotation>,
    warnings: Vec<String>,
    dropped_unknown_category: usize,
}

impl CocoResults {
    /// Load a results file (a JSON array of `{image_id, category_id, bbox|segmentation, score}`).
    pub fn from_file(path: &Path, gt: &CocoGt) -> Result<Self> {
        let bytes = json_error::read_file(path)?;
        Self::from_json(&bytes, &path.display().to_string(), gt)
    }

    /// Parse results JSON; `source` names it in errors.
    pub fn from_json(bytes: &[u8], source: &str, gt: &CocoGt) -> Result<Self> {
        let value: Vec<Annotation> = json_error::parse(bytes, source)?;
        Self::from_annotations(value, source, gt)
    }

    /// Check and complete parsed results.
    pub fn from_annotations(anns: Vec<Annotation>, source: &str, gt: &CocoGt) -> Result<Self> {
        let mut warnings = Vec::new();
        let Some(first) = anns.first() else {
            warnings.push(format!(
                "{source}: the results list is empty; scoring a run with no detections \
                 (pycocotools would raise IndexError)"
            ));
            return Ok(Self {
                anns,
                warnings,
                dropped_unknown_category: 0,
            });
        };
        let kind = if first.bbox.is_some() {
            ResultKind::Bbox
        } else if first.segmentation.is_some() {
            ResultKind::Segm
        } else {
            bail!("{source}: result [0] has neither `bbox` nor `segmentation`");
        };
        let coco = &gt.coco;
        let total = anns.len();
        let mut anns = anns;
        // loadRes numbers results 1.. in file order, dropped ones included.
        for (i, a) in anns.iter_mut().enumerate() {
            a.id = i as u64 + 1;
        }
        anns.retain(|a| coco.get_cat(a.category_id).is_some());
        let dropped = total - anns.len();
        if dropped > 0 {
            warnings.push(format!(
                "{source}: dropped {dropped} of {total} result(s) whose category_id is not in the \
                 ground truth's categories (pycocotools drops them silently)"
            ));
        }
        // Completed in place, in parallel; the first bad result in file order is reported.
        let first_error = anns
            .par_iter_mut()
            .filter_map(|a| complete(a, kind, coco).err().map(|e| (a.id, a.image_id, e)))
            .min_by_key(|(id, _, _)| *id);
        if let Some((id, image_id, e)) = first_error {
            bail!("{source}: result [{}] (image_id {image_id}): {e}", id - 1);
        }
        Ok(Self {
            anns,
            warnings,
            dropped_unknown_category: dropped,
        })
    }

    /// Number of results kept for evaluation.
    pub fn len(&self) -> usize {
        self.anns.len()
    }

    /// Whether no result is kept.
    pub fn is_empty(&self) -> bool {
        self.anns.is_empty()
    }

    /// How many results named a category the ground truth does not have.
    pub fn dropped_unknown_category(&self) -> usize {
        self.dropped_unknown_category
    }

    /// Non-fatal problems found while loading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Check one result and fill what `loadRes` fills.
fn complete(a: &mut Annotation, kind: ResultKind, coco: &COCO) -> Result<()> {
    let Some(img) = coco.get_img(a.image_id) else {
        bail!("image_id is not in the ground truth (pycocotools: \"Results do not correspond to current coco set\")");
    };
    let (h, w) = (img.height, img.width);
    match a.score {
        None => bail!("no `score`"),
        Some(s) if !s.is_finite() => bail!("score {s} is not finite"),
        Some(_) => {}
    }
    if let Some(b) = a.bbox {
        if !b.iter().all(|v| v.is_finite()) {
            bail!("bbox {b:?} is not finite");
        }
        if b[2] < 0.0 || b[3] < 0.0 {
            bail!("bbox {b:?} (xywh) has a negative width or height");
        }
    }
    if let Some(seg) = &a.segmentation {
        check_segmentation(seg, h, w)?;
    }
    a.iscrowd = false;
    match kind {
        ResultKind::Bbox => {
            let Some(b) = a.bbox else {
                bail!("no `bbox`, but the first result has one (pycocotools raises KeyError)");
            };
            a.area = Some(b[2] * b[3]);
            if a.segmentation.is_none() {
                a.segmentation = Some(Segmentation::Rect(b));
            }
        }
        ResultKind::Segm => {
            let Some(Segmentation::CompressedRle { counts, .. }) = &a.segmentation else {
                bail!(
                    "the first result has no `bbox`, so every result needs a compressed RLE \
                     `segmentation` (string `counts`), as pycocotools' loadRes requires"
                );
            };
            let (area, bbox) = hotcoco::mask::area_and_bbox_from_string(counts, h, w)
                .map_err(|e| anyhow!("bad compressed RLE: {e}"))?;
            a.area = Some(area as f64);
            if a.bbox.is_none() {
                a.bbox = Some(bbox);
            }
        }
    }
    Ok(())
}
