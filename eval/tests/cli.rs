//! The `pvt eval` commands (crates/cli/src/eval_cmd.rs, compiled here as it is) on generated
//! data: stdout is the pycocotools summary byte for byte, or one JSON object; per-class tables,
//! the PR plot, and the ADE20K report.

mod common;

#[path = "../../crates/cli/src/eval_cmd.rs"]
#[allow(dead_code)]
mod eval_cmd;

use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: eval_cmd::EvalCmd,
}

fn pvt_eval(args: &[&str]) -> anyhow::Result<(String, Vec<String>)> {
    let cli = Cli::try_parse_from(std::iter::once("eval").chain(args.iter().copied()))?;
    let mut warnings = Vec::new();
    let out = eval_cmd::execute(&cli.cmd, &mut |w| warnings.push(w.to_string()))?;
    Ok((out, warnings))
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

    let (out, warnings) =
        pvt_eval(&["coco", "--gt", gt_s, "--dt", dt_s, "--iou-type", "segm"]).unwrap();
    assert_eq!(out, reference["summary"].as_str().unwrap());
    assert!(
        warnings.iter().any(|w| w.contains("dropped 3 of")),
        "{warnings:?}"
    );

    let (out, _) = pvt_eval(&[
        "coco",
        "--gt",
        gt_s,
        "--dt",
        dt_s,
        "--iou-type",
        "segm",
        "--json",
    ])
    .unwrap();
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
    let (out, _) = pvt_eval(&[
        "coco",
        "--gt",
        gt_s,
        "--dt",
        dt_s,
        "--iou-type",
        "bbox",
        "--per-class",
        "--plot",
        png.to_str().unwrap(),
    ])
    .unwrap();
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
    let base = [
        "ade20k",
        "--gt-dir",
        gt.to_str().unwrap(),
        "--pred-dir",
        pred.to_str().unwrap(),
        "--reduce-zero-label",
    ];
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
    let (out, _) = pvt_eval(&[&base[..], &["--json"]].concat()).unwrap();
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
    let (out, _) = pvt_eval(&[&base[..], &["--per-class"]].concat()).unwrap();
    assert!(
        out.starts_with("aAcc: ") && out.contains("\nflag "),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
