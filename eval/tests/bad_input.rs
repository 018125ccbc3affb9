//! Bad input gives a clear error (file, position, what is wrong), never a panic; the cases
//! pycocotools handles silently or crashes on are decided as documented in pvt_eval::coco.

mod common;

use pvt_eval::ade20k::{evaluate_dirs, SegConfig};
use pvt_eval::coco::stream::CocoStreamEvaluator;
use pvt_eval::coco::{evaluate, CocoGt, CocoResults, IouType};
use pvt_types::{ClassIdx, Detections, ImageSize, Rle};
use serde_json::{json, Value};
use std::sync::Arc;

/// Two 100x80 (HxW) images, categories 1 and 3; image 1 holds one object of each.
fn gt_json() -> Value {
    json!({
        "images": [{"id": 1, "height": 100, "width": 80}, {"id": 2, "height": 100, "width": 80}],
        "categories": [{"id": 1, "name": "one"}, {"id": 3, "name": "three"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "area": 600,
             "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 40, 10, 40]]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [40, 50, 30, 40], "area": 1200,
             "iscrowd": 0, "segmentation": [[40, 50, 70, 50, 70, 90, 40, 90]]}
        ]
    })
}

fn gt() -> CocoGt {
    CocoGt::from_json(gt_json().to_string().as_bytes(), "gt.json").unwrap()
}

fn results_err(text: &str) -> String {
    match CocoResults::from_json(text.as_bytes(), "res.json", &gt()) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => format!("{e:#}"),
    }
}

fn contains_all(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should mention `{p}`");
    }
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let e = CocoGt::from_json(b"{\"images\": [\n  {\"id\": 1,}\n]}", "gt.json").unwrap_err();
    contains_all(
        &format!("{e:#}"),
        &["gt.json", "malformed JSON", "line 2", "column"],
    );
    let e = results_err(
        "[{\"image_id\": 1, \"category_id\": 1,\n \"bbox\": [1, 2, 3 4], \"score\": 1}]",
    );
    contains_all(&e, &["res.json", "line 2", "column"]);
    let e = results_err("{\"image_id\": 1}");
    contains_all(&e, &["res.json", "line 1"]);
}

#[test]
fn non_finite_numbers_are_errors_with_position() {
    let e = results_err(
        "[{\"image_id\": 1, \"category_id\": 1,\n \"bbox\": [1, 2, 3, 4], \"score\": NaN}]",
    );
    contains_all(&e, &["res.json", "line 2", "non-finite number `NaN`"]);
    let e = results_err(
        "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, -Infinity, 3, 4], \"score\": 1}]",
    );
    contains_all(&e, &["non-finite number `-Infinity`"]);
    let e = results_err(
        "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 1e999, 3, 4], \"score\": 1}]",
    );
    contains_all(&e, &["res.json", "line 1"]);
}

#[test]
fn unknown_image_ids_are_rejected_like_pycocotools() {
    let e = results_err(
        r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
                            {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]"#,
    );
    contains_all(
        &e,
        &[
            "res.json",
            "result [1]",
            "image_id 7",
            "not in the ground truth",
        ],
    );
}

#[test]
fn negative_sizes_missing_fields_and_bad_masks_are_rejected() {
    let e =
        results_err(r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, -3, 4], "score": 0.5}]"#);
    contains_all(&e, &["result [0]", "negative width or height"]);
    let e = results_err(r#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]"#);
    contains_all(&e, &["result [0]", "no `score`"]);
    // A valid 100x80 mask: 50 foreground pixels in the second column.
    let counts = Rle::new(ImageSize::new(100, 80), vec![100, 50, 7850])
        .unwrap()
        .to_compressed();
    let e = results_err(&format!(
        r#"[{{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}},
            {{"image_id": 1, "category_id": 1, "score": 1,
              "segmentation": {{"size": [100, 80], "counts": "{counts}"}}}}]"#
    ));
    contains_all(&e, &["result [1]", "no `bbox`"]);
    // The RLE must be at the image's size.
    let e = results_err(&format!(
        r#"[{{"image_id": 2, "category_id": 3, "score": 1,
              "segmentation": {{"size": [80, 100], "counts": "{counts}"}}}}]"#
    ));
    contains_all(
        &e,
        &["result [0]", "image_id 2", "RLE size 80x100", "100x80"],
    );
    let e = results_err(
        r#"[{"image_id": 2, "category_id": 3, "score": 1,
                             "segmentation": {"size": [100, 80], "counts": "5 9"}}]"#,
    );
    contains_all(&e, &["result [0]", "compressed RLE"]);
    let e = results_err(
        r#"[{"image_id": 2, "category_id": 3, "score": 1,
                             "segmentation": [[1, 1, 5, 1, 5, 5]]}]"#,
    );
    contains_all(&e, &["result [0]", "compressed RLE", "loadRes"]);
    // Ground truth too.
    let mut g = gt_json();
    g["annotations"][1]["bbox"] = json!([40, 50, 30, -1]);
    let e = CocoGt::from_json(g.to_string().as_bytes(), "gt.json").unwrap_err();
    contains_all(
        &format!("{e:#}"),
        &["gt.json", "annotations[1]", "negative"],
    );
    let mut g = gt_json();
    g["annotations"][0]["segmentation"] = json!({"size": [10, 10], "counts": [100]});
    let e = CocoGt::from_json(g.to_string().as_bytes(), "gt.json").unwrap_err();
    contains_all(&format!("{e:#}"), &["annotations[0]", "RLE size 10x10"]);
}

#[test]
fn unknown_categories_are_dropped_with_a_count() {
    let r = CocoResults::from_json(
        br#"[{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5},
             {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "score": 0.9},
             {"image_id": 2, "category_id": 99, "bbox": [1, 2, 3, 4], "score": 0.5}]"#,
        "res.json",
        &gt(),
    )
    .unwrap();
    assert_eq!((r.len(), r.dropped_unknown_category()), (1, 2));
    assert!(
        r.warnings()[0].contains("dropped 2 of 3"),
        "{:?}",
        r.warnings()
    );
    let ev = evaluate(&gt(), r, IouType::Bbox).unwrap();
    // One of two objects found perfectly: AP = mean(1 - eps, 0) over two categories.
    assert!((ev.stats.ap50 - 0.5).abs() < 1e-9, "{:?}", ev.stats);
}

/// pycocotools' numbers for GT `gt` and results `res` (a list), through the reference runner.
fn pycocotools(dir: &std::path::Path, gt: &Value, res: &Value, iou: &str) -> Vec<f64> {
    let (g, r) = (dir.join("gt.json"), dir.join("res.json"));
    std::fs::write(&g, gt.to_string()).unwrap();
    std::fs::write(&r, res.to_string()).unwrap();
    let out: Value = serde_json::from_str(&common::run_tool(
        "coco_reference.py",
        &["eval", g.to_str().unwrap(), r.to_str().unwrap(), iou],
    ))
    .unwrap();
    out["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn empty_results_score_like_a_run_without_detections() {
    let r = CocoResults::from_json(b"[]", "res.json", &gt()).unwrap();
    assert!(r.warnings()[0].contains("empty"), "{:?}", r.warnings());
    let ours = evaluate(&gt(), r, IouType::Bbox).unwrap().stats.to_array();
    // pycocotools raises IndexError on []; one result on an unknown category is dropped, which
    // leaves it with no detections: the reference for "no detections".
    let dir = common::temp_dir("empty");
    let res = json!([{"image_id": 1, "category_id": 42, "bbox": [1, 2, 3, 4], "score": 0.5}]);
    let want = pycocotools(&dir, &gt_json(), &res, "bbox");
    assert_eq!(ours.to_vec(), want);
    assert!(
        ours.contains(&0.0) && ours.contains(&-1.0),
        "0 where GT exists, -1 elsewhere"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gt_annotation_with_id_0_is_never_matched_as_in_pycocotools() {
    let mut g = gt_json();
    g["annotations"][0]["id"] = json!(0);
    let res = json!([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "score": 0.9},
                     {"image_id": 1, "category_id": 3, "bbox": [40, 50, 30, 40], "score": 0.8}]);
    let gt = CocoGt::from_json(g.to_string().as_bytes(), "gt.json").unwrap();
    let r = CocoResults::from_json(res.to_string().as_bytes(), "res.json", &gt).unwrap();
    let ev = evaluate(&gt, r, IouType::Bbox).unwrap();
    assert!(ev.fenced_zero_id);
    let per: Vec<Option<f64>> = ev.per_category().into_iter().map(|(_, _, ap)| ap).collect();
    assert_eq!(
        per[0],
        Some(0.0),
        "the perfect box on the id-0 object is a false positive"
    );
    let dir = common::temp_dir("zero-id");
    assert_eq!(
        ev.stats.to_array().to_vec(),
        pycocotools(&dir, &g, &res, "bbox")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn streaming_rejects_unknown_images_and_wrong_sizes() {
    let gt = Arc::new(gt());
    let map = gt.category_map().unwrap();
    let mut ev = CocoStreamEvaluator::new(gt.clone(), map, &[IouType::Bbox]).unwrap();
    let d = |size| {
        Detections::new(
            size,
            vec![[1., 1., 5., 5.]],
            vec![0.5],
            vec![ClassIdx(0)],
            None,
        )
        .unwrap()
    };
    let e = ev
        .process(9, &d(ImageSize::new(100, 80)))
        .unwrap_err()
        .to_string();
    contains_all(&e, &["image id 9"]);
    let e = ev
        .process(1, &d(ImageSize::new(80, 100)))
        .unwrap_err()
        .to_string();
    contains_all(&e, &["image 1", "80x100", "100x80"]);
    let e = ev
        .process(
            1,
            &Detections::new(
                ImageSize::new(100, 80),
                vec![[1., 1., 5., 5.]],
                vec![0.5],
                vec![ClassIdx(5)],
                None,
            )
            .unwrap(),
        )
        .unwrap_err()
        .to_string();
    contains_all(&e, &["class #5", "2 classes"]);
}

#[test]
fn ade20k_missing_or_mismatched_predictions_name_the_file() {
    let dir = common::temp_dir("seg-bad");
    let (g, p) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&g).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    image::GrayImage::from_pixel(4, 3, image::Luma([1]))
        .save(g.join("a.png"))
        .unwrap();
    image::GrayImage::from_pixel(4, 3, image::Luma([1]))
        .save(g.join("b.png"))
        .unwrap();
    image::GrayImage::from_pixel(4, 3, image::Luma([0]))
        .save(p.join("a.png"))
        .unwrap();
    let e = format!(
        "{:#}",
        evaluate_dirs(&g, &p, SegConfig::ade20k()).unwrap_err()
    );
    contains_all(&e, &["missing prediction", "b.png"]);
    image::GrayImage::from_pixel(5, 3, image::Luma([0]))
        .save(p.join("b.png"))
        .unwrap();
    let e = format!(
        "{:#}",
        evaluate_dirs(&g, &p, SegConfig::ade20k()).unwrap_err()
    );
    contains_all(&e, &["b.png", "3x5", "3x4"]);
    image::RgbImage::from_pixel(4, 3, image::Rgb([0, 0, 0]))
        .save(p.join("b.png"))
        .unwrap();
    let e = format!(
        "{:#}",
        evaluate_dirs(&g, &p, SegConfig::ade20k()).unwrap_err()
    );
    contains_all(&e, &["b.png", "single-channel"]);
    let _ = std::fs::remove_dir_all(&dir);
}
