//! The Mask R-CNN training loop: an interrupted run resumes to the weights of an uninterrupted
//! one (the samplers are keyed by the step), validation reports box and mask AP, and the saved
//! weights load as a Mask R-CNN checkpoint.

mod common;

use std::path::Path;

use candle::Device;
use pvt_train::data::{Augment, CocoDetDataset};
use pvt_train::mask_rcnn_loop::{train_mask_rcnn, MaskRcnnRunConfig, MaskValData};
use pvt_train::run_dir::{files, TrainOptions};
use pvt_zoo::{MaskRcnnConfig, MaskRcnnPvt};

fn config() -> MaskRcnnRunConfig {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs/mask_rcnn_pvt_mini.json");
    let mut model: MaskRcnnConfig =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    model.num_classes = 6;
    let mut train = common::mini_config().train;
    train.epochs = 3;
    train.batch_size = 2;
    train.seed = 9;
    train.augment = Augment {
        scale: (160, 128),
        ratio_range: Some((0.8, 1.2)),
        flip_prob: 0.5,
    };
    train.test_scale = (160, 128);
    train.optimizer.lr = 5e-4;
    train.schedule.warmup_iters = 2;
    train.schedule.steps = vec![2];
    train.grad_clip = Some(5.0);
    train.checkpoint_every = 2;
    train.val_every = 0;
    MaskRcnnRunConfig { model, train }
}

#[test]
fn interrupted_mask_rcnn_run_resumes_to_the_same_weights() {
    // 6 images: 4 train (2 batches per epoch, 6 iterations), 2 val
    let data = common::synth_dataset("mask-rcnn-resume", 6, (128, 160), 0.34);
    let cfg = config();
    let train_set = || CocoDetDataset::from_dir(&data, "train", true).unwrap();
    let val = MaskValData::from_dir(&data, "val").unwrap();
    let mut with_val = cfg.clone();
    with_val.train.val_every = 3;
    let straight = data.join("straight");
    let out = train_mask_rcnn(
        &with_val,
        train_set(),
        Some(&val),
        &straight,
        &TrainOptions::default(),
    )
    .unwrap();
    assert_eq!(out.steps, 6);
    assert_eq!(out.history.val.len(), 1);
    let v = &out.history.val[0];
    assert!(
        (0.0..=1.0).contains(&v.bbox_ap) && (0.0..=1.0).contains(&v.segm_ap),
        "{v:?}"
    );
    let want = common::run_weights(&straight);

    let crashed = data.join("crashed");
    let out = train_mask_rcnn(
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
    let out = train_mask_rcnn(&cfg, train_set(), None, &crashed, &TrainOptions::default()).unwrap();
    assert_eq!(out.resumed_from, Some(2));
    assert_eq!(out.history.iters.len(), 6);
    assert_eq!(
        common::run_weights(&crashed),
        want,
        "resumed run ended with other weights"
    );
    let ckpt = pvt_nn::Checkpoint::load(&crashed.join(files::MODEL)).unwrap();
    MaskRcnnPvt::load(&ckpt, &cfg.model, &Device::Cpu).unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
