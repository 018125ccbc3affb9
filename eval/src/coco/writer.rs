//! COCO results JSON from model outputs.
//!
//! One record per detection, as mmdetection's and detectron2's writers make them:
//! `{"image_id", "category_id", "bbox": [x, y, w, h], "score", "segmentation"?}` with
//! - boxes converted from `xyxy` to `xywh` in f64 after widening the f32 corners
//!   (mmdetection's `xyxy2xywh` on `tolist()` values);
//! - the dataset's own category ids, through a [`CategoryMap`];
//! - masks as compressed RLE (`{"size": [h, w], "counts": "..."}`).
//!
//! Every record has a box, so pycocotools' `loadRes` takes its box branch for the whole file:
//! segm area ranges then use the box area, exactly as for mmdetection's and detectron2's files.
//! The in-memory evaluator ([`super::stream`]) builds the same records, so evaluating in memory
//! and evaluating the written file give the same numbers.

use anyhow::{anyhow, bail, Context, Result};
use hotcoco::types::{Annotation, Segmentation};
use pvt_types::{CategoryMap, Detections};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// A compressed RLE as COCO JSON stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RleJson {
    /// `[height, width]`.
    pub size: [u32; 2],
    /// maskApi's compressed string.
    pub counts: String,
}

/// One COCO result record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRecord {
    /// The image id of the dataset.
    pub image_id: u64,
    /// The dataset's category id.
    pub category_id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Detection score.
    pub score: f64,
    /// Mask, when the model makes masks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<RleJson>,
}

impl ResultRecord {
    /// The record as a hotcoco annotation, as `loadRes` would read it from JSON.
    pub(crate) fn to_annotation(&self) -> Annotation {
        Annotation {
            image_id: self.image_id,
            category_id: self.category_id,
            bbox: Some(self.bbox),
            score: Some(self.score),
            segmentation: self
                .segmentation
                .as_ref()
                .map(|r| Segmentation::CompressedRle {
                    size: r.size,
                    counts: r.counts.clone(),
                }),
            ..Default::default()
        }
    }
}

/// The records of one image's detections.
pub fn records(image_id: u64, dets: &Detections, map: &CategoryMap) -> Result<Vec<ResultRecord>> {
    let masks = dets.masks();
    (0..dets.len())
        .map(|i| {
            let class = dets.classes()[i];
            let category_id = map.id(class).ok_or_else(|| {
                anyhow!(
                    "image {image_id}: detection #{i} has {class}, but the category map has {} \
                     classes",
                    map.len()
                )
            })?;
            let b = dets.boxes()[i].map(f64::from);
            let segmentation = masks.map(|m| {
                let s = m[i].size();
                RleJson {
                    size: [s.height as u32, s.width as u32],
                    counts: m[i].to_compressed(),
                }
            });
            Ok(ResultRecord {
                image_id,
                category_id,
                bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                score: f64::from(dets.scores()[i]),
                segmentation,
            })
        })
        .collect()
}

/// Write a results file atomically (a temporary file in the same folder, then a rename).
pub fn write_results<'a>(
    path: &Path,
    images: impl IntoIterator<Item = (u64, &'a Detections)>,
    map: &CategoryMap,
) -> Result<()> {
    let mut all = Vec::new();
    for (image_id, dets) in images {
        all.extend(records(image_id, dets, map)?);
    }
    let bytes = serde_json::to_vec(&all).context("serializing results")?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(name) = path.file_name() else {
        bail!("{} is not a file path", path.display());
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
