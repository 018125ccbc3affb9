//! `pvt segment` (one image) and `pvt infer-seg` (a folder of images, with mIoU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle::Device;
use clap::Args;
use pvt_eval::ade20k::{evaluate_dirs, save_label_png, SegConfig};
use pvt_eval::report;
use pvt_nn::image::load_rgb;
use pvt_zoo::semantic_fpn::{Inference, SegAug, SegTestConfig, SemanticFpnConfig, SemanticFpnPvt};
use pvt_zoo::{load_segmenter, Architecture, LoadOptions, ModelConfig, Segmenter};

/// Which segmenter: a published name, a JSON config or a training run.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct SegModelArgs {
    /// Published model: fpn_pvt_{t,s,m,l}_ade20k_40k.
    #[arg(long)]
    model: Option<String>,
    /// A JSON segmenter config (see assets/configs/) or a training run's directory (its
    /// config.json: test scale, label convention and class names too), instead of --model.
    #[arg(long, value_name = "JSON|RUN")]
    config: Option<PathBuf>,
}

/// Checkpoint and inference mode, shared by both commands.
#[derive(Args, Debug, Clone)]
pub struct SegCommon {
    #[command(flatten)]
    model: SegModelArgs,
    /// Checkpoint (official PVT-seg Semantic FPN).
    #[arg(long)]
    weights: PathBuf,
    /// Sliding-window inference (crop 512, stride 341) instead of whole-image.
    #[arg(long)]
    slide: bool,
    /// Test-time augmentation as mmseg's `--aug-test`: scale ratios 0.5, 0.75, ..., 1.75, each
    /// also mirrored, class probabilities averaged.
    #[arg(long, conflicts_with_all = ["aug_ratios", "flip"])]
    aug_test: bool,
    /// Test-time augmentation over these scale ratios of the test scale (comma-separated, e.g.
    /// 0.75,1,1.25): class probabilities averaged.
    #[arg(long, value_delimiter = ',', value_name = "R,R,..")]
    aug_ratios: Vec<f64>,
    /// Test-time augmentation: add a left-right mirrored pass (at every ratio).
    #[arg(long)]
    flip: bool,
}

/// The segmenter the arguments name, loaded, with the command line's test settings.
fn load(c: &SegCommon) -> Result<Box<dyn Segmenter>> {
    let cfg = crate::model_args::resolve(c.model.model.as_deref(), c.model.config.as_deref())?;
    let mut seg = load_segmenter(&cfg, &c.weights, &LoadOptions::default())?;
    if let Some(info) = seg.load_info() {
        eprintln!("{}: {}", c.weights.display(), info.summary());
    }
    let mut test = seg.test_config().clone();
    if c.slide {
        test.inference = Inference::ADE20K_SLIDE;
    }
    test.aug = if c.aug_test {
        Some(SegAug::mmseg_aug_test())
    } else if c.flip || !c.aug_ratios.is_empty() {
        let ratios = if c.aug_ratios.is_empty() {
            vec![1.0]
        } else {
            c.aug_ratios.clone()
        };
        Some(SegAug {
            ratios,
            flip: c.flip,
        })
    } else {
        None
    };
    // bad ratios are an error before any image is read
    seg.set_test_config(test)?;
    Ok(seg)
}

#[derive(Args, Debug)]
pub struct SegmentArgs {
    #[command(flatten)]
    common: SegCommon,
    /// Image file.
    #[arg(long)]
    image: PathBuf,
    /// Label PNG of class indices (8-bit when there are at most 256 classes, else 16-bit).
    #[arg(long)]
    out: PathBuf,
    /// Colour overlay with a legend of the classes present.
    #[arg(long)]
    vis: Option<PathBuf>,
    /// Overlay opacity.
    #[arg(long, default_value_t = 0.5)]
    opacity: f32,
}

pub fn segment(a: SegmentArgs) -> Result<()> {
    let s = load(&a.common)?;
    let img = load_rgb(&a.image)?;
    let t0 = Instant::now();
    let map = s.segment(&img)?;
    println!(
        "{}: {}x{} label map in {:.0} ms",
        a.image.display(),
        img.width(),
        img.height(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    save_label_png(&a.out, &map)?;
    println!("wrote {}", a.out.display());
    if let Some(vis) = &a.vis {
        let pic = pvt_vis::overlay_segmap(&img, &map, s.palette(), s.class_names(), a.opacity);
        pic.save(vis)
            .with_context(|| format!("cannot write {}", vis.display()))?;
        println!("wrote {}", vis.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InferSegArgs {
    #[command(flatten)]
    common: SegCommon,
    /// Folder of images (jpg, png, ...).
    #[arg(long)]
    images: PathBuf,
    /// Folder for the label PNGs (`<stem>.png`); images whose PNG exists are skipped, so an
    /// interrupted run resumes.
    #[arg(long)]
    out_dir: PathBuf,
    /// Ground-truth label folder: evaluate mIoU when done (reduce_zero_label as ADE20K, unless
    /// the --config of a training run says otherwise).
    #[arg(long)]
    gt_dir: Option<PathBuf>,
    /// With --gt-dir: also print the per-class IoU / Acc table (the run's class names).
    #[arg(long, requires = "gt_dir")]
    per_class: bool,
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "bmp" | "tif" | "tiff" | "webp"
                )
            })
        })
        .collect();
    v.sort();
    Ok(v)
}

pub fn infer_seg(a: InferSegArgs) -> Result<()> {
    let s = load(&a.common)?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("cannot create {}", a.out_dir.display()))?;
    let files = image_files(&a.images)?;
    if files.is_empty() {
        bail!("{}: no images", a.images.display());
    }
    let pb = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("template"),
    );
    let (mut done, mut resumed, mut failed) = (0, 0, 0);
    for f in &files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = a.out_dir.join(format!("{stem}.png"));
        if out.exists() {
            resumed += 1;
            pb.inc(1);
            continue;
        }
        match load_rgb(f).and_then(|img| s.segment(&img)) {
            Ok(map) => {
                save_label_png(&out, &map)?;
                done += 1;
            }
            Err(e) => {
                failed += 1;
                let line = format!("{} skipped: {e:#}", f.display());
                if pb.is_hidden() {
                    eprintln!("{line}");
                } else {
                    pb.println(line);
                }
            }
        }
        pb.inc(1);
        pb.set_message(format!("{failed} failed"));
    }
    pb.finish_and_clear();
    eprintln!(
        "{done} images run, {resumed} resumed, {failed} failed; label maps in {}",
        a.out_dir.display()
    );
    if let Some(gt) = &a.gt_dir {
        let names = s.class_names();
        let cfg = SegConfig {
            class_names: names.to_vec(),
            ..report::seg_config(names.len(), s.reduce_zero_label())?
        };
        let m = evaluate_dirs(gt, &a.out_dir, cfg)?;
        print!("{}", report::seg_text(&m, a.per_class));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchSegmentArgs {
    /// Published segmenters to time (comma-separated), with random weights.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fpn_pvt_t_ade20k_40k,fpn_pvt_s_ade20k_40k"
    )]
    model: Vec<String>,
    /// Image sizes HxW of a synthetic photo-like input (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "512x512,512x683")]
    size: Vec<String>,
    #[command(flatten)]
    timing: crate::bench_util::TimingArgs,
}

/// Random weights (VarMap init, detached); BatchNorm scales and variances at 1 so folding
/// stays finite.
fn random_semantic_fpn(cfg: &SemanticFpnConfig, dev: &Device) -> Result<SemanticFpnPvt> {
    crate::bench_util::random_model(
        dev,
        |vb| SemanticFpnPvt::new(cfg, vb, dev),
        |k, t| {
            Ok((k.ends_with("running_var") || k.ends_with("bn.weight"))
                .then(|| t.ones_like())
                .transpose()?)
        },
    )
}

pub fn bench_segment(a: BenchSegmentArgs) -> Result<()> {
    let dev = Device::Cpu;
    for name in &a.model {
        let Architecture::SemanticFpn(cfg) = ModelConfig::from_name(name)?.arch else {
            bail!("`{name}` is not a segmenter");
        };
        let model = random_semantic_fpn(&cfg, &dev)?;
        let test = SegTestConfig::ade20k();
        for s in &a.size {
            let (h, w) = s
                .split_once('x')
                .and_then(|(h, w)| {
                    Some((h.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?))
                })
                .with_context(|| format!("size `{s}` must look like 512x683 (HxW)"))?;
            // smooth gradients plus texture, like a photo
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let v = |k: u32| {
                    (((x * (3 + k) + y * (5 + 2 * k)) % 251) as f32 * 0.6 + ((x ^ y) % 64) as f32)
                        as u8
                };
                image::Rgb([v(0), v(1), v(2)])
            });
            let (base, _) = crate::bench_util::rss_mib();
            let t = crate::bench_util::time_runs(
                a.timing.warmup,
                a.timing.runs,
                || model.segment_with(&img, &test).map(|_| ()),
                || {},
            )?;
            let (median, min) = (t.median_ms, t.min_ms);
            let (_, peak) = crate::bench_util::rss_mib();
            if a.timing.json {
                println!(
                    "{}",
                    serde_json::json!({"impl": "pvt-rs (candle)", "model": name, "size": [h, w], "runs": a.timing.runs,
                        "median_ms": median, "min_ms": min, "peak_rss_mib": peak, "rss_before_mib": base})
                );
            } else {
                println!("{name:<24} {h}x{w}  median {median:>8.1} ms  min {min:>8.1} ms  peak RSS {peak:.0} MiB (before {base:.0})");
            }
        }
    }
    Ok(())
}
