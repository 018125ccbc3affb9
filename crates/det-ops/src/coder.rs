//! The delta-xywh box coder (R-CNN box parametrisation), as mmdetection's
//! `DeltaXYWHBBoxCoder` computes it.
//!
//! Provenance: mmdetection 2.x `mmdet/core/bbox/coder/delta_xywh_bbox_coder.py`
//! (`bbox2delta`, `delta2bbox`; Apache-2.0, OpenMMLab). The default configuration
//! (`clip_border=True`, `add_ctr_clamp=False`, `wh_ratio_clip=16/1000`) is the one every PVT
//! detector uses; YOLOF's centre clamp is not implemented.
//!
//! With `(px, py, pw, ph)` the centre and size of the reference box (anchor or proposal) and
//! `(gx, gy, gw, gh)` those of the target box, all in f32 and without `+1`:
//!
//! ```text
//! encode: d = ((gx - px) / pw, (gy - py) / ph, ln(gw / pw), ln(gh / ph)),  then (d - mean) / std
//! decode: d = delta · std + mean;  dw, dh clamped to ±clamp;
//!         gx = px + pw·dx, gy = py + ph·dy, gw = pw·e^dw, gh = ph·e^dh;
//!         box = (gx - gw/2, gy - gh/2, gx + gw/2, gy + gh/2), then clipped to (h, w)
//! ```

use anyhow::{ensure, Result};
use pvt_types::ImageSize;

use crate::boxes::clip_box;

/// `DeltaXYWHBBoxCoder` with its normalisation and the log-ratio clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaXywhCoder {
    /// `target_means` for `(dx, dy, dw, dh)`.
    pub means: [f32; 4],
    /// `target_stds` for `(dx, dy, dw, dh)`.
    pub stds: [f32; 4],
    /// Decoded `dw`, `dh` are clamped to `[-clamp, clamp]`: mmdet's
    /// `max_ratio = |ln(wh_ratio_clip)|` with `wh_ratio_clip = 16/1000`, i.e. `ln(62.5)`
    /// rounded to f32 ([`Self::DEFAULT_CLAMP`]).
    pub clamp: f32,
}

impl DeltaXywhCoder {
    /// `|ln(16/1000)|` computed in f64 (numpy) and rounded to f32, as `Tensor.clamp` does with
    /// a Python float bound on an f32 tensor: 4.1351666.
    pub const DEFAULT_CLAMP: f32 = 4.135_166_556_742_356_f64 as f32;

    /// Means 0, stds 1: RetinaNet's `bbox_coder` and Mask R-CNN's RPN (PVT-det
    /// `retinanet_r50_fpn.py`, `mask_rcnn_r50_fpn.py`).
    pub const fn retinanet() -> Self {
        Self {
            means: [0.0; 4],
            stds: [1.0; 4],
            clamp: Self::DEFAULT_CLAMP,
        }
    }

    /// Same coder as [`Self::retinanet`], named for the RPN.
    pub const fn rpn() -> Self {
        Self::retinanet()
    }

    /// Means 0, stds `[0.1, 0.1, 0.2, 0.2]`: Mask R-CNN's box head (`Shared2FCBBoxHead`).
    pub const fn rcnn() -> Self {
        Self {
            means: [0.0; 4],
            stds: [0.1, 0.1, 0.2, 0.2],
            clamp: Self::DEFAULT_CLAMP,
        }
    }

    /// Errors unless every std is finite and non-zero, every mean finite, and the clamp
    /// finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.stds.iter().all(|s| s.is_finite() && *s != 0.0),
            "box coder stds must be finite and non-zero, got {:?}",
            self.stds
        );
        ensure!(
            self.means.iter().all(|m| m.is_finite()),
            "box coder means must be finite, got {:?}",
            self.means
        );
        ensure!(
            self.clamp.is_finite() && self.clamp >= 0.0,
            "box coder clamp must be finite and >= 0, got {}",
            self.clamp
        );
        Ok(())
    }

    /// Deltas that move `reference` onto `target` (`bbox2delta`). A reference of zero width or
    /// height gives infinite or NaN deltas, as upstream.
    pub fn encode_one(&self, reference: [f32; 4], target: [f32; 4]) -> [f32; 4] {
        let px = (reference[0] + reference[2]) * 0.5;
        let py = (reference[1] + reference[3]) * 0.5;
        let pw = reference[2] - reference[0];
        let ph = reference[3] - reference[1];
        let gx = (target[0] + target[2]) * 0.5;
        let gy = (target[1] + target[3]) * 0.5;
        let gw = target[2] - target[0];
        let gh = target[3] - target[1];
        let d = [
            (gx - px) / pw,
            (gy - py) / ph,
            (gw / pw).ln(),
            (gh / ph).ln(),
        ];
        std::array::from_fn(|k| (d[k] - self.means[k]) / self.stds[k])
    }

    /// [`Self::encode_one`] over two slices of equal length.
    pub fn encode(&self, references: &[[f32; 4]], targets: &[[f32; 4]]) -> Result<Vec<[f32; 4]>> {
        ensure!(
            references.len() == targets.len(),
            "encode needs as many targets as references: {} vs {}",
            targets.len(),
            references.len()
        );
        Ok(references
            .iter()
            .zip(targets)
            .map(|(&r, &t)| self.encode_one(r, t))
            .collect())
    }

    /// Apply `delta` to `reference` (`delta2bbox` for one box). With `max_shape = Some(size)`
    /// the result is clipped to `x ∈ [0, width]`, `y ∈ [0, height]`; pass the resized image
    /// size **before padding** (mmdet's `img_shape`). NaN deltas give NaN coordinates (the
    /// clamp and the clip let NaN through, as `torch.clamp` / `torch.where` do).
    pub fn decode_one(
        &self,
        reference: [f32; 4],
        delta: [f32; 4],
        max_shape: Option<ImageSize>,
    ) -> [f32; 4] {
        // denorm_deltas = deltas * stds + means (two f32 roundings, no fma).
        let d: [f32; 4] = std::array::from_fn(|k| delta[k] * self.stds[k] + self.means[k]);
        let [x1, y1, x2, y2] = reference;
        let px = (x1 + x2) * 0.5;
        let py = (y1 + y2) * 0.5;
        let pw = x2 - x1;
        let ph = y2 - y1;
        let dx_width = pw * d[0];
        let dy_height = ph * d[1];
        let dw = clamp_nan(d[2], self.clamp);
        let dh = clamp_nan(d[3], self.clamp);
        let gw = pw * dw.exp();
        let gh = ph * dh.exp();
        let gx = px + dx_width;
        let gy = py + dy_height;
        let b = [gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5];
        match max_shape {
            Some(size) => clip_box(b, size),
            None => b,
        }
    }

    /// [`Self::decode_one`] over two slices of equal length (one delta per reference).
    pub fn decode(
        &self,
        references: &[[f32; 4]],
        deltas: &[[f32; 4]],
        max_shape: Option<ImageSize>,
    ) -> Result<Vec<[f32; 4]>> {
        ensure!(
            references.len() == deltas.len(),
            "decode needs one delta per reference box: {} deltas for {} boxes",
            deltas.len(),
            references.len()
        );
        Ok(references
            .iter()
            .zip(deltas)
            .map(|(&r, &d)| self.decode_one(r, d, max_shape))
            .collect())
    }

    /// Class-specific decoding (mmdet's `(N, K·4)` deltas, `reg_class_agnostic=False`):
    /// `deltas[i·K + k]` is class `k`'s delta for `references[i]`; the result has the same
    /// layout. Errors unless `deltas.len() == references.len() · num_classes`.
    pub fn decode_per_class(
        &self,
        references: &[[f32; 4]],
        deltas: &[[f32; 4]],
        num_classes: usize,
        max_shape: Option<ImageSize>,
    ) -> Result<Vec<[f32; 4]>> {
        ensure!(
            num_classes > 0 && Some(deltas.len()) == references.len().checked_mul(num_classes),
            "class-specific decode needs {} x {num_classes} deltas, got {}",
            references.len(),
            deltas.len()
        );
        Ok(deltas
            .chunks_exact(num_classes)
            .zip(references)
            .flat_map(|(row, &r)| row.iter().map(move |&d| self.decode_one(r, d, max_shape)))
            .collect())
    }
}

impl Default for DeltaXywhCoder {
    /// [`DeltaXywhCoder::retinanet`] (mmdet's defaults: means 0, stds 1).
    fn default() -> Self {
        Self::retinanet()
    }
}

/// `Tensor.clamp(min=-c, max=c)` on f32: NaN stays NaN.
#[inline]
fn clamp_nan(v: f32, c: f32) -> f32 {
    if v < -c {
        -c
    } else if v > c {
        c
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_constant() {
        assert_eq!(
            DeltaXywhCoder::DEFAULT_CLAMP,
            (1000.0f64 / 16.0).ln() as f32
        );
        assert_eq!(DeltaXywhCoder::DEFAULT_CLAMP, 4.1351666);
    }

    /// mmdet's `delta2bbox` docstring example (max_shape (32, 32, 3)), printed there to 4
    /// decimals.
    #[test]
    fn mmdet_docstring_example() {
        let rois = [
            [0., 0., 1., 1.],
            [0., 0., 1., 1.],
            [0., 0., 1., 1.],
            [5., 5., 5., 5.],
        ];
        let deltas = [
            [0., 0., 0., 0.],
            [1., 1., 1., 1.],
            [0., 0., 2., -1.],
            [0.7, -1.9, -0.5, 0.3],
        ];
        let expect = [
            [0.0000, 0.0000, 1.0000, 1.0000],
            [0.1409, 0.1409, 2.8591, 2.8591],
            [0.0000, 0.3161, 4.1945, 0.6839],
            [5.0000, 5.0000, 5.0000, 5.0000],
        ];
        let coder = DeltaXywhCoder::default();
        let out = coder
            .decode(&rois, &deltas, Some(ImageSize::new(32, 32)))
            .unwrap();
        for (o, e) in out.iter().zip(&expect) {
            for k in 0..4 {
                assert!((o[k] - e[k]).abs() < 5e-5, "{o:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn clamp_and_clip() {
        let coder = DeltaXywhCoder::retinanet();
        // dw = 10 is clamped to ln(62.5): width 2 -> 125.
        let b = coder.decode_one([0., 0., 2., 2.], [0., 0., 10., -10.], None);
        let c = DeltaXywhCoder::DEFAULT_CLAMP;
        let gw = 2.0 * c.exp();
        let gh = 2.0 * (-c).exp();
        assert_eq!(
            b,
            [
                1.0 - gw * 0.5,
                1.0 - gh * 0.5,
                1.0 + gw * 0.5,
                1.0 + gh * 0.5
            ]
        );
        assert!((gw - 125.0).abs() < 1e-3 && (gh - 0.032).abs() < 1e-6);
        // Clipping uses (height, width) = (10, 20): x to 20, y to 10.
        let b = coder.decode_one(
            [0., 0., 2., 2.],
            [0., 0., 10., 10.],
            Some(ImageSize::new(10, 20)),
        );
        assert_eq!(b, [0.0, 0.0, 20.0, 10.0]);
        // NaN passes through.
        let b = coder.decode_one(
            [0., 0., 2., 2.],
            [f32::NAN, 0., 0., 0.],
            Some(ImageSize::new(10, 20)),
        );
        assert!(b[0].is_nan() && b[2].is_nan() && b[1] == 0.0);
    }

    #[test]
    fn rcnn_stds_and_per_class_layout() {
        let coder = DeltaXywhCoder::rcnn();
        let r = [[10., 10., 30., 50.]];
        let t = [[12., 8., 34., 46.]];
        let d = coder.encode(&r, &t).unwrap();
        // dx = (23 - 20) / 20 / 0.1 = 1.5; dy = (27 - 30) / 40 / 0.1 = -0.75.
        assert!((d[0][0] - 1.5).abs() < 1e-6 && (d[0][1] + 0.75).abs() < 1e-6);
        let back = coder.decode(&r, &d, None).unwrap();
        for k in 0..4 {
            assert!((back[0][k] - t[0][k]).abs() < 1e-4);
        }
        let deltas = [[0.0; 4], d[0], [0.0; 4], [0.0; 4]];
        let out = coder
            .decode_per_class(&[r[0], [0., 0., 4., 4.]], &deltas, 2, None)
            .unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], r[0]);
        assert_eq!(out[3], [0., 0., 4., 4.]);
        assert!(coder.decode_per_class(&r, &deltas, 3, None).is_err());
        assert!(coder.decode_per_class(&r, &deltas, 0, None).is_err());
        assert!(coder.decode(&r, &deltas, None).is_err());
    }

    #[test]
    fn validate_rejects_bad_stds() {
        assert!(DeltaXywhCoder::rcnn().validate().is_ok());
        let bad = DeltaXywhCoder {
            stds: [1.0, 0.0, 1.0, 1.0],
            ..DeltaXywhCoder::retinanet()
        };
        assert!(bad.validate().is_err());
    }
}
