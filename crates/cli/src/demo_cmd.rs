//! `pvt demo`: the bundled models trained on the synthetic shapes (`pvt synth`) run on a bundled,
//! held-out picture, so that a fresh clone shows the whole pipeline with no download: RetinaNet-PVT
//! detections drawn on the picture, or (`--segment`) the Semantic FPN-PVT colour map.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use image::RgbImage;
use pvt_nn::image::load_rgb;
use pvt_types::{Detections, ImageSize, SegMap};
use pvt_zoo::semantic_fpn::ade20k_palette;
use pvt_zoo::{load_detector, load_segmenter, LoadOptions, ModelConfig};

/// Bundled files, relative to the repository root (see assets/demo/README.md).
const DET_CONFIG: &str = "assets/demo/retinanet_pvt_synth.json";
const DET_WEIGHTS: &str = "assets/demo/retinanet_pvt_synth.safetensors";
const SEG_CONFIG: &str = "assets/demo/fpn_pvt_synth.json";
const SEG_WEIGHTS: &str = "assets/demo/fpn_pvt_synth.safetensors";
const IMAGE: &str = "assets/demo/shapes.png";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run the segmenter and write the colour map instead of the detections.
    #[arg(long)]
    segment: bool,
    /// Image to run on (default: a bundled held-out synthetic picture).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Where to write the picture (default: demo_detections.png, or demo_segmentation.png with
    /// --segment).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Detections scoring at least this are printed and drawn.
    #[arg(long, default_value_t = 0.5)]
    score_thr: f32,
    /// The picture is drawn this many times larger than the image (the demo images are small).
    #[arg(long, default_value_t = 3)]
    zoom: u32,
}

/// `rel` under the current directory when it exists there (`cargo run` from the repository),
/// else under the repository this binary was built from.
fn bundled(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn zoomed(img: &RgbImage, zoom: u32) -> RgbImage {
    image::imageops::resize(
        img,
        img.width() * zoom,
        img.height() * zoom,
        image::imageops::FilterType::Nearest,
    )
}

pub fn demo(a: DemoArgs) -> Result<()> {
    anyhow::ensure!((1..=16).contains(&a.zoom), "--zoom must be in 1..=16");
    let image = a.image.clone().unwrap_or_else(|| bundled(IMAGE));
    let img = load_rgb(&image)?;
    if a.segment {
        segment(&a, &image, &img)
    } else {
        detect(&a, &image, &img)
    }
}

fn detect(a: &DemoArgs, image: &Path, img: &RgbImage) -> Result<()> {
    let cfg = ModelConfig::from_file(bundled(DET_CONFIG))?;
    let weights = bundled(DET_WEIGHTS);
    let det = load_detector(&cfg, &weights, &LoadOptions::default())?;
    let t0 = Instant::now();
    let dets = det.detect(img)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let keep: Vec<usize> = (0..dets.len())
        .filter(|&i| dets.scores()[i] >= a.score_thr)
        .collect();
    println!(
        "{}: {} shapes with score >= {} in {ms:.0} ms (RetinaNet-PVT trained on `pvt synth` data, {})",
        image.display(),
        keep.len(),
        a.score_thr,
        weights.display()
    );
    for &i in &keep {
        let b = dets.boxes()[i];
        println!(
            "  {:<9} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
            det.class_names()[dets.classes()[i].0 as usize],
            dets.scores()[i],
            b[0],
            b[1],
            b[2],
            b[3]
        );
    }
    let z = a.zoom as f32;
    let big = Detections::new(
        ImageSize::new(
            img.height() as usize * a.zoom as usize,
            img.width() as usize * a.zoom as usize,
        ),
        dets.boxes()
            .iter()
            .map(|b| [b[0] * z, b[1] * z, b[2] * z, b[3] * z])
            .collect(),
        dets.scores().to_vec(),
        dets.classes().to_vec(),
        None,
    )?;
    let mut canvas = zoomed(img, a.zoom);
    pvt_vis::draw_detections(&mut canvas, &big, det.class_names(), a.score_thr);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("demo_detections.png"));
    canvas
        .save(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn segment(a: &DemoArgs, image: &Path, img: &RgbImage) -> Result<()> {
    let cfg = ModelConfig::from_file(bundled(SEG_CONFIG))?;
    let weights = bundled(SEG_WEIGHTS);
    let seg = load_segmenter(&cfg, &weights, &LoadOptions::default())?;
    let t0 = Instant::now();
    let map = seg.segment(img)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let names = seg.class_names();
    let k = names.len();
    let mut counts = vec![0usize; k];
    for &l in map.labels() {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    println!(
        "{}: {}x{} label map in {ms:.0} ms (Semantic FPN-PVT trained on `pvt synth` data, {})",
        image.display(),
        img.width(),
        img.height(),
        weights.display()
    );
    let total = map.labels().len().max(1) as f64;
    for (c, &n) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
        let name = names.get(c).map(String::as_str).unwrap_or("?");
        println!("  {name:<10} {:5.1}%", 100.0 * n as f64 / total);
    }
    // background (class 0) keeps its pixels; the shapes get the first ADE20K colours
    let pal = ade20k_palette();
    let palette: Vec<[u8; 3]> = (0..k).map(|i| pal[(i + 1) % pal.len()]).collect();
    let z = a.zoom as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let big_labels: Vec<u16> = (0..h * z)
        .flat_map(|y| {
            let row = &map.labels()[(y / z) * w..(y / z + 1) * w];
            (0..w * z).map(move |x| row[x / z])
        })
        .collect();
    let big_map = SegMap::new(ImageSize::new(h * z, w * z), big_labels)?;
    let shown: Vec<String> = (0..k)
        .map(|i| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}"))
        })
        .collect();
    let mut pic = pvt_vis::overlay_segmap(&zoomed(img, a.zoom), &big_map, &palette, &shown, 0.6);
    // background drawn as the picture itself: undo the blend where the label is 0
    let big_img = zoomed(img, a.zoom);
    for (i, &l) in big_map.labels().iter().enumerate() {
        if l == 0 {
            let (x, y) = ((i % (w * z)) as u32, (i / (w * z)) as u32);
            pic.put_pixel(x, y, *big_img.get_pixel(x, y));
        }
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("demo_segmentation.png"));
    pic.save(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
