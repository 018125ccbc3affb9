//! The loss curve of a run as a PNG, drawn with the `image` crate and pvt-vis' bitmap font
//! (no font files needed).

use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use pvt_vis::{frame, line, text};

const W: u32 = 800;
const H: u32 = 500;
/// Plot area: left, top, right, bottom.
const PLOT: (i32, i32, i32, i32) = (70, 50, 770, 440);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const RAW: Rgb<u8> = Rgb([200, 200, 230]);
const COLORS: [Rgb<u8>; 3] = [Rgb([31, 119, 180]), Rgb([255, 127, 14]), Rgb([44, 160, 44])];

/// Exponential moving average with the given weight of the past.
fn ema(v: &[f64], beta: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    let mut acc = 0.0;
    for (i, &x) in v.iter().enumerate() {
        acc = beta * acc + (1.0 - beta) * x;
        out.push(acc / (1.0 - beta.powi(i as i32 + 1)));
    }
    out
}

/// Draws a total loss per iteration (raw in light colour, smoothed in blue) and up to two
/// smoothed parts, with an optional legend line (e.g. the last validation), as a PNG written
/// atomically.
pub fn plot_curves(
    title: &str,
    total: &[f64],
    parts: &[(&str, Vec<f64>)],
    note: Option<&str>,
    path: &Path,
) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (l, t, r, b) = PLOT;
    let n = total.len().max(2);
    let beta = if total.len() > 200 { 0.98 } else { 0.9 };
    let ymax = total.iter().copied().fold(0f64, f64::max).max(1e-6) * 1.05;
    let to_px = |i: usize, y: f64| {
        (
            l as f64 + i as f64 / (n - 1) as f64 * (r - l) as f64,
            b as f64 - (y / ymax).clamp(0.0, 1.0) * (b - t) as f64,
        )
    };
    for k in 0..=10 {
        let (x, _) = to_px(k * (n - 1) / 10, 0.0);
        let (_, y) = to_px(0, ymax * k as f64 / 10.0);
        line(&mut img, (x, t as f64), (x, b as f64), GRID, 1);
        line(&mut img, (l as f64, y), (r as f64, y), GRID, 1);
        if k % 2 == 0 {
            text(
                &mut img,
                x as i32 - 12,
                b + 8,
                &format!("{}", k * (n - 1) / 10),
                BLACK,
                1,
            );
            text(
                &mut img,
                8,
                y as i32 - 4,
                &format!("{:.3}", ymax * k as f64 / 10.0),
                BLACK,
                1,
            );
        }
    }
    frame(&mut img, (l, t), (r, b), BLACK);
    text(&mut img, (l + r) / 2 - 36, b + 28, "iteration", BLACK, 1);
    text(&mut img, l, 8, title, BLACK, 2);
    for j in 1..total.len() {
        line(
            &mut img,
            to_px(j - 1, total[j - 1]),
            to_px(j, total[j]),
            RAW,
            1,
        );
    }
    let mut series = vec![("loss", ema(total, beta))];
    series.extend(
        parts
            .iter()
            .take(COLORS.len() - 1)
            .map(|(label, ys)| (*label, ema(ys, beta))),
    );
    for (s, (label, ys)) in series.iter().enumerate() {
        for j in 1..ys.len() {
            line(
                &mut img,
                to_px(j - 1, ys[j - 1]),
                to_px(j, ys[j]),
                COLORS[s],
                2,
            );
        }
        let ly = t + 14 + 16 * s as i32;
        line(
            &mut img,
            ((r - 260) as f64, ly as f64 + 3.0),
            ((r - 230) as f64, ly as f64 + 3.0),
            COLORS[s],
            2,
        );
        let last = ys.last().copied().unwrap_or(f64::NAN);
        text(
            &mut img,
            r - 222,
            ly,
            &format!("{label} {last:.4}"),
            BLACK,
            1,
        );
    }
    if let Some(note) = note {
        let ly = t + 14 + 16 * series.len() as i32;
        text(&mut img, r - 222, ly, note, BLACK, 1);
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding the loss curve")?;
    pvt_data::write_atomic(path, &bytes)
}
