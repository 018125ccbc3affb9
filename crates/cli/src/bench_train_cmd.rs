//! `pvt bench-train`: the time of one training step of a training config (Semantic FPN-PVT or
//! RetinaNet-PVT) on a fixed random batch, for comparison with PyTorch
//! (`tools/bench_torch_train_semantic_fpn.py`, `tools/bench_torch_train_retinanet.py`; see
//! BENCHMARKS.md).
//!
//! One timed iteration is what `pvt_train::driver::run` does per iteration with
//! `segmentation::SegTask` / `trainer::RetinaTask`, minus data loading: the network built over
//! the parameters, forward (the segmenter's BatchNorm in training mode), the family's loss
//! (`seg_cross_entropy` / `RetinaCriterion::loss`), backward, the gradients collected, clipped to
//! the config's `grad_clip` (global L2 norm), one AdamW update at the config's learning rate and
//! weight decay, and the loss read back as a number.
//!
//! The batch is built once before timing from a fixed integer hash (the same formula as the
//! PyTorch scripts, so both sides train on the same numbers): pixels uniform in `[-2, 2)`;
//! segmenter labels uniform in `0..num_classes` with about 10% ignored (255); detector boxes
//! three per image, sides 20-72 px (as `pvt synth` draws the demo data), random classes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle::{Device, Tensor};
use clap::Args;
use pvt_train::data::Batch;
use pvt_train::driver::apply_gradients;
use pvt_train::optim::scalar;
use pvt_train::optim::{AdamW, AdamWConfig};
use pvt_train::params::Params;
use pvt_train::retinanet::RetinaCriterion;
use pvt_train::segmentation::{seg_cross_entropy, SegTrainConfig, IGNORE};
use pvt_train::trainer::TrainConfig;
use pvt_types::ImageSize;
use pvt_zoo::semantic_fpn::SemanticFpnPvt;
use pvt_zoo::{Family, ModelConfig, RetinaNetPvt};

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// A training config: a segmenter (e.g.
    /// assets/configs/fpn_pvt_synth_demo.json) or a RetinaNet detector (e.g.
    /// assets/configs/retinanet_pvt_synth_demo.json), with its `train` section.
    #[arg(long, value_name = "JSON")]
    config: PathBuf,
    /// Images per step (default: the config's batch size).
    #[arg(long)]
    batch: Option<usize>,
    /// Input size HxW, multiples of 32 (default: the segmenter's crop; the detector's train
    /// scale, `(long, short)` as short x long).
    #[arg(long)]
    size: Option<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

/// splitmix64 (Steele et al.), the hash both sides use to build the batch.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Number `i` of stream `stream`, uniform in `[0, 1)` (53 bits).
fn u01(stream: u64, i: u64) -> f64 {
    (splitmix64((stream << 40) ^ i) >> 11) as f64 / (1u64 << 53) as f64
}

/// Stream 1: `[B, 3, H, W]` pixels uniform in `[-2, 2)` (a normalised picture's range).
fn random_images(b: usize, h: usize, w: usize, dev: &Device) -> Result<Tensor> {
    let n = b * 3 * h * w;
    let v: Vec<f32> = (0..n as u64)
        .map(|i| (u01(1, i) * 4.0 - 2.0) as f32)
        .collect();
    Ok(Tensor::from_vec(v, (b, 3, h, w), dev)?)
}

fn parse_hw(s: &str) -> Result<(usize, usize)> {
    s.split_once('x')
        .and_then(|(h, w)| Some((h.trim().parse().ok()?, w.trim().parse().ok()?)))
        .with_context(|| format!("size `{s}` must look like 128x160 (HxW)"))
}

/// One training step of `driver::run` after the family's loss: backward, gradients, clipping
/// (or the norm), AdamW at `lr`, the loss as a number.
fn finish_step(
    loss: &Tensor,
    params: &Params,
    opt: &mut AdamW,
    grad_clip: Option<f64>,
    lr: f64,
) -> Result<f64> {
    apply_gradients(loss, params, opt, grad_clip, lr)?;
    let value = scalar(loss)?;
    ensure!(value.is_finite(), "the loss is {value}");
    Ok(value)
}

/// What a benchmark measured.
struct Measured {
    family: &'static str,
    batch: usize,
    size: (usize, usize),
    params: (usize, usize),
    grad_clip: Option<f64>,
    optimizer: AdamWConfig,
    times: Vec<f64>,
    losses: Vec<f64>,
    extra: serde_json::Value,
}

fn time_steps(
    warmup: usize,
    iters: usize,
    mut step: impl FnMut() -> Result<f64>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut losses = Vec::new();
    let mut times = Vec::new();
    for i in 0..warmup + iters.max(1) {
        let t0 = Instant::now();
        let l = step()?;
        let dt = t0.elapsed().as_secs_f64();
        losses.push(l);
        if i >= warmup {
            times.push(dt);
        }
    }
    Ok((times, losses))
}

fn bench_segmenter(a: &BenchTrainArgs, dev: &Device) -> Result<Measured> {
    let cfg = SegTrainConfig::from_file(&a.config)?;
    let s = &cfg.train;
    let batch = a.batch.unwrap_or(s.batch_size);
    let (h, w) = match &a.size {
        Some(v) => parse_hw(v)?,
        None => s.augment.crop,
    };
    ensure!(
        batch > 0 && h > 0 && w > 0 && h % 32 == 0 && w % 32 == 0,
        "batch {batch} and size {h}x{w} (multiples of 32) must be positive"
    );
    let k = cfg.model.num_classes;
    let images = random_images(batch, h, w, dev)?;
    // streams 2 and 3: class and ignore draws per pixel
    let labels: Vec<u32> = (0..(batch * h * w) as u64)
        .map(|i| {
            if u01(3, i) < 0.1 {
                IGNORE as u32
            } else {
                ((u01(2, i) * k as f64) as u32).min(k as u32 - 1)
            }
        })
        .collect();
    // checksums of the batch, for comparison with the PyTorch script's
    let label_sum: u64 = labels.iter().map(|&v| v as u64).sum();
    let ignored = labels.iter().filter(|&&v| v == IGNORE as u32).count();
    let labels = Tensor::from_vec(labels, (batch, h, w), dev)?;
    let mut params = Params::semantic_fpn(&cfg.model, s.seed, dev)?;
    params.freeze_stages(s.frozen_stages);
    let mut opt = AdamW::new(s.optimizer);
    // segmentation::SegTask::loss on a fixed batch, then the loop's step
    let (times, losses) = time_steps(a.warmup, a.iters, || {
        let model = SemanticFpnPvt::new_trainable(&cfg.model, params.var_builder(), dev)?;
        let logits = model.forward_logits_t(&images, true)?;
        let (loss, _) = seg_cross_entropy(&logits, &labels, IGNORE as u32, s.avg_non_ignore)?;
        finish_step(&loss, &params, &mut opt, s.grad_clip, s.optimizer.lr)
    })?;
    Ok(Measured {
        family: "semantic_fpn",
        batch,
        size: (h, w),
        params: params.counts(),
        grad_clip: s.grad_clip,
        optimizer: s.optimizer,
        times,
        losses,
        extra: serde_json::json!({"num_classes": k, "avg_non_ignore": s.avg_non_ignore,
            "label_sum": label_sum, "ignored_pixels": ignored}),
    })
}

/// Stream 4: three boxes per image, sides 20-72 px (at most the image), random classes.
fn random_boxes(b: usize, h: usize, w: usize, k: usize) -> (Vec<Vec<[f32; 4]>>, Vec<Vec<u32>>) {
    const PER_IMAGE: usize = 3;
    let mut boxes = Vec::with_capacity(b);
    let mut labels = Vec::with_capacity(b);
    for i in 0..b {
        let mut bi = Vec::new();
        let mut li = Vec::new();
        for j in 0..PER_IMAGE {
            let base = ((i * PER_IMAGE + j) * 8) as u64;
            let r = |o: u64| u01(4, base + o);
            let bw = (20.0 + 52.0 * r(0)).min(w as f64 - 1.0);
            let bh = (20.0 + 52.0 * r(1)).min(h as f64 - 1.0);
            let x1 = r(2) * (w as f64 - bw);
            let y1 = r(3) * (h as f64 - bh);
            bi.push([x1 as f32, y1 as f32, (x1 + bw) as f32, (y1 + bh) as f32]);
            li.push(((r(4) * k as f64) as u32).min(k as u32 - 1));
        }
        boxes.push(bi);
        labels.push(li);
    }
    (boxes, labels)
}

fn bench_retinanet(a: &BenchTrainArgs, dev: &Device) -> Result<Measured> {
    let cfg = TrainConfig::from_file(&a.config)?;
    let s = &cfg.train;
    let batch = a.batch.unwrap_or(s.batch_size);
    let (h, w) = match &a.size {
        Some(v) => parse_hw(v)?,
        None => (s.augment.scale.1, s.augment.scale.0),
    };
    ensure!(
        batch > 0 && h > 0 && w > 0 && h % 32 == 0 && w % 32 == 0,
        "batch {batch} and size {h}x{w} (multiples of 32) must be positive"
    );
    let k = cfg.model.num_classes;
    let (boxes, labels) = random_boxes(batch, h, w, k);
    let box_sum: f64 = boxes.iter().flatten().flatten().map(|&v| v as f64).sum();
    let label_sum: u64 = labels.iter().flatten().map(|&v| v as u64).sum();
    let shape = ImageSize::new(h, w);
    let data = Batch {
        images: random_images(batch, h, w, dev)?,
        img_shapes: vec![shape; batch],
        pad_shapes: vec![shape; batch],
        boxes,
        labels,
        image_ids: (0..batch as u64).collect(),
    };
    let crit = RetinaCriterion::new(k, s.assigner, s.focal)?;
    let mut params = Params::retinanet(&cfg.model, s.seed, dev)?;
    params.freeze_stages(s.frozen_stages);
    let mut opt = AdamW::new(s.optimizer);
    let mut num_pos = 0;
    // trainer::RetinaTask::loss on a fixed batch, then the loop's step
    let (times, losses) = time_steps(a.warmup, a.iters, || {
        let model = RetinaNetPvt::new(&cfg.model, params.var_builder())?;
        let (_, out) = model.forward_raw(&data.images)?;
        let loss = crit.loss(&out, &data)?;
        let _parts = (scalar(&loss.cls)?, scalar(&loss.bbox)?);
        num_pos = loss.num_pos;
        finish_step(&loss.total, &params, &mut opt, s.grad_clip, s.optimizer.lr)
    })?;
    Ok(Measured {
        family: "retinanet",
        batch,
        size: (h, w),
        params: params.counts(),
        grad_clip: s.grad_clip,
        optimizer: s.optimizer,
        times,
        losses,
        extra: serde_json::json!({"num_classes": k, "boxes_per_image": 3, "num_pos": num_pos,
            "box_coord_sum": box_sum, "label_sum": label_sum}),
    })
}

pub fn bench_train(a: BenchTrainArgs) -> Result<()> {
    let mc = ModelConfig::from_file(&a.config)?;
    if mc.train.is_none() {
        bail!(
            "{}: not a training config (no `train` section)",
            a.config.display()
        );
    }
    let dev = Device::Cpu;
    let (rss0, _) = crate::bench_util::rss_mib();
    let m = match mc.family() {
        Family::SemanticFpn => bench_segmenter(&a, &dev)?,
        Family::RetinaNet => bench_retinanet(&a, &dev)?,
        Family::MaskRcnn => bail!("Mask R-CNN configs are not benchmarked by bench-train"),
    };
    let (_, peak) = crate::bench_util::rss_mib();
    let mut sorted = m.times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let min = sorted[0];
    let ips = m.batch as f64 / median;
    let loss = *m.losses.last().expect("at least one step");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.json {
        let mut out = serde_json::json!({
            "impl": "pvt-rs (candle)",
            "family": m.family,
            "config": a.config.display().to_string(),
            "batch": m.batch,
            "size": [m.size.0, m.size.1],
            "warmup": a.warmup,
            "iters": m.times.len(),
            "median_s": median,
            "min_s": min,
            "images_per_s": ips,
            "times_s": m.times,
            "loss_first": m.losses[0],
            "loss": loss,
            "params": m.params.0,
            "trainable_params": m.params.1,
            "grad_clip": m.grad_clip,
            "lr": m.optimizer.lr,
            "weight_decay": m.optimizer.weight_decay,
            "threads": threads,
            "peak_rss_mib": peak,
            "rss_before_mib": rss0,
        });
        if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), m.extra) {
            o.extend(e);
        }
        println!("{out}");
    } else {
        println!(
            "{} batch {} at {}x{}: median {median:.3} s/iter, min {min:.3} s/iter, {ips:.2} images/s; loss {:.4} -> {loss:.4}; peak RSS {peak:.0} MiB",
            m.family, m.batch, m.size.0, m.size.1, m.losses[0]
        );
    }
    Ok(())
}
