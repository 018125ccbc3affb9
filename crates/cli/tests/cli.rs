//! End-to-end tests of the `pvt` binary on the golden fixtures.

use std::path::PathBuf;
use std::process::Command;

use candle::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    root()
        .join("assets/fixtures/pvt_v1")
        .join(name)
        .display()
        .to_string()
}

fn mini_config() -> String {
    root()
        .join("assets/configs/pvt_v1_mini.json")
        .display()
        .to_string()
}

fn chelsea() -> String {
    root()
        .join("assets/images/chelsea.png")
        .display()
        .to_string()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvt-cli-tests-{}", std::process::id()));
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

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn classify_json_is_sorted_and_named() {
    let (ok, out, err) = pvt(&[
        "classify",
        "--config",
        &mini_config(),
        "--weights",
        &fixture("mini_cls_official_f16.pth"),
        "--image",
        &chelsea(),
        "--topk",
        "3",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] > 0.0 && p[0] <= 1.0);
    for t in top {
        let i = t["index"].as_u64().unwrap() as usize;
        let names: Vec<&str> = include_str!("../../../assets/imagenet_classes.txt")
            .lines()
            .collect();
        assert_eq!(t["name"].as_str().unwrap(), names[i]);
    }
    // the f16 and bf16 files hold the same values: same answer
    let (ok, out2, _) = pvt(&[
        "classify",
        "--config",
        &mini_config(),
        "--weights",
        &fixture("mini_cls_official_model_bf16.pth"),
        "--image",
        &chelsea(),
        "--topk",
        "3",
        "--json",
    ]);
    assert!(ok);
    let v2: serde_json::Value = serde_json::from_str(out2.trim()).unwrap();
    assert_eq!(v["top"][0]["index"], v2["top"][0]["index"]);
}

#[test]
fn features_require_pad_for_odd_sizes_and_write_four_maps() {
    let out = tmp("feats.safetensors");
    let o = out.display().to_string();
    let base = [
        "features",
        "--config",
        &mini_config(),
        "--weights",
        &fixture("mini_det_mmdet_f16.pth"),
        "--image",
        &chelsea(),
        "--out",
        &o,
    ];
    let (ok, _, err) = pvt(&base);
    assert!(
        !ok && err.contains("300x451") && err.contains("--pad"),
        "{err}"
    );
    assert!(!out.exists());
    let mut args = base.to_vec();
    args.push("--pad");
    let (ok, _, err) = pvt(&args);
    assert!(ok, "{err}");
    let t = candle::safetensors::load(&out, &Device::Cpu).unwrap();
    let shapes: Vec<Vec<usize>> = (1..=4)
        .map(|i| t[&format!("feat{i}")].dims().to_vec())
        .collect();
    assert_eq!(
        shapes,
        vec![
            vec![1, 16, 80, 120],
            vec![1, 32, 40, 60],
            vec![1, 40, 20, 30],
            vec![1, 64, 10, 15]
        ]
    );
}

#[test]
fn convert_round_trips_between_namings() {
    let off = tmp("official.safetensors").display().to_string();
    let mm = tmp("mmdet.safetensors").display().to_string();
    let (ok, _, err) = pvt(&[
        "convert",
        &fixture("mini_det_mmdet_f16.pth"),
        &off,
        "--naming",
        "official",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = pvt(&["convert", &off, &mm, "--naming", "mmdet"]);
    assert!(ok, "{err}");
    let original = pvt_nn::Checkpoint::load(fixture("mini_det_mmdet_f16.pth"))
        .unwrap()
        .tensors;
    let back = pvt_nn::Checkpoint::load(&mm).unwrap().tensors;
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        back.keys().collect::<Vec<_>>()
    );
    for (k, v) in &original {
        assert_eq!(v.dims(), back[k].dims(), "{k}");
        assert_eq!(max_abs_diff(v, &back[k]), 0.0, "{k}");
    }
    // the official-named file is accepted by `info` as official naming
    let (ok, out, _) = pvt(&["info", &off]);
    assert!(
        ok && out.contains("official PVT") && out.contains("backbone under `backbone.`"),
        "{out}"
    );
    // a classification checkpoint converts to mmdet names, dropping the classifier
    let (ok, _, err) = pvt(&[
        "convert",
        &fixture("mini_cls_official_f16.pth"),
        &mm,
        "--naming",
        "mmdet",
    ]);
    assert!(
        ok && err.contains("dropped classifier tensor head.weight"),
        "{err}"
    );
}

#[test]
fn info_describes_checkpoints_and_errors_are_clean() {
    let (ok, out, _) = pvt(&["info", &fixture("mini_cls_official_model_bf16.pth")]);
    assert!(ok);
    assert!(
        out.contains("state dict: under `model`")
            && out.contains("bf16 x125")
            && out.contains("classifier"),
        "{out}"
    );
    let (ok, _, err) = pvt(&["info", &fixture("legacy_tiny.pth")]);
    assert!(
        !ok && err.starts_with("error: ") && err.contains("legacy"),
        "{err}"
    );
    let (ok, _, err) = pvt(&[
        "classify",
        "--arch",
        "pvt_huge",
        "--weights",
        "x",
        "--image",
        "y",
    ]);
    assert!(
        !ok && err.contains("unknown architecture `pvt_huge`"),
        "{err}"
    );
    let (ok, _, err) = pvt(&["convert", &fixture("mini_cls_official_f16.pth"), "out.pth"]);
    assert!(!ok && err.contains(".safetensors"), "{err}");
}

fn retina_args() -> Vec<String> {
    vec![
        "--config".into(),
        root()
            .join("assets/configs/retinanet_pvt_mini.json")
            .display()
            .to_string(),
        "--weights".into(),
        root()
            .join("assets/fixtures/retinanet/mini_retinanet_official_f16.pth")
            .display()
            .to_string(),
    ]
}

#[test]
fn detect_writes_json_and_a_picture() {
    let out = tmp("dets.json");
    let vis = tmp("vis.png");
    let mut args: Vec<String> = vec!["detect".into()];
    args.extend(retina_args());
    args.extend([
        "--image".into(),
        chelsea(),
        "--out".into(),
        out.display().to_string(),
        "--vis".into(),
        vis.display().to_string(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, err) = pvt(&a);
    assert!(ok, "{err}");
    assert!(stdout.contains("100 detections"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let recs = v.as_array().unwrap();
    assert_eq!(recs.len(), 100);
    assert!(recs
        .iter()
        .all(|r| r["bbox"].as_array().unwrap().len() == 4 && r["category"].is_string()));
    let img = image::open(&vis).unwrap();
    assert_eq!((img.width(), img.height()), (451, 300));
}

#[test]
fn infer_runs_a_split_resumes_and_evaluates() {
    let dir = tmp("split");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("assets/images/chelsea.png"), dir.join("a.png")).unwrap();
    std::fs::copy(
        root().join("assets/images/coffee_crop_233x599.png"),
        dir.join("b.png"),
    )
    .unwrap();
    std::fs::write(dir.join("broken.png"), b"\x89PNG truncated").unwrap();
    let cats: Vec<serde_json::Value> = (1..=8)
        .map(|i| serde_json::json!({"id": i, "name": format!("c{i}")}))
        .collect();
    let gt = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "a.png", "width": 451, "height": 300},
            {"id": 2, "file_name": "b.png", "width": 599, "height": 233},
            {"id": 3, "file_name": "broken.png", "width": 10, "height": 10}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [370.0, 140.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10.0, 10.0, 100.0, 100.0], "area": 10000.0, "iscrowd": 0}
        ],
        "categories": cats
    });
    let ann = dir.join("ann.json");
    std::fs::write(&ann, serde_json::to_vec(&gt).unwrap()).unwrap();
    let out = dir.join("res.json");
    let mut args: Vec<String> = vec!["infer".into()];
    args.extend(retina_args());
    args.extend([
        "--images".into(),
        dir.display().to_string(),
        "--ann".into(),
        ann.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--eval".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, err) = pvt(&a);
    assert!(ok, "{err}");
    assert!(err.contains("image 3 skipped"), "{err}");
    assert!(
        err.contains("3 images run, 0 resumed, 1 failed; 200 results"),
        "{err}"
    );
    assert!(
        stdout.contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
        "{stdout}"
    );
    let first = std::fs::read(&out).unwrap();
    // a second run finds everything done and writes the same results
    let (ok, _, err) = pvt(&a);
    assert!(ok, "{err}");
    assert!(err.contains("0 images run, 3 resumed"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), first);
}

/// The mini Semantic FPN's config and weights (the parity fixture).
fn mini_segmenter() -> (String, String) {
    let p = |rel: &str| root().join(rel).display().to_string();
    (
        p("assets/configs/fpn_pvt_mini.json"),
        p("assets/fixtures/semantic_fpn/mini_fpn_pvt_f16.pth"),
    )
}

#[test]
fn segment_and_infer_seg_with_miou() {
    let (cfg, w) = mini_segmenter();
    let lab = tmp("label.png");
    let ov = tmp("overlay.png");
    let (ok, _, err) = pvt(&[
        "segment",
        "--config",
        &cfg,
        "--weights",
        &w,
        "--image",
        &chelsea(),
        "--out",
        &lab.display().to_string(),
        "--vis",
        &ov.display().to_string(),
    ]);
    assert!(ok, "{err}");
    let l = image::open(&lab).unwrap().to_luma8();
    assert_eq!((l.width(), l.height()), (451, 300));
    assert!(l.pixels().all(|p| p[0] < 8));
    assert!(image::open(&ov).unwrap().width() > 451);
    // a folder run, then mIoU against a GT that is the prediction shifted by one
    // (ADE20K storage: 0 = ignore, k + 1 = class k), so every present class scores 100
    let dir = tmp("seg-split");
    let (imgs, out, gt) = (dir.join("imgs"), dir.join("pred"), dir.join("gt"));
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::copy(root().join("assets/images/chelsea.png"), imgs.join("a.png")).unwrap();
    let shifted =
        image::GrayImage::from_fn(451, 300, |x, y| image::Luma([l.get_pixel(x, y)[0] + 1]));
    shifted.save(gt.join("a.png")).unwrap();
    let args = [
        "infer-seg",
        "--config",
        &cfg,
        "--weights",
        &w,
        "--images",
        &imgs.display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--gt-dir",
        &gt.display().to_string(),
    ];
    let (ok, stdout, err) = pvt(&args);
    assert!(ok, "{err}");
    assert!(err.contains("1 images run, 0 resumed"), "{err}");
    assert!(
        stdout.contains("mIoU") && stdout.contains("100.0"),
        "{stdout}"
    );
    let (ok, _, err) = pvt(&args);
    assert!(ok && err.contains("0 images run, 1 resumed"), "{err}");
    // the per-class table, with the model's class names
    let mut with_table = args.to_vec();
    with_table.push("--per-class");
    let (ok, stdout, err) = pvt(&with_table);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("Class") && stdout.contains("IoU"),
        "{stdout}"
    );
    let rows = stdout.lines().filter(|l| l.starts_with("class ")).count();
    assert_eq!(rows, 8, "{stdout}");
}

#[test]
fn segment_with_test_time_augmentation() {
    let (cfg, w) = mini_segmenter();
    let run = |name: &str, extra: &[&str]| {
        let lab = tmp(name);
        let mut a = vec![
            "segment".to_string(),
            "--config".into(),
            cfg.clone(),
            "--weights".into(),
            w.clone(),
            "--image".into(),
            chelsea(),
            "--out".into(),
            lab.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, _, err) = pvt(&a);
        (ok, err, lab)
    };
    let (ok, err, plain) = run("tta-plain.png", &[]);
    assert!(ok, "{err}");
    let (ok, err, aug) = run("tta-aug.png", &["--aug-ratios", "0.5,1", "--flip"]);
    assert!(ok, "{err}");
    let (plain, aug) = (
        image::open(plain).unwrap().to_luma8(),
        image::open(aug).unwrap().to_luma8(),
    );
    assert_eq!(aug.dimensions(), (451, 300));
    assert!(aug.pixels().all(|p| p[0] < 8));
    assert_ne!(plain, aug, "augmentation left every label unchanged");
    // bad ratios and contradictory flags are errors before any image is read
    let (ok, err, _) = run("tta-bad.png", &["--aug-ratios", "1,0"]);
    assert!(!ok && err.contains("ratio 0 must be positive"), "{err}");
    let (ok, err, _) = run("tta-bad2.png", &["--aug-test", "--flip"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

#[test]
fn info_recognises_every_pvt_v2_naming() {
    let v2 = |n: &str| {
        root()
            .join("assets/fixtures/pvt_v2")
            .join(n)
            .display()
            .to_string()
    };
    for (file, naming) in [
        ("mini_v2_cls_official_f16.pth", "official PVT v2"),
        ("mini_v2_cls_timm_bf16.safetensors", "timm"),
        (
            "mini_v2_det_mmdet_f16.pth",
            "mmdetection (layers.{s}.{0|1|2}",
        ),
    ] {
        let (ok, out, err) = pvt(&["info", &v2(file)]);
        assert!(ok, "{err}");
        assert!(out.contains(naming), "{file}: {out}");
        assert!(out.contains("PVT v2"), "{file}: {out}");
    }
}

fn mask_rcnn_args() -> Vec<String> {
    vec![
        "--config".into(),
        root()
            .join("assets/configs/mask_rcnn_pvt_mini.json")
            .display()
            .to_string(),
        "--weights".into(),
        root()
            .join("assets/fixtures/mask_rcnn/mini_mask_rcnn_official_f16.pth")
            .display()
            .to_string(),
    ]
}

#[test]
fn mask_rcnn_detects_with_masks_and_infer_reports_segm_ap() {
    // detect: results carry RLE masks at the image's size, and the picture is written
    let out = tmp("mrcnn_dets.json");
    let vis = tmp("mrcnn_vis.png");
    let mut args: Vec<String> = vec!["detect".into()];
    args.extend(mask_rcnn_args());
    args.extend([
        "--image".into(),
        chelsea(),
        "--out".into(),
        out.display().to_string(),
        "--vis".into(),
        vis.display().to_string(),
        "--score-thr".into(),
        "0.05".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, err) = pvt(&a);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let recs = v.as_array().unwrap();
    assert!(!recs.is_empty(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} detections", recs.len())),
        "{stdout}"
    );
    for r in recs {
        let seg = &r["segmentation"];
        assert_eq!(seg["size"], serde_json::json!([300, 451]), "{r}");
        assert!(seg["counts"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
    }
    let img = image::open(&vis).unwrap();
    assert_eq!((img.width(), img.height()), (451, 300));

    // infer --eval: bbox and segm summaries against a ground truth with polygons
    let dir = tmp("mrcnn_split");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("assets/images/chelsea.png"), dir.join("a.png")).unwrap();
    let cats: Vec<serde_json::Value> = (1..=8)
        .map(|i| serde_json::json!({"id": i, "name": format!("c{i}")}))
        .collect();
    let gt = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.png", "width": 451, "height": 300}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [100.0, 50.0, 120.0, 150.0],
             "area": 18000.0, "iscrowd": 0,
             "segmentation": [[100.0, 50.0, 220.0, 50.0, 220.0, 200.0, 100.0, 200.0]]}
        ],
        "categories": cats
    });
    let ann = dir.join("ann.json");
    std::fs::write(&ann, serde_json::to_vec(&gt).unwrap()).unwrap();
    let res = dir.join("res.json");
    let mut args: Vec<String> = vec!["infer".into()];
    args.extend(mask_rcnn_args());
    args.extend([
        "--images".into(),
        dir.display().to_string(),
        "--ann".into(),
        ann.display().to_string(),
        "--out".into(),
        res.display().to_string(),
        "--eval".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, err) = pvt(&a);
    assert!(ok, "{err}");
    let summaries = stdout
        .matches("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]")
        .count();
    assert_eq!(summaries, 2, "bbox and segm summaries expected:\n{stdout}");
    let (b, m) = (
        stdout
            .find("Evaluate annotation type *bbox*")
            .expect("bbox heading"),
        stdout
            .find("Evaluate annotation type *segm*")
            .expect("segm heading"),
    );
    assert!(b < m, "{stdout}");
}

#[test]
fn convert_round_trips_between_pvt_v2_namings() {
    let v2 = |n: &str| {
        root()
            .join("assets/fixtures/pvt_v2")
            .join(n)
            .display()
            .to_string()
    };
    let load = |p: &str| pvt_nn::Checkpoint::load(p).unwrap().tensors;
    let assert_same = |what: &str,
                       a: &std::collections::BTreeMap<String, Tensor>,
                       b: &std::collections::BTreeMap<String, Tensor>| {
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (k, v) in a {
            assert_eq!(v.dims(), b[k].dims(), "{what}: {k}");
            assert_eq!(max_abs_diff(v, &b[k]), 0.0, "{what}: {k}");
        }
    };
    let (off, timm, mm) = (
        tmp("v2_official.safetensors").display().to_string(),
        tmp("v2_timm.safetensors").display().to_string(),
        tmp("v2_mmdet.safetensors").display().to_string(),
    );
    // detector checkpoint (backbone under `backbone.`, plus neck tensors):
    // mmdet -> official -> timm -> mmdet gives the original back, neck untouched
    let det = v2("mini_v2_det_mmdet_f16.pth");
    let (ok, _, err) = pvt(&["convert", &det, &off, "--to", "official"]);
    assert!(ok, "{err}");
    assert!(err.contains("norm_eps"), "{err}");
    let (ok, _, err) = pvt(&["convert", &off, &timm, "--to", "timm"]);
    assert!(ok, "{err}");
    let (ok, _, err) = pvt(&["convert", &timm, &mm, "--naming", "mmdet"]);
    assert!(ok, "{err}");
    assert_same(
        "mmdet -> official -> timm -> mmdet",
        &load(&det),
        &load(&mm),
    );
    for (file, naming) in [
        (&off, "official PVT v2"),
        (&timm, "timm"),
        (&mm, "mmdetection (layers.{s}.{0|1|2}"),
    ] {
        let (ok, out, _) = pvt(&["info", file]);
        assert!(
            ok && out.contains(naming) && out.contains("backbone under `backbone.`"),
            "{out}"
        );
    }
    let t = load(&timm);
    assert!(t.contains_key("backbone.stages.3.blocks.1.mlp.dwconv.weight"));
    assert_eq!(t.keys().filter(|k| k.starts_with("neck.")).count(), 2);
    // classifier: official -> timm equals the timm fixture (same values: exact in f16 and bf16)
    let (ok, _, err) = pvt(&[
        "convert",
        &v2("mini_v2_cls_official_f16.pth"),
        &timm,
        "--to",
        "timm",
    ]);
    assert!(ok, "{err}");
    assert_same(
        "official cls -> timm",
        &load(&v2("mini_v2_cls_timm_bf16.safetensors")),
        &load(&timm),
    );
    // timm cls -> official equals the official fixture
    let (ok, _, err) = pvt(&[
        "convert",
        &v2("mini_v2_cls_timm_bf16.safetensors"),
        &off,
        "--to",
        "official",
    ]);
    assert!(ok, "{err}");
    assert_same(
        "timm cls -> official",
        &load(&v2("mini_v2_cls_official_f16.pth")),
        &load(&off),
    );
    // classifier -> mmdet drops the head and gives the detector fixture's backbone
    let (ok, _, err) = pvt(&[
        "convert",
        &v2("mini_v2_cls_official_f16.pth"),
        &mm,
        "--to",
        "mmdet",
    ]);
    assert!(
        ok && err.contains("dropped classifier tensor head.weight"),
        "{err}"
    );
    let backbone: std::collections::BTreeMap<String, Tensor> = load(&det)
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("backbone.")?.to_string(), v)))
        .collect();
    assert_same("official cls -> mmdet", &backbone, &load(&mm));
    // linear SRA (b2_li) round-trips official <-> timm, and has no mmdetection names
    let li = v2("mini_v2_li_det_timm_f16.safetensors");
    let (ok, _, err) = pvt(&["convert", &li, &off, "--to", "official"]);
    assert!(ok && !err.contains("norm_eps"), "{err}");
    let (ok, _, err) = pvt(&["convert", &off, &timm, "--to", "timm"]);
    assert!(ok, "{err}");
    assert_same(
        "timm -> official -> timm (linear)",
        &load(&li),
        &load(&timm),
    );
    let (ok, _, err) = pvt(&["convert", &li, &mm, "--to", "mmdet"]);
    assert!(
        !ok && err.starts_with("error: ") && err.contains("linear spatial-reduction"),
        "{err}"
    );
    // timm names are refused for PVT v1
    let (ok, _, err) = pvt(&[
        "convert",
        &fixture("mini_det_mmdet_f16.pth"),
        &timm,
        "--to",
        "timm",
    ]);
    assert!(!ok && err.contains("PVT v2 only"), "{err}");
}
