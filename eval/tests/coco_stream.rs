//! The in-memory path: per-image `Detections` streamed through `CocoStreamEvaluator` give the
//! same numbers as the results file `write_results` writes, evaluated by us and by pycocotools.

mod common;

use pvt_eval::coco::stream::CocoStreamEvaluator;
use pvt_eval::coco::writer::write_results;
use pvt_eval::coco::{evaluate, CocoGt, CocoResults, IouType};
use pvt_types::{ClassIdx, Detections, ImageSize, Rle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Detections per image from a generated results file (records of unknown categories skipped).
fn detections_from(dt_path: &std::path::Path, gt: &CocoGt) -> BTreeMap<u64, Detections> {
    let map = gt.category_map().unwrap();
    let records: Vec<Value> = serde_json::from_slice(&std::fs::read(dt_path).unwrap()).unwrap();
    let mut per_image: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for r in &records {
        per_image
            .entry(r["image_id"].as_u64().unwrap())
            .or_default()
            .push(r);
    }
    per_image
        .into_iter()
        .map(|(id, recs)| {
            let size = gt.image_size(id).unwrap();
            let (mut boxes, mut scores, mut classes, mut masks) = (vec![], vec![], vec![], vec![]);
            for r in recs {
                let Some(idx) = map.index(r["category_id"].as_u64().unwrap()) else {
                    continue;
                };
                let b: Vec<f32> = r["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                boxes.push([b[0], b[1], b[0] + b[2], b[1] + b[3]]);
                scores.push(r["score"].as_f64().unwrap() as f32);
                classes.push(ClassIdx(idx.0));
                let counts = r["segmentation"]["counts"].as_str().unwrap();
                let rle =
                    Rle::from_compressed(counts, ImageSize::new(size.height, size.width)).unwrap();
                assert_eq!(rle.to_compressed(), counts, "RLE string round trip");
                masks.push(rle);
            }
            (
                id,
                Detections::new(size, boxes, scores, classes, Some(masks)).unwrap(),
            )
        })
        .collect()
}

#[test]
fn streamed_detections_equal_written_file_and_pycocotools() {
    let base = common::seed();
    for seed in [base, base + 1] {
        let dir = common::temp_dir(&format!("stream-{seed}"));
        common::run_tool(
            "coco_reference.py",
            &["gen", &seed.to_string(), dir.to_str().unwrap()],
        );
        let gt = Arc::new(CocoGt::from_file(&dir.join("gt.json")).unwrap());
        let dets = detections_from(&dir.join("dt_segm.json"), &gt);
        let map = gt.category_map().unwrap();

        let types = [IouType::Bbox, IouType::Segm];
        let mut ev = CocoStreamEvaluator::new(gt.clone(), map.clone(), &types).unwrap();
        // Every third image is left out: it must score as an image without detections.
        let kept: Vec<(u64, &Detections)> = dets
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 1)
            .map(|(_, (id, d))| (*id, d))
            .collect();
        for (id, d) in kept.iter().rev() {
            ev.process(*id, d).unwrap();
        }
        assert!(
            ev.process(kept[0].0, kept[0].1).is_err(),
            "an image twice is an error"
        );
        let streamed = ev.finish().unwrap();

        let out = dir.join("written.json");
        write_results(&out, kept.iter().copied(), &map).unwrap();
        for (t, s) in streamed {
            let res = CocoResults::from_file(&out, &gt).unwrap();
            let batch = evaluate(&gt, res, t).unwrap();
            assert_eq!(s.stats, batch.stats, "seed {seed} {t}: streamed vs batch");
            let reference: Value = serde_json::from_str(&common::run_tool(
                "coco_reference.py",
                &[
                    "eval",
                    dir.join("gt.json").to_str().unwrap(),
                    out.to_str().unwrap(),
                    &t.to_string(),
                ],
            ))
            .unwrap();
            for (i, (g, w)) in s
                .stats
                .to_array()
                .iter()
                .zip(reference["stats"].as_array().unwrap())
                .enumerate()
            {
                let w = w.as_f64().unwrap();
                assert!(
                    (g - w).abs() <= 1e-12,
                    "seed {seed} {t} stat {i}: {g} vs pycocotools {w}"
                );
            }
            eprintln!(
                "seed {seed} {t}: streamed AP {:.6} = batch = pycocotools",
                s.stats.ap
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
