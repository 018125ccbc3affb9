//! A semantic segmentation map: one class label per pixel.

use crate::ImageSize;
use serde::{Deserialize, Serialize};

/// Why a [`SegMap`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegMapError {
    /// Labels given.
    pub got: usize,
    /// The size given.
    pub size: ImageSize,
}

impl std::fmt::Display for SegMapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segmentation map of size {} needs {} labels, got {}",
            self.size,
            self.size.area(),
            self.got
        )
    }
}

impl std::error::Error for SegMapError {}

/// Per-pixel class labels, row-major (`labels[y * width + x]`), at the original image size.
///
/// Labels are contiguous class indices `0..K`; [`SegMap::IGNORE`] (255) marks pixels that are
/// not scored, as mmsegmentation's `ignore_index` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegMap {
    size: ImageSize,
    labels: Vec<u16>,
}

impl SegMap {
    /// The label of pixels that are not scored (mmsegmentation's default `ignore_index`).
    pub const IGNORE: u16 = 255;

    /// A map from row-major labels; their number must be `size.area()`.
    pub fn new(size: ImageSize, labels: Vec<u16>) -> Result<Self, SegMapError> {
        if labels.len() != size.area() {
            return Err(SegMapError {
                got: labels.len(),
                size,
            });
        }
        Ok(Self { size, labels })
    }

    /// The map size.
    pub fn size(&self) -> ImageSize {
        self.size
    }

    /// Row-major labels.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }

    /// The label at row `y`, column `x`, `None` outside the map.
    pub fn get(&self, y: usize, x: usize) -> Option<u16> {
        if y < self.size.height && x < self.size.width {
            self.labels.get(y * self.size.width + x).copied()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_constructor_and_indexing() {
        let size = ImageSize::new(2, 3);
        assert!(SegMap::new(size, vec![0; 5]).is_err());
        let m = SegMap::new(size, vec![0, 1, 2, 3, 4, 5]).expect("valid");
        assert_eq!(m.get(1, 0), Some(3));
        assert_eq!(m.get(0, 3), None);
    }
}
