//! Which FPN level a RoI is pooled from (mmdet `SingleRoIExtractor.map_roi_levels`).
//!
//! Provenance: mmdetection 2.13
//! `mmdet/models/roi_heads/roi_extractors/single_level_roi_extractor.py` (Apache-2.0,
//! OpenMMLab). Mask R-CNN's extractor uses P2–P5 (`featmap_strides [4, 8, 16, 32]`, so
//! `num_levels = 4`) and `finest_scale = 56`:
//!
//! ```text
//! scale = sqrt((x2 - x1) · (y2 - y1))
//! level = clamp(floor(log2(scale / 56 + 1e-6)), 0, num_levels - 1)
//! ```
//!
//! so RoIs below 112 px go to P2, below 224 to P3, below 448 to P4, and the rest to P5
//! (sizes in input-image pixels, i.e. the resized frame).

/// mmdet's `finest_scale` for the PVT Mask R-CNN configs.
pub const FINEST_SCALE: f32 = 56.0;

/// The level index (`0..num_levels`) of one RoI `[x1, y1, x2, y2]`, computed in f32 as mmdet
/// does. An inverted box (negative area) or a NaN coordinate gives a NaN scale, which this
/// function maps to level 0 (mmdet's `.long()` of NaN is undefined); an infinite scale maps to
/// the last level. `num_levels = 0` is treated as 1.
pub fn map_roi_level(roi: [f32; 4], finest_scale: f32, num_levels: usize) -> usize {
    let last = num_levels.saturating_sub(1) as f32;
    let scale = ((roi[2] - roi[0]) * (roi[3] - roi[1])).sqrt();
    let lvl = (scale / finest_scale + 1e-6_f32).log2().floor();
    if lvl.is_nan() || lvl <= 0.0 {
        0
    } else if lvl >= last {
        last as usize
    } else {
        lvl as usize
    }
}

/// [`map_roi_level`] for every RoI.
pub fn map_roi_levels(rois: &[[f32; 4]], finest_scale: f32, num_levels: usize) -> Vec<usize> {
    rois.iter()
        .map(|&r| map_roi_level(r, finest_scale, num_levels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(side: f32) -> [f32; 4] {
        [10.0, 20.0, 10.0 + side, 20.0 + side]
    }

    #[test]
    fn level_boundaries() {
        let cases = [
            (0.0, 0),
            (50.0, 0),
            (111.9, 0),
            (112.0, 1),
            (223.0, 1),
            (224.0, 2),
            (447.0, 2),
            (448.0, 3),
            (2000.0, 3),
        ];
        for (side, lvl) in cases {
            assert_eq!(
                map_roi_level(square(side), FINEST_SCALE, 4),
                lvl,
                "side {side}"
            );
        }
        // Non-square: 56 x 224 has sqrt area 112 -> level 1.
        assert_eq!(map_roi_level([0., 0., 56., 224.], FINEST_SCALE, 4), 1);
        assert_eq!(map_roi_level([5., 0., 0., 10.], FINEST_SCALE, 4), 0);
        assert_eq!(map_roi_level([f32::NAN, 0., 1., 1.], FINEST_SCALE, 4), 0);
        assert_eq!(
            map_roi_level([0., 0., f32::INFINITY, 1.], FINEST_SCALE, 4),
            3
        );
        assert_eq!(map_roi_level(square(1000.0), FINEST_SCALE, 0), 0);
        assert_eq!(
            map_roi_levels(&[square(10.0), square(300.0)], FINEST_SCALE, 4),
            vec![0, 2]
        );
    }
}
