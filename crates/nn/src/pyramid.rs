//! Multi-scale feature maps and their declared layout.

use anyhow::{bail, ensure, Result};
use candle::Tensor;

/// One level of a feature pyramid: its channel count and its stride relative to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelSpec {
    /// Number of channels `C` of the level's `[B, C, H, W]` tensor.
    pub channels: usize,
    /// Output stride: input pixels per feature cell along each axis.
    pub stride: usize,
}

/// The declared layout of a pyramid, fine to coarse. Known before any forward pass
/// (timm's `feature_info`, detectron2's `ShapeSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyramidSpec {
    levels: Vec<LevelSpec>,
}

impl PyramidSpec {
    /// Checks that there is at least one level, channels are positive and strides are
    /// strictly increasing powers of two.
    pub fn new(levels: Vec<LevelSpec>) -> Result<Self> {
        ensure!(!levels.is_empty(), "a pyramid needs at least one level");
        for (i, l) in levels.iter().enumerate() {
            ensure!(l.channels > 0, "level {i} has zero channels");
            ensure!(
                l.stride.is_power_of_two(),
                "level {i} stride {} is not a power of two",
                l.stride
            );
            if i > 0 && l.stride <= levels[i - 1].stride {
                bail!(
                    "level strides must increase: {:?}",
                    levels.iter().map(|l| l.stride).collect::<Vec<_>>()
                );
            }
        }
        Ok(Self { levels })
    }

    /// The levels, fine to coarse.
    pub fn levels(&self) -> &[LevelSpec] {
        &self.levels
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Always false: a spec has at least one level.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The largest stride: input sides must be multiples of it for exact level sizes.
    pub fn max_stride(&self) -> usize {
        self.levels.last().map(|l| l.stride).unwrap_or(1)
    }
}

/// Feature maps, fine to coarse, each `[B, C_i, H_i, W_i]` (NCHW, contiguous), with their spec.
#[derive(Debug, Clone)]
pub struct FeaturePyramid {
    spec: PyramidSpec,
    levels: Vec<Tensor>,
}

impl FeaturePyramid {
    /// Checks that the tensors agree with `spec`: one per level, rank 4, equal batch, channels
    /// as declared.
    pub fn new(spec: PyramidSpec, levels: Vec<Tensor>) -> Result<Self> {
        ensure!(
            levels.len() == spec.len(),
            "pyramid spec has {} levels but {} tensors were given",
            spec.len(),
            levels.len()
        );
        let mut batch = None;
        for (i, (t, l)) in levels.iter().zip(spec.levels()).enumerate() {
            let (b, c, _, _) = t.dims4().map_err(|_| {
                anyhow::anyhow!("level {i}: expected [B, C, H, W], got {:?}", t.dims())
            })?;
            ensure!(
                c == l.channels,
                "level {i}: spec says {} channels, tensor has {c}",
                l.channels
            );
            if *batch.get_or_insert(b) != b {
                bail!("level {i}: batch size {b} differs from level 0's");
            }
        }
        Ok(Self { spec, levels })
    }

    /// The declared layout.
    pub fn spec(&self) -> &PyramidSpec {
        &self.spec
    }

    /// The tensors, fine to coarse.
    pub fn levels(&self) -> &[Tensor] {
        &self.levels
    }

    /// Consumes the pyramid, returning its tensors.
    pub fn into_levels(self) -> Vec<Tensor> {
        self.levels
    }

    /// The level with the given stride, if any.
    pub fn level(&self, stride: usize) -> Option<&Tensor> {
        self.spec
            .levels()
            .iter()
            .position(|l| l.stride == stride)
            .map(|i| &self.levels[i])
    }
}

/// A network that turns a normalised image batch `[B, 3, H, W]` into a feature pyramid.
pub trait Backbone {
    /// The layout of what [`Backbone::forward_pyramid`] returns.
    fn output_spec(&self) -> &PyramidSpec;

    /// Runs the network. `H` and `W` must be multiples of `output_spec().max_stride()`.
    fn forward_pyramid(&self, images: &Tensor) -> Result<FeaturePyramid>;
}
