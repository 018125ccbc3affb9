//! Interrupted training resumes to the same weights as an uninterrupted run with the same seed:
//! once with a simulated crash (the loop stops without saving) and once with a real process
//! killed mid-run.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pvt_train::data::{Augment, CocoDetDataset};
use pvt_train::run_dir::{files, TrainOptions};
use pvt_train::trainer::{train, TrainConfig, ValData};

const CHILD_ENV: &str = "PVT_TRAIN_TEST_CHILD_RUN";

fn config() -> TrainConfig {
    let mut cfg = common::mini_config();
    let s = &mut cfg.train;
    s.epochs = 4;
    s.batch_size = 2;
    s.seed = 5;
    s.augment = Augment {
        scale: (160, 128),
        ratio_range: Some((0.75, 1.25)),
        flip_prob: 0.5,
    };
    s.test_scale = (160, 128);
    s.optimizer.lr = 1e-3;
    s.schedule.warmup_iters = 3;
    s.schedule.steps = vec![3];
    s.grad_clip = Some(5.0);
    s.checkpoint_every = 2;
    s.val_every = 0;
    cfg
}

fn data_dir() -> PathBuf {
    // 6 images: 4 train, 2 val
    common::synth_dataset("resume", 6, (128, 160), 0.34)
}

fn run(
    cfg: &TrainConfig,
    data: &Path,
    out: &Path,
    opts: &TrainOptions,
) -> pvt_train::trainer::TrainOutcome {
    let ds = CocoDetDataset::from_dir(data, "train", true).unwrap();
    train(cfg, ds, None, out, opts).unwrap()
}

/// The body of the child process of `killed_process_resumes_to_the_same_weights` (does nothing
/// in a normal test run).
#[test]
fn child_training_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    run(
        &config(),
        &dir,
        &dir.join("killed"),
        &TrainOptions::default(),
    );
}

#[test]
fn crash_and_kill_resume_to_the_same_weights() {
    let data = data_dir();
    let cfg = config();
    // uninterrupted, with validation at the end
    let mut with_val = cfg.clone();
    with_val.train.val_every = 4;
    let val = ValData::from_dir(&data, "val").unwrap();
    let straight = data.join("straight");
    let t0 = Instant::now();
    let out = train(
        &with_val,
        CocoDetDataset::from_dir(&data, "train", true).unwrap(),
        Some(&val),
        &straight,
        &TrainOptions::default(),
    )
    .unwrap();
    eprintln!(
        "uninterrupted: {} iterations in {:.1} s",
        out.steps,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(out.steps, 8);
    assert_eq!(out.history.val.len(), 1);
    assert!(out.history.val[0].ap.is_finite());
    let want = common::run_weights(&straight);

    // simulated crash after iteration 3 (last resume point: 2), then resume
    let crashed = data.join("crashed");
    let out = run(
        &cfg,
        &data,
        &crashed,
        &TrainOptions {
            crash_after: Some(3),
            ..Default::default()
        },
    );
    assert!(out.interrupted && out.steps == 3);
    let out = run(&cfg, &data, &crashed, &TrainOptions::default());
    assert_eq!(out.resumed_from, Some(2));
    assert_eq!(out.steps, 8);
    assert_eq!(
        out.history.iters.len(),
        8,
        "the log is cut back to the resume point"
    );
    assert_eq!(
        common::run_weights(&crashed),
        want,
        "resumed run ended with other weights"
    );

    // a real process, killed as soon as its first resume point exists
    std::fs::create_dir_all(data.join("killed")).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_training_process", "--exact", "--nocapture"])
        .env(CHILD_ENV, &data)
        .spawn()
        .unwrap();
    let state = data.join("killed").join(files::STATE);
    let t0 = Instant::now();
    while !state.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child finished before it was killed");
    let out = run(&cfg, &data, &data.join("killed"), &TrainOptions::default());
    let from = out.resumed_from.expect("resumed");
    assert!((2..8).contains(&from), "resumed from {from}");
    eprintln!("killed after its first checkpoint; resumed from iteration {from}");
    assert_eq!(
        common::run_weights(&data.join("killed")),
        want,
        "resumed run ended with other weights"
    );
    let _ = std::fs::remove_dir_all(&data);
}
