//! Semantic segmentation metrics as mmsegmentation 1.x's `IoUMetric` computes them (ADE20K).
//!
//! Rule (mmseg `IoUMetric`), per image then over the dataset:
//! - ground truth is read as stored (8-bit PNG); with `reduce_zero_label`, in uint8 arithmetic:
//!   0 and 255 become 255 (ignored), `v` becomes `v - 1`;
//! - pixels whose GT is `ignore_index` (255) are dropped; histograms over `0..K` of the
//!   intersection (pred == gt), the prediction and the label drop values outside `0..K`;
//!   `union = pred + label - intersect`;
//! - totals are float32 sums over images **in the order processed** (mmseg: sorted file names),
//!   so above 2^24 pixels a class total rounds exactly as mmseg's does;
//! - `IoU = I/U`, `Acc = I/L`, `aAcc = ΣI/ΣL` in float32; 0/0 is NaN and is left out of the
//!   means (`np.nanmean`); a class predicted but absent from GT has IoU 0 and counts;
//! - reported in percent, `np.round(x * 100, 2)` on float32 (half to even).
//!
//! Exact integer counts are kept beside the float32 totals and reported per class.
//! hotcoco's `SemanticEval` counts exactly (u64/f64); we implement mmseg's float32 rule here
//! instead so that numbers at a rounding boundary agree with mmseg's.

use crate::numpy::{nanmean_f32, pairwise_sum_f32, round2_f32};
use anyhow::{bail, Context, Result};
use pvt_types::{ImageSize, SegMap};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The 150 ADE20K class names in mmsegmentation's order (`ADE20KDataset.METAINFO`; mmseg
/// writes the 8th as `"bed "` with a trailing space, stored here trimmed).
pub fn ade20k_class_names() -> Vec<String> {
    include_str!("../../assets/ade20k_classes.txt")
        .lines()
        .map(str::to_string)
        .collect()
}

/// What is evaluated and how labels are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegConfig {
    /// Number of classes K; labels `0..K` are scored.
    pub num_classes: usize,
    /// GT label that is not scored (after `reduce_zero_label`).
    pub ignore_index: u16,
    /// Apply mmseg's `reduce_zero_label` to the ground truth (ADE20K: yes).
    pub reduce_zero_label: bool,
    /// Class names, `num_classes` of them.
    pub class_names: Vec<String>,
}

impl SegConfig {
    /// ADE20K as mmseg evaluates it: 150 classes, ignore 255, `reduce_zero_label`.
    pub fn ade20k() -> Self {
        Self {
            num_classes: 150,
            ignore_index: SegMap::IGNORE,
            reduce_zero_label: true,
            class_names: ade20k_class_names(),
        }
    }

    /// `num_classes` classes named `class0`, `class1`, ...
    pub fn generic(num_classes: usize, reduce_zero_label: bool) -> Self {
        Self {
            num_classes,
            ignore_index: SegMap::IGNORE,
            reduce_zero_label,
            class_names: (0..num_classes).map(|i| format!("class{i}")).collect(),
        }
    }
}

/// Exact pixel counts of one class over the dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    /// Pixels where prediction and GT are this class.
    pub intersect: u64,
    /// `pred + label - intersect`.
    pub union: u64,
    /// Pixels predicted as this class (GT not ignored).
    pub pred: u64,
    /// GT pixels of this class.
    pub label: u64,
}

/// One class's result: percent, rounded to 2 decimals as mmseg does; `None` where mmseg has NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassResult {
    /// Class name.
    pub name: String,
    /// IoU in percent.
    #[serde(rename = "IoU")]
    pub iou: Option<f32>,
    /// Accuracy in percent.
    #[serde(rename = "Acc")]
    pub acc: Option<f32>,
    /// Exact counts.
    pub counts: ClassCounts,
}

/// The summary, in percent rounded to 2 decimals (float32 values, as mmseg returns them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegMetrics {
    /// Overall pixel accuracy.
    #[serde(rename = "aAcc")]
    pub a_acc: f32,
    /// Mean IoU over classes with a defined IoU.
    #[serde(rename = "mIoU")]
    pub miou: f32,
    /// Mean accuracy over classes with GT.
    #[serde(rename = "mAcc")]
    pub macc: f32,
    /// Per class, in class order.
    pub per_class: Vec<ClassResult>,
    /// Images evaluated.
    pub images: usize,
}

/// Per-image histograms (exact).
struct ImageHist {
    inter: Vec<u64>,
    pred: Vec<u64>,
    label: Vec<u64>,
}

/// Accumulates images as mmseg's `IoUMetric.process` does, then computes the metrics.
pub struct SegEvaluator {
    cfg: SegConfig,
    /// float32 totals of intersect, union, pred, label, as mmseg sums them.
    totals: [Vec<f32>; 4],
    exact: Vec<ClassCounts>,
    images: usize,
}

impl SegEvaluator {
    /// A fresh evaluator.
    pub fn new(cfg: SegConfig) -> Result<Self> {
        if cfg.class_names.len() != cfg.num_classes {
            bail!(
                "{} class names for {} classes",
                cfg.class_names.len(),
                cfg.num_classes
            );
        }
        let k = cfg.num_classes;
        Ok(Self {
            totals: [vec![0.0; k], vec![0.0; k], vec![0.0; k], vec![0.0; k]],
            exact: vec![ClassCounts::default(); k],
            images: 0,
            cfg,
        })
    }

    /// Add one image: `pred` holds class indices, `gt` the labels as stored in the GT PNG
    /// (`reduce_zero_label` is applied here when configured). Sizes must agree.
    pub fn process(&mut self, pred: &SegMap, gt: &SegMap) -> Result<()> {
        let h = self.histogram(pred, gt)?;
        self.add(&h);
        Ok(())
    }

    fn histogram(&self, pred: &SegMap, gt: &SegMap) -> Result<ImageHist> {
        if pred.size() != gt.size() {
            bail!(
                "prediction is {}, ground truth is {}",
                pred.size(),
                gt.size()
            );
        }
        let k = self.cfg.num_classes;
        let mut h = ImageHist {
            inter: vec![0; k],
            pred: vec![0; k],
            label: vec![0; k],
        };
        let ignore = self.cfg.ignore_index;
        for (&p, &g) in pred.labels().iter().zip(gt.labels()) {
            let g = if self.cfg.reduce_zero_label {
                // uint8 arithmetic: gt[gt==0]=255; gt=gt-1; gt[gt==254]=255
                if g == 0 || g == 255 {
                    255
                } else {
                    g - 1
                }
            } else {
                g
            };
            if g == ignore {
                continue;
            }
            let (p, g) = (p as usize, g as usize);
            if p < k {
                h.pred[p] += 1;
                if p == g {
                    h.inter[p] += 1;
                }
            }
            if g < k {
                h.label[g] += 1;
            }
        }
        Ok(h)
    }

    fn add(&mut self, h: &ImageHist) {
        for c in 0..self.cfg.num_classes {
            // torch.histc gives float32 counts; union is formed per image in float32.
            let (i, p, l) = (h.inter[c] as f32, h.pred[c] as f32, h.label[c] as f32);
            let u = (p + l) - i;
            self.totals[0][c] += i;
            self.totals[1][c] += u;
            self.totals[2][c] += p;
            self.totals[3][c] += l;
            let e = &mut self.exact[c];
            e.intersect += h.inter[c];
            e.pred += h.pred[c];
            e.label += h.label[c];
            e.union += h.pred[c] + h.label[c] - h.inter[c];
        }
        self.images += 1;
    }

    /// Number of images added.
    pub fn images(&self) -> usize {
        self.images
    }

    /// The metrics over everything added so far.
    pub fn metrics(&self) -> SegMetrics {
        let [ti, tu, _, tl] = &self.totals;
        let a_acc = pairwise_sum_f32(ti) / pairwise_sum_f32(tl);
        let iou: Vec<f32> = ti.iter().zip(tu).map(|(&i, &u)| i / u).collect();
        let acc: Vec<f32> = ti.iter().zip(tl).map(|(&i, &l)| i / l).collect();
        let pct = |v: f32| round2_f32(v * 100.0);
        let opt = |v: f32| (!v.is_nan()).then(|| pct(v));
        SegMetrics {
            a_acc: pct(a_acc),
            miou: pct(nanmean_f32(&iou)),
            macc: pct(nanmean_f32(&acc)),
            per_class: (0..self.cfg.num_classes)
                .map(|c| ClassResult {
                    name: self.cfg.class_names[c].clone(),
                    iou: opt(iou[c]),
                    acc: opt(acc[c]),
                    counts: self.exact[c],
                })
                .collect(),
            images: self.images,
        }
    }
}

/// Read a single-channel label PNG (8- or 16-bit).
pub fn load_label_png(path: &Path) -> Result<SegMap> {
    let img = image::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = ImageSize::new(img.height() as usize, img.width() as usize);
    let labels: Vec<u16> = match img {
        image::DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().map(u16::from).collect(),
        image::DynamicImage::ImageLuma16(b) => b.into_raw(),
        other => bail!(
            "{}: expected a single-channel (grayscale) label PNG, found {:?}",
            path.display(),
            other.color()
        ),
    };
    SegMap::new(size, labels).with_context(|| path.display().to_string())
}

/// Write a label map as a single-channel PNG, atomically: 8-bit when every label fits (as
/// mmseg's `output_dir` files are), else 16-bit.
pub fn save_label_png(path: &Path, map: &SegMap) -> Result<()> {
    let (w, h) = (map.size().width as u32, map.size().height as u32);
    let img = if map.labels().iter().all(|&v| v <= 255) {
        let data: Vec<u8> = map.labels().iter().map(|&v| v as u8).collect();
        image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w, h, data).context("label map size")?,
        )
    } else {
        image::DynamicImage::ImageLuma16(
            image::ImageBuffer::from_raw(w, h, map.labels().to_vec()).context("label map size")?,
        )
    };
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    crate::coco::writer::write_atomic(path, &bytes)
}

/// Pairs of (GT, prediction) files matched by stem, in sorted GT file-name order.
pub fn pair_dirs(gt_dir: &Path, pred_dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("cannot list {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
            .collect();
        v.sort();
        Ok(v)
    };
    let gts = list(gt_dir)?;
    if gts.is_empty() {
        bail!("no .png label maps in {}", gt_dir.display());
    }
    gts.into_iter()
        .map(|g| {
            let stem = g.file_stem().map(|s| s.to_os_string()).unwrap_or_default();
            let mut p = pred_dir.join(&stem);
            p.set_extension("png");
            if !p.exists() {
                bail!(
                    "missing prediction {} for ground truth {}",
                    p.display(),
                    g.display()
                );
            }
            Ok((g, p))
        })
        .collect()
}

/// Evaluate folders of label PNGs (ground truth as stored, predictions holding class indices),
/// paired by file stem. A missing or differently sized prediction is an error naming the file.
pub fn evaluate_dirs(gt_dir: &Path, pred_dir: &Path, cfg: SegConfig) -> Result<SegMetrics> {
    let pairs = pair_dirs(gt_dir, pred_dir)?;
    let mut ev = SegEvaluator::new(cfg)?;
    // Decode and histogram in parallel, a chunk at a time; add in file order.
    for chunk in pairs.chunks(64) {
        let hists: Vec<Result<ImageHist>> = chunk
            .par_iter()
            .map(|(g, p)| {
                let gt = load_label_png(g)?;
                let pred = load_label_png(p)?;
                ev.histogram(&pred, &gt)
                    .with_context(|| format!("{} does not match {}", p.display(), g.display()))
            })
            .collect();
        for h in hists {
            ev.add(&h?);
        }
    }
    Ok(ev.metrics())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_accumulate_in_float32_like_mmseg() {
        let mut ev = SegEvaluator::new(SegConfig::generic(2, false)).expect("config");
        let big = ImageHist {
            inter: vec![16_777_216, 0],
            pred: vec![16_777_216, 3],
            label: vec![16_777_217, 0],
        };
        let one = ImageHist {
            inter: vec![1, 0],
            pred: vec![1, 0],
            label: vec![1, 0],
        };
        ev.add(&big);
        ev.add(&one);
        // Exact counts keep every pixel; float32 totals round as torch's float32 sums do:
        // 2^24 + 1 is not a float32, so the label total stays 2^24 (+1 rounds to even).
        assert_eq!(ev.exact[0].label, 16_777_218);
        assert_eq!(ev.totals[3][0], 16_777_216.0);
        assert_eq!(ev.exact[0].intersect, 16_777_217);
        assert_eq!(ev.totals[0][0], 16_777_216.0);
        // Class 1: predicted only, IoU 0 (counted in mIoU), Acc NaN (left out of mAcc).
        let m = ev.metrics();
        assert_eq!((m.per_class[1].iou, m.per_class[1].acc), (Some(0.0), None));
        assert_eq!((m.miou, m.macc), (50.0, 100.0));
    }
}
