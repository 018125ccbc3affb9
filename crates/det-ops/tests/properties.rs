//! Property tests over deterministic pseudo-random inputs (a fixed-seed SplitMix64, so every
//! run checks the same cases), plus a hand-computed anchor table.

use pvt_det_ops::boxes::area;
use pvt_det_ops::{
    argsort_desc, batched_nms, iou, map_roi_level, multiclass_nms, nms, top_k, AnchorConfig,
    AnchorGenerator, ClassBoxes, DeltaXywhCoder, MulticlassNmsConfig, NmsThreshold, Suppress,
};
use pvt_types::ImageSize;

/// SplitMix64: tiny, deterministic, good enough to spread test cases.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A box with its top-left corner in `[lo, hi)²` and sides in `[min, max)`; with `grid`
    /// the values are whole numbers (many exact ties and exact threshold IoUs).
    fn boxed(&mut self, lo: f32, hi: f32, min: f32, max: f32, grid: bool) -> [f32; 4] {
        let mut v = [
            self.uniform(lo, hi),
            self.uniform(lo, hi),
            self.uniform(min, max),
            self.uniform(min, max),
        ];
        if grid {
            v = v.map(f32::floor);
            v[2] = v[2].max(1.0);
            v[3] = v[3].max(1.0);
        }
        [v[0], v[1], v[0] + v[2], v[1] + v[3]]
    }

    /// Scores, quantised to tenths with `grid` (ties).
    fn score(&mut self, grid: bool) -> f32 {
        let s = self.uniform(0.0, 1.0);
        if grid {
            (s * 10.0).floor() / 10.0
        } else {
            s
        }
    }
}

const RULES: [Suppress; 3] = [
    Suppress::IouAbove,
    Suppress::IouAtLeast,
    Suppress::InterAboveThrUnion,
];

fn thr(iou: f32, suppress: Suppress) -> NmsThreshold {
    NmsThreshold { iou, suppress }
}

/// Whether `iou` would let two boxes both survive under `rule` (with 1e-6 slack for the CUDA
/// rule's multiplication and the IoU function's rounding).
fn may_coexist(iou: f32, t: NmsThreshold) -> bool {
    match t.suppress {
        Suppress::IouAtLeast => iou < t.iou + 1e-6,
        Suppress::IouAbove | Suppress::InterAboveThrUnion => iou <= t.iou + 1e-6,
    }
}

#[test]
fn spec_7_3_retinanet_stride8_widths() {
    let gen = AnchorGenerator::new(&AnchorConfig::retinanet()).unwrap();
    let widths: Vec<f32> = gen
        .base_anchors(0)
        .unwrap()
        .iter()
        .map(|b| ((b[2] - b[0]) * 100.0).round() / 100.0)
        .collect();
    assert_eq!(
        widths,
        [45.25, 57.02, 71.84, 32.0, 40.32, 50.80, 22.63, 28.51, 35.92]
    );
    // Heights are the widths of the mirrored ratio; all anchors centred at the origin.
    for b in gen.base_anchors(0).unwrap() {
        assert_eq!(b[0], -b[2]);
        assert_eq!(b[1], -b[3]);
    }
    // RPN: 32..512 square anchors (ratio 1 is the middle one).
    let rpn = AnchorGenerator::new(&AnchorConfig::rpn()).unwrap();
    let sides: Vec<f32> = (0..5)
        .map(|l| {
            let b = rpn.base_anchors(l).unwrap()[1];
            b[2] - b[0]
        })
        .collect();
    assert_eq!(sides, [32.0, 64.0, 128.0, 256.0, 512.0]);
}

#[test]
fn anchor_counts_order_and_sparse_access() {
    let mut rng = Rng(1);
    for cfg in [AnchorConfig::retinanet(), AnchorConfig::rpn()] {
        let gen = AnchorGenerator::new(&cfg).unwrap();
        let a = gen.num_base_anchors();
        for level in 0..gen.num_levels() {
            let stride = gen.strides()[level] as f32;
            for _ in 0..4 {
                let size = ImageSize::new(1 + rng.below(13), 1 + rng.below(17));
                let grid = gen.grid_anchors(level, size).unwrap();
                assert_eq!(grid.len(), size.height * size.width * a);
                assert_eq!(grid.len(), gen.num_anchors(size));
                for (idx, b) in grid.iter().enumerate() {
                    let (cell, k) = (idx / a, idx % a);
                    let (y, x) = (cell / size.width, cell % size.width);
                    let base = gen.base_anchors(level).unwrap()[k];
                    assert_eq!(
                        *b,
                        [
                            base[0] + x as f32 * stride,
                            base[1] + y as f32 * stride,
                            base[2] + x as f32 * stride,
                            base[3] + y as f32 * stride
                        ]
                    );
                    assert_eq!(gen.anchor_at(level, size, idx).unwrap(), *b);
                }
            }
        }
        let sizes: Vec<ImageSize> = (0..gen.num_levels())
            .map(|l| ImageSize::new(100 >> l, 152 >> l))
            .collect();
        let all = gen.multi_level_grid_anchors(&sizes).unwrap();
        let total: usize = all.iter().map(Vec::len).sum();
        assert_eq!(total, sizes.iter().map(|s| s.area() * a).sum::<usize>());
    }
}

#[test]
fn encode_decode_round_trip() {
    let mut rng = Rng(2);
    for coder in [DeltaXywhCoder::retinanet(), DeltaXywhCoder::rcnn()] {
        for _ in 0..2000 {
            let reference = rng.boxed(-50.0, 800.0, 4.0, 400.0, false);
            // Targets within a factor 50 of the reference (inside the ln(62.5) clamp).
            let w = (reference[2] - reference[0]) * rng.uniform(0.05, 20.0);
            let h = (reference[3] - reference[1]) * rng.uniform(0.05, 20.0);
            let x = reference[0] + rng.uniform(-300.0, 300.0);
            let y = reference[1] + rng.uniform(-300.0, 300.0);
            let target = [x, y, x + w, y + h];
            let d = coder.encode_one(reference, target);
            let back = coder.decode_one(reference, d, None);
            // Relative to the box's largest coordinate: `gy - gh/2` cancels when the box is
            // large compared with its position.
            let scale = target.iter().fold(1.0f32, |m, c| m.max(c.abs()));
            for k in 0..4 {
                assert!(
                    (back[k] - target[k]).abs() <= 1e-4 * scale,
                    "{reference:?} -> {target:?}: decoded {back:?}"
                );
            }
        }
    }
}

#[test]
fn decode_clamps_and_clips() {
    let mut rng = Rng(3);
    let coder = DeltaXywhCoder::retinanet();
    let size = ImageSize::new(600, 900);
    for _ in 0..2000 {
        let r = rng.boxed(-100.0, 1000.0, 1.0, 300.0, false);
        let d = [
            rng.uniform(-3.0, 3.0),
            rng.uniform(-3.0, 3.0),
            rng.uniform(-20.0, 20.0),
            rng.uniform(-20.0, 20.0),
        ];
        let b = coder.decode_one(r, d, None);
        let (pw, ph) = (r[2] - r[0], r[3] - r[1]);
        // gw / pw within [16/1000, 1000/16]; the slack covers the rounding of coordinates
        // near 1000 (ulp 6e-5) when the decoded box is tiny.
        for (g, p) in [(b[2] - b[0], pw), (b[3] - b[1], ph)] {
            assert!(g <= p * 62.5 * 1.0001 + 1e-3, "{g} vs {p}");
            assert!(g >= p * 0.016 * 0.9999 - 1e-3, "{g} vs {p}");
        }
        let c = coder.decode_one(r, d, Some(size));
        assert!(
            c[0] >= 0.0 && c[2] <= 900.0 && c[1] >= 0.0 && c[3] <= 600.0,
            "{c:?}"
        );
        assert!(c[0] <= c[2] && c[1] <= c[3]);
    }
}

#[test]
fn iou_symmetric_bounded_self_one() {
    let mut rng = Rng(4);
    for i in 0..5000 {
        let grid = i % 2 == 0;
        let a = rng.boxed(0.0, 50.0, 0.5, 30.0, grid);
        let b = rng.boxed(0.0, 50.0, 0.5, 30.0, grid);
        let ab = iou(a, b);
        assert_eq!(ab, iou(b, a));
        assert!((0.0..=1.0).contains(&ab), "{a:?} {b:?}: {ab}");
        assert_eq!(iou(a, a), 1.0, "{a:?}");
    }
}

/// Kept boxes never overlap beyond the threshold; every dropped box overlaps an earlier kept
/// one at least at the threshold; running NMS again on the kept boxes keeps them all.
#[test]
fn nms_properties() {
    let mut rng = Rng(5);
    for case in 0..120 {
        let grid = case % 2 == 0;
        let n = 1 + rng.below(120);
        let boxes: Vec<[f32; 4]> = (0..n)
            .map(|_| rng.boxed(0.0, 40.0, 1.0, 20.0, grid))
            .collect();
        let scores: Vec<f32> = (0..n).map(|_| rng.score(grid)).collect();
        let iou_thr = [0.3, 0.5, 0.7, 1.0 / 3.0][case % 4];
        for rule in RULES {
            let t = thr(iou_thr, rule);
            let keep = nms(&boxes, &scores, t).unwrap();
            assert!(!keep.is_empty());
            // Kept in ranking order.
            let rank = argsort_desc(&scores);
            let pos: Vec<usize> = {
                let mut p = vec![0; n];
                for (r, &i) in rank.iter().enumerate() {
                    p[i] = r;
                }
                p
            };
            assert!(keep.windows(2).all(|w| pos[w[0]] < pos[w[1]]));
            for (x, &i) in keep.iter().enumerate() {
                for &j in &keep[x + 1..] {
                    assert!(
                        may_coexist(iou(boxes[i], boxes[j]), t),
                        "case {case} {rule:?}"
                    );
                }
            }
            let mut kept = vec![false; n];
            keep.iter().for_each(|&i| kept[i] = true);
            for j in (0..n).filter(|&j| !kept[j]) {
                assert!(
                    keep.iter()
                        .any(|&i| pos[i] < pos[j] && iou(boxes[i], boxes[j]) >= iou_thr - 1e-6),
                    "case {case} {rule:?}: box {j} dropped without a reason"
                );
            }
            // Idempotence.
            let kb: Vec<[f32; 4]> = keep.iter().map(|&i| boxes[i]).collect();
            let ks: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
            let again = nms(&kb, &ks, t).unwrap();
            assert_eq!(
                again,
                (0..keep.len()).collect::<Vec<_>>(),
                "case {case} {rule:?}"
            );
        }
    }
}

/// mmcv's `batched_nms` below `split_thr`: one NMS over boxes moved by `label · (max + 1)`.
fn mmcv_single_pass(
    boxes: &[[f32; 4]],
    scores: &[f32],
    labels: &[usize],
    t: NmsThreshold,
) -> Vec<usize> {
    let max = boxes
        .iter()
        .flatten()
        .fold(f32::NEG_INFINITY, |m, &c| m.max(c));
    let moved: Vec<[f32; 4]> = boxes
        .iter()
        .zip(labels)
        .map(|(b, &l)| b.map(|c| c + l as f32 * (max + 1.0)))
        .collect();
    nms(&moved, scores, t).unwrap()
}

#[test]
fn batched_nms_equals_mmcv_single_pass_and_per_class() {
    let mut rng = Rng(6);
    for case in 0..60 {
        let grid = case % 2 == 0;
        let n = 1 + rng.below(400);
        let classes = 1 + rng.below(6);
        let boxes: Vec<[f32; 4]> = (0..n)
            .map(|_| rng.boxed(0.0, 60.0, 1.0, 25.0, grid))
            .collect();
        let scores: Vec<f32> = (0..n).map(|_| rng.score(grid)).collect();
        let labels: Vec<usize> = (0..n).map(|_| rng.below(classes) * 3).collect();
        for rule in RULES {
            let t = thr(0.5, rule);
            let got = batched_nms(&boxes, &scores, &labels, t).unwrap();
            assert_eq!(
                got,
                mmcv_single_pass(&boxes, &scores, &labels, t),
                "case {case}"
            );
            // No two kept boxes of one class overlap beyond the threshold.
            for (x, &i) in got.iter().enumerate() {
                for &j in &got[x + 1..] {
                    if labels[i] == labels[j] {
                        assert!(may_coexist(iou(boxes[i], boxes[j]), t));
                    }
                }
            }
        }
    }
}

/// From `SPLIT_THR` boxes on mmcv loops over the labels; the result must be the single pass's.
#[test]
fn batched_nms_split_path_agrees() {
    let mut rng = Rng(7);
    let n = pvt_det_ops::nms::SPLIT_THR + 37;
    let boxes: Vec<[f32; 4]> = (0..n)
        .map(|_| rng.boxed(0.0, 1300.0, 2.0, 200.0, false))
        .collect();
    let scores: Vec<f32> = (0..n).map(|_| rng.score(true)).collect();
    let labels: Vec<usize> = (0..n).map(|_| rng.below(80)).collect();
    let t = NmsThreshold::cpu_legacy(0.5);
    let got = batched_nms(&boxes, &scores, &labels, t).unwrap();
    assert_eq!(got, mmcv_single_pass(&boxes, &scores, &labels, t));
}

#[test]
fn top_k_is_argsort_prefix() {
    let mut rng = Rng(8);
    for case in 0..200 {
        let n = rng.below(300);
        let scores: Vec<f32> = (0..n)
            .map(|_| match rng.below(20) {
                0 => f32::NAN,
                1 => -0.0,
                2 => 0.0,
                _ => rng.score(case % 2 == 0),
            })
            .collect();
        let full = argsort_desc(&scores);
        let k = rng.below(n + 2);
        assert_eq!(top_k(&scores, k), full[..k.min(n)].to_vec());
        // Sorted: NaN first, then non-increasing, ties by index.
        for w in full.windows(2) {
            let (a, b) = (scores[w[0]], scores[w[1]]);
            let ordered = match (a.is_nan(), b.is_nan()) {
                (true, true) => w[0] < w[1],
                (true, false) => true,
                (false, true) => false,
                (false, false) => a > b || (a == b && w[0] < w[1]),
            };
            assert!(ordered, "{a} (#{}) before {b} (#{})", w[0], w[1]);
        }
    }
}

#[test]
fn multiclass_nms_properties() {
    let mut rng = Rng(9);
    for case in 0..40 {
        let grid = case % 2 == 0;
        let rows = 1 + rng.below(300);
        let k = 1 + rng.below(8);
        let boxes: Vec<[f32; 4]> = (0..rows)
            .map(|_| rng.boxed(0.0, 80.0, 2.0, 30.0, grid))
            .collect();
        let scores: Vec<f32> = (0..rows * k).map(|_| rng.score(grid) * 0.3).collect();
        let cfg = MulticlassNmsConfig {
            score_thr: 0.05,
            nms: NmsThreshold::cpu_legacy(0.5),
            max_num: Some(50),
        };
        let dets = multiclass_nms(ClassBoxes::Shared(&boxes), &scores, k, &cfg).unwrap();
        assert!(dets.len() <= 50);
        for d in &dets {
            assert!(d.score > 0.05 && d.class < k && d.bbox == boxes[d.row]);
            assert_eq!(d.score, scores[d.row * k + d.class]);
        }
        assert!(dets.windows(2).all(|w| w[0].score >= w[1].score));
        for (x, a) in dets.iter().enumerate() {
            for b in &dets[x + 1..] {
                if a.class == b.class {
                    assert!(iou(a.bbox, b.bbox) < 0.5 + 1e-6);
                }
            }
        }
        // Without a cap, the same as batched NMS over the thresholded pairs.
        let all = multiclass_nms(
            ClassBoxes::Shared(&boxes),
            &scores,
            k,
            &MulticlassNmsConfig {
                max_num: None,
                ..cfg
            },
        )
        .unwrap();
        assert_eq!(&all[..dets.len()], &dets[..]);
    }
}

#[test]
fn roi_levels_are_monotone_in_size() {
    let mut rng = Rng(10);
    let mut rois: Vec<[f32; 4]> = (0..2000)
        .map(|_| rng.boxed(0.0, 500.0, 1.0, 900.0, false))
        .collect();
    rois.sort_by(|a, b| area(*a).total_cmp(&area(*b)));
    let levels: Vec<usize> = rois.iter().map(|&r| map_roi_level(r, 56.0, 4)).collect();
    assert!(levels.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(levels.first(), Some(&0));
    assert_eq!(levels.last(), Some(&3));
}
