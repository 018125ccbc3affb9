//! The evaluation reports (`pvt_eval::report`, what `pvt eval` prints) on generated data:
//! the pycocotools summary byte for byte, or one JSON object; per-class tables, the PR plot, and
//! the ADE20K report.

mod common;

use pvt_eval::coco::IouType;
use pvt_eval::report::{self, CocoReport};
use serde_json::Value;
use std::path::Path;

fn coco(gt: &str, dt: &str, iou: IouType, opts: CocoReport) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    let out = report::coco(Path::new(gt), Path::new(dt), iou, &opts, &mut |w| {
        warnings.push(w.to_string())
    })
    .unwrap();
    (out, warnings)
}

fn ade20k(gt: &Path, pred: &Path, json: bool, per_class: bool) -> String {
    let cfg = report::seg_config(150, true).unwrap();
    report::ade20k(gt, pred, cfg, json, per_class).unwrap()
}

#[test]
fn coco_summary_json_per_class_and_plot() {
    let seed = common::seed();
    let dir = common::temp_dir(&format!("cli-{seed}"));
    common::run_tool(
        "coco_reference.py",
        &["gen", &seed.to_string(), dir.to_str().unwrap()],
    );
    let gt = dir.join("gt.json");
    let dt = dir.join("dt_segm.json");
    let (gt_s, dt_s) = (gt.to_str().unwrap(), dt.to_str().unwrap());
    let reference: Value = serde_json::from_str(&common::run_tool(
        "coco_reference.py",
        &["eval", gt_s, dt_s, "segm"],
    ))
    .unwrap();

    let (out, warnings) = coco(gt_s, dt_s, IouType::Segm, CocoReport::default());
    assert_eq!(out, reference["summary"].as_str().unwrap());
    assert!(
        warnings.iter().any(|w| w.contains("dropped 3 of")),
        "{warnings:?}"
    );

    let json = CocoReport {
        json: true,
        ..CocoReport::default()
    };
    let (out, _) = coco(gt_s, dt_s, IouType::Segm, json);
    let v: Value = serde_json::from_str(&out).expect("stdout is one JSON object");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 12);
    let keys: Vec<&str> = out
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|k| k.starts_with('A'))
        .collect();
    assert_eq!(
        keys,
        pvt_eval::coco::CocoStats::KEYS,
        "keys in pycocotools' order"
    );
    let want = reference["stats"].as_array().unwrap();
    for (i, key) in [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            (obj[*key].as_f64().unwrap() - want[i].as_f64().unwrap()).abs() <= 1e-12,
            "{key}"
        );
    }

    let png = dir.join("pr.png");
    let opts = CocoReport {
        per_class: true,
        plot: Some(png.clone()),
        ..CocoReport::default()
    };
    let (out, _) = coco(gt_s, dt_s, IouType::Bbox, opts);
    let gt_json: Value = serde_json::from_slice(&std::fs::read(&gt).unwrap()).unwrap();
    for cat in gt_json["categories"].as_array().unwrap() {
        let name = cat["name"].as_str().unwrap();
        assert!(out.contains(name), "per-class table lists {name}");
    }
    // Categories without GT print "-".
    assert!(out.lines().any(|l| l.trim_end().ends_with(" -")), "{out}");
    let img = image::open(&png).expect("a readable PNG").to_rgb8();
    assert_eq!(img.dimensions(), (720, 540));
    let colored = img
        .pixels()
        .filter(|p| p[0] != p[1] || p[1] != p[2])
        .count();
    assert!(colored > 1000, "curves drawn in colour ({colored} pixels)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ade20k_report_and_json() {
    let seed = common::seed();
    let dir = common::temp_dir(&format!("cli-seg-{seed}"));
    common::run_tool(
        "seg_reference.py",
        &["gen", &seed.to_string(), dir.to_str().unwrap(), "150", "1"],
    );
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    let reference: Value = serde_json::from_str(&common::run_tool(
        "seg_reference.py",
        &[
            "eval",
            gt.to_str().unwrap(),
            pred.to_str().unwrap(),
            "150",
            "1",
        ],
    ))
    .unwrap();
    let out = ade20k(&gt, &pred, true, false);
    let v: Value = serde_json::from_str(&out).unwrap();
    for key in ["aAcc", "mIoU", "mAcc"] {
        // The JSON holds the decimal mmseg prints; it is the float32 reference value.
        assert_eq!(
            v[key].as_f64().unwrap() as f32,
            reference[key].as_f64().unwrap() as f32,
            "{key}"
        );
    }
    assert_eq!(v["per_class"].as_array().unwrap().len(), 150);
    assert_eq!(v["per_class"][0]["name"], "wall");
    let out = ade20k(&gt, &pred, false, true);
    assert!(
        out.starts_with("aAcc: ") && out.contains("\nflag "),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
