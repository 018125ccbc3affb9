//! `pvt classify | features | info | convert | bench`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle::{Device, Tensor};
use clap::{Args, ValueEnum};
use pvt_backbone::convert::{cast_floats, convert_naming, Generation, Naming};
use pvt_backbone::naming::split_backbone;
use pvt_backbone::{guess_variant, guess_variant_v2, AnyDense, Arch, PvtDense, PvtV2Dense};
use pvt_nn::checkpoint::save_safetensors;
use pvt_nn::image::{deit_eval_transform, load_rgb, normalize_255};
use pvt_nn::{Checkpoint, ImageBatch};

const IMAGENET_CLASSES: &str = include_str!("../../../assets/imagenet_classes.txt");

/// Which architecture: a published name or a JSON config file.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ArchArgs {
    /// Published architecture: pvt_tiny, pvt_small, pvt_medium, pvt_large (PVT v1),
    /// pvt_v2_b0 ... pvt_v2_b5, pvt_v2_b2_li (PVT v2).
    #[arg(long)]
    arch: Option<String>,
    /// A JSON model config (see assets/configs/) instead of --arch.
    #[arg(long, value_name = "JSON")]
    config: Option<PathBuf>,
}

impl ArchArgs {
    fn resolve(&self) -> Result<(String, Arch)> {
        if let Some(name) = &self.arch {
            let (name, arch) = Arch::from_name(name)?;
            return Ok((name.to_string(), arch));
        }
        let path = self
            .config
            .as_ref()
            .expect("clap enforces one of --arch / --config");
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let cfg = Arch::from_json(&text)
            .with_context(|| format!("{}: invalid model config", path.display()))?;
        Ok((path.display().to_string(), cfg))
    }
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[command(flatten)]
    arch: ArchArgs,
    /// Checkpoint with the classifier (official pvt_*.pth, or safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Image file (png, jpeg, bmp, tiff, webp).
    #[arg(long)]
    image: PathBuf,
    /// How many classes to print.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn classify(a: ClassifyArgs) -> Result<()> {
    let (arch, cfg) = a.arch.resolve()?;
    let dev = Device::Cpu;
    let ckpt = Checkpoint::load(&a.weights)?;
    let (model, info) = cfg.load_classifier(&ckpt, &dev)?;
    let img = load_rgb(&a.image)?;
    let x = deit_eval_transform(&img, &dev)?.unsqueeze(0)?;
    let probs = model.probabilities(&x)?.squeeze(0)?.to_vec1::<f32>()?;
    let names: Vec<&str> = IMAGENET_CLASSES.lines().collect();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]).then(i.cmp(&j)));
    let top: Vec<(usize, String, f32)> = order
        .iter()
        .take(a.topk)
        .map(|&i| {
            let name = if probs.len() == names.len() {
                names[i].to_string()
            } else {
                format!("class {i}")
            };
            (i, name, probs[i])
        })
        .collect();
    if a.json {
        let obj = serde_json::json!({
            "image": a.image.display().to_string(),
            "arch": arch,
            "weights": a.weights.display().to_string(),
            "top": top.iter().map(|(i, n, p)| serde_json::json!({"index": i, "name": n, "probability": p})).collect::<Vec<_>>(),
        });
        println!("{obj}");
    } else {
        eprintln!("{}: {}", a.weights.display(), info.summary());
        println!(
            "{} ({}x{}), {arch}:",
            a.image.display(),
            img.width(),
            img.height()
        );
        for (rank, (i, n, p)) in top.iter().enumerate() {
            println!("{:>2}. {:>6.2}%  {n} (class {i})", rank + 1, p * 100.0);
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    arch: ArchArgs,
    /// Checkpoint (classification, detection or segmentation; official or mmdetection names).
    #[arg(long)]
    weights: PathBuf,
    /// Image file; used at its own size.
    #[arg(long)]
    image: PathBuf,
    /// Output safetensors with `feat1`..`feat4` (f32, NCHW).
    #[arg(long)]
    out: PathBuf,
    /// Zero-pad (after normalisation) bottom/right to multiples of 32 instead of failing.
    #[arg(long)]
    pad: bool,
}

pub fn features(a: FeaturesArgs) -> Result<()> {
    let (_, cfg) = a.arch.resolve()?;
    let dev = Device::Cpu;
    let ckpt = Checkpoint::load(&a.weights)?;
    let (model, info) = cfg.load_dense(&ckpt, &dev)?;
    eprintln!("{}: {}", a.weights.display(), info.summary());
    let img = load_rgb(&a.image)?;
    let x = normalize_255(&img, &dev)?;
    let batch = ImageBatch::from_images(&[x], 32, a.pad)
        .with_context(|| format!("{}", a.image.display()))?;
    let feats = model.forward(&batch.pixels)?;
    let mut out = BTreeMap::new();
    for (i, f) in feats.into_iter().enumerate() {
        println!("feat{}: {:?}", i + 1, f.dims());
        out.insert(format!("feat{}", i + 1), f);
    }
    save_safetensors(&out, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint file (.pth or .safetensors).
    file: PathBuf,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&a.file)?;
    println!("file:       {}", a.file.display());
    println!("container:  {}", ckpt.container);
    if let Some(w) = &ckpt.wrapper {
        println!("state dict: under `{w}`");
    }
    println!(
        "tensors:    {} ({} values)",
        ckpt.tensors.len(),
        ckpt.num_elements()
    );
    let dtypes: Vec<String> = ckpt
        .dtype_counts()
        .iter()
        .map(|(d, n)| format!("{d} x{n}"))
        .collect();
    println!("dtypes:     {}", dtypes.join(", "));
    if !ckpt.skipped.is_empty() {
        println!("non-tensor: {}", ckpt.skipped.join(", "));
    }
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for k in ckpt.tensors.keys() {
        let g = k.split('.').next().unwrap_or(k);
        let g = if [
            "backbone",
            "neck",
            "bbox_head",
            "rpn_head",
            "roi_head",
            "decode_head",
            "auxiliary_head",
        ]
        .contains(&g)
        {
            format!("{g}.")
        } else {
            "(top level)".to_string()
        };
        *groups.entry(g).or_insert(0) += 1;
    }
    println!(
        "groups:     {}",
        groups
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if Generation::of_keys(ckpt.tensors.keys()) == Generation::V2 {
        match pvt_backbone::naming_v2::split_backbone_v2(&ckpt.tensors) {
            Ok(bb) => {
                println!(
                    "naming:     {}{}",
                    bb.dialect,
                    bb.prefix
                        .map(|p| format!(", backbone under `{p}`"))
                        .unwrap_or_default()
                );
                let has_head = bb.tensors.keys().any(|k| k.starts_with("head."));
                println!(
                    "form:       {}",
                    if has_head {
                        "classifier (head present)"
                    } else {
                        "dense backbone"
                    }
                );
                match guess_variant_v2(&ckpt.tensors) {
                    Some(v) => println!("arch:       {} (PVT v2)", v.name()),
                    None => println!("arch:       not a published PVT v2 size (use --config)"),
                }
            }
            Err(e) => println!("naming:     not a PVT v2 backbone: {e}"),
        }
        return Ok(());
    }
    match split_backbone(&ckpt.tensors) {
        Ok(bb) => {
            println!(
                "naming:     {}{}",
                bb.dialect,
                bb.prefix
                    .map(|p| format!(", backbone under `{p}`"))
                    .unwrap_or_default()
            );
            let has_head = bb.tensors.contains_key("head.weight");
            println!(
                "form:       {}",
                if has_head {
                    "classifier (cls_token, norm, head present)"
                } else {
                    "dense backbone"
                }
            );
            match guess_variant(&ckpt.tensors) {
                Some(v) => println!("arch:       {} (PVT v1)", v.name()),
                None => println!("arch:       not a published PVT v1 size (use --config)"),
            }
        }
        Err(e) => println!("naming:     not a PVT v1 backbone: {e}"),
    }
    Ok(())
}

/// `--naming` of `pvt convert`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamingArg {
    /// whai362/PVT names (patch_embed{i}, block{i}.{j}, v2: norm{i}).
    Official,
    /// mmdetection names (layers.{s}...); dense backbone only (classifier tensors are dropped).
    Mmdet,
    /// timm names (patch_embed, stages.{s}...); PVT v2 only.
    Timm,
}

impl From<NamingArg> for Naming {
    fn from(n: NamingArg) -> Self {
        match n {
            NamingArg::Official => Naming::Official,
            NamingArg::Mmdet => Naming::Mmdet,
            NamingArg::Timm => Naming::Timm,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (.pth or .safetensors): PVT v1 or v2, bare backbone or whole detector /
    /// segmentor (backbone under `backbone.`; other tensors are copied unchanged).
    input: PathBuf,
    /// Output .safetensors.
    output: PathBuf,
    /// Naming of the backbone tensors in the output (default: keep the input's).
    #[arg(long, visible_alias = "to", value_enum)]
    naming: Option<NamingArg>,
    /// Floating-point type of the output (integer tensors are kept): f32, f16 (half the size;
    /// how the demo models are shipped) or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    if a.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the output must be a .safetensors file",
            a.output.display()
        );
    }
    let ckpt = Checkpoint::load(&a.input)?;
    let mut out = match a.naming {
        None => ckpt.tensors,
        Some(n) => {
            let c = convert_naming(&ckpt.tensors, n.into())?;
            c.notes.iter().for_each(|n| eprintln!("{n}"));
            c.tensors
        }
    };
    let dtype = match a.dtype.as_str() {
        "f16" => candle::DType::F16,
        "bf16" => candle::DType::BF16,
        _ => candle::DType::F32,
    };
    cast_floats(&mut out, dtype)?;
    save_safetensors(&out, &a.output)?;
    println!("wrote {} ({} tensors)", a.output.display(), out.len());
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Architectures to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "pvt_tiny,pvt_small")]
    arch: Vec<String>,
    /// Input sizes HxW (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "224x224,800x1216")]
    size: Vec<String>,
    /// Timed runs per case (default: 10 at 224x224 or smaller, 3 above).
    #[arg(long)]
    runs: Option<usize>,
    /// Untimed warm-up runs per case.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Print one JSON line per case.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (h, w) = s
        .split_once('x')
        .with_context(|| format!("size `{s}` must look like 800x1216 (HxW)"))?;
    Ok((
        h.trim().parse().context("height")?,
        w.trim().parse().context("width")?,
    ))
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let dev = Device::Cpu;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    for name in &a.arch {
        let (arch_name, arch) = Arch::from_name(name)?;
        let model = match &arch {
            Arch::V1(cfg) => AnyDense::V1(crate::bench_util::random_model(
                &dev,
                |vb| PvtDense::new(cfg, pvt_backbone::Numerics::OFFICIAL, vb),
                |_, _| Ok(None),
            )?),
            Arch::V2(cfg) => AnyDense::V2(crate::bench_util::random_model(
                &dev,
                |vb| PvtV2Dense::new(cfg, vb),
                |_, _| Ok(None),
            )?),
        };
        for s in &a.size {
            let (h, w) = parse_size(s)?;
            let runs = a.runs.unwrap_or(if h * w <= 224 * 224 { 10 } else { 3 });
            let x = Tensor::randn(0f32, 1.0, (1, 3, h, w), &dev)?;
            let (base, _) = crate::bench_util::rss_mib();
            let pb = indicatif::ProgressBar::new((a.warmup + runs) as u64)
                .with_style(
                    indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
                        .expect("template"),
                )
                .with_message(format!("{} {h}x{w}", arch_name));
            let t = crate::bench_util::time_runs(
                a.warmup,
                runs,
                || run_once(&model, &x),
                || pb.inc(1),
            )?;
            pb.finish_and_clear();
            let (median, min) = (t.median_ms, t.min_ms);
            let (_, peak) = crate::bench_util::rss_mib();
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"impl": "pvt-rs (candle)", "arch": arch_name, "size": [h, w], "runs": runs,
                        "median_ms": median, "min_ms": min, "peak_rss_mib": peak, "rss_before_mib": base, "threads": threads})
                );
            } else {
                println!(
                    "{:<10} {:>4}x{:<5} median {:>9.2} ms  min {:>9.2} ms  peak RSS {:>7.1} MiB (before: {:.1})  [{runs} runs, {threads} threads]",
                    arch_name, h, w, median, min, peak, base
                );
            }
        }
    }
    Ok(())
}

fn run_once(model: &AnyDense, x: &Tensor) -> Result<()> {
    let feats = model.forward(x)?;
    // force the work to finish (CPU ops are eager, this just touches the result)
    let _ = feats[3].sum_all()?.to_scalar::<f32>()?;
    Ok(())
}
