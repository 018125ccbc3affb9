//! `pvt bench-train`: one tiny training step of each family, timed, as one JSON line.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `pvt bench-train --config CONFIG --batch 1 --size SIZE --iters 1 --warmup 0 --json` and
/// returns its JSON line.
fn bench_train(config: &str, size: &str) -> serde_json::Value {
    let cfg = root().join(config).display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_pvt"))
        .args([
            "bench-train",
            "--config",
            &cfg,
            "--batch",
            "1",
            "--size",
            size,
            "--iters",
            "1",
            "--warmup",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn check(v: &serde_json::Value, family: &str, size: [u64; 2]) {
    assert_eq!(v["family"], family, "{v}");
    assert_eq!(v["batch"], 1, "{v}");
    assert_eq!(v["size"], serde_json::json!(size), "{v}");
    assert_eq!(v["iters"], 1, "{v}");
    for key in ["median_s", "min_s", "images_per_s"] {
        let t = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(t.is_finite() && t > 0.0, "{key} = {t}: {v}");
    }
    assert!(v["min_s"].as_f64() <= v["median_s"].as_f64(), "{v}");
    let loss = v["loss"].as_f64().unwrap_or(f64::NAN);
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}: {v}");
    assert!(v["trainable_params"].as_u64().unwrap_or(0) > 0, "{v}");
}

#[test]
fn bench_train_times_a_segmenter_step() {
    let v = bench_train("assets/configs/fpn_pvt_synth_demo.json", "64x64");
    check(&v, "semantic_fpn", [64, 64]);
    // random labels over 7 classes: the cross entropy starts near ln 7, 10% of pixels ignored
    let loss = v["loss"].as_f64().unwrap();
    assert!(loss < 7f64.ln() * 1.5, "{v}");
}

#[test]
fn bench_train_times_a_detector_step() {
    let v = bench_train("assets/configs/retinanet_pvt_synth_demo.json", "64x96");
    check(&v, "retinanet", [64, 96]);
}
