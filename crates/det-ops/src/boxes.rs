//! Box conversions, IoU and clipping (box convention: see the crate docs).
//!
//! Provenance: mmdetection 2.x `mmdet/core/bbox/iou_calculators/iou2d_calculator.py`
//! (`bbox_overlaps`, mode `'iou'`, `eps=1e-6`), `mmdet/datasets/coco.py` (`xyxy2xywh`),
//! `delta2bbox`'s clipping in `mmdet/core/bbox/coder/delta_xywh_bbox_coder.py`
//! (Apache-2.0, OpenMMLab).

use anyhow::{ensure, Result};
use pvt_types::ImageSize;

/// `[x1, y1, x2, y2]` → COCO `[x, y, w, h]` (top-left corner, width, height), in f32.
///
/// mmdet's results writer (`xyxy2xywh`) subtracts after converting the corners to Python
/// floats (f64); `pvt-eval`'s writer does that. This f32 form is for model-side code.
pub fn xyxy_to_xywh(b: [f32; 4]) -> [f32; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

/// COCO `[x, y, w, h]` → `[x1, y1, x2, y2]`, in f32.
pub fn xywh_to_xyxy(b: [f32; 4]) -> [f32; 4] {
    [b[0], b[1], b[0] + b[2], b[1] + b[3]]
}

/// Area `(x2 - x1)·(y2 - y1)`, negative for an inverted box.
pub fn area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// Union below this value is raised to it (mmdet `bbox_overlaps`' `eps`), so that two
/// empty boxes have IoU 0, not NaN.
pub const IOU_EPS: f32 = 1e-6;

/// IoU of two boxes as mmdet's `bbox_overlaps(mode='iou')` computes it in f32:
/// `inter / max(area_a + area_b - inter, 1e-6)` with `inter = max(0, w)·max(0, h)` of the
/// intersection. Symmetric; `iou(b, b) == 1` for every box of positive area; NaN if a
/// coordinate is NaN.
///
/// NMS does **not** use this function: mmcv's NMS kernels have no `eps` and their own
/// threshold tests ([`crate::Suppress`]).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    // torch.max / torch.min propagate NaN; so do these.
    let lt_x = nan_max(a[0], b[0]);
    let lt_y = nan_max(a[1], b[1]);
    let rb_x = nan_min(a[2], b[2]);
    let rb_y = nan_min(a[3], b[3]);
    let w = clamp_min0(rb_x - lt_x);
    let h = clamp_min0(rb_y - lt_y);
    let overlap = w * h;
    let union = area(a) + area(b) - overlap;
    overlap / nan_max(union, IOU_EPS)
}

/// A dense `rows × cols` matrix of IoUs, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct IouMatrix {
    rows: usize,
    cols: usize,
    /// `data[i * cols + j]` = IoU of row box `i` and column box `j`.
    data: Vec<f32>,
}

impl IouMatrix {
    /// Number of row boxes.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of column boxes.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// IoU of row box `i` and column box `j`, `None` out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        if i < self.rows && j < self.cols {
            self.data.get(i * self.cols + j).copied()
        } else {
            None
        }
    }

    /// Row `i` (IoUs of row box `i` with every column box), `None` out of range.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        if i < self.rows {
            self.data.get(i * self.cols..(i + 1) * self.cols)
        } else {
            None
        }
    }

    /// All values, row-major (`[i * cols + j]`).
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// Pairwise IoU of every box of `a` (rows) with every box of `b` (columns), each entry as
/// [`iou`] computes it (mmdet `bbox_overlaps(a, b, mode='iou', is_aligned=False)`; for boxes of
/// positive area this equals mmcv's `bbox_overlaps` op with `offset=0`).
pub fn iou_matrix(a: &[[f32; 4]], b: &[[f32; 4]]) -> IouMatrix {
    let mut data = Vec::with_capacity(a.len() * b.len());
    for &ra in a {
        data.extend(b.iter().map(|&cb| iou(ra, cb)));
    }
    IouMatrix {
        rows: a.len(),
        cols: b.len(),
        data,
    }
}

/// Clip a box to an image: `x` into `[0, width]`, `y` into `[0, height]`, as `delta2bbox`
/// does (`torch.where(b < 0, 0, b)` then `torch.where(b > max, max, b)`): NaN coordinates stay
/// NaN. `size` is the resized image **before padding** (mmdet's `img_shape`).
pub fn clip_box(b: [f32; 4], size: ImageSize) -> [f32; 4] {
    let w = size.width as f32;
    let h = size.height as f32;
    [
        clip1(b[0], w),
        clip1(b[1], h),
        clip1(b[2], w),
        clip1(b[3], h),
    ]
}

/// [`clip_box`] over a slice, in place.
pub fn clip_boxes(boxes: &mut [[f32; 4]], size: ImageSize) {
    for b in boxes {
        *b = clip_box(*b, size);
    }
}

/// Indices of the boxes whose width **and** height are strictly greater than `min_size`
/// (mmdet 2.13 `RPNHead._get_bboxes_single` with `min_bbox_size`: `w > min & h > min`;
/// with `min_size = 0` it drops empty and inverted boxes). NaN sizes are dropped.
pub fn keep_min_size(boxes: &[[f32; 4]], min_size: f32) -> Vec<usize> {
    boxes
        .iter()
        .enumerate()
        .filter(|(_, b)| b[2] - b[0] > min_size && b[3] - b[1] > min_size)
        .map(|(i, _)| i)
        .collect()
}

/// Divide boxes by per-axis scale factors `[sx, sy]` (`boxes / scale_factor` with mmdet's
/// `scale_factor = [sx, sy, sx, sy]`): from the resized frame back to the original image.
/// Errors if a factor is not finite and positive.
pub fn rescale_boxes(boxes: &mut [[f32; 4]], scale_xy: [f32; 2]) -> Result<()> {
    ensure!(
        scale_xy.iter().all(|s| s.is_finite() && *s > 0.0),
        "scale factors must be finite and positive, got {scale_xy:?} (sx, sy)"
    );
    let [sx, sy] = scale_xy;
    for b in boxes {
        *b = [b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy];
    }
    Ok(())
}

#[inline]
fn clip1(v: f32, max: f32) -> f32 {
    let v = if v < 0.0 { 0.0 } else { v };
    if v > max {
        max
    } else {
        v
    }
}

/// `torch.max`-style maximum: NaN if either operand is NaN.
#[inline]
pub(crate) fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b {
        b
    } else {
        a
    }
}

/// `torch.min`-style minimum: NaN if either operand is NaN.
#[inline]
pub(crate) fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

/// `clamp(min=0)`: NaN stays NaN.
#[inline]
fn clamp_min0(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xywh_round_trip() {
        let b = [10.5, 20.25, 30.75, 60.0];
        assert_eq!(xyxy_to_xywh(b), [10.5, 20.25, 20.25, 39.75]);
        assert_eq!(xywh_to_xyxy(xyxy_to_xywh(b)), b);
    }

    #[test]
    fn iou_hand_cases() {
        // Overlap 5x10 = 50, union 100 + 100 - 50 = 150.
        assert_eq!(iou([0., 0., 10., 10.], [5., 0., 15., 10.]), 50.0 / 150.0);
        // Disjoint and touching boxes.
        assert_eq!(iou([0., 0., 10., 10.], [20., 0., 30., 10.]), 0.0);
        assert_eq!(iou([0., 0., 10., 10.], [10., 0., 20., 10.]), 0.0);
        // Containment: 25 / 100.
        assert_eq!(iou([0., 0., 10., 10.], [2., 2., 7., 7.]), 0.25);
        // Empty boxes: the eps keeps the result finite.
        assert_eq!(iou([1., 1., 1., 1.], [1., 1., 1., 1.]), 0.0);
        assert!(iou([f32::NAN, 0., 1., 1.], [0., 0., 1., 1.]).is_nan());
    }

    #[test]
    fn iou_matrix_layout() {
        let a = [[0., 0., 10., 10.], [5., 0., 15., 10.]];
        let b = [
            [0., 0., 10., 10.],
            [2., 2., 7., 7.],
            [100., 100., 101., 101.],
        ];
        let m = iou_matrix(&a, &b);
        assert_eq!((m.rows(), m.cols()), (2, 3));
        assert_eq!(m.row(0), Some(&[1.0, 0.25, 0.0][..]));
        assert_eq!(m.get(1, 0), Some(50.0 / 150.0));
        assert_eq!(m.get(2, 0), None);
        assert_eq!(m.get(0, 3), None);
        assert!(iou_matrix(&[], &b).as_slice().is_empty());
    }

    #[test]
    fn clip_and_min_size() {
        let size = ImageSize::new(50, 80);
        assert_eq!(
            clip_box([-3., 10., 90., 60.], size),
            [0.0, 10.0, 80.0, 50.0]
        );
        assert!(clip_box([f32::NAN, 0., 1., 1.], size)[0].is_nan());
        let boxes = [[0., 0., 0., 5.], [0., 0., 1., 1.], [3., 3., 2., 9.]];
        assert_eq!(keep_min_size(&boxes, 0.0), vec![1]);
        let mut r = [[10., 20., 30., 40.]];
        rescale_boxes(&mut r, [2.0, 4.0]).unwrap();
        assert_eq!(r, [[5., 5., 15., 10.]]);
        assert!(rescale_boxes(&mut r, [0.0, 1.0]).is_err());
    }
}

/// What the test-time preprocessing recorded about one image (mmdetection's `img_meta`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageMeta {
    /// Resized, unpadded size (`img_shape`): boxes are clipped to it.
    pub img_shape: ImageSize,
    /// Original size (`ori_shape`): final boxes and masks are in its frame.
    pub ori_shape: ImageSize,
    /// `[w'/w, h'/h, w'/w, h'/h]` (float32): boxes are divided by it to return to the original
    /// image.
    pub scale_factor: [f32; 4],
}
