//! Training end to end on a handful of synthetic images: the loss must fall at least 5x.

mod common;

use std::time::Instant;

use pvt_train::data::{Augment, CocoDetDataset};
use pvt_train::run_dir::TrainOptions;
use pvt_train::trainer::train;

#[test]
fn overfits_a_handful_of_images() {
    let dir = common::synth_dataset("overfit", 2, (128, 160), 0.0);
    let data = CocoDetDataset::from_dir(&dir, "train", true).unwrap();
    let mut cfg = common::mini_config();
    let s = &mut cfg.train;
    s.epochs = 80;
    s.batch_size = 2;
    s.augment = Augment::fixed((160, 128));
    s.test_scale = (160, 128);
    s.optimizer.lr = 1e-3;
    s.schedule.warmup_iters = 10;
    s.schedule.steps = vec![];
    s.grad_clip = Some(10.0);
    s.checkpoint_every = 1000;
    s.val_every = 0;
    let run = dir.join("run");
    let t0 = Instant::now();
    let out = train(&cfg, data, None, &run, &TrainOptions::default()).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let it = &out.history.iters;
    let first = it[..2].iter().map(|r| r.loss).sum::<f64>() / 2.0;
    let last = it[it.len() - 2..].iter().map(|r| r.loss).sum::<f64>() / 2.0;
    eprintln!(
        "{} iterations in {secs:.1} s: loss {first:.4} -> {last:.4} ({:.1}x)",
        it.len(),
        first / last
    );
    assert!(
        first / last >= 5.0,
        "loss fell only {first:.4} -> {last:.4}"
    );
    assert!(run.join("model.safetensors").is_file() && run.join("loss.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
