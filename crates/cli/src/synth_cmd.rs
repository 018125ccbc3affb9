//! `pvt synth`: write the deterministic synthetic shapes dataset (see `pvt_data::synth`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use pvt_data::synth::{generate, SynthConfig, CLASS_NAMES};
use pvt_types::ImageSize;

/// Arguments of `pvt synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder: images/, labels/, annotations/, classes.txt, palette.txt, synth.json,
    /// preview.png. Rerunning rewrites these (and removes synth_*.png files of an earlier, larger
    /// run); nothing else is touched.
    #[arg(long)]
    out: PathBuf,
    /// Number of images over both splits.
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Random seed; image i depends only on the seed and i (not on --images).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of the images in the validation split (every fifth image for 0.2).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Image size HxW.
    #[arg(long, default_value = "256x320")]
    size: String,
    /// Fewest shapes drawn per image.
    #[arg(long, default_value_t = 2)]
    min_objects: usize,
    /// Most shapes drawn per image.
    #[arg(long, default_value_t = 8)]
    max_objects: usize,
    /// Shapes with fewer visible pixels (after occlusion) are removed from the picture.
    #[arg(long, default_value_t = 16)]
    min_area: u64,
    /// Shape sizes as a side-length range MIN..MAX in pixels (`sqrt` of the area before
    /// occlusion, uniform), e.g. 16..80. Default: COCO-like, 40% small, 40% medium, 20% large.
    #[arg(long, value_name = "MIN..MAX")]
    object_sides: Option<String>,
    /// Number of images drawn with their masks and boxes into preview.png (0: none).
    #[arg(long, default_value_t = 8)]
    preview: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<ImageSize> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .and_then(|(h, w)| Some((h.trim().parse().ok()?, w.trim().parse().ok()?)))
        .with_context(|| format!("size `{s}` must look like 256x320 (HxW)"))?;
    Ok(ImageSize::new(h, w))
}

fn parse_sides(s: &str) -> Result<(f64, f64)> {
    s.split_once("..")
        .and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)))
        .with_context(|| format!("object sides `{s}` must look like 16..80 (MIN..MAX pixels)"))
}

/// Run `pvt synth`.
pub fn synth(a: SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        images: a.images,
        seed: a.seed,
        size: parse_size(&a.size)?,
        val_fraction: a.val_fraction,
        min_objects: a.min_objects,
        max_objects: a.max_objects,
        min_area: a.min_area,
        preview: a.preview,
        object_sides: a.object_sides.as_deref().map(parse_sides).transpose()?,
    };
    cfg.validate()?;
    let t0 = Instant::now();
    let pb = indicatif::ProgressBar::new(cfg.images as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  {per_sec}  ETA {eta}",
        )
        .expect("template"),
    );
    let s = generate(&cfg, &a.out, &pb)?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "wrote {} in {:.1} s: train {} images / {} objects, val {} images / {} objects",
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        s.train_images,
        s.train_instances,
        s.val_images,
        s.val_instances
    );
    let per_class: Vec<String> = CLASS_NAMES
        .iter()
        .zip(&s.per_class)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!("objects per class: {}", per_class.join(", "));
    println!(
        "objects per COCO size: small {}, medium {}, large {}",
        s.per_size[0], s.per_size[1], s.per_size[2]
    );
    if s.removed_stale > 0 {
        println!("removed {} files of an earlier run", s.removed_stale);
    }
    Ok(())
}
