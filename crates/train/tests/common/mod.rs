//! Shared helpers: small synthetic datasets and configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pvt_data::synth::{generate, SynthConfig};
use pvt_train::trainer::TrainConfig;
use pvt_types::ImageSize;

/// Writes a synthetic shapes dataset of `images` images of `h`x`w` into a fresh temporary folder.
pub fn synth_dataset(
    tag: &str,
    images: usize,
    (h, w): (usize, usize),
    val_fraction: f64,
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvt-train-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = SynthConfig {
        images,
        seed: 11,
        size: ImageSize::new(h, w),
        val_fraction,
        min_objects: 2,
        max_objects: 3,
        min_area: 64,
        preview: 0,
        object_sides: None,
    };
    generate(&cfg, &dir, &indicatif::ProgressBar::hidden()).unwrap();
    dir
}

/// The repository's training config for the synthetic set.
pub fn synth_config() -> TrainConfig {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs/retinanet_pvt_synth.json");
    TrainConfig::from_file(&p).unwrap()
}

/// The mini RetinaNet config of the golden tests, with 6 classes and small training settings.
pub fn mini_config() -> TrainConfig {
    let mut c = synth_config();
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs/retinanet_pvt_mini.json");
    c.model = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    c.model.num_classes = 6;
    c
}

/// The weights a run saved (`RUN/model.safetensors`), sorted by name, as f32 values: runs that
/// ended equal compare equal.
pub fn run_weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let path = run.join(pvt_train::run_dir::files::MODEL);
    let t = candle::safetensors::load(path, &candle::Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
