//! Whole-dataset inference over a COCO-format split: results written as they come, resumable,
//! shardable, with failures reported and skipped.
//!
//! Progress lives in `<out>.partial.jsonl`, one line per finished image
//! (`{"image_id": 1, "results": [...]}` or `{"image_id": 1, "error": "..."}`), appended and
//! flushed after every image. A restarted run reads it and skips the images already done (a torn
//! last line is ignored and redone). When every image of the shard is done, the results are
//! written atomically to `<out>` as one COCO results array.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use pvt_eval::coco::writer::{records, write_atomic};
use pvt_eval::coco::CocoGt;
use pvt_nn::image::load_rgb;
use pvt_types::CategoryMap;
use serde_json::{json, Value};

use crate::ImageDetector;

/// Which part of a split this process runs: images whose position in id order is `index` modulo
/// `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole split.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`.
    pub fn parse(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("shard `{s}` must look like 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .with_context(|| format!("shard index in `{s}`"))?;
        let count: usize = n
            .trim()
            .parse()
            .with_context(|| format!("shard count in `{s}`"))?;
        ensure!(count >= 1 && index < count, "shard `{s}`: need 0 <= i < n");
        Ok(Self { index, count })
    }
}

/// One image to run.
#[derive(Debug, Clone)]
pub struct SplitImage {
    /// Dataset image id.
    pub id: u64,
    /// Path of the image file.
    pub path: PathBuf,
}

/// The images of a split that belong to `shard`, in id order.
pub fn split_images(gt: &CocoGt, images_dir: &Path, shard: Shard) -> Vec<SplitImage> {
    let mut imgs: Vec<(u64, String)> = gt
        .dataset()
        .images
        .iter()
        .map(|i| (i.id, i.file_name.clone()))
        .collect();
    imgs.sort_by_key(|(id, _)| *id);
    imgs.into_iter()
        .enumerate()
        .filter(|(pos, _)| pos % shard.count == shard.index)
        .map(|(_, (id, name))| SplitImage {
            id,
            path: images_dir.join(name),
        })
        .collect()
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Images run now.
    pub processed: usize,
    /// Images found done from an earlier run.
    pub resumed: usize,
    /// Images that failed (unreadable, or the model failed), with the reason.
    pub failed: Vec<(u64, String)>,
    /// Result records written.
    pub records: usize,
}

fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial.jsonl");
    PathBuf::from(p)
}

/// Reads the finished lines of a progress file (ignoring a torn last line).
fn read_partial(path: &Path) -> Result<Vec<Value>> {
    let Ok(f) = File::open(path) else {
        return Ok(vec![]);
    };
    let mut out = vec![];
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.get("image_id").and_then(Value::as_u64).is_some() => out.push(v),
            _ => eprintln!(
                "{}: line {} is incomplete; that image will be run again",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(out)
}

/// Runs `detector` over `images`, appending to the progress file next to `out` and writing
/// `out` when all are done. `on_image` is called after each image (progress display).
pub fn run_split(
    detector: &dyn ImageDetector,
    images: &[SplitImage],
    map: &CategoryMap,
    out: &Path,
    mut on_image: impl FnMut(&RunSummary, Option<&(u64, String)>),
) -> Result<RunSummary> {
    let partial = partial_path(out);
    let mut done_lines = read_partial(&partial)?;
    // rewrite the progress file without a torn tail before appending to it
    let mut body = String::new();
    for v in &done_lines {
        body.push_str(&v.to_string());
        body.push('\n');
    }
    write_atomic(&partial, body.as_bytes())?;
    let done: BTreeSet<u64> = done_lines
        .iter()
        .filter_map(|v| v["image_id"].as_u64())
        .collect();
    let mut summary = RunSummary {
        resumed: images.iter().filter(|i| done.contains(&i.id)).count(),
        ..Default::default()
    };
    let mut log = OpenOptions::new()
        .append(true)
        .open(&partial)
        .with_context(|| format!("opening {}", partial.display()))?;
    for img in images.iter().filter(|i| !done.contains(&i.id)) {
        let line = match load_rgb(&img.path).and_then(|rgb| detector.detect(&rgb)) {
            Ok(dets) => {
                let recs = records(img.id, &dets, map)?;
                json!({"image_id": img.id, "results": recs})
            }
            Err(e) => {
                let reason = format!("{e:#}");
                summary.failed.push((img.id, reason.clone()));
                json!({"image_id": img.id, "error": reason})
            }
        };
        writeln!(log, "{line}")
            .and_then(|_| log.flush())
            .with_context(|| format!("writing {}", partial.display()))?;
        done_lines.push(line);
        summary.processed += 1;
        on_image(
            &summary,
            summary.failed.last().filter(|(id, _)| *id == img.id),
        );
    }
    for v in &done_lines {
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            let id = v["image_id"].as_u64().unwrap_or(0);
            if !summary.failed.iter().any(|(f, _)| *f == id) {
                summary.failed.push((id, err.to_string()));
            }
        }
    }
    let wanted: BTreeSet<u64> = images.iter().map(|i| i.id).collect();
    let mut all: Vec<Value> = vec![];
    for v in &done_lines {
        if wanted.contains(&v["image_id"].as_u64().unwrap_or(u64::MAX)) {
            if let Some(rs) = v.get("results").and_then(Value::as_array) {
                all.extend(rs.iter().cloned());
            }
        }
    }
    summary.records = all.len();
    write_atomic(out, &serde_json::to_vec(&all)?)?;
    Ok(summary)
}

/// Merges results files (e.g. of shards) into one, refusing an image that appears in two.
pub fn merge_results(inputs: &[PathBuf], out: &Path) -> Result<usize> {
    let mut all: Vec<Value> = vec![];
    let mut owner: std::collections::BTreeMap<u64, usize> = Default::default();
    for (k, p) in inputs.iter().enumerate() {
        let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let arr: Vec<Value> = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a results array", p.display()))?;
        for r in arr {
            let id = r
                .get("image_id")
                .and_then(Value::as_u64)
                .with_context(|| format!("{}: a record without image_id", p.display()))?;
            if let Some(&prev) = owner.get(&id) {
                if prev != k {
                    bail!(
                        "image {id} has results in both {} and {}",
                        inputs[prev].display(),
                        p.display()
                    );
                }
            }
            owner.insert(id, k);
            all.push(r);
        }
    }
    write_atomic(out, &serde_json::to_vec(&all)?)?;
    Ok(all.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;
    use pvt_types::{ClassIdx, Detections, ImageSize};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        calls: AtomicUsize,
        names: Vec<String>,
    }

    impl ImageDetector for Fake {
        fn detect(&self, img: &RgbImage) -> Result<Detections> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let size = ImageSize::new(img.height() as usize, img.width() as usize);
            Ok(Detections::new(
                size,
                vec![[1.0, 2.0, 5.0, 6.0]],
                vec![0.9],
                vec![ClassIdx(img.width() % 2)],
                None,
            )?)
        }
        fn class_names(&self) -> &[String] {
            &self.names
        }
    }

    fn setup(dir: &Path) -> (Vec<SplitImage>, CategoryMap) {
        std::fs::create_dir_all(dir).unwrap();
        let mut images = vec![];
        for id in 1..=5u64 {
            let path = dir.join(format!("{id}.png"));
            if id == 3 {
                std::fs::write(&path, b"not an image").unwrap();
            } else {
                RgbImage::new(10 + id as u32, 8).save(&path).unwrap();
            }
            images.push(SplitImage { id, path });
        }
        (
            images,
            CategoryMap::new(vec![7, 9], vec!["a".into(), "b".into()]).unwrap(),
        )
    }

    #[test]
    fn runs_resumes_and_skips_bad_images() {
        let dir = std::env::temp_dir().join(format!("pvt-runner-{}", std::process::id()));
        let (images, map) = setup(&dir);
        let out = dir.join("res.json");
        let fake = Fake {
            calls: AtomicUsize::new(0),
            names: vec!["a".into(), "b".into()],
        };
        // first run stops after two images (simulated by running a prefix)
        let s = run_split(&fake, &images[..2], &map, &out, |_, _| {}).unwrap();
        assert_eq!((s.processed, s.resumed), (2, 0));
        // torn line at the end of the progress file
        let mut f = OpenOptions::new()
            .append(true)
            .open(partial_path(&out))
            .unwrap();
        write!(f, "{{\"image_id\": 4, \"resu").unwrap();
        drop(f);
        let s = run_split(&fake, &images, &map, &out, |_, _| {}).unwrap();
        assert_eq!((s.processed, s.resumed), (3, 2));
        assert_eq!(fake.calls.load(Ordering::Relaxed), 4); // 1, 2, then 4, 5 (3 fails to decode)
        assert_eq!(s.failed.len(), 1);
        assert_eq!(s.failed[0].0, 3);
        let res: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(res.len(), 4);
        assert_eq!(res[0]["bbox"], json!([1.0, 2.0, 4.0, 4.0]));
        assert_eq!(res[0]["category_id"], json!(9)); // width 11 -> class 1 -> id 9
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn shards_partition_and_merge() {
        let dir = std::env::temp_dir().join(format!("pvt-runner-shards-{}", std::process::id()));
        let (images, map) = setup(&dir);
        let fake = Fake {
            calls: AtomicUsize::new(0),
            names: vec!["a".into(), "b".into()],
        };
        let mut outs = vec![];
        for i in 0..2 {
            let part: Vec<SplitImage> = images
                .iter()
                .enumerate()
                .filter(|(p, _)| p % 2 == i)
                .map(|(_, x)| x.clone())
                .collect();
            let out = dir.join(format!("shard{i}.json"));
            run_split(&fake, &part, &map, &out, |_, _| {}).unwrap();
            outs.push(out);
        }
        let n = merge_results(&outs, &dir.join("all.json")).unwrap();
        assert_eq!(n, 4);
        assert!(merge_results(&[outs[0].clone(), outs[0].clone()], &dir.join("dup.json")).is_err());
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert!(Shard::parse("4/4").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
