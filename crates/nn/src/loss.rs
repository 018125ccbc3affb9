//! Generic training losses as mmdetection 2.x computes them (sigmoid focal loss, L1, smooth L1),
//! written with differentiable candle ops.
//!
//! Every loss returns the **sum** over its elements, each multiplied by its weight; the caller
//! divides by mmdetection's `avg_factor` (for RetinaNet the number of positive anchors, at least
//! one per image).

use candle::{Result, Tensor};

/// Sigmoid focal loss settings (RetinaNet: α 0.25, γ 2).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FocalLoss {
    /// Weight of the positives (`1 − α` for the negatives).
    pub alpha: f64,
    /// Focusing exponent.
    pub gamma: f64,
}

impl Default for FocalLoss {
    fn default() -> Self {
        Self {
            alpha: 0.25,
            gamma: 2.0,
        }
    }
}

impl FocalLoss {
    /// mmdet `sigmoid_focal_loss` (`py_sigmoid_focal_loss`, the same numbers as the CUDA op),
    /// summed: for logits `x`, targets `t ∈ {0, 1}` and `p = σ(x)`,
    /// `BCE(x, t) · (α·t + (1 − α)·(1 − t)) · ((1 − p)·t + p·(1 − t))^γ`, each element times its
    /// row's weight. `logits`, `targets`: `[N, K]` (targets one-hot, all zeros for background);
    /// `weights`: `[N, 1]` (0 for ignored anchors).
    pub fn sum(&self, logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let p = candle_nn::ops::sigmoid(logits)?;
        // BCE with logits, stable: max(x, 0) − x·t + log(1 + e^{−|x|})
        let bce = ((logits.relu()? - (logits * targets)?)?
            + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
        let one_minus_t = targets.affine(-1.0, 1.0)?;
        let pt = (((p.affine(-1.0, 1.0)?) * targets)? + (&p * &one_minus_t)?)?;
        let modulator = if self.gamma == 2.0 {
            pt.sqr()?
        } else if self.gamma == 1.0 {
            pt
        } else {
            pt.powf(self.gamma)?
        };
        let alpha_t = targets.affine(2.0 * self.alpha - 1.0, 1.0 - self.alpha)?;
        let loss = ((bce * alpha_t)? * modulator)?.broadcast_mul(weights)?;
        loss.sum_all()
    }
}

/// `Σ w·|pred − target|` (mmdet `L1Loss`, before the average). `weights` broadcasts to `pred`.
pub fn l1_sum(pred: &Tensor, target: &Tensor, weights: &Tensor) -> Result<Tensor> {
    (pred - target)?.abs()?.broadcast_mul(weights)?.sum_all()
}

/// `Σ w·smooth_l1(pred − target)` (mmdet `SmoothL1Loss`, before the average): `0.5·d²/β` where
/// `|d| < β`, `|d| − 0.5·β` elsewhere.
pub fn smooth_l1_sum(
    pred: &Tensor,
    target: &Tensor,
    weights: &Tensor,
    beta: f64,
) -> Result<Tensor> {
    let d = (pred - target)?.abs()?;
    if beta <= 0.0 {
        return d.broadcast_mul(weights)?.sum_all();
    }
    let small = d.lt(beta)?;
    let quad = (d.sqr()? * (0.5 / beta))?;
    let lin = (&d - 0.5 * beta)?;
    small
        .where_cond(&quad, &lin)?
        .broadcast_mul(weights)?
        .sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};

    fn wave(n: usize, k: f64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64 * k).sin() * scale) + 0.03)
            .collect()
    }

    /// max |autograd − central difference| / max(1, |g|) over the elements of `x` (f64), with
    /// the step 1e-6.
    fn fd_error(x: &[f64], shape: (usize, usize), f: impl Fn(&Tensor) -> Tensor) -> f64 {
        crate::ops::grad_check::fd_error_step(x, &[shape.0, shape.1], 1e-6, f)
    }

    fn targets(n: usize, k: usize) -> Tensor {
        let mut t = vec![0f64; n * k];
        for i in 0..n {
            if i % 3 != 0 {
                t[i * k + (i % k)] = 1.0;
            }
        }
        Tensor::from_vec(t, (n, k), &Device::Cpu).unwrap()
    }

    #[test]
    fn focal_loss_equals_the_formula() {
        // one logit, by hand: x = 0.7, t = 1: p = σ(0.7), loss = −log p · 0.25 · (1 − p)²
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.7f64, -1.2]], &dev).unwrap();
        let t = Tensor::new(&[[1f64, 0.]], &dev).unwrap();
        let w = Tensor::new(&[[1f64]], &dev).unwrap();
        let got = FocalLoss::default()
            .sum(&x, &t, &w)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let p0 = s(0.7);
        let p1 = s(-1.2);
        let want = -p0.ln() * 0.25 * (1.0 - p0).powi(2) - (1.0 - p1).ln() * 0.75 * p1.powi(2);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // large logits stay finite
        let x = Tensor::new(&[[80f32, -80.]], &dev).unwrap();
        let t = Tensor::new(&[[0f32, 1.]], &dev).unwrap();
        let w = Tensor::new(&[[1f32]], &dev).unwrap();
        let v = FocalLoss::default().sum(&x, &t, &w).unwrap();
        assert!(v.to_scalar::<f32>().unwrap().is_finite());
        assert_eq!(v.dtype(), DType::F32);
    }

    #[test]
    fn focal_loss_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let (n, k) = (7, 4);
        let t = targets(n, k);
        let w = Tensor::from_vec(
            (0..n)
                .map(|i| if i == 5 { 0.0 } else { 1.0 })
                .collect::<Vec<f64>>(),
            (n, 1),
            &dev,
        )
        .unwrap();
        for loss in [
            FocalLoss::default(),
            FocalLoss {
                alpha: 0.4,
                gamma: 1.5,
            },
        ] {
            let e = fd_error(&wave(n * k, 0.83, 3.0), (n, k), |x| {
                loss.sum(x, &t, &w).unwrap()
            });
            assert!(e < 1e-8, "{loss:?}: {e:e}");
        }
    }

    #[test]
    fn l1_and_smooth_l1_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let (n, k) = (5, 4);
        // targets away from the predictions' kinks
        let target =
            (Tensor::from_vec(wave(n * k, 1.7, 0.5), (n, k), &dev).unwrap() + 0.2).unwrap();
        let pred = wave(n * k, 0.61, 1.5);
        let w = Tensor::from_vec(vec![1f64, 0., 1., 2., 1.], (n, 1), &dev).unwrap();
        let e = fd_error(&pred, (n, k), |x| l1_sum(x, &target, &w).unwrap());
        assert!(e < 1e-8, "l1 {e:e}");
        let e = fd_error(&pred, (n, k), |x| {
            smooth_l1_sum(x, &target, &w, 0.5).unwrap()
        });
        assert!(e < 1e-8, "smooth l1 {e:e}");
        // hand values
        let p = Tensor::new(&[[0.2f64, 2.0]], &dev).unwrap();
        let z = p.zeros_like().unwrap();
        let one = Tensor::new(&[[1f64]], &dev).unwrap();
        let s = smooth_l1_sum(&p, &z, &one, 1.0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((s - (0.5 * 0.04 + 1.5)).abs() < 1e-12);
        let l = l1_sum(&p, &z, &one).unwrap().to_scalar::<f64>().unwrap();
        assert!((l - 2.2).abs() < 1e-12);
    }
}
