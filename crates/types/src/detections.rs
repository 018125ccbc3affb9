//! Per-image detector output on the host side.
//!
//! Boxes are `[x1, y1, x2, y2]` in **original-image** pixel coordinates (see the crate docs for
//! the box convention), classes are contiguous [`ClassIdx`] values (map them to dataset ids with
//! a [`CategoryMap`](crate::category::CategoryMap)), and masks, when the model makes them, are
//! [`Rle`]s at the original image size.

use crate::category::ClassIdx;
use crate::rle::Rle;
use crate::ImageSize;

/// Why a [`Detections`] value could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectionsError {
    /// The per-detection vectors have different lengths.
    Length {
        /// Number of boxes.
        boxes: usize,
        /// Number of scores.
        scores: usize,
        /// Number of class indices.
        classes: usize,
        /// Number of masks, if any.
        masks: Option<usize>,
    },
    /// A box or score is NaN or infinite.
    NonFinite {
        /// Index of the detection.
        index: usize,
    },
    /// A box has `x2 < x1` or `y2 < y1`.
    NegativeSize {
        /// Index of the detection.
        index: usize,
        /// The box.
        bbox: [f32; 4],
    },
    /// A mask is not at the image size.
    MaskSize {
        /// Index of the detection.
        index: usize,
        /// The mask size.
        mask: ImageSize,
        /// The image size.
        image: ImageSize,
    },
}

impl std::fmt::Display for DetectionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Length {
                boxes,
                scores,
                classes,
                masks,
            } => write!(
                f,
                "detections need equal lengths: {boxes} boxes, {scores} scores, {classes} classes, \
                 {masks:?} masks"
            ),
            Self::NonFinite { index } => {
                write!(f, "detection #{index} has a NaN or infinite box or score")
            }
            Self::NegativeSize { index, bbox } => {
                write!(
                    f,
                    "detection #{index} has a box with negative size: {bbox:?} (xyxy)"
                )
            }
            Self::MaskSize { index, mask, image } => {
                write!(
                    f,
                    "detection #{index} has a mask of size {mask}, the image is {image}"
                )
            }
        }
    }
}

impl std::error::Error for DetectionsError {}

/// The detections of one image: equal-length boxes, scores, classes and optional masks.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    image_size: ImageSize,
    boxes: Vec<[f32; 4]>,
    scores: Vec<f32>,
    classes: Vec<ClassIdx>,
    masks: Option<Vec<Rle>>,
}

impl Detections {
    /// Checked constructor: equal lengths, finite values, `x2 >= x1` and `y2 >= y1`, masks at
    /// `image_size`.
    pub fn new(
        image_size: ImageSize,
        boxes: Vec<[f32; 4]>,
        scores: Vec<f32>,
        classes: Vec<ClassIdx>,
        masks: Option<Vec<Rle>>,
    ) -> Result<Self, DetectionsError> {
        let n = boxes.len();
        if scores.len() != n || classes.len() != n || masks.as_ref().is_some_and(|m| m.len() != n) {
            return Err(DetectionsError::Length {
                boxes: n,
                scores: scores.len(),
                classes: classes.len(),
                masks: masks.as_ref().map(Vec::len),
            });
        }
        for (index, (b, s)) in boxes.iter().zip(&scores).enumerate() {
            if !(b.iter().all(|v| v.is_finite()) && s.is_finite()) {
                return Err(DetectionsError::NonFinite { index });
            }
            if b[2] < b[0] || b[3] < b[1] {
                return Err(DetectionsError::NegativeSize { index, bbox: *b });
            }
        }
        if let Some(masks) = &masks {
            if let Some((index, m)) = masks
                .iter()
                .enumerate()
                .find(|(_, m)| m.size() != image_size)
            {
                return Err(DetectionsError::MaskSize {
                    index,
                    mask: m.size(),
                    image: image_size,
                });
            }
        }
        Ok(Self {
            image_size,
            boxes,
            scores,
            classes,
            masks,
        })
    }

    /// No detections on an image of `image_size`.
    pub fn empty(image_size: ImageSize) -> Self {
        Self {
            image_size,
            boxes: Vec::new(),
            scores: Vec::new(),
            classes: Vec::new(),
            masks: None,
        }
    }

    /// The original image size the coordinates refer to.
    pub fn image_size(&self) -> ImageSize {
        self.image_size
    }

    /// Number of detections.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Boxes, `[x1, y1, x2, y2]`, original-image pixels.
    pub fn boxes(&self) -> &[[f32; 4]] {
        &self.boxes
    }

    /// Scores.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// Contiguous class indices.
    pub fn classes(&self) -> &[ClassIdx] {
        &self.classes
    }

    /// Masks at the image size, if the model makes them.
    pub fn masks(&self) -> Option<&[Rle]> {
        self.masks.as_deref()
    }

    /// Detection `i` as one record, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Detection<'_>> {
        Some(Detection {
            bbox: *self.boxes.get(i)?,
            score: self.scores[i],
            class: self.classes[i],
            mask: self.masks.as_ref().map(|m| &m[i]),
        })
    }

    /// The detections as records, in order (best score first for the models' outputs).
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            dets: self,
            next: 0,
        }
    }
}

/// One detection of a [`Detections`] value, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection<'a> {
    /// `[x1, y1, x2, y2]` in original-image pixels.
    pub bbox: [f32; 4],
    /// The score.
    pub score: f32,
    /// The contiguous class index.
    pub class: ClassIdx,
    /// The instance mask at the image size, when the model makes masks.
    pub mask: Option<&'a Rle>,
}

/// Iterator over the records of a [`Detections`] value ([`Detections::iter`]).
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    dets: &'a Detections,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Detection<'a>;

    fn next(&mut self) -> Option<Detection<'a>> {
        let d = self.dets.get(self.next)?;
        self.next += 1;
        Some(d)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.dets.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Detections {
    type Item = Detection<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks() {
        let size = ImageSize::new(10, 10);
        let ok = Detections::new(
            size,
            vec![[0., 0., 5., 5.]],
            vec![0.5],
            vec![ClassIdx(1)],
            None,
        );
        assert_eq!(ok.map(|d| d.len()), Ok(1));
        let e = Detections::new(
            size,
            vec![[0., 0., 5., 5.]],
            vec![],
            vec![ClassIdx(1)],
            None,
        );
        assert!(matches!(e, Err(DetectionsError::Length { .. })));
        let e = Detections::new(
            size,
            vec![[0., 0., f32::NAN, 5.]],
            vec![0.1],
            vec![ClassIdx(0)],
            None,
        );
        assert_eq!(e, Err(DetectionsError::NonFinite { index: 0 }));
        let e = Detections::new(
            size,
            vec![[4., 0., 3., 5.]],
            vec![0.1],
            vec![ClassIdx(0)],
            None,
        );
        assert!(matches!(
            e,
            Err(DetectionsError::NegativeSize { index: 0, .. })
        ));
        let m = Rle::new(ImageSize::new(2, 2), vec![4]).expect("valid");
        let e = Detections::new(
            size,
            vec![[0., 0., 1., 1.]],
            vec![0.1],
            vec![ClassIdx(0)],
            Some(vec![m]),
        );
        assert!(matches!(e, Err(DetectionsError::MaskSize { index: 0, .. })));
    }

    #[test]
    fn records_follow_the_slices() {
        let size = ImageSize::new(4, 4);
        let masks = vec![
            Rle::new(size, vec![3, 13]).expect("valid"),
            Rle::new(size, vec![0, 16]).expect("valid"),
        ];
        let d = Detections::new(
            size,
            vec![[0., 0., 2., 2.], [1., 1., 4., 3.]],
            vec![0.9, 0.4],
            vec![ClassIdx(2), ClassIdx(0)],
            Some(masks.clone()),
        )
        .expect("valid");
        let recs: Vec<Detection> = d.iter().collect();
        assert_eq!(d.iter().len(), 2);
        assert_eq!(recs.len(), 2);
        for (i, r) in (&d).into_iter().enumerate() {
            assert_eq!(r.bbox, d.boxes()[i]);
            assert_eq!(r.score, d.scores()[i]);
            assert_eq!(r.class, d.classes()[i]);
            assert_eq!(r.mask, Some(&masks[i]));
        }
        assert_eq!(d.get(2), None);
        let e = Detections::empty(size);
        assert_eq!(e.iter().count(), 0);
    }
}
