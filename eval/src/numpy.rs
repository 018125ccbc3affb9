//! Floating-point reductions in numpy's order.
//!
//! pycocotools forms every summary number with `np.mean` and mmsegmentation with `np.nanmean`;
//! numpy adds a contiguous array by pairwise reduction (`pairwise_sum` in numpy's
//! `loops_utils.h.src`), not left to right. Adding in the same order makes our means equal to
//! the reference to the last bit rather than to within rounding. Checked against numpy 2.4 on
//! arrays of 80,800 values (the size of COCO's AP slice): the whole array is summed pairwise.

/// Below this length numpy adds serially; up to [`BLOCK`] it uses eight lanes.
const UNROLL: usize = 8;
/// numpy's `PW_BLOCKSIZE`: above it the array is split in two.
const BLOCK: usize = 128;

macro_rules! pairwise {
    ($name:ident, $t:ty) => {
        /// Sum in the order numpy's `np.add.reduce` uses for a contiguous array of this type.
        pub(crate) fn $name(v: &[$t]) -> $t {
            let n = v.len();
            if n < UNROLL {
                v.iter().fold(0.0, |s, &x| s + x)
            } else if n <= BLOCK {
                let mut r = [0.0 as $t; UNROLL];
                r.copy_from_slice(&v[..UNROLL]);
                let end = n - n % UNROLL;
                for chunk in v[UNROLL..end].chunks_exact(UNROLL) {
                    for (acc, &x) in r.iter_mut().zip(chunk) {
                        *acc += x;
                    }
                }
                let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
                v[end..].iter().fold(head, |s, &x| s + x)
            } else {
                let half = n / 2;
                let split = half - half % UNROLL;
                $name(&v[..split]) + $name(&v[split..])
            }
        }
    };
}

pairwise!(pairwise_sum_f64, f64);
pairwise!(pairwise_sum_f32, f32);

/// `np.mean` of a 1-D float64 array; `None` when it is empty.
pub(crate) fn mean_f64(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| pairwise_sum_f64(v) / v.len() as f64)
}

/// `np.nanmean` of a 1-D float32 array (NaNs replaced by 0 for the sum, count of the others);
/// NaN when every value is NaN, as numpy returns (with a warning).
pub(crate) fn nanmean_f32(v: &[f32]) -> f32 {
    let cleaned: Vec<f32> = v
        .iter()
        .map(|&x| if x.is_nan() { 0.0 } else { x })
        .collect();
    let count = v.iter().filter(|x| !x.is_nan()).count();
    if count == 0 {
        return f32::NAN;
    }
    pairwise_sum_f32(&cleaned) / count as f32
}

/// `np.round(x, 2)` on a float32 value: scale by 100 in float32, round half to even, divide.
pub(crate) fn round2_f32(x: f32) -> f32 {
    let y = x * 100.0f32;
    y.round_ties_even() / 100.0f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_differs_from_serial_where_numpy_does() {
        // One large value then many small ones: serial addition loses them, pairwise keeps
        // some. numpy 2.4: `np.sum(np.array([1e16] + [1.0] * 300)) - 1e16 == 292.0`.
        let mut v = vec![1e16f64];
        v.extend(std::iter::repeat_n(1.0, 300));
        let serial: f64 = v.iter().sum();
        assert_eq!(serial, 1e16);
        assert_eq!(pairwise_sum_f64(&v) - 1e16, 292.0);
    }

    #[test]
    fn round2_is_half_even_on_the_float32_product() {
        assert_eq!(round2_f32(0.3321), 0.33);
        assert_eq!(round2_f32(0.125), 0.12);
        assert_eq!(round2_f32(0.135), 0.14);
        // np.round(np.float32(33.205), 2) == 33.21 (the float32 product is 3320.5002).
        assert_eq!(round2_f32(33.205), 33.21);
        assert!(nanmean_f32(&[f32::NAN]).is_nan());
        assert_eq!(nanmean_f32(&[1.0, f32::NAN, 0.0]), 0.5);
    }
}
