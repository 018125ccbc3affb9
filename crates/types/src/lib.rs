//! Plain data passed between the PVT crates.
//!
//! This crate has no candle dependency: it holds the values that cross crate boundaries on the
//! host side (image sizes, detections, segmentation maps, category maps), so that the evaluation
//! crate can build without any tensor library.
//!
//! Conventions, stated once for the whole workspace:
//! - sizes are `(height, width)` in pixels;
//! - boxes are `[x1, y1, x2, y2]` in continuous pixel coordinates, no `+1` in widths
//!   (width = `x2 - x1`), as mmdetection and torchvision do;
//! - class indices are contiguous `0..K`; dataset ids (COCO 1..90) appear only through
//!   a category map.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// An image size in pixels, `(height, width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageSize {
    /// Number of rows.
    pub height: usize,
    /// Number of columns.
    pub width: usize,
}

impl ImageSize {
    /// A size from `(height, width)`.
    pub const fn new(height: usize, width: usize) -> Self {
        Self { height, width }
    }

    /// Number of pixels.
    pub const fn area(&self) -> usize {
        self.height * self.width
    }
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} (HxW)", self.height, self.width)
    }
}

pub mod category;
pub mod detections;
pub mod rle;
pub mod segmap;

pub use category::{CategoryMap, ClassIdx};
pub use detections::{Detection, Detections};
pub use rle::{BitMask, Rle};
pub use segmap::SegMap;
