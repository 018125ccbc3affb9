//! What every image-level detector offers the dataset runner and the CLI.

use anyhow::Result;
use image::RgbImage;
use pvt_backbone::AnyLoadInfo;
use pvt_types::{CategoryMap, Detections};

/// A model that turns one image into detections in the image's own coordinates.
pub trait ImageDetector: Send + Sync {
    /// Detections for `img` (boxes in its pixel coordinates, contiguous class indices).
    fn detect(&self, img: &RgbImage) -> Result<Detections>;

    /// Names of the contiguous classes.
    fn class_names(&self) -> &[String];

    /// Whether the detections carry instance masks.
    fn has_masks(&self) -> bool {
        false
    }

    /// What loading the checkpoint found (naming, dropped tensors), when it was loaded from one.
    fn load_info(&self) -> Option<&AnyLoadInfo> {
        None
    }
}

/// Default class names of a detector with `k` classes: COCO's for 80, `class i` otherwise.
pub(crate) fn default_class_names(k: usize) -> Vec<String> {
    if k == 80 {
        CategoryMap::coco80().names().to_vec()
    } else {
        (0..k).map(|i| format!("class {i}")).collect()
    }
}

/// `names`, if there is one per class of a detector with `k` classes.
pub(crate) fn checked_class_names(names: Vec<String>, k: usize) -> Result<Vec<String>> {
    anyhow::ensure!(
        names.len() == k,
        "{} class names for a detector of {k} classes",
        names.len()
    );
    Ok(names)
}
