//! `--model NAME` / `--config JSON|RUN` as the commands that load a model take them.

use std::path::Path;

use anyhow::Result;
use pvt_zoo::ModelConfig;

/// The model named by `--model` or described by `--config` (a JSON file, or a training run's
/// directory); clap makes sure that exactly one is given.
pub fn resolve(model: Option<&str>, config: Option<&Path>) -> Result<ModelConfig> {
    match (model, config) {
        (Some(name), _) => ModelConfig::from_name(name),
        (None, Some(path)) if path.is_dir() => ModelConfig::from_run_dir(path),
        (None, Some(path)) => ModelConfig::from_file(path),
        (None, None) => anyhow::bail!("give --model or --config"),
    }
}
