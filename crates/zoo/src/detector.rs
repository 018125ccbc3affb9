//! What every image-level detector offers the dataset runner and the CLI.

use anyhow::Result;
use image::RgbImage;
use pvt_types::Detections;

/// A model that turns one image into detections in the image's own coordinates.
pub trait ImageDetector {
    /// Detections for `img` (boxes in its pixel coordinates, contiguous class indices).
    fn detect(&self, img: &RgbImage) -> Result<Detections>;

    /// Names of the contiguous classes.
    fn class_names(&self) -> &[String];

    /// Whether the detections carry instance masks.
    fn has_masks(&self) -> bool {
        false
    }
}
