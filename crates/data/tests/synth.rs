//! The synthetic dataset: determinism, annotation consistency, coverage of classes and sizes, and
//! the COCO files read back by the evaluation crate.

use indicatif::ProgressBar;
use pvt_data::coco::CocoFile;
use pvt_data::synth::{
    file_stem, generate, render_sample, SizeBucket, Split, SynthConfig, CLASS_NAMES,
};
use pvt_types::{ImageSize, Rle};
use std::path::{Path, PathBuf};

fn cfg(images: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        images,
        seed,
        preview: 0,
        ..SynthConfig::default()
    }
}

/// A fresh empty folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("synth-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read_coco(path: &Path) -> CocoFile {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Tight `[x, y, w, h]` box and pixel count of a row-major 0/1 mask.
fn box_and_area(data: &[u8], size: ImageSize) -> Option<([f64; 4], u64)> {
    let (mut x0, mut y0, mut x1, mut y1, mut n) = (usize::MAX, usize::MAX, 0, 0, 0u64);
    for (i, &m) in data.iter().enumerate() {
        if m != 0 {
            let (x, y) = (i % size.width, i / size.width);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            n += 1;
        }
    }
    (n > 0).then(|| ([x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(|v| v as f64), n))
}

#[test]
fn same_seed_same_pixels_and_annotations_whatever_the_count() {
    let a = render_sample(&cfg(10, 7), 3);
    let b = render_sample(&cfg(5000, 7), 3);
    assert_eq!(a.image, b.image);
    assert_eq!(a.semantic, b.semantic);
    assert_eq!(a.instances, b.instances);
    let other_seed = render_sample(&cfg(10, 8), 3);
    assert_ne!(a.image, other_seed.image);
    let other_index = render_sample(&cfg(10, 7), 4);
    assert_ne!(a.image, other_index.image);
}

#[test]
fn generated_files_are_byte_identical_across_runs_and_counts() {
    let (d1, d2) = (scratch("det-a"), scratch("det-b"));
    let pb = ProgressBar::hidden();
    generate(&cfg(12, 3), &d1, &pb).unwrap();
    generate(&cfg(17, 3), &d2, &pb).unwrap();
    for i in 0..12 {
        let split = cfg(12, 3).split_of(i).name();
        for top in ["images", "labels"] {
            let rel = format!("{top}/{split}/{}.png", file_stem(i));
            let (x, y) = (
                std::fs::read(d1.join(&rel)).unwrap(),
                std::fs::read(d2.join(&rel)).unwrap(),
            );
            assert!(x == y, "{rel} differs between runs");
        }
    }
    // The first 12 images' annotations are the same records in both runs (the larger run only
    // appends images and annotations).
    for split in ["train", "val"] {
        let (a, b) = (
            read_coco(&d1.join(format!("annotations/instances_{split}.json"))),
            read_coco(&d2.join(format!("annotations/instances_{split}.json"))),
        );
        assert_eq!(a.images[..], b.images[..a.images.len()]);
        assert_eq!(a.annotations[..], b.annotations[..a.annotations.len()]);
    }
    // Rerunning into the same folder with fewer images converges to the smaller dataset's files.
    let s = generate(&cfg(12, 3), &d2, &pb).unwrap();
    assert_eq!(s.removed_stale, 2 * 5);
    for split in ["train", "val"] {
        let a = std::fs::read(d1.join(format!("annotations/instances_{split}.json"))).unwrap();
        let b = std::fs::read(d2.join(format!("annotations/instances_{split}.json"))).unwrap();
        assert!(a == b, "instances_{split}.json differs after the rerun");
        for top in ["images", "labels"] {
            let count = |d: &Path| std::fs::read_dir(d.join(top).join(split)).unwrap().count();
            assert_eq!(count(&d1), count(&d2));
        }
    }
}

#[test]
fn annotations_match_masks_and_semantic_labels() {
    let c = cfg(40, 11);
    for i in 0..c.images {
        let s = render_sample(&c, i);
        let size = ImageSize::new(s.image.height() as usize, s.image.width() as usize);
        let mut union = vec![0u8; size.area()];
        for inst in &s.instances {
            let rle = Rle::from_compressed(&inst.rle().to_compressed(), size).unwrap();
            let mask = rle.decode();
            assert_eq!(mask, inst.mask);
            let (bbox, area) = box_and_area(mask.data(), size).expect("non-empty mask");
            assert_eq!(bbox, inst.bbox.map(f64::from), "image {i}");
            assert_eq!(area, inst.area);
            assert_eq!(rle.area(), inst.area);
            assert!(inst.area >= c.min_area);
            for (u, &m) in union.iter_mut().zip(mask.data()) {
                if m != 0 {
                    assert_eq!(*u, 0, "image {i}: instance masks overlap");
                    *u = inst.category_id() as u8;
                }
            }
        }
        assert_eq!(
            s.semantic.as_raw(),
            &union,
            "image {i}: semantic != union of masks"
        );
    }
}

#[test]
fn classes_and_sizes_are_all_represented() {
    let c = cfg(50, 0);
    let mut per_class = [0usize; CLASS_NAMES.len()];
    let mut per_size = [0usize; 3];
    let mut total = 0;
    for i in 0..c.images {
        for inst in render_sample(&c, i).instances {
            per_class[inst.class.0 as usize] += 1;
            per_size[inst.size_bucket() as usize] += 1;
            total += 1;
        }
    }
    println!("{total} instances; per class {per_class:?}; small/medium/large {per_size:?}");
    for (name, &n) in CLASS_NAMES.iter().zip(&per_class) {
        assert!(n * 20 >= total, "class {name}: {n} of {total}");
    }
    for (b, &n) in [SizeBucket::Small, SizeBucket::Medium, SizeBucket::Large]
        .iter()
        .zip(&per_size)
    {
        assert!(n * 10 >= total, "{b:?}: {n} of {total}");
    }
}

#[test]
fn coco_files_load_in_the_evaluator_and_score_perfectly_against_themselves() {
    use pvt_eval::coco::{evaluate, CocoGt, CocoResults, IouType};
    let d = scratch("eval");
    let c = SynthConfig {
        preview: 4,
        ..cfg(30, 5)
    };
    let summary = generate(&c, &d, &ProgressBar::hidden()).unwrap();
    assert_eq!(summary.train_images + summary.val_images, 30);
    assert_eq!(summary.val_images, 6);
    assert!(d.join("preview.png").exists());
    let classes = std::fs::read_to_string(d.join("classes.txt")).unwrap();
    assert_eq!(classes.lines().collect::<Vec<_>>(), CLASS_NAMES);
    assert_eq!(
        std::fs::read_to_string(d.join("palette.txt"))
            .unwrap()
            .lines()
            .count(),
        CLASS_NAMES.len()
    );

    for split in [Split::Train, Split::Val] {
        let path = d.join(format!("annotations/instances_{}.json", split.name()));
        let file = read_coco(&path);
        assert_eq!(file.images.len(), c.split_len(split));
        for img in &file.images {
            assert!(d
                .join("images")
                .join(split.name())
                .join(&img.file_name)
                .exists());
            let label = pvt_eval::ade20k::load_label_png(
                &d.join("labels").join(split.name()).join(&img.file_name),
            )
            .unwrap();
            assert_eq!(label.size(), ImageSize::new(256, 320));
            assert!(label
                .labels()
                .iter()
                .all(|&l| l as usize <= CLASS_NAMES.len()));
        }
        for iou in [IouType::Bbox, IouType::Segm] {
            let gt = CocoGt::from_file_for(&path, iou).unwrap();
            assert!(gt.warnings().is_empty(), "{:?}", gt.warnings());
            assert_eq!(gt.image_ids().len(), file.images.len());
            let names: Vec<String> = gt.categories().into_iter().map(|(_, n)| n).collect();
            assert_eq!(names, CLASS_NAMES);
            // The ground truth as results (score 1) must give AP 1.
            let results: Vec<serde_json::Value> = file
                .annotations
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap();
                    v["score"] = serde_json::json!(1.0);
                    if iou == IouType::Bbox {
                        v.as_object_mut().unwrap().remove("segmentation");
                    }
                    v
                })
                .collect();
            let res = CocoResults::from_json(&serde_json::to_vec(&results).unwrap(), "self", &gt)
                .unwrap();
            let ev = evaluate(&gt, res, iou).unwrap();
            let ap = ev.stats.to_array()[0];
            assert!(
                (ap - 1.0).abs() < 1e-12,
                "{} {iou:?}: AP {ap}",
                split.name()
            );
        }
    }
}

/// FNV-1a, 64 bits.
fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Pinned pixels: the pictures of a seed must not change silently (between platforms, or by an
/// edit of the generator; such an edit must bump `FORMAT_VERSION` and this value).
#[test]
fn pixels_are_pinned() {
    let c = cfg(4, 0);
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..c.images {
        let s = render_sample(&c, i);
        fnv1a(&mut h, s.image.as_raw());
        fnv1a(&mut h, s.semantic.as_raw());
        for inst in &s.instances {
            fnv1a(&mut h, inst.rle().to_compressed().as_bytes());
        }
    }
    println!("pinned hash {h:#018x}");
    assert_eq!(
        h,
        PINNED,
        "format version {}",
        pvt_data::synth::FORMAT_VERSION
    );
}

const PINNED: u64 = 0x2078_ac44_927b_14bb;
