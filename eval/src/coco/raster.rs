//! Polygon to RLE, with exactly the output of cocoapi's `rleFrPoly`, faster.
//!
//! Provenance: cocoapi `common/maskApi.c` (`rleFrPoly`, BSD-2-Clause), as ported by hotcoco
//! 1.3.1 (`mask::fr_poly`, which pins the x86_64 arithmetic: `ys + s*t` rounded twice, no FMA;
//! a zero-length edge has slope 0). This module is a drop-in for `hotcoco::mask::fr_polys`,
//! verified equal to it on random polygons (`tests` below), used to rasterize ground-truth
//! polygons up front ([`super::load::load_pair`]).
//!
//! Why faster: `rleFrPoly` walks every point of the 5x-upsampled boundary and keeps only the
//! points where the upsampled column `u` steps across `5c + 2` for an image column `c`. Here
//! those crossings are computed directly: on an x-major edge every fifth step, on a y-major
//! edge by bisection on the (monotone) column. The crossing rows and the run-length assembly
//! are maskApi's, in integer arithmetic where maskApi's float expressions are exact.

/// maskApi's upsampling factor.
const SCALE: f64 = 5.0;
/// hotcoco's clamp on upsampled vertices (keeps every edge length inside i32).
const MAX_ABS_UPSAMPLED: f64 = SCALE * (1u32 << 22) as f64;

/// RLE runs of one polygon `[x0, y0, x1, y1, ...]` on an `h x w` canvas.
pub(crate) fn fr_poly(xy: &[f64], h: u32, w: u32) -> Vec<u32> {
    let hw = h * w;
    let k = xy.len() / 2;
    if k < 3 {
        return vec![hw];
    }
    let up = |c: f64| (SCALE * c + 0.5).clamp(-MAX_ABS_UPSAMPLED, MAX_ABS_UPSAMPLED) as i32;
    let pts: Vec<(i64, i64)> = (0..=k)
        .map(|j| {
            let j = j % k;
            (i64::from(up(xy[2 * j])), i64::from(up(xy[2 * j + 1])))
        })
        .collect();
    let mut a: Vec<u32> = Vec::new();
    let (h64, w64) = (i64::from(h), i64::from(w));
    // A crossing at upsampled column `xd_raw` and row `yd_raw`, kept only where maskApi keeps it.
    let mut emit = |xd_raw: i64, yd_raw: i64| {
        let c = xd_raw - 2;
        if c < 0 || c % 5 != 0 || c / 5 > w64 - 1 {
            return;
        }
        // maskApi: yd = ceil(clamp((yd_raw + .5) / 5 - .5, 0, h)), exact in integers.
        let n = yd_raw - 2;
        let yd = if n <= 0 {
            0
        } else if n > 5 * h64 {
            h64
        } else {
            (n + 4) / 5
        };
        a.push(((c / 5) * h64 + yd) as u32);
    };
    let mut last: Option<(i64, i64)> = None;
    for j in 0..k {
        let edge = Edge::new(pts[j], pts[j + 1]);
        let first = edge.at(if edge.flip { edge.len } else { 0 });
        if let Some((ua, va)) = last {
            // The pair across the junction of two edges, in traversal order.
            let (ub, vb) = first;
            if ua != ub {
                emit(if ub < ua { ub } else { ub - 1 }, va.min(vb));
            }
        }
        edge.crossings(w64, &mut emit);
        last = Some(edge.at(if edge.flip { 0 } else { edge.len }));
    }
    a.push(hw);
    a.sort_unstable();
    let mut prev = 0u32;
    for v in a.iter_mut() {
        let t = *v;
        *v = t - prev;
        prev = t;
    }
    // Zero-length runs cancel: merge the neighbours, as maskApi does.
    let mut counts = Vec::with_capacity(a.len());
    let mut i = 0;
    if let Some(&first) = a.first() {
        counts.push(first);
        i = 1;
    }
    while i < a.len() {
        if a[i] > 0 {
            counts.push(a[i]);
            i += 1;
        } else {
            i += 1;
            if i < a.len() {
                if let Some(l) = counts.last_mut() {
                    *l += a[i];
                }
                i += 1;
            }
        }
    }
    counts
}

/// One upsampled edge, normalised as maskApi does (walk forward along the longer axis).
struct Edge {
    xs: i64,
    ys: i64,
    len: i64,
    s: f64,
    x_major: bool,
    flip: bool,
}

impl Edge {
    fn new((mut xs, mut ys): (i64, i64), (mut xe, mut ye): (i64, i64)) -> Self {
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        let x_major = dx >= dy;
        let len = if x_major { dx } else { dy };
        let s = match (x_major, len) {
            (_, 0) => 0.0,
            (true, _) => (ye - ys) as f64 / dx as f64,
            (false, _) => (xe - xs) as f64 / dy as f64,
        };
        Self {
            xs,
            ys,
            len,
            s,
            x_major,
            flip,
        }
    }

    /// maskApi's point at step `t`: `(int)(base + s*t + .5)` on the minor axis.
    fn at(&self, t: i64) -> (i64, i64) {
        let minor = |base: i64| (self.s * t as f64 + base as f64 + 0.5) as i32 as i64;
        if self.x_major {
            (t + self.xs, minor(self.ys))
        } else {
            (minor(self.xs), t + self.ys)
        }
    }

    /// The crossings between consecutive points of this edge. Columns step by one between
    /// neighbours, so the crossed column is the smaller `u` and the row the smaller `v`,
    /// whichever way the edge is walked.
    fn crossings(&self, w: i64, emit: &mut impl FnMut(i64, i64)) {
        if self.len == 0 {
            return;
        }
        let (c_lo, c_hi) = (2, 5 * (w - 1) + 2);
        if self.x_major {
            // u(t) = xs + t; pair (t, t+1) crosses column xs + t.
            let t_lo = (c_lo - self.xs).max(0);
            let t_hi = (c_hi - self.xs).min(self.len - 1);
            if t_lo > t_hi {
                return;
            }
            let mut t = t_lo + (c_lo - (self.xs + t_lo)).rem_euclid(5);
            while t <= t_hi {
                let (_, v0) = self.at(t);
                let (_, v1) = self.at(t + 1);
                emit(self.xs + t, v0.min(v1));
                t += 5;
            }
        } else {
            let (u0, u1) = (self.at(0).0, self.at(self.len).0);
            if u0 == u1 {
                return;
            }
            let rising = u1 > u0;
            let (lo, hi) = if rising { (u0, u1 - 1) } else { (u1, u0 - 1) };
            let (lo, hi) = (lo.max(c_lo), hi.min(c_hi));
            if lo > hi {
                return;
            }
            let mut c = lo + (c_lo - lo).rem_euclid(5);
            while c <= hi {
                // First t whose column is past the step between c and c+1.
                let past = |t: i64| {
                    let u = self.at(t).0;
                    if rising {
                        u > c
                    } else {
                        u <= c
                    }
                };
                // Start from the real-valued solution of xs + s*t + .5 = c + 1 and walk to the
                // exact first t (the predicate is monotone), usually in one or two steps.
                let est = ((c as f64 + 0.5 - self.xs as f64) / self.s).ceil();
                let mut a = if est.is_finite() {
                    (est as i64).clamp(1, self.len)
                } else {
                    1
                };
                while a > 1 && past(a - 1) {
                    a -= 1;
                }
                while a < self.len && !past(a) {
                    a += 1;
                }
                emit(c, a - 1 + self.ys);
                c += 5;
            }
        }
    }
}

/// RLE runs of a polygon list (union of the parts), as `hotcoco::mask::fr_polys`.
pub(crate) fn fr_polys(polys: &[Vec<f64>], h: u32, w: u32) -> Option<Vec<u32>> {
    match polys {
        [] => Some(vec![h * w]),
        [p] => Some(fr_poly(p, h, w)),
        _ => {
            let rles: Vec<hotcoco::types::Rle> = polys
                .iter()
                .map(|p| hotcoco::types::Rle {
                    h,
                    w,
                    counts: fr_poly(p, h, w),
                })
                .collect();
            hotcoco::mask::merge(&rles, false).ok().map(|r| r.counts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn equal_to_hotcoco_on_random_polygons() {
        let mut rng = Rng(7);
        for case in 0..60_000 {
            let h = 1 + (rng.next() % 120) as u32;
            let w = 1 + (rng.next() % 120) as u32;
            let n = 3 + (rng.next() % 12) as usize;
            let spread = [0.3, 1.0, 1.6][case % 3];
            let mut xy = Vec::with_capacity(2 * n);
            for i in 0..n {
                let (mut x, mut y) = (
                    (rng.unit() * spread - (spread - 1.0) / 2.0) * w as f64,
                    (rng.unit() * spread - (spread - 1.0) / 2.0) * h as f64,
                );
                match rng.next() % 10 {
                    0 => x = x.round(),               // on pixel corners
                    1 => y = (y * 2.0).round() / 2.0, // on half pixels
                    2 if i > 0 => x = xy[2 * i - 2],  // vertical edge
                    3 if i > 0 => {
                        x = xy[2 * i - 2]; // repeated vertex
                        y = xy[2 * i - 1];
                    }
                    _ => {}
                }
                xy.push(x);
                xy.push(y);
            }
            let want = hotcoco::mask::fr_poly(&xy, h, w).expect("hotcoco").counts;
            assert_eq!(fr_poly(&xy, h, w), want, "case {case}: {h}x{w} {xy:?}");
        }
    }

    #[test]
    fn far_out_coordinates_and_multi_part_polygons() {
        let xy = [-1e9, -5.0, 1e9, 3.0, 20.0, 1e12, -3.5, 7.25];
        let want = hotcoco::mask::fr_poly(&xy, 40, 30).expect("hotcoco").counts;
        assert_eq!(fr_poly(&xy, 40, 30), want);
        let parts = vec![
            vec![1.0, 1.0, 9.0, 1.0, 9.0, 9.0],
            vec![5.0, 5.0, 15.0, 6.0, 7.0, 14.0],
        ];
        let want = hotcoco::mask::fr_polys(&parts, 20, 20)
            .expect("hotcoco")
            .counts;
        assert_eq!(fr_polys(&parts, 20, 20), Some(want));
    }
}
