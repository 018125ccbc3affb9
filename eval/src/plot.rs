//! Precision/recall curves to a PNG, drawn with the `image` crate and an embedded 8x8 bitmap
//! font (font8x8, public domain), so nothing depends on fonts installed on the machine.
//!
//! Curves (area `all`, 100 detections): precision at the 101 recall points averaged over the
//! categories with ground truth, at IoU 0.50, at IoU 0.75, and averaged over the 10 thresholds
//! (the area under that one is COCO AP).

use crate::coco::writer::write_atomic;
use crate::coco::Accumulated;
use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use pvt_vis::{frame, line, text};
use std::path::Path;

const W: u32 = 720;
const H: u32 = 540;
/// Plot area: left, top, right, bottom.
const PLOT: (i32, i32, i32, i32) = (70, 50, 690, 470);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const COLORS: [Rgb<u8>; 3] = [Rgb([31, 119, 180]), Rgb([255, 127, 14]), Rgb([44, 160, 44])];

/// Draw the curves of `acc` with `title` and write them to `path` (PNG, atomically).
pub fn plot_pr_curves(acc: &Accumulated, title: &str, path: &Path) -> Result<()> {
    let thr_row = |v: f64| acc.iou_thrs.iter().position(|&t| t == v);
    let mut curves: Vec<(String, Vec<f64>)> = Vec::new();
    for (label, v) in [("IoU=0.50", 0.5), ("IoU=0.75", 0.75)] {
        if let Some(c) = thr_row(v).and_then(|t| acc.mean_pr_curve(t)) {
            curves.push((label.to_string(), c));
        }
    }
    let per_t: Vec<Vec<f64>> = (0..acc.iou_thrs.len())
        .filter_map(|t| acc.mean_pr_curve(t))
        .collect();
    if per_t.is_empty() {
        bail!("no category has ground truth: nothing to plot");
    }
    let mean: Vec<f64> = (0..acc.rec_thrs.len())
        .map(|r| per_t.iter().map(|c| c[r]).sum::<f64>() / per_t.len() as f64)
        .collect();
    curves.push(("IoU=0.50:0.95".to_string(), mean));

    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (l, t, r, b) = PLOT;
    let to_px = |x: f64, y: f64| (l as f64 + x * (r - l) as f64, b as f64 - y * (b - t) as f64);
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        let (x, _) = to_px(v, 0.0);
        let (_, y) = to_px(0.0, v);
        line(&mut img, (x, t as f64), (x, b as f64), GRID, 1);
        line(&mut img, (l as f64, y), (r as f64, y), GRID, 1);
        if i % 2 == 0 {
            let s = format!("{v:.1}");
            text(&mut img, x as i32 - 12, b + 8, &s, BLACK, 1);
            text(&mut img, l - 30, y as i32 - 4, &s, BLACK, 1);
        }
    }
    frame(&mut img, (l, t), (r, b), BLACK);
    text(&mut img, (l + r) / 2 - 24, b + 28, "recall", BLACK, 1);
    text(&mut img, 8, t - 12, "precision", BLACK, 1);
    text(&mut img, l, 8, title, BLACK, 2);
    text(
        &mut img,
        l,
        30,
        "area=all, maxDets=100, mean over the categories with ground truth",
        BLACK,
        1,
    );
    for (i, (label, ys)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for j in 1..ys.len() {
            let p0 = to_px(acc.rec_thrs[j - 1], ys[j - 1]);
            let p1 = to_px(acc.rec_thrs[j], ys[j]);
            line(&mut img, p0, p1, color, 2);
        }
        let area = ys.iter().sum::<f64>() / ys.len() as f64;
        let ly = t + 14 + 16 * i as i32;
        line(
            &mut img,
            ((r - 230) as f64, ly as f64 + 3.0),
            ((r - 200) as f64, ly as f64 + 3.0),
            color,
            2,
        );
        text(
            &mut img,
            r - 192,
            ly,
            &format!("{label} AP={area:.3}"),
            BLACK,
            1,
        );
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding the plot")?;
    write_atomic(path, &bytes)
}
