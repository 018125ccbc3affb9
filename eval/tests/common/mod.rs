//! Helpers shared by the parity tests: finding Python, temporary folders, seeds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (parent of `eval/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("eval/ has a parent")
        .to_path_buf()
}

/// The Python with pycocotools and numpy: `PVT_TEST_PYTHON`, else `<root>/.venv/bin/python`.
/// Fails (never skips) when neither exists.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PVT_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "PVT_TEST_PYTHON={} does not exist", p.display());
        return p;
    }
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python for the parity tests: set PVT_TEST_PYTHON or run `bash tools/test.sh`, which \
         creates {} with the packages of tools/requirements-ci.txt",
        p.display()
    );
    p
}

/// Run a helper script under `tools/eval/` and return its stdout; panics with its stderr.
pub fn run_tool(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(workspace_root().join("tools/eval").join(script))
        .args(args)
        .output()
        .expect("cannot start Python");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pvt-eval-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// The seed of this run: `PVT_TEST_SEED`, else from the clock. Printed so a failure can be
/// replayed.
pub fn seed() -> u64 {
    let s = match std::env::var("PVT_TEST_SEED") {
        Ok(v) => v.parse().expect("PVT_TEST_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000_007)
            .unwrap_or(12345),
    };
    eprintln!("seed = {s} (replay with PVT_TEST_SEED={s})");
    s
}
