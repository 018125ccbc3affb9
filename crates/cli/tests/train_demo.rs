//! The training commands end to end on a tiny synthetic set (`pvt synth` → `pvt train` →
//! `pvt detect` / `pvt segment` / `pvt infer-seg` with the run's config), and `pvt demo` on the
//! bundled models.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvt-cli-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `pvt args...`, returning (success, stdout, stderr).
fn pvt(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pvt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn synth(dir: &Path) {
    let (ok, _, err) = pvt(&[
        "synth",
        "--out",
        &s(dir),
        "--images",
        "6",
        "--size",
        "128x160",
        "--object-sides",
        "20..60",
        "--val-fraction",
        "0.34",
        "--preview",
        "0",
    ]);
    assert!(ok, "{err}");
}

/// A training config: the mini architecture of `arch` (assets/configs) with `train` settings.
fn write_config(arch: &str, classes: usize, train: serde_json::Value, out: &Path) {
    let p = root().join("assets/configs").join(arch);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["num_classes"] = classes.into();
    v["train"] = train;
    std::fs::write(out, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn segmenter_trains_then_segments_and_scores_with_its_run_config() {
    let data = tmp("seg-data");
    synth(&data);
    let cfg = tmp("seg-train.json");
    write_config(
        "fpn_pvt_mini.json",
        7,
        serde_json::json!({
            "epochs": 1, "batch_size": 2, "seed": 1,
            "optimizer": {"lr": 0.001},
            "augment": {"scale": [160, 128], "ratio_range": [0.75, 1.25], "crop": [96, 96], "flip_prob": 0.5},
            "test_scale": [160, 128],
            "reduce_zero_label": false,
            "checkpoint_every": 1
        }),
        &cfg,
    );
    let run = tmp("seg-run");
    let (ok, _, err) = pvt(&[
        "train",
        "--config",
        &s(&cfg),
        "--data",
        &s(&data),
        "--out",
        &s(&run),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("training Semantic FPN-PVT (7 classes"),
        "{err}"
    );
    assert!(err.contains("val mIoU"), "{err}");
    // the run's config carries the class names read from classes.txt, background first
    let rc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(rc["train"]["class_names"][0], "background");
    assert_eq!(rc["train"]["class_names"][1], "circle");
    let img = data.join("images/val/synth_000002.png");
    let (lab, vis) = (tmp("seg.png"), tmp("seg-vis.png"));
    let (ok, _, err) = pvt(&[
        "segment",
        "--config",
        &s(&run.join("config.json")),
        "--weights",
        &s(&run.join("model.safetensors")),
        "--image",
        &s(&img),
        "--out",
        &s(&lab),
        "--vis",
        &s(&vis),
    ]);
    assert!(ok, "{err}");
    let l = image::open(&lab).unwrap().to_luma8();
    // the run's test scale (160, 128) keeps the image size; ADE20K's (2048, 512) would not matter
    // for the output size, but every label must be one of the 7 classes
    assert_eq!((l.width(), l.height()), (160, 128));
    assert!(l.pixels().all(|p| p[0] < 7));
    // mIoU over the val split with the run's label convention (background is class 0)
    let (ok, stdout, err) = pvt(&[
        "infer-seg",
        "--config",
        &s(&run.join("config.json")),
        "--weights",
        &s(&run.join("model.safetensors")),
        "--images",
        &s(&data.join("images/val")),
        "--out-dir",
        &s(&tmp("seg-pred")),
        "--gt-dir",
        &s(&data.join("labels/val")),
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("mIoU") && stdout.contains("2 images, 7 classes"),
        "{stdout}"
    );
    // resuming a finished run does nothing more; another config in the same folder is refused
    let (ok, _, err) = pvt(&[
        "train",
        "--config",
        &s(&cfg),
        "--data",
        &s(&data),
        "--out",
        &s(&run),
        "--quiet",
        "--seed",
        "2",
    ]);
    assert!(!ok && err.contains("another configuration"), "{err}");
}

/// `pvt synth` then one epoch of `pvt train` of the mini detector `arch` (6 classes) into
/// fresh folders named after `tag`; returns (data, run, stderr of the training).
fn train_mini_detector(arch: &str, tag: &str) -> (PathBuf, PathBuf, String) {
    let data = tmp(&format!("{tag}-data"));
    synth(&data);
    let cfg = tmp(&format!("{tag}-train.json"));
    write_config(
        arch,
        6,
        serde_json::json!({
            "epochs": 1, "batch_size": 2,
            "optimizer": {"lr": 0.0005},
            "augment": {"scale": [160, 128], "flip_prob": 0.5},
            "test_scale": [160, 128],
            "checkpoint_every": 1
        }),
        &cfg,
    );
    let run = tmp(&format!("{tag}-run"));
    let (ok, _, err) = pvt(&[
        "train",
        "--config",
        &s(&cfg),
        "--data",
        &s(&data),
        "--out",
        &s(&run),
        "--quiet",
    ]);
    assert!(ok, "{err}");
    (data, run, err)
}

/// `pvt detect` with a run's config and weights on a validation image; the JSON is written.
fn detect_with_run(data: &Path, run: &Path, tag: &str) {
    let out = tmp(&format!("{tag}.json"));
    let (ok, _, err) = pvt(&[
        "detect",
        "--config",
        &s(&run.join("config.json")),
        "--weights",
        &s(&run.join("model.safetensors")),
        "--image",
        &s(&data.join("images/val/synth_000002.png")),
        "--out",
        &s(&out),
    ]);
    assert!(ok, "{err}");
    assert!(out.is_file());
}

#[test]
fn detector_trains_then_detects_with_its_run_config() {
    let (data, run, err) = train_mini_detector("retinanet_pvt_mini.json", "det");
    assert!(err.contains("training RetinaNet-PVT (6 classes"), "{err}");
    assert!(err.contains("val bbox AP"), "{err}");
    detect_with_run(&data, &run, "det");
}

#[test]
fn mask_rcnn_trains_then_detects_masks_with_its_run_config() {
    let (data, run, err) = train_mini_detector("mask_rcnn_pvt_mini.json", "mrcnn");
    assert!(err.contains("training Mask R-CNN-PVT (6 classes"), "{err}");
    assert!(err.contains("segm AP"), "{err}");
    let h: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    let it = &h["iters"][0];
    for k in ["rpn_cls", "rpn_bbox", "cls", "bbox", "mask"] {
        assert!(it[k].as_f64().unwrap() > 0.0, "{k}: {it}");
    }
    detect_with_run(&data, &run, "mrcnn");
}

#[test]
fn convert_writes_f16() {
    let out = tmp("half.safetensors");
    let (ok, _, err) = pvt(&[
        "convert",
        &s(&root().join("assets/fixtures/pvt_v1/mini_det_official_f32.safetensors")),
        &s(&out),
        "--dtype",
        "f16",
    ]);
    assert!(ok, "{err}");
    let t = candle::safetensors::load(&out, &candle::Device::Cpu).unwrap();
    assert!(!t.is_empty());
    assert!(t
        .values()
        .all(|v| !v.dtype().is_float() || v.dtype() == candle::DType::F16));
}

#[test]
fn demo_detects_and_segments_the_bundled_picture() {
    let pic = tmp("demo-det.png");
    let (ok, stdout, err) = pvt(&["demo", "--out", &s(&pic)]);
    assert!(ok, "{err}");
    // the bundled picture (held out from training) holds five shapes
    let found: usize = stdout
        .split(" shapes with score")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((3..=7).contains(&found), "{stdout}");
    let p = image::open(&pic).unwrap();
    assert_eq!((p.width(), p.height()), (480, 384));
    let seg = tmp("demo-seg.png");
    let (ok, stdout, err) = pvt(&["demo", "--segment", "--out", &s(&seg)]);
    assert!(ok, "{err}");
    assert!(stdout.contains("background"), "{stdout}");
    // at least three shape classes are found
    let shapes = ["circle", "square", "triangle", "star", "ring", "cross"];
    let n = shapes.iter().filter(|c| stdout.contains(*c)).count();
    assert!(n >= 3, "{stdout}");
    assert!(image::open(&seg).unwrap().width() > 480);
}
