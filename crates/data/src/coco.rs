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

    /// The mask as an [`Rle`] on an image of `image` size, as pycocotools' `annToRLE` reads
    /// it: either RLE spelling is decoded (its `size` must be the image's), polygons are
    /// rasterized ([`pvt_eval::coco::polygons_to_rle`], maskApi's `rleFrPoly`).
    pub fn to_rle(&self, image: ImageSize) -> Result<Rle> {
        let rle = match self {
            Self::CompressedRle { size, counts } => {
                Rle::from_compressed(counts, ImageSize::new(size[0], size[1]))
                    .context("bad compressed RLE")?
            }
            Self::UncompressedRle { size, counts } => {
                Rle::new(ImageSize::new(size[0], size[1]), counts.clone())
                    .context("bad uncompressed RLE")?
            }
            Self::Polygons(polys) => pvt_eval::coco::polygons_to_rle(polys, image)?,
        };
        anyhow::ensure!(
            rle.size() == image,
            "RLE size {}x{} differs from the image's {}x{} (HxW)",
            rle.size().height,
            rle.size().width,
            image.height,
            image.width
        );
        Ok(rle)
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
        assert_eq!(back.to_rle(m.size()).unwrap(), rle);
        let un: CocoSegmentation =
            serde_json::from_str(r#"{"size":[2,3],"counts":[2,1,1,2]}"#).unwrap();
        assert_eq!(un.to_rle(m.size()).unwrap().decode(), m);
        let err = un.to_rle(ImageSize::new(3, 2)).unwrap_err().to_string();
        assert!(err.contains("2x3") && err.contains("3x2"), "{err}");
    }

    /// Polygons rasterized as pycocotools does: `mask.decode(mask.merge(mask.frPyObjects(polys,
    /// 5, 6)))` gives these rows (pycocotools 2.0.11), and the compressed RLE is its string.
    #[test]
    fn polygons_rasterize_as_pycocotools() {
        let seg: CocoSegmentation =
            serde_json::from_str("[[1,1,4,1,4,3,1,3],[0.5,3.6,2.2,4.9,0,4.9]]").unwrap();
        let rle = seg.to_rle(ImageSize::new(5, 6)).unwrap();
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0, 0, 0,
            0, 1, 1, 1, 0, 0,
            0, 1, 1, 1, 0, 0,
            0, 0, 0, 0, 0, 0,
            1, 1, 0, 0, 0, 0,
        ];
        assert_eq!(rle.decode().data(), expected);
        assert_eq!(rle.to_compressed(), "41110O01209");
        let empty: CocoSegmentation = serde_json::from_str("[]").unwrap();
        assert_eq!(empty.to_rle(ImageSize::new(5, 6)).unwrap().area(), 0);
    }
}
