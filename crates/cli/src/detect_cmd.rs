//! `pvt detect` (one image) and `pvt infer` (a whole COCO-format split).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle::Device;
use clap::Args;
use pvt_eval::coco::{CocoGt, IouType};
use pvt_eval::report::{self, CocoReport};
use pvt_nn::image::load_rgb;
use pvt_types::CategoryMap;
use pvt_zoo::runner::{merge_results, run_split, split_images, Shard};
use pvt_zoo::{
    load_detector, Architecture, ImageDetector, LoadOptions, MaskRcnnConfig, MaskRcnnDetector,
    MaskRcnnPvt, ModelConfig, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt,
};

/// Which detector: a published name, a JSON config or a training run.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ModelArgs {
    /// Published model: retinanet_pvt_{tiny,small,medium,large}_fpn_1x_coco,
    /// retinanet_pvtv2_b{0..5}_fpn_1x_coco, mask_rcnn_pvt_{tiny,small,medium,large}_fpn_1x_coco,
    /// mask_rcnn_pvt_v2_b{0..5}_fpn_1x_coco.
    #[arg(long)]
    model: Option<String>,
    /// A JSON detector config (see assets/configs/; its `family` says which detector) or a
    /// training run's directory (its config.json: test scale and class names too), instead of
    /// --model.
    #[arg(long, value_name = "JSON|RUN")]
    config: Option<PathBuf>,
}

impl ModelArgs {
    /// The model the arguments name.
    pub fn resolve(&self) -> Result<ModelConfig> {
        crate::model_args::resolve(self.model.as_deref(), self.config.as_deref())
    }
}

/// The detector the arguments name, loaded from `weights`; what loading found goes to stderr.
fn load(m: &ModelArgs, weights: &Path) -> Result<Box<dyn ImageDetector>> {
    let cfg = m.resolve()?;
    let det = load_detector(&cfg, weights, &LoadOptions::default())?;
    if let Some(info) = det.load_info() {
        eprintln!("{}: {}", weights.display(), info.summary());
    }
    if let Some((l, sh)) = cfg.test.scale {
        eprintln!("test scale {l}x{sh} from the training config");
    }
    Ok(det)
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Checkpoint (official PVT detection or mmdetection RetinaNet-PVT).
    #[arg(long)]
    weights: PathBuf,
    /// Image file.
    #[arg(long)]
    image: PathBuf,
    /// Write the detections as COCO-style JSON records (image_id 0, category ids of COCO when
    /// the model has 80 classes, plus the class name).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the detections on the image and save it (PNG or JPEG by extension).
    #[arg(long)]
    vis: Option<PathBuf>,
    /// Only detections scoring at least this are printed and drawn (all are written to --out).
    #[arg(long, default_value_t = 0.3)]
    score_thr: f32,
}

pub fn detect(a: DetectArgs) -> Result<()> {
    let det = load(&a.model, &a.weights)?;
    let img = load_rgb(&a.image)?;
    let t0 = Instant::now();
    let dets = det.detect(&img)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let names = det.class_names();
    let map = if names.len() == 80 {
        CategoryMap::coco80()
    } else {
        CategoryMap::new((1..=names.len() as u64).collect(), names.to_vec())?
    };
    println!(
        "{}: {} detections in {ms:.0} ms ({} with score >= {})",
        a.image.display(),
        dets.len(),
        dets.scores().iter().filter(|&&s| s >= a.score_thr).count(),
        a.score_thr
    );
    for i in (0..dets.len()).filter(|&i| dets.scores()[i] >= a.score_thr) {
        let b = dets.boxes()[i];
        let c = dets.classes()[i].0 as usize;
        println!(
            "  {:<16} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
            names.get(c).map(String::as_str).unwrap_or("?"),
            dets.scores()[i],
            b[0],
            b[1],
            b[2],
            b[3]
        );
    }
    if let Some(out) = &a.out {
        let recs = pvt_eval::coco::writer::records(0, &dets, &map)?;
        let mut vals = vec![];
        for (r, c) in recs.iter().zip(dets.classes()) {
            let mut v = serde_json::to_value(r)?;
            v["category"] = serde_json::Value::from(map.name(*c).unwrap_or("?"));
            vals.push(v);
        }
        pvt_eval::coco::writer::write_atomic(out, &serde_json::to_vec_pretty(&vals)?)?;
        println!("wrote {}", out.display());
    }
    if let Some(vis) = &a.vis {
        let mut canvas = img.clone();
        pvt_vis::draw_detections(&mut canvas, &dets, names, a.score_thr);
        canvas
            .save(vis)
            .with_context(|| format!("cannot write {}", vis.display()))?;
        println!("wrote {}", vis.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InferArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Checkpoint.
    #[arg(long)]
    weights: PathBuf,
    /// Folder holding the split's images (file_name of the annotation file).
    #[arg(long)]
    images: PathBuf,
    /// COCO-format annotation file of the split (image list, categories; GT for --eval).
    #[arg(long)]
    ann: PathBuf,
    /// Results file (COCO results JSON); progress goes to `<out>.partial.jsonl` and an
    /// interrupted run resumes from it.
    #[arg(long)]
    out: PathBuf,
    /// Evaluate the results against --ann when done (pycocotools' summary: bbox AP, and segm
    /// AP too when the model predicts masks).
    #[arg(long)]
    eval: bool,
    /// Run only shard i of n (`i/n`); merge the shards' outputs with `pvt merge-results`.
    #[arg(long)]
    shard: Option<String>,
}

pub fn infer(a: InferArgs) -> Result<()> {
    let shard = a
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()?
        .unwrap_or(Shard::ALL);
    let gt = CocoGt::from_file(&a.ann)?;
    let map = gt.category_map()?;
    let det = load(&a.model, &a.weights)?;
    anyhow::ensure!(
        map.len() == det.class_names().len(),
        "{} has {} categories but the model predicts {} classes",
        a.ann.display(),
        map.len(),
        det.class_names().len()
    );
    let images = split_images(&gt, &a.images, shard);
    let pb = indicatif::ProgressBar::new(images.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("template"),
    );
    let summary = run_split(det.as_ref(), &images, &map, &a.out, |s, failed| {
        if s.processed == 1 && s.resumed > 0 {
            pb.set_position(s.resumed as u64);
            pb.reset_eta();
        }
        if let Some((id, why)) = failed {
            let line = format!("image {id} skipped: {why}");
            if pb.is_hidden() {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
        }
        pb.inc(1);
        pb.set_message(format!("{} failed", s.failed.len()));
    })?;
    pb.finish_and_clear();
    eprintln!(
        "{} images run, {} resumed, {} failed; {} results written to {}",
        summary.processed,
        summary.resumed,
        summary.failed.len(),
        summary.records,
        a.out.display()
    );
    if a.eval {
        if shard != Shard::ALL {
            eprintln!("--eval skipped for a shard: merge the shards with `pvt merge-results`, then `pvt eval coco`");
        } else {
            let mut types = vec![IouType::Bbox];
            if det.has_masks() {
                types.push(IouType::Segm);
            }
            for iou in types {
                // pycocotools' heading, so that the two summaries can be told apart
                println!("Evaluate annotation type *{iou}*");
                let out = report::coco(&a.ann, &a.out, iou, &CocoReport::default(), &mut |w| {
                    eprintln!("warning: {w}")
                })?;
                print!("{out}");
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output results file.
    out: PathBuf,
    /// Results files to merge (e.g. the shards of one split).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let n = merge_results(&a.inputs, &a.out)?;
    println!("wrote {} ({n} results)", a.out.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchDetectArgs {
    /// Published detectors to time (comma-separated), with random weights.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "retinanet_pvt_tiny_fpn_1x_coco,retinanet_pvt_small_fpn_1x_coco"
    )]
    model: Vec<String>,
    /// The image (the whole test path runs on it: resize to 1333x800, network, post-processing).
    #[arg(long, default_value = "assets/images/chelsea.png")]
    image: PathBuf,
    #[command(flatten)]
    timing: crate::bench_util::TimingArgs,
}

/// Random weights for a detector: initialised through a `VarMap`, then detached (no backprop
/// graph), with the classification bias at the focal-loss prior (p = 0.01) so that score
/// thresholds and NMS see a realistic number of candidates.
fn random_retinanet(cfg: &RetinaNetConfig, dev: &Device) -> Result<RetinaNetPvt> {
    crate::bench_util::random_model(
        dev,
        |vb| RetinaNetPvt::new(cfg, vb),
        |k, t| {
            Ok((k == "bbox_head.retina_cls.bias")
                .then(|| t.zeros_like().and_then(|z| z - 4.595))
                .transpose()?)
        },
    )
}

/// Random weights for a Mask R-CNN: the RPN objectness bias at p = 0.01 as above, and a box
/// classifier bias of 3 on every tenth class (0 elsewhere, background included), so that
/// foreground classes beat the background and the 100-detection cap (with 100 masks) is reached
/// instead of no detection at all (with random shared fc layers one or two classes tend to win
/// most proposals; the workload, 100 masks, is what matters for timing).
fn random_mask_rcnn(cfg: &MaskRcnnConfig, dev: &Device) -> Result<MaskRcnnPvt> {
    crate::bench_util::random_model(
        dev,
        |vb| MaskRcnnPvt::new(cfg, vb),
        |k, t| {
            Ok(match k {
                "rpn_head.rpn_cls.bias" => Some((t.zeros_like()? - 4.595)?),
                "roi_head.bbox_head.fc_cls.bias" => {
                    let n = t.dim(0)?;
                    let v: Vec<f32> = (0..n)
                        .map(|i| if i % 10 == 0 && i + 1 < n { 3.0 } else { 0.0 })
                        .collect();
                    Some(candle::Tensor::from_vec(v, n, dev)?)
                }
                _ => None,
            })
        },
    )
}

pub fn bench_detect(a: BenchDetectArgs) -> Result<()> {
    let dev = Device::Cpu;
    let img = load_rgb(&a.image)?;
    for name in &a.model {
        let det: Box<dyn ImageDetector> = match ModelConfig::from_name(name)?.arch {
            Architecture::MaskRcnn(cfg) => {
                Box::new(MaskRcnnDetector::new(random_mask_rcnn(&cfg, &dev)?, &dev)?)
            }
            Architecture::RetinaNet(cfg) => {
                Box::new(RetinaNetDetector::new(random_retinanet(&cfg, &dev)?, &dev)?)
            }
            other => anyhow::bail!("`{name}` is a {}, not a detector", other.family()),
        };
        let (base, _) = crate::bench_util::rss_mib();
        let mut n = 0;
        let t = crate::bench_util::time_runs(
            a.timing.warmup,
            a.timing.runs,
            || Ok(n = det.detect(&img)?.len()),
            || {},
        )?;
        let (median, min) = (t.median_ms, t.min_ms);
        let (_, peak) = crate::bench_util::rss_mib();
        if a.timing.json {
            println!(
                "{}",
                serde_json::json!({"impl": "pvt-rs (candle)", "model": name, "image": a.image.display().to_string(),
                    "runs": a.timing.runs, "median_ms": median, "min_ms": min, "detections": n,
                    "peak_rss_mib": peak, "rss_before_mib": base})
            );
        } else {
            println!("{name:<34} median {median:>9.1} ms  min {min:>9.1} ms  {n} detections  peak RSS {peak:.0} MiB (before {base:.0})");
        }
    }
    Ok(())
}
