//! The run directory of a training run and what is written into it: the configuration
//! (claimed by the first run, checked by every resume), the latest weights, per-epoch weights,
//! the resume point, the log; and the run-time options that are not part of the configuration.
//! Every file is written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use pvt_zoo::model::tag_json;
use pvt_zoo::Family;
use serde::Serialize;

use crate::optim::AdamW;
use crate::params::Params;

/// Run-time options that are not part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Backbone initialisation (ImageNet checkpoint), used when the run starts (not on resume).
    pub init: Option<PathBuf>,
    /// Whole-model initialisation (mmdetection's `load_from`: every tensor of matching name and
    /// shape, [`Params::load_matching`]), after `init`, when the run starts.
    pub load_from: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Print a line per epoch and per validation.
    pub verbose: bool,
    /// Stop right after this many iterations without saving anything, as a killed process would
    /// (for tests of resuming).
    pub crash_after: Option<u64>,
}

impl TrainOptions {
    /// Applies `init` (backbone) then `load_from` (whole model) to fresh parameters, printing
    /// what was loaded when verbose.
    pub(crate) fn initialise(
        &self,
        params: &mut Params,
        backbone: &pvt_zoo::BackboneConfig,
    ) -> Result<()> {
        if let Some(init) = &self.init {
            let msg = params.init_backbone(backbone, init)?;
            if self.verbose {
                eprintln!("{msg}");
            }
        }
        if let Some(from) = &self.load_from {
            let msg = params.load_matching(from)?;
            if self.verbose {
                eprintln!("{msg}");
            }
        }
        Ok(())
    }
}

/// File names inside a run directory.
pub mod files {
    /// The training configuration.
    pub const CONFIG: &str = "config.json";
    /// Latest weights.
    pub const MODEL: &str = "model.safetensors";
    /// The resume point.
    pub const STATE: &str = "train_state.safetensors";
    /// The log.
    pub const HISTORY: &str = "history.json";
    /// The loss curve.
    pub const LOSS_PNG: &str = "loss.png";
}

/// Writes `v` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    pvt_data::write_atomic(path, s.as_bytes())
}

pub(crate) fn save_tensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    pvt_nn::checkpoint::save_safetensors(tensors, path)
}

/// The model weights, for `pvt detect` / `pvt infer` (official names).
pub fn model_tensors(params: &Params) -> Result<BTreeMap<String, Tensor>> {
    params.snapshot()
}

/// Writes the resume point (`param.*`, the AdamW moments, the step) and the latest weights of a
/// run, each atomically.
pub(crate) fn save_state(run: &Path, params: &Params, opt: &AdamW, step: u64) -> Result<()> {
    let mut t = BTreeMap::new();
    let weights = model_tensors(params)?;
    for (k, v) in &weights {
        t.insert(format!("param.{k}"), v.clone());
    }
    for (k, v) in opt.state_tensors() {
        t.insert(k, v);
    }
    let dev = params.device();
    t.insert("meta.step".into(), Tensor::new(&[step as i64], dev)?);
    t.insert(
        "meta.adam_step".into(),
        Tensor::new(&[opt.step_count() as i64], dev)?,
    );
    save_tensors(&t, &run.join(files::STATE))?;
    save_tensors(&weights, &run.join(files::MODEL))
}

/// Reads the resume point written by [`save_state`] into `params` and `opt`; returns the step.
pub(crate) fn load_state(run: &Path, params: &mut Params, opt: &mut AdamW) -> Result<u64> {
    let path = run.join(files::STATE);
    let all = candle::safetensors::load(&path, params.device())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let get_i64 = |k: &str| -> Result<u64> {
        let t = all
            .get(k)
            .with_context(|| format!("{}: no {k}", path.display()))?;
        Ok(t.to_vec1::<i64>()?[0] as u64)
    };
    let step = get_i64("meta.step")?;
    let adam_step = get_i64("meta.adam_step")?;
    let mut weights = BTreeMap::new();
    let mut moments = BTreeMap::new();
    for (k, v) in &all {
        if let Some(n) = k.strip_prefix("param.") {
            weights.insert(n.to_string(), v.clone());
        } else if k.starts_with("m.") || k.starts_with("v.") {
            moments.insert(k.clone(), v.clone());
        }
    }
    params
        .load(&weights)
        .with_context(|| format!("{}: weights", path.display()))?;
    opt.load_state(&moments, adam_step)?;
    Ok(step)
}

/// Reads `RUN/history.json` (empty when absent).
pub(crate) fn read_history<T: Default + serde::de::DeserializeOwned>(run: &Path) -> Result<T> {
    let hist_path = run.join(files::HISTORY);
    match std::fs::read(&hist_path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{}", hist_path.display())),
        Err(_) => Ok(T::default()),
    }
}

/// The progress bar of a training run (hidden unless `show`), at `step` of `total`.
pub(crate) fn progress_bar(show: bool, total: u64, step: u64) -> Result<ProgressBar> {
    if !show {
        return Ok(ProgressBar::hidden());
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )?
        .progress_chars("=> "),
    );
    pb.set_position(step);
    pb.reset_eta();
    Ok(pb)
}

/// Writes `cfg` as `RUN/config.json`, or checks that the run there has the same configuration.
/// The file written carries the model's `family` tag, so that every command can tell which model
/// the run trains.
pub fn claim_run_dir<T>(run: &Path, cfg: &T, family: Family) -> Result<()>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq,
{
    std::fs::create_dir_all(run).with_context(|| format!("cannot create {}", run.display()))?;
    let cfg_path = run.join(files::CONFIG);
    if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("cannot read {}", cfg_path.display()))?;
        let old: T = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid training config", cfg_path.display()))?;
        if &old != cfg {
            bail!(
                "{} holds a run with another configuration; use another --out directory",
                run.display()
            );
        }
        Ok(())
    } else {
        let mut v = serde_json::to_value(cfg)?;
        tag_json(&mut v, family);
        write_json(&cfg_path, &v)
    }
}
