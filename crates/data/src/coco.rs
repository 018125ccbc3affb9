//! The COCO instance annotation format (`instances_*.json`), as this crate writes it.
//!
//! Field names and meanings are those of the COCO dataset: image ids and category ids are the
//! file's own (category ids `1..=K` for the synthetic set), `bbox` is `[x, y, w, h]` in pixels,
//! `area` is the mask's pixel count, and `segmentation` is a compressed RLE
//! (`{"size": [h, w], "counts": "..."}`, pycocotools' `rleToString`), an uncompressed RLE or a list
//! of polygons.

use anyhow::{Context, Result};
use pvt_types::{ImageSize, Rle};
use serde::{Deserialize, Serialize};

/// A whole annotation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoFile {
    /// Free-form description of the file.
    #[serde(default)]
    pub info: CocoInfo,
    /// Always empty here; present because some readers expect the key.
    #[serde(default)]
    pub licenses: Vec<serde_json::Value>,
    /// The images.
    pub images: Vec<CocoImage>,
    /// The categories, in ascending id order.
    pub categories: Vec<CocoCategory>,
    /// The object annotations.
    pub annotations: Vec<CocoAnnotation>,
}

/// The `info` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CocoInfo {
    /// What the file holds.
    #[serde(default)]
    pub description: String,
    /// Version of the generator or dataset.
    #[serde(default)]
    pub version: String,
}

/// One image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CocoImage {
    /// Image id (unique in the file, non-zero here).
    pub id: u64,
    /// Path relative to the split's image folder.
    pub file_name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// One category record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CocoCategory {
    /// Category id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Parent category name.
    #[serde(default)]
    pub supercategory: String,
}

/// One object annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoAnnotation {
    /// Annotation id (unique in the file, non-zero: pycocotools never matches id 0).
    pub id: u64,
    /// The image it belongs to.
    pub image_id: u64,
    /// Its category.
    pub category_id: u64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: [f64; 4],
    /// Mask area in pixels.
    pub area: f64,
    /// 0 for single objects, 1 for crowd regions.
    pub iscrowd: u8,
    /// The object's mask.
    pub segmentation: CocoSegmentation,
}

/// A mask in one of COCO's three spellings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CocoSegmentation {
    /// Compressed RLE (`counts` is a string).
    CompressedRle {
        /// `[height, width]`.
        size: [usize; 2],
        /// pycocotools' `rleToString` form.
        counts: String,
    },
    /// Uncompressed RLE (`counts` is a list of runs, column-major, background first).
    UncompressedRle {
        /// `[height, width]`.
        size: [usize; 2],
        /// The runs.
        counts: Vec<u32>,
    },
    /// Polygons, each a flat `[x0, y0, x1, y1, ...]` list.
    Polygons(Vec<Vec<f64>>),
}

impl CocoSegmentation {
    /// The compressed-RLE record of a mask.
    pub fn from_rle(rle: &Rle) -> Self {
        let s = rle.size();
        Self::CompressedRle {
            size: [s.height, s.width],
            counts: rle.to_compressed(),
        }
    }

    /// The mask as an [`Rle`] for either RLE spelling; `None` for polygons (which need a
    /// rasterizer).
    pub fn to_rle(&self) -> Option<Result<Rle>> {
        match self {
            Self::CompressedRle { size, counts } => Some(
                Rle::from_compressed(counts, ImageSize::new(size[0], size[1]))
                    .context("bad compressed RLE"),
            ),
            Self::UncompressedRle { size, counts } => Some(
                Rle::new(ImageSize::new(size[0], size[1]), counts.clone())
                    .context("bad uncompressed RLE"),
            ),
            Self::Polygons(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvt_types::BitMask;

    #[test]
    fn segmentation_spellings_parse_and_convert() {
        let m = BitMask::new(ImageSize::new(2, 3), vec![0, 1, 1, 0, 0, 1]).unwrap();
        let rle = Rle::encode(&m);
        let seg = CocoSegmentation::from_rle(&rle);
        let json = serde_json::to_string(&seg).unwrap();
        let expected = format!(r#"{{"size":[2,3],"counts":"{}"}}"#, rle.to_compressed());
        assert_eq!(json, expected);
        let back: CocoSegmentation = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_rle().unwrap().unwrap(), rle);
        let un: CocoSegmentation =
            serde_json::from_str(r#"{"size":[2,3],"counts":[2,1,1,2]}"#).unwrap();
        assert_eq!(un.to_rle().unwrap().unwrap().decode(), m);
        let poly: CocoSegmentation = serde_json::from_str("[[0,0,1,0,1,1]]").unwrap();
        assert!(poly.to_rle().is_none());
    }
}
