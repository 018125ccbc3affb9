//! Semantic FPN training: gradients of the whole segmenter's cross entropy against finite
//! differences (f64, mini config), overfitting a handful of synthetic images, and resuming an
//! interrupted run to the same weights.

mod common;

use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use pvt_train::optim::scalar;
use pvt_train::params::Params;
use pvt_train::run_dir::{files, TrainOptions};
use pvt_train::segmentation::{
    seg_cross_entropy, train_segmenter, SegAugment, SegDataset, SegTrainConfig, SegTrainSettings,
};
use pvt_zoo::semantic_fpn::{SemanticFpnConfig, SemanticFpnPvt};

fn mini_model(num_classes: usize) -> SemanticFpnConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs/fpn_pvt_mini.json");
    let mut c: SemanticFpnConfig =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    c.num_classes = num_classes;
    c
}

fn small_settings() -> SegTrainSettings {
    let mut s = SegTrainSettings::ade20k();
    s.epochs = 4;
    s.batch_size = 2;
    s.seed = 5;
    s.optimizer.lr = 1e-3;
    s.schedule.warmup_iters = 3;
    s.augment = SegAugment {
        scale: (160, 128),
        ratio_range: Some((0.75, 1.25)),
        crop: (96, 96),
        cat_max_ratio: 0.75,
        flip_prob: 0.5,
    };
    s.test_scale = (160, 128);
    s.reduce_zero_label = false;
    s.grad_clip = Some(5.0);
    s.checkpoint_every = 2;
    s.val_every = 0;
    s
}

/// Every parameter of the segmenter gets a gradient from the cross entropy, and each tensor's
/// gradient agrees with a central difference along its own direction.
#[test]
fn segmenter_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let cfg = mini_model(5);
    let params = Params::semantic_fpn(&cfg, 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    // a larger classifier than mmseg's N(0, 0.01²) makes the backbone's gradients measurable
    for (name, var) in params.vars() {
        if name == "decode_head.conv_seg.weight" {
            var.set(&(var.as_tensor() * 30.0).unwrap()).unwrap();
        }
    }
    let n = 2 * 3 * 224 * 224;
    let vals: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.0173).sin() * 1.3).collect();
    let images = Tensor::from_vec(vals, (2, 3, 224, 224), &dev).unwrap();
    let labels: Vec<u32> = (0..2 * 224 * 224)
        .map(|i| {
            let (y, x) = ((i / 224) % 224, i % 224);
            if (x + y) % 97 == 0 {
                255
            } else {
                ((x / 40 + y / 56) % 5) as u32
            }
        })
        .collect();
    let labels = Tensor::from_vec(labels, (2, 224, 224), &dev).unwrap();
    let loss_of = |p: &Params| -> Tensor {
        let m = SemanticFpnPvt::new_trainable(&cfg, p.var_builder(), &dev).unwrap();
        let logits = m.forward_logits_t(&images, true).unwrap();
        seg_cross_entropy(&logits, &labels, 255, false).unwrap().0
    };
    let loss = loss_of(&params);
    assert_eq!(loss.dtype(), DType::F64);
    let grads = loss.backward().unwrap();
    let mut missing = vec![];
    for (name, var) in params.vars() {
        if name.contains("running_") {
            assert!(
                grads.get(var.as_tensor()).is_none(),
                "{name} has a gradient"
            );
            continue;
        }
        let norm = grads
            .get(var.as_tensor())
            .map(|g| scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt())
            .unwrap_or(0.0);
        if norm.is_nan() || norm == 0.0 {
            missing.push(name.clone());
        }
    }
    assert!(missing.is_empty(), "no gradient: {missing:?}");
    let mut worst = (0f64, String::new());
    for (name, var) in params
        .vars()
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .step_by(3)
    {
        let g = grads.get(var.as_tensor()).unwrap();
        let gn = scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt();
        let dir = (g / gn).unwrap();
        let p0 = var.as_tensor().detach().copy().unwrap();
        let eps = (1e-7 / gn).clamp(1e-6, 1e-3);
        let at = |s: f64| {
            var.set(&(&p0 + (&dir * (s * eps)).unwrap()).unwrap())
                .unwrap();
            scalar(&loss_of(&params)).unwrap()
        };
        let num = (at(1.0) - at(-1.0)) / (2.0 * eps);
        var.set(&p0).unwrap();
        let err = (num - gn).abs() / gn;
        eprintln!("{name}: |g| {gn:.6e}, finite difference {num:.6e}, relative error {err:.1e}");
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    eprintln!("worst relative error {:.1e} ({})", worst.0, worst.1);
    assert!(
        worst.0 < 1e-3,
        "worst relative error {:e} ({})",
        worst.0,
        worst.1
    );
}

fn config(classes: usize) -> SegTrainConfig {
    SegTrainConfig {
        model: mini_model(classes),
        train: small_settings(),
    }
}

fn dataset(tag: &str, images: usize, val_fraction: f64) -> PathBuf {
    common::synth_dataset(tag, images, (128, 160), val_fraction)
}

#[test]
fn overfits_a_handful_of_images() {
    let dir = dataset("seg-overfit", 2, 0.0);
    let data = SegDataset::from_dir(&dir, "train", false).unwrap();
    let mut cfg = config(7);
    let s = &mut cfg.train;
    s.epochs = 100;
    s.augment.ratio_range = None;
    s.augment.flip_prob = 0.0;
    s.augment.crop = (128, 160);
    s.schedule.warmup_iters = 5;
    s.schedule.power = 0.0; // constant rate after warm-up
    s.checkpoint_every = 1000;
    let run = dir.join("run");
    let out = train_segmenter(&cfg, data, None, &run, &TrainOptions::default()).unwrap();
    let it = &out.history.iters;
    let first = it[..2].iter().map(|r| r.loss).sum::<f64>() / 2.0;
    let last = it[it.len() - 2..].iter().map(|r| r.loss).sum::<f64>() / 2.0;
    eprintln!(
        "{} iterations: loss {first:.4} -> {last:.4} ({:.1}x)",
        it.len(),
        first / last
    );
    assert!(
        first / last >= 5.0,
        "loss fell only {first:.4} -> {last:.4}"
    );
    assert!(run.join(files::MODEL).is_file() && run.join(files::LOSS_PNG).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interrupted_run_resumes_to_the_same_weights_and_validates() {
    let data = dataset("seg-resume", 6, 0.34);
    let cfg = config(7);
    let train_set = || SegDataset::from_dir(&data, "train", false).unwrap();
    let val = SegDataset::from_dir(&data, "val", false).unwrap();
    assert_eq!((train_set().len(), val.len()), (4, 2));
    let mut with_val = cfg.clone();
    with_val.train.val_every = 4;
    let straight = data.join("straight");
    let out = train_segmenter(
        &with_val,
        train_set(),
        Some(&val),
        &straight,
        &TrainOptions::default(),
    )
    .unwrap();
    assert_eq!(out.steps, 8);
    assert_eq!(out.history.val.len(), 1);
    let v = &out.history.val[0];
    assert!((0.0..=100.0).contains(&v.miou) && v.aacc > 0.0, "{v:?}");
    let want = common::run_weights(&straight);
    // the running statistics of the BatchNorm layers are saved and moved by training
    let rv = want
        .iter()
        .find(|(k, _)| k.ends_with("bn.running_var"))
        .expect("running_var saved");
    assert!(rv.1.iter().any(|&x| x != 1.0));

    let crashed = data.join("crashed");
    let out = train_segmenter(
        &cfg,
        train_set(),
        None,
        &crashed,
        &TrainOptions {
            crash_after: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(out.interrupted && out.steps == 3);
    let out = train_segmenter(&cfg, train_set(), None, &crashed, &TrainOptions::default()).unwrap();
    assert_eq!(out.resumed_from, Some(2));
    assert_eq!(out.history.iters.len(), 8);
    assert_eq!(
        common::run_weights(&crashed),
        want,
        "resumed run ended with other weights"
    );

    // the saved weights load as a Semantic FPN checkpoint
    let ckpt = pvt_nn::Checkpoint::load(&crashed.join(files::MODEL)).unwrap();
    SemanticFpnPvt::load(&ckpt, &cfg.model, &Device::Cpu).unwrap();
    // another configuration in the same folder is refused
    let mut other = cfg.clone();
    other.train.seed = 6;
    let e = train_segmenter(
        &other,
        train_set(),
        None,
        &crashed,
        &TrainOptions::default(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("another configuration"), "{e:#}");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn missing_labels_are_named() {
    let dir = dataset("seg-missing", 3, 0.0);
    let victim = dir.join("labels/train/synth_000001.png");
    std::fs::remove_file(&victim).unwrap();
    let e = SegDataset::from_dir(&dir, "train", false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("synth_000001.png") && msg.contains("no label"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
