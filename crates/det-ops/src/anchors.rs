//! Anchor generation as mmdetection's `AnchorGenerator` does it.
//!
//! Provenance: mmdetection 2.x `mmdet/core/anchor/anchor_generator.py`
//! (`AnchorGenerator.gen_single_level_base_anchors`, `single_level_grid_anchors` /
//! `single_level_grid_priors`, `sparse_priors`; Apache-2.0, OpenMMLab).
//!
//! # Base anchors of a level
//!
//! With `base = base_size` (the stride by default), `ratio = h / w`,
//! `h_ratio = sqrt(ratio)` and `w_ratio = 1 / h_ratio` (f32):
//! `w = base·w_ratio·scale`, `h = base·h_ratio·scale`, and the anchor is
//! `[c - w/2, c - h/2, c + w/2, c + h/2]` with `c = center_offset·base` (0 for every PVT
//! config, so base anchors are centred on the origin). No `+1`, no rounding.
//!
//! # Anchor order (the contract with the heads' channel layout)
//!
//! **Within a location: ratio-major, scale-minor**, `a = ratio_idx · num_scales + scale_idx`.
//! This is what mmdet's *default* `scale_major=True` produces: the code builds
//! `ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)`, a `[ratios, scales]` grid
//! flattened row-major, so consecutive anchors share a ratio and step through the scales
//! (the upstream docstring, "anchors in the same row will have the same scales", describes the
//! opposite and is wrong about the code). For RetinaNet at stride 8 the 9 widths are
//! 45.25, 57.02, 71.84 (ratio 0.5), 32, 40.32, 50.80 (ratio 1), 22.63, 28.51, 35.92 (ratio 2).
//!
//! **Over a level: `(y, x, a)`**, i.e. flat index `(y·W + x)·A + a`, anchor `a` shifted by
//! `(x·stride, y·stride)`. Heads emit channel `a·K + k` (scores) and `a·4 + j` (deltas), so a
//! `[A·K, H, W]` map permuted to `[H, W, A, K]` lines up with these anchors.

use anyhow::{bail, ensure, Result};
use pvt_types::ImageSize;

/// How the anchor scales of a level are given.
#[derive(Debug, Clone, PartialEq)]
pub enum AnchorScales {
    /// Explicit scales (mmdet `scales=[8]` for the RPN).
    Explicit(Vec<f32>),
    /// `octave_base_scale · 2^(i / scales_per_octave)` for `i in 0..scales_per_octave`
    /// (RetinaNet: 4 and 3 ⇒ 4, 5.0397, 6.3496), computed in f64 and rounded to f32 as mmdet
    /// does (numpy, then `torch.Tensor`).
    Octave {
        /// `octave_base_scale`.
        base_scale: f64,
        /// `scales_per_octave`.
        scales_per_octave: usize,
    },
}

impl AnchorScales {
    /// The scales as f32, in order.
    pub fn values(&self) -> Vec<f32> {
        match self {
            Self::Explicit(v) => v.clone(),
            Self::Octave {
                base_scale,
                scales_per_octave,
            } => (0..*scales_per_octave)
                .map(|i| (2f64.powf(i as f64 / *scales_per_octave as f64) * base_scale) as f32)
                .collect(),
        }
    }
}

/// `AnchorGenerator` hyper-parameters (mmdet's names; square strides only).
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorConfig {
    /// Stride of each level, fine to coarse.
    pub strides: Vec<usize>,
    /// Height / width ratios.
    pub ratios: Vec<f32>,
    /// Scales (relative to the base size).
    pub scales: AnchorScales,
    /// Base size of each level; `None` means the strides (mmdet's default).
    pub base_sizes: Option<Vec<f32>>,
    /// Centre of the base anchor as a fraction of the base size, in `[0, 1]`; 0 in mmdet 2.x
    /// (anchors centred on the grid points `(x·stride, y·stride)`).
    pub center_offset: f32,
}

impl AnchorConfig {
    /// RetinaNet (PVT-det `retinanet_r50_fpn.py`): octave_base_scale 4, scales_per_octave 3,
    /// ratios [0.5, 1, 2], strides [8, 16, 32, 64, 128] (P3–P7); 9 anchors per location.
    pub fn retinanet() -> Self {
        Self {
            strides: vec![8, 16, 32, 64, 128],
            ratios: vec![0.5, 1.0, 2.0],
            scales: AnchorScales::Octave {
                base_scale: 4.0,
                scales_per_octave: 3,
            },
            base_sizes: None,
            center_offset: 0.0,
        }
    }

    /// Mask R-CNN's RPN (PVT-det `mask_rcnn_r50_fpn.py`): scales `[8]`, ratios `[0.5, 1, 2]`,
    /// strides [4, 8, 16, 32, 64] (P2–P6); 3 anchors per location, sizes 32…512.
    pub fn rpn() -> Self {
        Self {
            strides: vec![4, 8, 16, 32, 64],
            ratios: vec![0.5, 1.0, 2.0],
            scales: AnchorScales::Explicit(vec![8.0]),
            base_sizes: None,
            center_offset: 0.0,
        }
    }

    /// Errors on an empty or inconsistent configuration, naming the offending values.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            !self.strides.is_empty(),
            "anchor config needs at least one stride"
        );
        ensure!(
            self.strides.iter().all(|&s| s > 0),
            "anchor strides must be positive, got {:?}",
            self.strides
        );
        ensure!(
            !self.ratios.is_empty() && self.ratios.iter().all(|r| r.is_finite() && *r > 0.0),
            "anchor ratios must be non-empty, finite and positive, got {:?}",
            self.ratios
        );
        match &self.scales {
            AnchorScales::Explicit(v) => ensure!(
                !v.is_empty() && v.iter().all(|s| s.is_finite() && *s > 0.0),
                "anchor scales must be non-empty, finite and positive, got {v:?}"
            ),
            AnchorScales::Octave {
                base_scale,
                scales_per_octave,
            } => ensure!(
                base_scale.is_finite() && *base_scale > 0.0 && *scales_per_octave > 0,
                "octave anchor scales need a positive base scale and at least one scale per \
                 octave, got base {base_scale}, {scales_per_octave} per octave"
            ),
        }
        if let Some(b) = &self.base_sizes {
            ensure!(
                b.len() == self.strides.len(),
                "anchor config has {} base sizes for {} strides",
                b.len(),
                self.strides.len()
            );
            ensure!(
                b.iter().all(|s| s.is_finite() && *s > 0.0),
                "anchor base sizes must be finite and positive, got {b:?}"
            );
        }
        ensure!(
            (0.0..=1.0).contains(&self.center_offset),
            "anchor center_offset must lie in [0, 1], got {}",
            self.center_offset
        );
        Ok(())
    }
}

/// Anchors for every level of a feature pyramid (mmdet `AnchorGenerator`, order: module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    strides: Vec<usize>,
    /// Per level, the `A` base anchors centred at the origin (plus `center_offset`).
    base_anchors: Vec<Vec<[f32; 4]>>,
}

impl AnchorGenerator {
    /// Build the base anchors of every level; errors if the configuration is invalid.
    pub fn new(cfg: &AnchorConfig) -> Result<Self> {
        cfg.validate()?;
        let scales = cfg.scales.values();
        let base_anchors = cfg
            .strides
            .iter()
            .enumerate()
            .map(|(level, &stride)| {
                let base = match &cfg.base_sizes {
                    Some(b) => b[level],
                    None => stride as f32,
                };
                base_anchors(base, &cfg.ratios, &scales, cfg.center_offset)
            })
            .collect();
        Ok(Self {
            strides: cfg.strides.clone(),
            base_anchors,
        })
    }

    /// Number of levels.
    pub fn num_levels(&self) -> usize {
        self.strides.len()
    }

    /// Strides of the levels, fine to coarse.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Anchors per location `A` (ratios × scales), the same on every level.
    pub fn num_base_anchors(&self) -> usize {
        self.base_anchors.first().map_or(0, Vec::len)
    }

    /// The `A` base anchors of `level` (anchors of grid point `(0, 0)`), in anchor order.
    pub fn base_anchors(&self, level: usize) -> Result<&[[f32; 4]]> {
        match self.base_anchors.get(level) {
            Some(b) => Ok(b),
            None => bail!(
                "anchor level {level} out of range ({} levels)",
                self.base_anchors.len()
            ),
        }
    }

    /// Number of anchors of a level with feature map `featmap` (`H·W·A`).
    pub fn num_anchors(&self, featmap: ImageSize) -> usize {
        featmap.area() * self.num_base_anchors()
    }

    /// All anchors of `level` for a feature map of `featmap` = (H, W) cells, in `(y, x, a)`
    /// order (`H·W·A` boxes): `base_anchors[a] + (x·stride, y·stride, x·stride, y·stride)`,
    /// added in f32 as mmdet does.
    pub fn grid_anchors(&self, level: usize, featmap: ImageSize) -> Result<Vec<[f32; 4]>> {
        let base = self.base_anchors(level)?;
        let stride = self.strides[level];
        let mut out = Vec::with_capacity(featmap.area() * base.len());
        for y in 0..featmap.height {
            let sy = (y * stride) as f32;
            for x in 0..featmap.width {
                let sx = (x * stride) as f32;
                out.extend(base.iter().map(|b| shift(*b, sx, sy)));
            }
        }
        Ok(out)
    }

    /// [`Self::grid_anchors`] for every level; `featmaps` has one size per level.
    pub fn multi_level_grid_anchors(&self, featmaps: &[ImageSize]) -> Result<Vec<Vec<[f32; 4]>>> {
        ensure!(
            featmaps.len() == self.num_levels(),
            "{} feature-map sizes given for {} anchor levels",
            featmaps.len(),
            self.num_levels()
        );
        featmaps
            .iter()
            .enumerate()
            .map(|(level, &f)| self.grid_anchors(level, f))
            .collect()
    }

    /// The single anchor with flat index `index = (y·W + x)·A + a` on `level` (mmdet
    /// `sparse_priors`): equal to `grid_anchors(level, featmap)[index]` without building the
    /// grid, for decoding only the top-k candidates.
    pub fn anchor_at(&self, level: usize, featmap: ImageSize, index: usize) -> Result<[f32; 4]> {
        let base = self.base_anchors(level)?;
        let n = self.num_anchors(featmap);
        ensure!(
            index < n,
            "anchor index {index} out of range for level {level} ({featmap} cells, {n} anchors)"
        );
        let a = index % base.len();
        let cell = index / base.len();
        let (y, x) = (cell / featmap.width, cell % featmap.width);
        let stride = self.strides[level];
        Ok(shift(base[a], (x * stride) as f32, (y * stride) as f32))
    }
}

/// mmdet `gen_single_level_base_anchors` with `scale_major=True`, in f32.
fn base_anchors(base: f32, ratios: &[f32], scales: &[f32], center_offset: f32) -> Vec<[f32; 4]> {
    let c = center_offset * base;
    let mut out = Vec::with_capacity(ratios.len() * scales.len());
    for &r in ratios {
        let h_ratio = r.sqrt();
        let w_ratio = 1.0 / h_ratio;
        for &s in scales {
            // (w * w_ratios[:, None]) * scales[None, :], same for h.
            let w = base * w_ratio * s;
            let h = base * h_ratio * s;
            out.push([c - 0.5 * w, c - 0.5 * h, c + 0.5 * w, c + 0.5 * h]);
        }
    }
    out
}

#[inline]
fn shift(b: [f32; 4], sx: f32, sy: f32) -> [f32; 4] {
    [b[0] + sx, b[1] + sy, b[2] + sx, b[3] + sy]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mmdet's `AnchorGenerator` docstring example: strides [16], ratios [1], scales [1],
    /// base_sizes [9], a 2×2 grid.
    #[test]
    fn mmdet_docstring_example() {
        let gen = AnchorGenerator::new(&AnchorConfig {
            strides: vec![16],
            ratios: vec![1.0],
            scales: AnchorScales::Explicit(vec![1.0]),
            base_sizes: Some(vec![9.0]),
            center_offset: 0.0,
        })
        .unwrap();
        let a = gen.grid_anchors(0, ImageSize::new(2, 2)).unwrap();
        assert_eq!(
            a,
            vec![
                [-4.5, -4.5, 4.5, 4.5],
                [11.5, -4.5, 20.5, 4.5],
                [-4.5, 11.5, 4.5, 20.5],
                [11.5, 11.5, 20.5, 20.5],
            ]
        );
    }

    #[test]
    fn octave_scales() {
        let s = AnchorConfig::retinanet().scales.values();
        assert_eq!(s, vec![4.0, 5.039_684_3, 6.349_604]);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let mut c = AnchorConfig::rpn();
        c.ratios.clear();
        assert!(AnchorGenerator::new(&c).is_err());
        let mut c = AnchorConfig::rpn();
        c.base_sizes = Some(vec![4.0]);
        assert!(AnchorGenerator::new(&c).is_err());
        let mut c = AnchorConfig::retinanet();
        c.center_offset = 1.5;
        assert!(AnchorGenerator::new(&c).is_err());
        let gen = AnchorGenerator::new(&AnchorConfig::rpn()).unwrap();
        assert!(gen.base_anchors(5).is_err());
        assert!(gen.anchor_at(0, ImageSize::new(2, 2), 12).is_err());
        assert!(gen
            .multi_level_grid_anchors(&[ImageSize::new(1, 1)])
            .is_err());
    }
}
