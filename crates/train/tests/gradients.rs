//! End-to-end gradients of RetinaNet-PVT (mini config, 6 classes), in f64: every parameter
//! receives a non-zero gradient from the RetinaNet loss, and each parameter tensor's gradient
//! agrees with central differences of the loss along its own direction,
//! `(L(p + εĝ) − L(p − εĝ)) / 2ε = |g|`; the backbone alone likewise for a fixed projection of
//! its four feature maps.
//!
//! The input is 224x224, where every position table is used at its own size (the bilinear
//! resize matrices are f32-only).

mod common;

use candle::{DType, Device, Tensor};
use pvt_nn::Backbone;
use pvt_train::data::Batch;
use pvt_train::optim::scalar;
use pvt_train::params::Params;
use pvt_train::retinanet::RetinaCriterion;
use pvt_types::ImageSize;
use pvt_zoo::{RetinaNetConfig, RetinaNetPvt};

fn batch(dev: &Device) -> Batch {
    let n = 2 * 3 * 224 * 224;
    let vals: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.0173).sin() * 1.3).collect();
    let images = Tensor::from_vec(vals, (2, 3, 224, 224), dev).unwrap();
    Batch {
        images,
        img_shapes: vec![ImageSize::new(224, 224), ImageSize::new(200, 150)],
        pad_shapes: vec![ImageSize::new(224, 224), ImageSize::new(224, 160)],
        boxes: vec![
            vec![[10.0, 8.0, 60.0, 50.0], [100.0, 120.0, 210.0, 200.0]],
            vec![[4.0, 4.0, 40.0, 96.0]],
        ],
        labels: vec![vec![1, 4], vec![0]],
        image_ids: vec![1, 2],
    }
}

fn loss_of(params: &Params, cfg: &RetinaNetConfig, crit: &RetinaCriterion, b: &Batch) -> Tensor {
    let model = RetinaNetPvt::new(cfg, params.var_builder()).unwrap();
    let (_, out) = model.forward_raw(&b.images).unwrap();
    crit.loss(&out, b).unwrap().total
}

/// Central difference of `f` along `var`'s normalised gradient `g`, with a step that moves the
/// value by about 1e-7; returns (|g|, finite difference).
fn directional(var: &candle::Var, g: &Tensor, f: &dyn Fn() -> f64) -> (f64, f64) {
    let gn = scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt();
    let dir = (g / gn).unwrap();
    let p0 = var.as_tensor().detach().copy().unwrap();
    let eps = (1e-7 / gn).clamp(1e-6, 1e-3);
    let at = |s: f64| {
        var.set(&(&p0 + (&dir * (s * eps)).unwrap()).unwrap())
            .unwrap();
        f()
    };
    let num = (at(1.0) - at(-1.0)) / (2.0 * eps);
    var.set(&p0).unwrap();
    (gn, num)
}

/// RetinaNet loss: all parameters get a gradient; the tensors `select` picks (every `stride`-th)
/// are checked against finite differences. Returns the worst relative error and its tensor.
fn check_detector(select: impl Fn(&str) -> bool, stride: usize) -> (f64, String) {
    let dev = Device::Cpu;
    let cfg = common::mini_config().model;
    let params = Params::retinanet(&cfg, 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    // mmdetection's head init (σ 0.01 through four stacked convs) leaves the backbone with
    // gradients near 1e-9 at initialisation, below what a finite difference of an f64 loss
    // resolves; ten times larger head weights make every gradient measurable.
    for (name, var) in params.vars() {
        if name.starts_with("bbox_head.") && name.ends_with(".weight") {
            var.set(&(var.as_tensor() * 10.0).unwrap()).unwrap();
        }
    }
    let crit = RetinaCriterion::new(6, Default::default(), Default::default()).unwrap();
    let b = batch(&dev);
    let loss = loss_of(&params, &cfg, &crit, &b);
    assert_eq!(loss.dtype(), DType::F64);
    let grads = loss.backward().unwrap();
    let mut missing = vec![];
    for (name, var) in params.vars() {
        let norm = grads
            .get(var.as_tensor())
            .map(|g| scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt())
            .unwrap_or(0.0);
        if norm.is_nan() || norm == 0.0 {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} parameters get no gradient: {missing:?}",
        missing.len(),
        params.vars().len()
    );
    let mut worst = (0f64, String::new());
    for (name, var) in params
        .vars()
        .iter()
        .filter(|(k, _)| select(k))
        .step_by(stride)
    {
        let g = grads.get(var.as_tensor()).unwrap();
        let (gn, num) = directional(var, g, &|| {
            scalar(&loss_of(&params, &cfg, &crit, &b)).unwrap()
        });
        let err = (num - gn).abs() / gn;
        eprintln!("{name}: |g| {gn:.6e}, finite difference {num:.6e}, relative error {err:.1e}");
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    eprintln!("worst relative error {:.1e} ({})", worst.0, worst.1);
    worst
}

/// Every parameter through the whole detector (every third tensor checked).
#[test]
fn detector_gradients_match_finite_differences() {
    let (e, name) = check_detector(|_| true, 3);
    // ~1e-5 where the gradient is large; the P6/P7 convs' small gradients need the largest step
    assert!(e < 1e-3, "worst relative error {e:e} ({name})");
}

/// The backbone alone: loss = Σ over the four feature maps of a fixed projection; every
/// backbone tensor gets a gradient, every other one is checked.
#[test]
fn backbone_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let cfg = common::mini_config().model;
    let params = Params::retinanet(&cfg, 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let n = 3 * 224 * 224;
    let vals: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.0173).sin() * 1.3).collect();
    let images = Tensor::from_vec(vals, (1, 3, 224, 224), &dev).unwrap();
    let f = |p: &Params| -> Tensor {
        let m = RetinaNetPvt::new(&cfg, p.var_builder()).unwrap();
        let feats = m.backbone.forward_pyramid(&images).unwrap();
        let mut total = Tensor::zeros((), DType::F64, &dev).unwrap();
        for (l, x) in feats.levels().iter().enumerate() {
            let proj: Vec<f64> = (0..x.elem_count())
                .map(|i| ((i as f64) * 0.37 + l as f64).cos())
                .collect();
            let proj = Tensor::from_vec(proj, x.shape(), &dev).unwrap();
            total = (total + (x * proj).unwrap().sum_all().unwrap()).unwrap();
        }
        total
    };
    let grads = f(&params).backward().unwrap();
    let mut worst = (0f64, String::new());
    let mut checked = 0;
    for (i, (name, var)) in params
        .vars()
        .iter()
        .filter(|(k, _)| k.starts_with("backbone."))
        .enumerate()
    {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} gets no gradient"));
        assert!(
            scalar(&g.abs().unwrap().sum_all().unwrap()).unwrap() > 0.0,
            "{name}: zero gradient"
        );
        if i % 2 == 1 {
            continue;
        }
        let (gn, num) = directional(var, g, &|| scalar(&f(&params)).unwrap());
        assert!(gn > 0.0, "{name}: zero gradient");
        let err = (num - gn).abs() / gn;
        if err > worst.0 {
            worst = (err, name.clone());
        }
        checked += 1;
    }
    eprintln!(
        "{checked} backbone tensors, worst relative error {:.1e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 1e-4,
        "worst relative error {:e} ({})",
        worst.0,
        worst.1
    );
}
