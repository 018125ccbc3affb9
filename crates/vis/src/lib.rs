//! Pictures of results, for people: boxes with class names and scores drawn on the image,
//! segmentation maps as colour overlays with a legend of the classes present.
//!
//! Text uses the public-domain 8×8 bitmap font of the `font8x8` crate, scaled, so nothing depends
//! on fonts installed on the machine. Plain data in, `image::RgbImage` out; no candle.
#![deny(missing_docs)]

use image::{Rgb, RgbImage};
use pvt_types::{BitMask, Detections};

/// Sets a pixel if it lies inside the image.
pub fn put(img: &mut RgbImage, x: i32, y: i32, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Width in pixels of `s` drawn by [`text`] at `scale`.
pub fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 8 * scale
}

/// ASCII text with the 8×8 glyphs, each pixel drawn as a `scale`×`scale` square, top-left at
/// `(x, y)`; other characters print as `?`.
pub fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, c: Rgb<u8>, scale: i32) {
    for (i, ch) in s.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(
                                img,
                                x + (i as i32 * 8 + col) * scale + dx,
                                y + row as i32 * scale + dy,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Fills the rectangle `[x0, x1) × [y0, y1)` (clipped).
pub fn fill_rect(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb<u8>) {
    for y in y0.max(0)..y1.min(img.height() as i32) {
        for x in x0.max(0)..x1.min(img.width() as i32) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// A line of `width` pixels from `a` to `b`, sampled densely enough to have no gaps.
pub fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: Rgb<u8>, width: i32) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for s in 0..=n {
        let f = s as f64 / n as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f);
        for dy in 0..width {
            for dx in 0..width {
                put(img, x.round() as i32 + dx, y.round() as i32 + dy, c);
            }
        }
    }
}

/// The 1-pixel frame of a plot area with corners `(l, t)` and `(r, b)`.
pub fn frame(img: &mut RgbImage, (l, t): (i32, i32), (r, b): (i32, i32), c: Rgb<u8>) {
    for (p, q) in [
        ((l, t), (l, b)),
        ((l, b), (r, b)),
        ((r, t), (r, b)),
        ((l, t), (r, t)),
    ] {
        line(
            img,
            (p.0 as f64, p.1 as f64),
            (q.0 as f64, q.1 as f64),
            c,
            1,
        );
    }
}

/// A distinct, saturated colour for class `i` (golden-angle hue walk).
pub fn class_color(i: usize) -> Rgb<u8> {
    let h = (i as f32 * 137.508) % 360.0;
    let (s, v) = (0.75f32, 0.95f32);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    Rgb([
        ((r + m) * 255.0) as u8,
        ((g + m) * 255.0) as u8,
        ((b + m) * 255.0) as u8,
    ])
}

fn luminance(c: Rgb<u8>) -> f32 {
    0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32
}

/// Blends a binary mask (row-major, the image's size) over the image in `color` at `opacity`
/// and draws its outline (foreground pixels with a background 4-neighbour) in full colour.
/// A mask of another size is ignored.
pub fn draw_mask(img: &mut RgbImage, mask: &BitMask, color: Rgb<u8>, opacity: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let size = mask.size();
    if (size.height, size.width) != (h, w) {
        return;
    }
    let m = mask.data();
    let on = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < w
            && (y as usize) < h
            && m[y as usize * w + x as usize] != 0
    };
    for y in 0..h {
        for x in 0..w {
            if m[y * w + x] == 0 {
                continue;
            }
            let (xi, yi) = (x as isize, y as isize);
            let edge = !(on(xi - 1, yi) && on(xi + 1, yi) && on(xi, yi - 1) && on(xi, yi + 1));
            let p = img.get_pixel_mut(x as u32, y as u32);
            if edge {
                *p = color;
            } else {
                for c in 0..3 {
                    p[c] =
                        (p[c] as f32 * (1.0 - opacity) + color[c] as f32 * opacity).round() as u8;
                }
            }
        }
    }
}

/// Draws every detection with `score >= score_thr`: its mask when the detections have masks
/// (translucent fill and outline, [`draw_mask`]), a class-coloured box (2 px, 3 px on large
/// images) and a filled label `name score` above it (inside when there is no room), lowest scores
/// first so the best ones stay on top. `names[label]` names the classes (falls back to the
/// index).
pub fn draw_detections(img: &mut RgbImage, dets: &Detections, names: &[String], score_thr: f32) {
    let thick = if img.width().max(img.height()) > 1000 {
        3
    } else {
        2
    };
    let scale = if img.width().max(img.height()) > 1000 {
        2
    } else {
        1
    };
    let mut order: Vec<usize> = (0..dets.len())
        .filter(|&i| dets.scores()[i] >= score_thr)
        .collect();
    order.sort_by(|&a, &b| {
        dets.scores()[a]
            .total_cmp(&dets.scores()[b])
            .then(b.cmp(&a))
    });
    if let Some(masks) = dets.masks() {
        for &i in &order {
            let color = class_color(dets.classes()[i].0 as usize);
            draw_mask(img, &masks[i].decode(), color, 0.45);
        }
    }
    for i in order {
        let [x1, y1, x2, y2] = dets.boxes()[i];
        let label = dets.classes()[i].0 as usize;
        let color = class_color(label);
        let (x1, y1, x2, y2) = (
            x1.round() as i32,
            y1.round() as i32,
            x2.round() as i32,
            y2.round() as i32,
        );
        for t in 0..thick {
            for x in x1..=x2 {
                put(img, x, y1 + t, color);
                put(img, x, y2 - t, color);
            }
            for y in y1..=y2 {
                put(img, x1 + t, y, color);
                put(img, x2 - t, y, color);
            }
        }
        let name = names
            .get(label)
            .cloned()
            .unwrap_or_else(|| format!("class {label}"));
        let caption = format!("{name} {:.2}", dets.scores()[i]);
        let (w, h) = (text_width(&caption, scale) + 4, 8 * scale + 4);
        let ty = if y1 - h >= 0 { y1 - h } else { y1 };
        // keep the label inside the image on the right
        let tx = x1.min(img.width() as i32 - w).max(0);
        fill_rect(img, tx, ty, tx + w, ty + h, color);
        let fg = if luminance(color) > 140.0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        };
        text(img, tx + 2, ty + 2, &caption, fg, scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_and_labels_are_drawn_where_expected() {
        let mut img = RgbImage::from_pixel(200, 120, Rgb([255, 255, 255]));
        let dets = Detections::new(
            pvt_types::ImageSize::new(120, 200),
            vec![[40.0, 50.0, 150.0, 110.0], [0.0, 0.0, 10.0, 10.0]],
            vec![0.9, 0.1],
            vec![pvt_types::ClassIdx(3), pvt_types::ClassIdx(1)],
            None,
        )
        .unwrap();
        draw_detections(
            &mut img,
            &dets,
            &["a".into(), "b".into(), "c".into(), "dog".into()],
            0.3,
        );
        let c = class_color(3);
        assert_eq!(*img.get_pixel(100, 50), c); // top edge
        assert_eq!(*img.get_pixel(150, 80), c); // right edge
        assert_eq!(*img.get_pixel(100, 80), Rgb([255, 255, 255])); // inside untouched
                                                                   // the label background sits above the box
        assert_eq!(*img.get_pixel(41, 40), c);
        // the low-score detection is not drawn
        assert_eq!(*img.get_pixel(5, 0), Rgb([255, 255, 255]));
    }

    #[test]
    fn masks_are_filled_and_outlined() {
        let size = pvt_types::ImageSize::new(40, 60);
        let mut data = vec![0u8; 2400];
        for y in 5..35 {
            for x in 10..40 {
                data[y * 60 + x] = 1;
            }
        }
        let mask = BitMask::new(size, data).unwrap();
        let dets = Detections::new(
            size,
            vec![[10.0, 5.0, 39.0, 34.0]],
            vec![0.9],
            vec![pvt_types::ClassIdx(2)],
            Some(vec![pvt_types::Rle::encode(&mask)]),
        )
        .unwrap();
        let mut img = RgbImage::from_pixel(60, 40, Rgb([0, 0, 0]));
        draw_detections(&mut img, &dets, &[], 0.5);
        let c = class_color(2);
        // interior (below the label): blended at 45 %
        let p = img.get_pixel(25, 30);
        for k in 0..3 {
            assert_eq!(p[k], (c[k] as f32 * 0.45).round() as u8);
        }
        // outside the mask: untouched
        assert_eq!(*img.get_pixel(50, 30), Rgb([0, 0, 0]));
        // a mask of the wrong size is ignored
        let mut img2 = RgbImage::from_pixel(10, 10, Rgb([0, 0, 0]));
        draw_mask(&mut img2, &mask, c, 0.5);
        assert_eq!(*img2.get_pixel(5, 5), Rgb([0, 0, 0]));
    }

    #[test]
    fn colours_differ_between_neighbouring_classes() {
        for i in 0..80 {
            assert_ne!(class_color(i), class_color(i + 1));
        }
    }
}

/// Blends a label map over the image (`opacity` of the class colour, `palette[label]`) and adds a
/// legend panel on the right listing the classes present, most pixels first (at most as many
/// as fit). Labels outside the palette (e.g. 255 = ignore) are left undrawn.
pub fn overlay_segmap(
    img: &RgbImage,
    map: &pvt_types::SegMap,
    palette: &[[u8; 3]],
    names: &[String],
    opacity: f32,
) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let size = map.size();
    assert!(
        size.width == w as usize && size.height == h as usize,
        "label map and image sizes differ"
    );
    let a = opacity.clamp(0.0, 1.0);
    let mut counts = vec![0usize; palette.len()];
    let scale = if h > 700 { 2 } else { 1 };
    let row_h = (8 * scale + 6) as u32;
    let longest = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(8)
        .min(24) as i32;
    let panel = (24 + text_width(&"x".repeat(longest as usize + 8), scale)) as u32;
    let mut out = RgbImage::from_pixel(w + panel, h, Rgb([255, 255, 255]));
    for (i, (p, &l)) in img.pixels().zip(map.labels()).enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        let c = match palette.get(l as usize) {
            Some(c) => {
                counts[l as usize] += 1;
                Rgb(std::array::from_fn(|k| {
                    ((1.0 - a) * p[k] as f32 + a * c[k] as f32).round() as u8
                }))
            }
            None => *p,
        };
        out.put_pixel(x, y, c);
    }
    let mut present: Vec<usize> = (0..palette.len()).filter(|&k| counts[k] > 0).collect();
    present.sort_by(|&x, &y| counts[y].cmp(&counts[x]).then(x.cmp(&y)));
    let total = (w * h) as f32;
    for (row, &k) in present.iter().take((h / row_h) as usize).enumerate() {
        let y = (row as u32 * row_h + 3) as i32;
        let x = (w + 6) as i32;
        let [r, g, b] = palette[k];
        fill_rect(&mut out, x, y, x + 8 * scale, y + 8 * scale, Rgb([r, g, b]));
        let name: String = names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("class {k}"))
            .chars()
            .take(24)
            .collect();
        let label = format!("{name} {:.0}%", 100.0 * counts[k] as f32 / total);
        text(
            &mut out,
            x + 8 * scale + 6,
            y,
            &label,
            Rgb([0, 0, 0]),
            scale,
        );
    }
    out
}

#[cfg(test)]
mod overlay_tests {
    use super::*;

    #[test]
    fn overlay_blends_and_lists_classes() {
        let img = RgbImage::from_pixel(40, 30, Rgb([0, 0, 0]));
        let mut labels = vec![0u16; 40 * 30];
        for l in labels.iter_mut().take(40 * 10) {
            *l = 1;
        }
        labels[40 * 30 - 1] = 255;
        let map = pvt_types::SegMap::new(pvt_types::ImageSize::new(30, 40), labels).unwrap();
        let pal = [[200, 0, 0], [0, 200, 0]];
        let out = overlay_segmap(&img, &map, &pal, &["wall".into(), "tree".into()], 0.5);
        assert!(out.width() > 40);
        assert_eq!(*out.get_pixel(0, 20), Rgb([100, 0, 0]));
        assert_eq!(*out.get_pixel(0, 0), Rgb([0, 100, 0]));
        assert_eq!(*out.get_pixel(39, 29), Rgb([0, 0, 0])); // ignore label untouched
                                                            // legend swatch of the most frequent class (wall, 2/3 of the pixels) comes first
        assert_eq!(*out.get_pixel(46 + 1, 3 + 1), Rgb([200, 0, 0]));
    }
}
