//! pycocotools parity on fresh random data: the 12 stats within 1e-12, the printed summary
//! byte for byte, and per-category AP, for bbox and segm, segm results with and without `bbox`,
//! with and without a GT annotation of id 0 (the fenced hotcoco departure).

mod common;

use pvt_eval::coco::{evaluate, CocoGt, CocoResults, IouType};
use serde_json::Value;

fn check_case(dir: &std::path::Path, dt: &str, iou: IouType, seed: u64) {
    let gt_path = dir.join("gt.json");
    let dt_path = dir.join(dt);
    let reference: Value = serde_json::from_str(&common::run_tool(
        "coco_reference.py",
        &[
            "eval",
            gt_path.to_str().unwrap(),
            dt_path.to_str().unwrap(),
            &iou.to_string(),
        ],
    ))
    .expect("reference JSON");
    let gt = CocoGt::from_file(&gt_path).expect("load gt");
    let res = CocoResults::from_file(&dt_path, &gt).expect("load results");
    assert!(
        res.dropped_unknown_category() > 0,
        "the generator adds unknown categories"
    );
    let ours = evaluate(&gt, res, iou).expect("evaluate");
    assert_eq!(
        ours.fenced_zero_id,
        seed.is_multiple_of(2),
        "even seeds have a GT id 0"
    );
    let want: Vec<f64> = reference["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got = ours.stats.to_array();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12,
            "seed {seed} {dt} {iou}: stat {} = {g}, pycocotools {w}",
            pvt_eval::coco::CocoStats::KEYS[i]
        );
    }
    assert_eq!(
        ours.stats.summary(),
        reference["summary"].as_str().unwrap(),
        "{dt} {iou}"
    );
    let per_class = reference["per_class"].as_object().unwrap();
    for (id, _, ap) in ours.per_category() {
        let w = per_class[&id.to_string()].as_f64();
        match (ap, w) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12, "cat {id}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "cat {id}"),
        }
    }
    let bitwise = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g.to_bits() == w.to_bits())
        .count();
    eprintln!(
        "seed {seed} {dt} {iou}: AP {:.6}, {bitwise}/12 stats bit-identical",
        got[0]
    );
}

/// The generated data holds the cases pycocotools treats specially (so the comparison covers them).
fn check_coverage(dir: &std::path::Path) {
    let read = |f: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
    };
    let (gt, dt) = (read("gt.json"), read("dt_segm.json"));
    let anns = gt["annotations"].as_array().unwrap();
    let mut per_pair = std::collections::HashMap::new();
    for d in dt.as_array().unwrap() {
        *per_pair
            .entry((d["image_id"].as_u64(), d["category_id"].as_u64()))
            .or_insert(0) += 1;
    }
    assert!(
        per_pair.values().any(|&n| n > 100),
        "an (image, category) with > 100 detections"
    );
    assert!(anns.iter().any(|a| a["iscrowd"] == 1), "a crowd region");
    assert!(
        anns.iter().any(|a| a["segmentation"].is_array()),
        "a polygon"
    );
    assert!(
        anns.iter().any(|a| a["segmentation"]["counts"].is_array()),
        "an uncompressed RLE"
    );
    assert!(
        anns.iter().any(|a| a["segmentation"]["counts"].is_string()),
        "a compressed RLE"
    );
    let with_gt: std::collections::HashSet<_> =
        anns.iter().map(|a| a["image_id"].as_u64()).collect();
    assert!(
        gt["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| !with_gt.contains(&i["id"].as_u64())),
        "an empty image"
    );
    let cats_with_gt: std::collections::HashSet<_> =
        anns.iter().map(|a| a["category_id"].as_u64()).collect();
    assert!(
        gt["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| !cats_with_gt.contains(&c["id"].as_u64())),
        "a category without GT"
    );
    let outside = dt
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["bbox"][0].as_f64().unwrap() < 0.0);
    assert!(outside, "a box partly outside the image");
    let scores: Vec<f64> = dt
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.iter().filter(|&&s| s == 0.5).count() > 1,
        "tied scores"
    );
}

#[test]
fn random_sets_match_pycocotools() {
    let base = common::seed();
    for seed in [base, base + 1] {
        let dir = common::temp_dir(&format!("parity-{seed}"));
        common::run_tool(
            "coco_reference.py",
            &["gen", &seed.to_string(), dir.to_str().unwrap()],
        );
        check_coverage(&dir);
        check_case(&dir, "dt_bbox.json", IouType::Bbox, seed);
        // Box-only results in a segm evaluation: each box becomes a 4-corner polygon.
        check_case(&dir, "dt_bbox.json", IouType::Segm, seed);
        check_case(&dir, "dt_segm.json", IouType::Bbox, seed);
        check_case(&dir, "dt_segm.json", IouType::Segm, seed);
        check_case(&dir, "dt_segm_nobox.json", IouType::Segm, seed);
        check_case(&dir, "dt_segm_nobox.json", IouType::Bbox, seed);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
