//! The finite-difference gradient check shared by the tests of the ops with backward passes.

use candle::{Device, Tensor};

/// Largest |autograd − central difference| over every element of `x`, relative to
/// max(1, |gradient|), for the scalar `f(x)` (f64).
pub(crate) fn fd_error(x: &[f64], shape: &[usize], f: impl Fn(&Tensor) -> Tensor) -> f64 {
    fd_error_step(x, shape, 1e-5, f)
}

/// [`fd_error`] with the finite-difference step `h`.
pub(crate) fn fd_error_step(
    x: &[f64],
    shape: &[usize],
    h: f64,
    f: impl Fn(&Tensor) -> Tensor,
) -> f64 {
    let dev = Device::Cpu;
    let v = candle::Var::from_vec(x.to_vec(), shape, &dev).unwrap();
    let y = f(v.as_tensor());
    let g = y.backward().unwrap();
    let g = g
        .get(v.as_tensor())
        .expect("a gradient")
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let mut worst = 0f64;
    for i in 0..x.len() {
        let eval = |d: f64| {
            let mut xs = x.to_vec();
            xs[i] += d;
            f(&Tensor::from_vec(xs, shape, &dev).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let num = (eval(h) - eval(-h)) / (2.0 * h);
        worst = worst.max((num - g[i]).abs() / g[i].abs().max(1.0));
    }
    worst
}

/// A smooth, deterministic test signal of `n` values.
pub(crate) fn wave(n: usize, k: f64) -> Vec<f64> {
    (0..n).map(|i| (i as f64 * k).sin() * 1.7 + 0.1).collect()
}
