//! Datasets for training and fine-tuning the PVT detectors and segmenters.
//!
//! - [`synth`]: a deterministic synthetic dataset of coloured shapes on textured backgrounds,
//!   written as COCO instance annotations (compressed RLE masks) and ADE20K-style semantic label
//!   PNGs, so that the training code can be exercised end to end without downloading anything.
//! - [`coco`]: the COCO annotation file format (`instances_*.json`) as this crate writes it.
//!
//! No candle: the files are plain images and JSON; tensors are made by the training code.
#![deny(missing_docs)]

pub mod coco;
pub mod synth;

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` through a temporary sibling (`.<name>.tmp<pid>`) and a rename, so that
/// a reader never sees a half-written file and an interrupted run leaves the old file in place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(name) = path.file_name() else {
        bail!("{} is not a file path", path.display());
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
