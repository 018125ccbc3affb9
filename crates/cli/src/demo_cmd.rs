//! `pvt demo`: the bundled model trained on the synthetic shapes (`pvt synth`) run on a bundled
//! image, so that a fresh clone shows the whole pipeline with no download.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle::Device;
use clap::Args;
use pvt_data::synth::CLASS_NAMES;
use pvt_nn::image::load_rgb;
use pvt_nn::Checkpoint;
use pvt_zoo::{ImageDetector, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt};

/// Bundled files, relative to the repository root.
const DET_CONFIG: &str = "assets/demo/retinanet_pvt_synth.json";
const DET_WEIGHTS: &str = "assets/demo/retinanet_pvt_synth.safetensors";
const IMAGE: &str = "assets/demo/shapes.png";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Image to run on (default: the bundled synthetic picture).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Where to write the picture with the detections drawn.
    #[arg(long, default_value = "demo_detections.png")]
    out: PathBuf,
    /// Detections scoring at least this are printed and drawn.
    #[arg(long, default_value_t = 0.3)]
    score_thr: f32,
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

pub fn demo(a: DemoArgs) -> Result<()> {
    let dev = Device::Cpu;
    let cfg_path = bundled(DET_CONFIG);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("cannot read the demo config {}", cfg_path.display()))?;
    let cfg: RetinaNetConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid detector config", cfg_path.display()))?;
    let test_scale = serde_json::from_str::<serde_json::Value>(&text)?["train"]["test_scale"]
        .as_array()
        .and_then(|v| Some((v.first()?.as_u64()? as usize, v.get(1)?.as_u64()? as usize)));
    let weights = bundled(DET_WEIGHTS);
    let (model, _) = RetinaNetPvt::load(&Checkpoint::load(&weights)?, &cfg, &dev)?;
    let mut det = RetinaNetDetector::new(model, &dev)?
        .with_class_names(CLASS_NAMES.iter().map(|s| s.to_string()).collect())?;
    if let Some(s) = test_scale {
        det.scale = s;
    }
    let image = a.image.clone().unwrap_or_else(|| bundled(IMAGE));
    let img = load_rgb(&image)?;
    let t0 = Instant::now();
    let dets = det.detect(&img)?;
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
    let mut canvas = img.clone();
    pvt_vis::draw_detections(&mut canvas, &dets, det.class_names(), a.score_thr);
    canvas
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
