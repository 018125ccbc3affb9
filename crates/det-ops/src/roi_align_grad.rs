//! The multi-level RoIAlign of Mask R-CNN training, with its adjoint: the same numbers as
//! [`multi_level_roi_align`](crate::multi_level_roi_align) for a whole batch (RoIs carry the
//! index of their image), and the backward pass that scatters an output gradient onto the
//! bilinear taps of each sample — the exact transpose of the forward map.
//!
//! RoIAlign is linear in the features for fixed RoIs (in Mask R-CNN the RoIs are proposals or
//! ground truth, never differentiated), so a [`RoiAlignPlan`] computes the geometry once — the
//! level of each RoI (`SingleRoIExtractor`, finest scale 56), and for each output bin the
//! `grid_h · grid_w` samples with their four flat positions and weights — and then serves both
//! directions, in f32 or f64. The geometry follows mmcv's kernels exactly as
//! [`crate::roi_align`](mod@crate::roi_align) documents them (aligned, adaptive sampling,
//! `−1 … H` range, clamping, weights in f32); the forward sums `w1·v1 + w2·v2 + w3·v3 + w4·v4`
//! per sample in bin order and divides by `max(count, 1)`, so the f32 forward is bit-identical
//! to the inference path (tested below on RoIs at every level, across the borders and outside
//! the map). Both paths run one copy of that code (geometry, sample positions, taps and bin
//! sums), so a change to it reaches the forward, the plan and its adjoint alike.
//!
//! Backward, for output gradient `g[n, c, ph, pw]` of a RoI on level `l` of image `b`:
//! `grad_l[b, c, pos_k] += w_k · g / count` for every sample's four taps `(pos_k, w_k)` —
//! mmcv's `roi_align_backward` (avg mode), which adds `g · w_k / count` per tap as well.
//!
//! Feature levels are `[B, C, H, W]` row-major slices (one per level, the same `B` and `C`),
//! the layout of the FPN tensors, so a candle op can hand its storage over without copies.

use crate::roi::map_roi_levels;
use crate::roi_align::tap::{bin_mean, for_each_tap, roi_geom, Tap, TooManySamples};
use crate::roi_align::MAX_SAMPLES_PER_BIN;
use anyhow::{anyhow, ensure, Result};
use rayon::prelude::*;

pub use crate::roi_align::tap::RoiFloat;

/// Shape of one feature level: `[batch, channels, height, width]` and its stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelShape {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Stride in input pixels (4, 8, 16, 32).
    pub stride: usize,
}

impl LevelShape {
    /// Number of values, `B·C·H·W`.
    pub fn numel(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }
}

/// A planned RoI: its level, image and the first of its `out²·per_bin` taps.
#[derive(Debug, Clone, Copy)]
struct PlannedRoi {
    level: usize,
    image: usize,
    first_tap: usize,
    per_bin: usize,
    count: f32,
}

/// The geometry of a multi-level RoIAlign for one batch of RoIs (see the module docs).
#[derive(Debug, Clone)]
pub struct RoiAlignPlan {
    levels: Vec<LevelShape>,
    out: usize,
    rois: Vec<PlannedRoi>,
    /// Every sample's taps (the shared ones of [`crate::roi_align`](mod@crate::roi_align)),
    /// positions stored as `u32` (the levels' `H·W` are checked to fit).
    taps: Vec<Tap<u32>>,
}

impl RoiAlignPlan {
    /// Plans aligned, adaptive-sampling RoIAlign with `out × out` bins of `rois` (input-image
    /// pixels; `images[i]` is the batch index of RoI `i`) over `levels` (fine to coarse), each
    /// RoI on the level mmdet's `map_roi_levels` picks with `finest_scale`.
    pub fn new(
        levels: &[LevelShape],
        rois: &[[f32; 4]],
        images: &[usize],
        out: usize,
        finest_scale: f32,
    ) -> Result<Self> {
        ensure!(out > 0, "RoIAlign: output size must be positive");
        ensure!(!levels.is_empty(), "RoI extractor: no feature levels given");
        ensure!(
            rois.len() == images.len(),
            "RoIAlign: {} RoIs but {} batch indices",
            rois.len(),
            images.len()
        );
        let l0 = levels[0];
        for (i, l) in levels.iter().enumerate() {
            ensure!(
                l.batch == l0.batch && l.channels == l0.channels,
                "RoI extractor: level {i} is [{}, {}, {}, {}], level 0 is [{}, {}, {}, {}]",
                l.batch,
                l.channels,
                l.height,
                l.width,
                l0.batch,
                l0.channels,
                l0.height,
                l0.width
            );
            ensure!(
                l.height > 0 && l.width > 0 && l.stride > 0,
                "RoI extractor: level {i} has size {}x{} and stride {}",
                l.height,
                l.width,
                l.stride
            );
            ensure!(
                l.height * l.width <= u32::MAX as usize,
                "RoI extractor: level {i} ({}x{}) is too large",
                l.height,
                l.width
            );
        }
        if let Some(&bad) = images.iter().find(|&&b| b >= l0.batch) {
            anyhow::bail!(
                "RoIAlign: batch index {bad} for levels of {} images",
                l0.batch
            );
        }
        let lvls = map_roi_levels(rois, finest_scale, levels.len());
        let mut planned = Vec::with_capacity(rois.len());
        let mut taps = Vec::new();
        for (i, (&roi, &level)) in rois.iter().zip(&lvls).enumerate() {
            let l = levels[level];
            let scale = (1.0f64 / l.stride as f64) as f32;
            let g = roi_geom(roi, scale, out, true, 0).map_err(|TooManySamples { gh, gw }| {
                anyhow!(
                    "RoIAlign: RoI {i} {roi:?} at scale {scale} needs {gh}x{gw} samples per bin \
                     (more than {MAX_SAMPLES_PER_BIN})"
                )
            })?;
            let first_tap = taps.len();
            for_each_tap(&g, out, (l.height, l.width), |t| taps.push(t.to_u32()));
            planned.push(PlannedRoi {
                level,
                image: images[i],
                first_tap,
                per_bin: g.per_bin(),
                count: g.count,
            });
        }
        Ok(Self {
            levels: levels.to_vec(),
            out,
            rois: planned,
            taps,
        })
    }

    /// Number of RoIs.
    pub fn num_rois(&self) -> usize {
        self.rois.len()
    }

    /// The level of each RoI.
    pub fn roi_levels(&self) -> Vec<usize> {
        self.rois.iter().map(|r| r.level).collect()
    }

    /// The level shapes.
    pub fn levels(&self) -> &[LevelShape] {
        &self.levels
    }

    /// Output shape `[N, C, out, out]`.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.rois.len(), self.levels[0].channels, self.out, self.out]
    }

    fn check_maps<T>(&self, maps: &[&[T]]) -> Result<()> {
        ensure!(
            maps.len() == self.levels.len(),
            "RoIAlign: {} feature maps for {} planned levels",
            maps.len(),
            self.levels.len()
        );
        for (i, (m, l)) in maps.iter().zip(&self.levels).enumerate() {
            ensure!(
                m.len() == l.numel(),
                "RoIAlign: level {i} has {} values, its shape [{}, {}, {}, {}] says {}",
                m.len(),
                l.batch,
                l.channels,
                l.height,
                l.width,
                l.numel()
            );
        }
        Ok(())
    }

    /// The RoI features `[N, C, out, out]` (row-major) of `maps` (one `[B, C, H, W]` slice per
    /// level).
    pub fn forward<T: RoiFloat>(&self, maps: &[&[T]]) -> Result<Vec<T>> {
        self.check_maps(maps)?;
        let [_, c, out, _] = self.out_shape();
        let bins = out * out;
        let per_roi = c * bins;
        let mut dst = vec![T::default(); self.rois.len() * per_roi];
        if per_roi == 0 {
            return Ok(dst);
        }
        dst.par_chunks_mut(per_roi)
            .zip(self.rois.par_iter())
            .for_each(|(d, r)| {
                let l = self.levels[r.level];
                let hw = l.height * l.width;
                let count = T::from(r.count);
                for ch in 0..c {
                    let off = (r.image * c + ch) * hw;
                    let plane = &maps[r.level][off..off + hw];
                    for (bin, v) in d[ch * bins..(ch + 1) * bins].iter_mut().enumerate() {
                        let start = r.first_tap + bin * r.per_bin;
                        *v = bin_mean(&self.taps[start..start + r.per_bin], plane, count);
                    }
                }
            });
        Ok(dst)
    }

    /// The adjoint of [`forward`](Self::forward): the gradient of every level (`[B, C, H, W]`
    /// row-major, zeros where no sample reads) for the output gradient `grad_out`
    /// (`[N, C, out, out]`).
    pub fn backward<T: RoiFloat>(&self, grad_out: &[T]) -> Result<Vec<Vec<T>>> {
        let [n, c, out, _] = self.out_shape();
        let bins = out * out;
        ensure!(
            grad_out.len() == n * c * bins,
            "RoIAlign backward: gradient has {} values, the output is [{n}, {c}, {out}, {out}]",
            grad_out.len()
        );
        // RoIs grouped by (level, image): every plane of the gradient is written by one task
        let mut groups: Vec<Vec<Vec<usize>>> = self
            .levels
            .iter()
            .map(|l| vec![Vec::new(); l.batch])
            .collect();
        for (i, r) in self.rois.iter().enumerate() {
            groups[r.level][r.image].push(i);
        }
        let mut grads: Vec<Vec<T>> = self
            .levels
            .iter()
            .map(|l| vec![T::default(); l.numel()])
            .collect();
        for ((g, l), group) in grads.iter_mut().zip(&self.levels).zip(&groups) {
            let hw = l.height * l.width;
            if hw == 0 || c == 0 {
                continue;
            }
            g.par_chunks_mut(hw).enumerate().for_each(|(plane, gp)| {
                let (image, ch) = (plane / c, plane % c);
                for &i in &group[image] {
                    let r = self.rois[i];
                    let go = &grad_out[(i * c + ch) * bins..(i * c + ch + 1) * bins];
                    let count = T::from(r.count);
                    for (bin, &gb) in go.iter().enumerate() {
                        let gs = gb / count;
                        let start = r.first_tap + bin * r.per_bin;
                        for t in &self.taps[start..start + r.per_bin] {
                            for k in 0..4 {
                                gp[t.pos[k] as usize] += T::from(t.w[k]) * gs;
                            }
                        }
                    }
                }
            });
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roi::FINEST_SCALE;
    use crate::{multi_level_roi_align, RoiLevel};

    /// A deterministic pseudo-random stream in `[-1, 1)`.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Four levels (strides 4–32) of a 2-image batch of a 100x132 input, 3 channels.
    fn levels() -> Vec<LevelShape> {
        [(25, 33, 4), (13, 17, 8), (7, 9, 16), (4, 5, 32)]
            .iter()
            .map(|&(height, width, stride)| LevelShape {
                batch: 2,
                channels: 3,
                height,
                width,
                stride,
            })
            .collect()
    }

    /// RoIs at every level, across and beyond the borders, tiny, empty and inverted.
    fn rois() -> (Vec<[f32; 4]>, Vec<usize>) {
        let mut r = vec![
            [10.0, 12.0, 60.0, 70.0],
            [0.0, 0.0, 132.0, 100.0],
            [-20.0, -10.0, 30.0, 15.0],
            [100.0, 80.0, 160.0, 130.0],
            [50.3, 40.7, 51.1, 41.2],
            [20.0, 20.0, 20.0, 20.0],
            [30.0, 30.0, 25.0, 40.0],
            [0.0, 0.0, 300.0, 260.0],
            [-5.0, 10.0, 200.0, 250.0],
            [140.0, 110.0, 150.0, 120.0],
            [-10.0, -20.0, 470.0, 460.0],
            [5.0, 3.0, 130.5, 99.0],
        ];
        let v = values(40, 7);
        for k in 0..6 {
            let x1 = v[4 * k].abs() * 120.0 - 5.0;
            let y1 = v[4 * k + 1].abs() * 90.0 - 5.0;
            r.push([
                x1,
                y1,
                x1 + v[4 * k + 2].abs() * 250.0 + 0.5,
                y1 + v[4 * k + 3].abs() * 240.0 + 0.5,
            ]);
        }
        let images = (0..r.len()).map(|i| (i * 7 + 3) % 2).collect();
        (r, images)
    }

    #[test]
    fn forward_is_the_inference_roi_align_bit_for_bit() -> Result<()> {
        let ls = levels();
        let maps: Vec<Vec<f32>> = ls
            .iter()
            .enumerate()
            .map(|(i, l)| values(l.numel(), 100 + i as u64))
            .collect();
        let (rois, images) = rois();
        for out in [7, 14] {
            let plan = RoiAlignPlan::new(&ls, &rois, &images, out, FINEST_SCALE)?;
            let lv = plan.roi_levels();
            assert!((0..4).all(|l| lv.contains(&l)), "levels {lv:?}");
            let refs: Vec<&[f32]> = maps.iter().map(Vec::as_slice).collect();
            let got = plan.forward(&refs)?;
            assert_eq!(plan.out_shape(), [rois.len(), 3, out, out]);
            let per = 3 * out * out;
            for b in 0..2 {
                let levels_b: Vec<RoiLevel<'_>> = ls
                    .iter()
                    .zip(&maps)
                    .map(|(l, m)| {
                        let hw = l.channels * l.height * l.width;
                        (
                            &m[b * hw..(b + 1) * hw],
                            (l.channels, l.height, l.width),
                            l.stride,
                        )
                    })
                    .collect();
                let sel: Vec<usize> = (0..rois.len()).filter(|&i| images[i] == b).collect();
                let rb: Vec<[f32; 4]> = sel.iter().map(|&i| rois[i]).collect();
                let want = multi_level_roi_align(&levels_b, &rb, out, FINEST_SCALE)?;
                for (k, &i) in sel.iter().enumerate() {
                    let g = &got[i * per..(i + 1) * per];
                    let w = &want[k * per..(k + 1) * per];
                    assert!(
                        g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "RoI {i} {:?} differs",
                        rois[i]
                    );
                }
            }
        }
        Ok(())
    }

    /// `⟨L x, g⟩ = ⟨x, Lᵀ g⟩` in f64 on random `x`, `g`, and the gradient of
    /// `Σ g·L(x)` by central differences at a few coordinates.
    #[test]
    fn backward_is_the_adjoint_and_matches_finite_differences() -> Result<()> {
        let ls = levels();
        let maps: Vec<Vec<f64>> = ls
            .iter()
            .enumerate()
            .map(|(i, l)| {
                values(l.numel(), 200 + i as u64)
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
            .collect();
        let (rois, images) = rois();
        let plan = RoiAlignPlan::new(&ls, &rois, &images, 7, FINEST_SCALE)?;
        let refs: Vec<&[f64]> = maps.iter().map(Vec::as_slice).collect();
        let y = plan.forward(&refs)?;
        let g: Vec<f64> = values(y.len(), 300).into_iter().map(f64::from).collect();
        let grads = plan.backward(&g)?;
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = grads
            .iter()
            .zip(&maps)
            .map(|(gl, m)| gl.iter().zip(m).map(|(a, b)| a * b).sum::<f64>())
            .sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "<Lx, g> = {lhs}, <x, L^T g> = {rhs}"
        );
        // every level receives gradient, and a coordinate-wise finite difference agrees
        let loss = |ms: &[Vec<f64>]| -> f64 {
            let r: Vec<&[f64]> = ms.iter().map(Vec::as_slice).collect();
            let y = plan.forward(&r).unwrap();
            y.iter().zip(&g).map(|(a, b)| a * b).sum()
        };
        let mut checked = 0;
        for (l, gl) in grads.iter().enumerate() {
            assert!(gl.iter().any(|&v| v != 0.0), "level {l} gets no gradient");
            // the largest gradient entries of each level
            let mut idx: Vec<usize> = (0..gl.len()).collect();
            idx.sort_by(|&a, &b| gl[b].abs().total_cmp(&gl[a].abs()));
            for &j in idx.iter().take(5) {
                let h = 1e-4;
                let mut mp = maps.clone();
                mp[l][j] += h;
                let up = loss(&mp);
                mp[l][j] -= 2.0 * h;
                let down = loss(&mp);
                let num = (up - down) / (2.0 * h);
                let err = (num - gl[j]).abs() / gl[j].abs().max(1e-12);
                assert!(err < 1e-8, "level {l} index {j}: {num} vs {}", gl[j]);
                checked += 1;
            }
        }
        assert_eq!(checked, 20);
        Ok(())
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let ls = levels();
        let (rois, images) = rois();
        let err = RoiAlignPlan::new(&ls, &rois, &images[1..], 7, FINEST_SCALE).unwrap_err();
        assert!(err.to_string().contains("batch indices"), "{err}");
        let err = RoiAlignPlan::new(&ls, &rois[..1], &[2], 7, FINEST_SCALE).unwrap_err();
        assert!(err.to_string().contains("batch index 2"), "{err}");
        let plan = RoiAlignPlan::new(&ls, &rois, &images, 7, FINEST_SCALE).unwrap();
        let short = vec![0f32; 10];
        let maps: Vec<&[f32]> = vec![&short; 4];
        let err = plan.forward(&maps).unwrap_err();
        assert!(err.to_string().contains("[2, 3, 25, 33]"), "{err}");
        let err = plan.backward(&short).unwrap_err();
        assert!(err.to_string().contains("[18, 3, 7, 7]"), "{err}");
        let mut bad = ls.clone();
        bad[2].channels = 4;
        assert!(RoiAlignPlan::new(&bad, &rois, &images, 7, FINEST_SCALE).is_err());
    }
}
