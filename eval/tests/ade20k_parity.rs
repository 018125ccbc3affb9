//! ADE20K-style mIoU against a numpy implementation of mmsegmentation's IoUMetric rule
//! (tools/eval/seg_reference.py) on fresh random label PNGs: the 2-decimal float32 values and
//! the per-class counts must be equal.

mod common;

use pvt_eval::ade20k::{
    evaluate_dirs, load_label_png, pair_dirs, save_label_png, SegConfig, SegEvaluator,
};
use serde_json::Value;

fn cfg_for(classes: usize, reduce: bool) -> SegConfig {
    if classes == 150 && reduce {
        SegConfig::ade20k()
    } else {
        SegConfig::generic(classes, reduce)
    }
}

fn check(seed: u64, classes: usize, reduce: bool) {
    let dir = common::temp_dir(&format!("seg-{seed}-{classes}"));
    let (k, r) = (classes.to_string(), if reduce { "1" } else { "0" });
    common::run_tool(
        "seg_reference.py",
        &["gen", &seed.to_string(), dir.to_str().unwrap(), &k, r],
    );
    let (gt, pred) = (dir.join("gt"), dir.join("pred"));
    let reference: Value = serde_json::from_str(&common::run_tool(
        "seg_reference.py",
        &["eval", gt.to_str().unwrap(), pred.to_str().unwrap(), &k, r],
    ))
    .unwrap();
    let m = evaluate_dirs(&gt, &pred, cfg_for(classes, reduce)).unwrap();
    let f = |key: &str| reference[key].as_f64().unwrap() as f32;
    assert_eq!(
        (m.a_acc, m.miou, m.macc),
        (f("aAcc"), f("mIoU"), f("mAcc")),
        "seed {seed}"
    );
    for (c, cls) in m.per_class.iter().enumerate() {
        let opt = |key: &str| reference[key][c].as_f64().map(|v| v as f32);
        assert_eq!(cls.iou, opt("IoU"), "seed {seed} class {c} IoU");
        assert_eq!(cls.acc, opt("Acc"), "seed {seed} class {c} Acc");
        let counts: Vec<u64> = reference["counts"][c]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let n = cls.counts;
        assert_eq!(
            vec![n.intersect, n.union, n.pred, n.label],
            counts,
            "seed {seed} class {c}"
        );
    }
    assert!(
        m.per_class.iter().any(|c| c.iou.is_none()),
        "some class absent from both"
    );
    // The in-memory path (SegMaps through SegEvaluator, predictions written and re-read with
    // save_label_png) gives the same result.
    let mut ev = SegEvaluator::new(cfg_for(classes, reduce)).unwrap();
    let resaved = dir.join("resaved");
    std::fs::create_dir_all(&resaved).unwrap();
    for (g, p) in pair_dirs(&gt, &pred).unwrap() {
        let pred_map = load_label_png(&p).unwrap();
        let out = resaved.join(p.file_name().unwrap());
        save_label_png(&out, &pred_map).unwrap();
        assert_eq!(load_label_png(&out).unwrap(), pred_map, "PNG round trip");
        ev.process(&pred_map, &load_label_png(&g).unwrap()).unwrap();
    }
    assert_eq!(
        ev.metrics(),
        m,
        "streamed SegMaps equal the folder evaluation"
    );
    assert!(
        m.per_class
            .iter()
            .any(|c| c.iou == Some(0.0) && c.acc.is_none()),
        "pred-only class"
    );
    eprintln!(
        "seed {seed} K={classes} reduce={reduce}: aAcc {} mIoU {} mAcc {} equal",
        m.a_acc, m.miou, m.macc
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ade20k_reduce_zero_label_matches_mmseg_rule() {
    check(common::seed(), 150, true);
}

#[test]
fn plain_labels_with_ignore_match_mmseg_rule() {
    check(common::seed() + 7, 19, false);
}
