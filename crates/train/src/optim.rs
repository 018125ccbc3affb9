//! Optimisation: AdamW (PyTorch's update), mmcv's step learning-rate policy with linear
//! warm-up, and gradient clipping by global norm (`clip_grad_norm_`).

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use candle::{backprop::GradStore, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::params::Params;

/// AdamW hyper-parameters (PVT detection: lr 1e-4, weight decay 1e-4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    /// Decoupled weight decay (default 1e-4).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// `(β1, β2)`.
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// Denominator epsilon.
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}

fn default_weight_decay() -> f64 {
    1e-4
}

fn default_eps() -> f64 {
    1e-8
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            weight_decay: 1e-4,
            betas: default_betas(),
            eps: default_eps(),
        }
    }
}

/// AdamW with its moments kept by parameter name (so they can be saved and restored).
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    step: u64,
}

impl AdamW {
    /// A fresh optimiser (moments zero, step 0).
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
            step: 0,
        }
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update of every trainable parameter that has a gradient in `grads`, at learning rate
    /// `lr`, as `torch.optim.AdamW`: `p ← p·(1 − lr·wd)`, `m ← β1·m + (1 − β1)·g`,
    /// `v ← β2·v + (1 − β2)·g²`, `p ← p − lr/(1 − β1ᵗ) · m / (√v/√(1 − β2ᵗ) + ε)`.
    pub fn step(
        &mut self,
        params: &Params,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = self.config.betas;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (name, var) in params.trainable() {
            let Some(g) = grads.get(name) else {
                continue;
            };
            let p = var.as_tensor().detach();
            let m = match self.m.get(name) {
                Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
                None => (g * (1.0 - b1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let p = (p * (1.0 - lr * self.config.weight_decay))?;
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.config.eps)?;
            let p = (p - ((&m / denom)? * (lr / bc1))?)?;
            var.set(&p)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// The moments as tensors named `m.<param>` / `v.<param>`.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores moments written by [`Self::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        self.m.clear();
        self.v.clear();
        for (k, t) in tensors {
            if let Some(n) = k.strip_prefix("m.") {
                self.m.insert(n.to_string(), t.clone());
            } else if let Some(n) = k.strip_prefix("v.") {
                self.v.insert(n.to_string(), t.clone());
            }
        }
        ensure!(
            self.m.len() == self.v.len(),
            "optimizer state: {} first and {} second moments",
            self.m.len(),
            self.v.len()
        );
        self.step = step;
        Ok(())
    }
}

/// mmcv `LrUpdaterHook` with `policy='step'` and linear warm-up: the rate is
/// `lr · gamma^(number of milestones ≤ epoch)`, and during the first `warmup_iters` iterations
/// it is scaled by `1 − (1 − i/warmup_iters)·(1 − warmup_ratio)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Iterations of linear warm-up (0: none).
    pub warmup_iters: usize,
    /// Starting fraction of the warm-up.
    pub warmup_ratio: f64,
    /// Epochs (0-based counts of completed epochs) at which the rate is multiplied by `gamma`.
    pub steps: Vec<usize>,
    /// The decay factor.
    pub gamma: f64,
}

impl LrSchedule {
    /// The 1x schedule of the PVT detectors: 500 warm-up iterations from 0.001, ×0.1 after
    /// epochs 8 and 11.
    pub fn mmdet_1x() -> Self {
        Self {
            warmup_iters: 500,
            warmup_ratio: 0.001,
            steps: vec![8, 11],
            gamma: 0.1,
        }
    }

    /// The rate at global iteration `iter` (0-based) of epoch `epoch` (0-based).
    pub fn lr(&self, base: f64, epoch: usize, iter: usize) -> f64 {
        let passed = self.steps.iter().filter(|&&s| epoch >= s).count();
        let regular = base * self.gamma.powi(passed as i32);
        if iter < self.warmup_iters {
            let k = (1.0 - iter as f64 / self.warmup_iters as f64) * (1.0 - self.warmup_ratio);
            regular * (1.0 - k)
        } else {
            regular
        }
    }
}

/// mmcv `PolyLrUpdaterHook` by iteration (mmsegmentation's schedules), with optional linear
/// warm-up: `(lr − min_lr)·(1 − i/max_iters)^power + min_lr`, scaled during the first
/// `warmup_iters` iterations as in [`LrSchedule`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolySchedule {
    /// The exponent (0.9 in the PVT Semantic FPN configs).
    pub power: f64,
    /// The floor (0 in the PVT configs).
    #[serde(default)]
    pub min_lr: f64,
    /// Iterations of linear warm-up (0: none).
    #[serde(default)]
    pub warmup_iters: usize,
    /// Starting fraction of the warm-up.
    #[serde(default = "default_warmup_ratio")]
    pub warmup_ratio: f64,
}

fn default_warmup_ratio() -> f64 {
    0.1
}

impl PolySchedule {
    /// PVT's Semantic FPN schedule: power 0.9, floor 0, no warm-up.
    pub fn pvt_seg() -> Self {
        Self {
            power: 0.9,
            min_lr: 0.0,
            warmup_iters: 0,
            warmup_ratio: default_warmup_ratio(),
        }
    }

    /// The rate at iteration `iter` (0-based) of `max_iters`.
    pub fn lr(&self, base: f64, iter: usize, max_iters: usize) -> f64 {
        let frac = 1.0 - iter as f64 / max_iters.max(1) as f64;
        let regular = (base - self.min_lr) * frac.max(0.0).powf(self.power) + self.min_lr;
        if iter < self.warmup_iters {
            let k = (1.0 - iter as f64 / self.warmup_iters as f64) * (1.0 - self.warmup_ratio);
            regular * (1.0 - k)
        } else {
            regular
        }
    }
}

/// The gradients of the trainable parameters, by name (parameters without a gradient are left
/// out).
pub fn collect_grads(params: &Params, grads: &GradStore) -> BTreeMap<String, Tensor> {
    params
        .trainable()
        .filter_map(|(k, v)| grads.get(v.as_tensor()).map(|g| (k.clone(), g.clone())))
        .collect()
}

/// `torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2)`: scales every gradient by
/// `max_norm / (total + 1e-6)` when that is below 1. Returns the total norm before clipping.
pub fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let total = global_norm(grads)?;
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(total)
}

/// The L2 norm of all gradients together.
pub fn global_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    let mut s = 0f64;
    for g in grads.values() {
        s += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(s.sqrt())
}

/// A scalar tensor's value as f64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_schedule_matches_mmcv() {
        let p = PolySchedule::pvt_seg();
        assert_eq!(p.lr(1e-4, 0, 100), 1e-4);
        // (1 - 50/100)^0.9 = 0.535886731...
        assert!((p.lr(1e-4, 50, 100) - 1e-4 * 0.5f64.powf(0.9)).abs() < 1e-18);
        assert_eq!(p.lr(1e-4, 100, 100), 0.0);
        let w = PolySchedule {
            min_lr: 1e-6,
            warmup_iters: 10,
            warmup_ratio: 0.1,
            ..p
        };
        // warm-up scales the regular rate: at i = 5, 1 - (1 - 0.5)(1 - 0.1) = 0.55
        let regular = (1e-4 - 1e-6) * (1.0 - 5.0 / 100.0f64).powf(0.9) + 1e-6;
        assert!((w.lr(1e-4, 5, 100) - 0.55 * regular).abs() < 1e-15);
        assert_eq!(w.lr(1e-4, 100, 100), 1e-6);
    }

    #[test]
    fn schedule_warms_up_then_steps() {
        let s = LrSchedule::mmdet_1x();
        assert!((s.lr(1.0, 0, 0) - 0.001).abs() < 1e-12);
        assert!((s.lr(1.0, 0, 250) - (1.0 - 0.5 * 0.999)).abs() < 1e-12);
        assert_eq!(s.lr(1.0, 0, 500), 1.0);
        assert_eq!(s.lr(1.0, 7, 9000), 1.0);
        assert!((s.lr(1.0, 8, 9000) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 11, 9000) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let dev = candle::Device::Cpu;
        let mut g = BTreeMap::new();
        g.insert("a".to_string(), Tensor::new(&[3f32, 0.], &dev).unwrap());
        g.insert("b".to_string(), Tensor::new(&[4f32], &dev).unwrap());
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
        let n = clip_grad_norm(&mut g, 10.0).unwrap();
        assert!((n - 1.0).abs() < 1e-5);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
    }
}
