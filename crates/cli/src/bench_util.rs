//! What the `bench*` commands share: random weights without a backprop graph, the timing
//! loop, and memory readings.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{anyhow, Result};
use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// Builds a model with random weights: once through a `VarMap` (candle's initialisers), then
/// again from the detached tensors so that forward passes record no backprop graph. `adjust`
/// may replace a tensor by name; tensors it leaves alone that came out all zeros (biases,
/// position tables) get N(0, 0.02²) so that no part of the network computes on zeros.
pub fn random_model<M>(
    dev: &Device,
    build: impl Fn(VarBuilder<'static>) -> Result<M>,
    adjust: impl Fn(&str, &Tensor) -> Result<Option<Tensor>>,
) -> Result<M> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
    let mut weights = HashMap::new();
    for (k, v) in varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("varmap lock poisoned"))?
        .iter()
    {
        let t = v.as_tensor().detach();
        let t = match adjust(k, &t)? {
            Some(t) => t,
            None if t.sum_all()?.to_scalar::<f32>()? == 0.0 => t.randn_like(0.0, 0.02)?,
            None => t,
        };
        weights.insert(k.clone(), t);
    }
    build(VarBuilder::from_tensors(weights, DType::F32, dev))
}

/// Median and minimum of timed runs, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Median.
    pub median_ms: f64,
    /// Minimum.
    pub min_ms: f64,
}

/// Runs `f` `warmup` times untimed, then `runs` times timed; `tick` after every run.
pub fn time_runs(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<()>,
    mut tick: impl FnMut(),
) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
        tick();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        tick();
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: times[times.len() / 2],
        min_ms: times[0],
    })
}

/// Resident set size and its peak, in MiB, from /proc/self/status (Linux; NaN elsewhere).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How many runs a whole-model benchmark times, and how it prints.
#[derive(clap::Args, Debug, Clone)]
pub struct TimingArgs {
    /// Timed runs per case.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Print one JSON line per case.
    #[arg(long)]
    pub json: bool,
}
