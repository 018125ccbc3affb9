//! A deterministic synthetic dataset for detection, instance segmentation and semantic
//! segmentation: coloured shapes of [`CLASS_NAMES`] on textured backgrounds.
//!
//! # What an image holds
//!
//! Each image has a background (per-pixel noise, a linear or radial gradient, stripes, a rotated
//! checkerboard or smooth colour blobs) and `min_objects..=max_objects` shapes of random class,
//! colour (kept away from the background's colours), shading, rotation, position and size. Sizes
//! are drawn in COCO's three area ranges (small `< 32²`, medium `32²..96²`, large `> 96²` pixels,
//! before occlusion and clipping) so that all three AP buckets are populated, or, with
//! [`SynthConfig::object_sides`], with a side length `sqrt(area)` uniform in a given range. Shapes are painted
//! in order, later over earlier: an instance's mask, box and area are those of its **visible**
//! part. Shapes whose visible part has fewer than `min_area` pixels are removed from the picture
//! altogether (not only from the annotations), so that every visible shape is annotated and the
//! semantic label map is exactly the union of the instance masks. Rings have a hole through which
//! what lies below shows. Pixels belong to a shape when their centre `(x + 0.5, y + 0.5)` lies
//! inside it: masks and pictures agree to the pixel (no anti-aliasing). Last, mild per-pixel
//! noise is added to the whole picture.
//!
//! # Determinism
//!
//! Image `i` is a pure function of `(seed, i, size, min_objects, max_objects, min_area,
//! object_sides)`: its
//! random numbers come from a ChaCha8 stream keyed by the seed and the index (not from a shared
//! stream), so it is the same whatever the number of images, the split fraction or the thread
//! schedule. The drawing uses only IEEE-exact operations (`+ - * /`, `sqrt`, `floor`, `round`):
//! rotations are random unit vectors rather than angles, so no `sin`/`cos`/`exp`/`ln` whose last
//! bit depends on the platform's maths library. Which split an image falls in depends only on
//! its index and the fraction (see [`SynthConfig::split_of`]).
//!
//! # Files ([`generate`])
//!
//! ```text
//! DIR/images/{train,val}/synth_000123.png      RGB pictures
//! DIR/labels/{train,val}/synth_000123.png      8-bit semantic labels, ADE20K style
//! DIR/annotations/instances_{train,val}.json   COCO instances, compressed RLE masks
//! DIR/classes.txt                              K class names, one per line, category id order
//! DIR/palette.txt                              "r g b" per class, same order
//! DIR/synth.json                               the configuration and the counts
//! DIR/preview.png                              the first images with masks and boxes drawn
//! ```
//!
//! Semantic labels: 0 is background and class `c` is its category id `c` (`1..=K`), as ADE20K's
//! annotation PNGs are stored. With mmsegmentation's `reduce_zero_label=True` (and
//! `pvt eval ade20k --reduce-zero-label`) background becomes 255 (ignored) and category id `c`
//! becomes class index `c - 1`, the contiguous index the detectors use too. To learn background
//! as a class instead, read them without `reduce_zero_label` and with `K + 1` classes.

use crate::coco::{CocoAnnotation, CocoCategory, CocoFile, CocoImage, CocoInfo, CocoSegmentation};
use crate::write_atomic;
use anyhow::{bail, Context, Result};
use image::{GrayImage, Rgb, RgbImage};
use indicatif::ProgressBar;
use pvt_types::{BitMask, ClassIdx, Detections, ImageSize, Rle};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// The class names; category id `c` (and semantic label `c`) is `CLASS_NAMES[c - 1]`.
pub const CLASS_NAMES: [&str; 6] = ["circle", "square", "triangle", "star", "ring", "cross"];

/// Version of the generator's output, written to `synth.json` and mixed into the random key:
/// it changes whenever the pictures of a given seed change.
pub const FORMAT_VERSION: u32 = 1;

/// COCO's "small" bound: objects with area `< 32²` pixels.
pub const SMALL_AREA: u64 = 32 * 32;
/// COCO's "large" bound: objects with area `> 96²` pixels.
pub const LARGE_AREA: u64 = 96 * 96;

/// Which split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training split.
    Train,
    /// Validation split.
    Val,
}

impl Split {
    /// Both splits, train first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Val];

    /// `"train"` or `"val"`: folder and file-name part.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// COCO's object size buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeBucket {
    /// Area `< 32²`.
    Small,
    /// Area `32²..=96²`.
    Medium,
    /// Area `> 96²`.
    Large,
}

impl SizeBucket {
    /// The bucket of an area in pixels.
    pub fn of_area(area: u64) -> Self {
        if area < SMALL_AREA {
            Self::Small
        } else if area <= LARGE_AREA {
            Self::Medium
        } else {
            Self::Large
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthConfig {
    /// Number of images over both splits.
    pub images: usize,
    /// Random seed.
    pub seed: u64,
    /// Image size `(height, width)`.
    pub size: ImageSize,
    /// Share of the images that go to the validation split, `0..=1`.
    pub val_fraction: f64,
    /// Fewest shapes drawn per image (before removing hidden ones).
    pub min_objects: usize,
    /// Most shapes drawn per image.
    pub max_objects: usize,
    /// Shapes with fewer visible pixels are removed from the picture.
    pub min_area: u64,
    /// Number of images drawn into `preview.png` (0: no preview).
    pub preview: usize,
    /// Side length range `(min, max)` in pixels of a shape's target area (`sqrt(area)`, before
    /// occlusion), drawn uniformly. `None`: COCO-like, small 40%, medium 40%, large 20%.
    pub object_sides: Option<(f64, f64)>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            images: 200,
            seed: 0,
            size: ImageSize::new(256, 320),
            val_fraction: 0.2,
            min_objects: 2,
            max_objects: 8,
            min_area: 16,
            preview: 8,
            object_sides: None,
        }
    }
}

impl SynthConfig {
    /// Reject settings that cannot be honoured.
    pub fn validate(&self) -> Result<()> {
        let ImageSize { height, width } = self.size;
        if !(16..=8192).contains(&height) || !(16..=8192).contains(&width) {
            bail!("image size {height}x{width} (HxW): each side must be in 16..=8192");
        }
        if !(0.0..=1.0).contains(&self.val_fraction) {
            bail!("val fraction {} is not in 0..=1", self.val_fraction);
        }
        if self.min_objects > self.max_objects {
            bail!(
                "min objects {} > max objects {}",
                self.min_objects,
                self.max_objects
            );
        }
        if self.max_objects > 1000 {
            bail!("max objects {} > 1000", self.max_objects);
        }
        if self.min_area == 0 {
            bail!("min area must be at least 1 pixel");
        }
        if let Some((lo, hi)) = self.object_sides {
            if !(lo.is_finite() && hi.is_finite() && 1.0 <= lo && lo <= hi) {
                bail!("object sides {lo}..{hi}: need 1 <= min <= max");
            }
        }
        if self.images > 999_999_999 {
            bail!("at most 999999999 images");
        }
        Ok(())
    }

    /// The split of image `index`: validation when `floor((index + 1) * f) > floor(index * f)`
    /// for the fraction `f`, which spreads `floor(n * f)` validation images evenly over the first
    /// `n` (every fifth for 0.2) and does not depend on the number of images.
    pub fn split_of(&self, index: usize) -> Split {
        let f = self.val_fraction;
        if ((index + 1) as f64 * f).floor() > (index as f64 * f).floor() {
            Split::Val
        } else {
            Split::Train
        }
    }

    /// Number of images in `split`.
    pub fn split_len(&self, split: Split) -> usize {
        (0..self.images)
            .filter(|&i| self.split_of(i) == split)
            .count()
    }
}

/// The file stem of image `index`: `synth_000123`.
pub fn file_stem(index: usize) -> String {
    format!("synth_{index:06}")
}

/// The index in a file name written by [`generate`] (`synth_000123.png`).
fn parse_file_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("synth_")?.strip_suffix(".png")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One annotated object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Contiguous class index (`category id - 1`).
    pub class: ClassIdx,
    /// The visible pixels.
    pub mask: BitMask,
    /// Tight box around the visible pixels, `[x, y, w, h]` in pixels (COCO's, and pycocotools'
    /// `toBbox`: `w = x_max - x_min + 1`).
    pub bbox: [u32; 4],
    /// Number of visible pixels.
    pub area: u64,
}

impl Instance {
    /// The COCO category id, `class + 1`.
    pub fn category_id(&self) -> u64 {
        u64::from(self.class.0) + 1
    }

    /// The box as `[x1, y1, x2, y2]` (the workspace convention: `x2 = x + w`).
    pub fn bbox_xyxy(&self) -> [f32; 4] {
        let [x, y, w, h] = self.bbox.map(|v| v as f32);
        [x, y, x + w, y + h]
    }

    /// The mask's run-length encoding.
    pub fn rle(&self) -> Rle {
        Rle::encode(&self.mask)
    }

    /// COCO's size bucket of the visible area.
    pub fn size_bucket(&self) -> SizeBucket {
        SizeBucket::of_area(self.area)
    }
}

/// One rendered image with its annotations.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image index.
    pub index: usize,
    /// The picture.
    pub image: RgbImage,
    /// Its objects, bottom first (paint order).
    pub instances: Vec<Instance>,
    /// Semantic labels: 0 background, `c` for category id `c`.
    pub semantic: GrayImage,
}

// ---------------------------------------------------------------------------------------------
// Random numbers: only the ChaCha8 stream (value-stable by specification) and IEEE arithmetic.

struct Rng(ChaCha8Rng);

impl Rng {
    fn for_image(seed: u64, index: usize) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&(index as u64).to_le_bytes());
        key[16..28].copy_from_slice(b"pvt-synth/v\0");
        key[28..32].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        Self(ChaCha8Rng::from_seed(key))
    }

    /// Uniform in `[0, 1)`, 53 bits.
    fn u01(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.u01()
    }

    /// Uniform in `0..n` (`n > 0`), by a widening multiply.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.0.next_u64()) * n as u128) >> 64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        self.u01() < p
    }

    /// A uniformly distributed direction `(cos, sin)`, by rejection from the unit disk.
    fn direction(&mut self) -> (f64, f64) {
        loop {
            let (x, y) = (self.range(-1.0, 1.0), self.range(-1.0, 1.0));
            let r2 = x * x + y * y;
            if (0.01..=1.0).contains(&r2) {
                let r = r2.sqrt();
                return (x / r, y / r);
            }
        }
    }

    fn colour(&mut self) -> [f64; 3] {
        [
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
            self.range(0.0, 255.0),
        ]
    }
}

fn lerp(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    std::array::from_fn(|k| a[k] + (b[k] - a[k]) * t)
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d: [f64; 3] = std::array::from_fn(|k| a[k] - b[k]);
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

// ---------------------------------------------------------------------------------------------
// Backgrounds.

enum Background {
    /// Flat colour with strong per-pixel noise.
    Noise { base: [f64; 3], amp: f64 },
    /// Linear gradient along `dir`, over the image's extent in that direction.
    Gradient {
        a: [f64; 3],
        b: [f64; 3],
        dir: (f64, f64),
        lo: f64,
        span: f64,
    },
    /// Radial gradient from `(cx, cy)`, reaching `b` at distance `radius`.
    Radial {
        a: [f64; 3],
        b: [f64; 3],
        cx: f64,
        cy: f64,
        radius: f64,
    },
    /// Hard stripes across `dir`: `duty` of each period in `a`, the rest in `b`.
    Stripes {
        a: [f64; 3],
        b: [f64; 3],
        dir: (f64, f64),
        period: f64,
        duty: f64,
    },
    /// Rotated checkerboard.
    Checker {
        a: [f64; 3],
        b: [f64; 3],
        dir: (f64, f64),
        cell: f64,
    },
    /// Smooth colour blobs: random colours on a coarse grid, smoothstep-interpolated.
    Blobs {
        grid: Vec<[f64; 3]>,
        cols: usize,
        cell: f64,
    },
}

impl Background {
    fn sample(rng: &mut Rng, size: ImageSize) -> Self {
        let (w, h) = (size.width as f64, size.height as f64);
        match rng.below(6) {
            0 => Self::Noise {
                base: rng.colour(),
                amp: rng.range(15.0, 45.0),
            },
            1 => {
                let (a, b, dir) = (rng.colour(), rng.colour(), rng.direction());
                let proj = [0.0, dir.0 * w, dir.1 * h, dir.0 * w + dir.1 * h];
                let lo = proj.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = proj.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Self::Gradient {
                    a,
                    b,
                    dir,
                    lo,
                    span: (hi - lo).max(1.0),
                }
            }
            2 => Self::Radial {
                a: rng.colour(),
                b: rng.colour(),
                cx: rng.range(0.0, w),
                cy: rng.range(0.0, h),
                radius: rng.range(0.3, 1.0) * (w * w + h * h).sqrt(),
            },
            3 => Self::Stripes {
                a: rng.colour(),
                b: rng.colour(),
                dir: rng.direction(),
                period: rng.range(6.0, 40.0),
                duty: rng.range(0.3, 0.7),
            },
            4 => Self::Checker {
                a: rng.colour(),
                b: rng.colour(),
                dir: rng.direction(),
                cell: rng.range(8.0, 48.0),
            },
            _ => {
                let cell = rng.range(24.0, 96.0);
                let cols = (w / cell).floor() as usize + 2;
                let rows = (h / cell).floor() as usize + 2;
                let (a, b) = (rng.colour(), rng.colour());
                let grid = (0..cols * rows)
                    .map(|_| {
                        let t = rng.u01();
                        let c = lerp(a, b, t);
                        std::array::from_fn(|k| (c[k] + rng.range(-30.0, 30.0)).clamp(0.0, 255.0))
                    })
                    .collect();
                Self::Blobs { grid, cols, cell }
            }
        }
    }

    /// The colours a shape should stay away from.
    fn key_colours(&self) -> Vec<[f64; 3]> {
        match self {
            Self::Noise { base, .. } => vec![*base],
            Self::Gradient { a, b, .. }
            | Self::Radial { a, b, .. }
            | Self::Stripes { a, b, .. }
            | Self::Checker { a, b, .. } => vec![*a, *b, lerp(*a, *b, 0.5)],
            Self::Blobs { grid, .. } => grid.clone(),
        }
    }

    /// The colour at pixel centre `(px, py)`; `rng` is drawn from only for `Noise`.
    fn colour_at(&self, px: f64, py: f64, rng: &mut Rng) -> [f64; 3] {
        match self {
            Self::Noise { base, amp } => std::array::from_fn(|k| base[k] + rng.range(-*amp, *amp)),
            Self::Gradient {
                a,
                b,
                dir,
                lo,
                span,
            } => lerp(*a, *b, (dir.0 * px + dir.1 * py - lo) / span),
            Self::Radial {
                a,
                b,
                cx,
                cy,
                radius,
            } => {
                let d = ((px - cx) * (px - cx) + (py - cy) * (py - cy)).sqrt() / radius;
                lerp(*a, *b, d.min(1.0))
            }
            Self::Stripes {
                a,
                b,
                dir,
                period,
                duty,
            } => {
                let p = (dir.0 * px + dir.1 * py) / period;
                if p - p.floor() < *duty {
                    *a
                } else {
                    *b
                }
            }
            Self::Checker { a, b, dir, cell } => {
                let u = ((dir.0 * px + dir.1 * py) / cell).floor() as i64;
                let v = ((-dir.1 * px + dir.0 * py) / cell).floor() as i64;
                if (u + v).rem_euclid(2) == 0 {
                    *a
                } else {
                    *b
                }
            }
            Self::Blobs { grid, cols, cell } => {
                let (gx, gy) = (px / cell, py / cell);
                let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
                let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
                let (tx, ty) = (smooth(gx - gx.floor()), smooth(gy - gy.floor()));
                let at = |x: usize, y: usize| grid[y * cols + x];
                let top = lerp(at(ix, iy), at(ix + 1, iy), tx);
                let bottom = lerp(at(ix, iy + 1), at(ix + 1, iy + 1), tx);
                lerp(top, bottom, ty)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes, in unit coordinates: every shape lies inside the unit disk around its centre.

const SQRT3_2: f64 = 0.866_025_403_784_438_6;
const S36: f64 = 0.587_785_252_292_473_1;
const C36: f64 = 0.809_016_994_374_947_5;
const S72: f64 = 0.951_056_516_295_153_5;
const C72: f64 = 0.309_016_994_374_947_4;
/// Directions of a five-pointed star's ten vertices, starting straight up (y grows downwards).
const STAR_DIRS: [(f64, f64); 10] = [
    (0.0, -1.0),
    (S36, -C36),
    (S72, -C72),
    (S72, C72),
    (S36, C36),
    (0.0, 1.0),
    (-S36, C36),
    (-S72, C72),
    (-S72, -C72),
    (-S36, -C36),
];
const TRIANGLE: [(f64, f64); 3] = [(0.0, -1.0), (SQRT3_2, 0.5), (-SQRT3_2, 0.5)];
const SQUARE_HALF: f64 = 0.7;
const CROSS_ARM: f64 = 0.92;

#[derive(Clone, Copy)]
enum Kind {
    Circle,
    Square,
    Triangle,
    Star { inner: f64 },
    Ring { inner: f64 },
    Cross { half_width: f64 },
}

impl Kind {
    fn sample(class: usize, rng: &mut Rng) -> Self {
        match class {
            0 => Self::Circle,
            1 => Self::Square,
            2 => Self::Triangle,
            3 => Self::Star {
                inner: rng.range(0.38, 0.55),
            },
            4 => Self::Ring {
                inner: rng.range(0.45, 0.7),
            },
            _ => Self::Cross {
                half_width: rng.range(0.2, 0.33),
            },
        }
    }

    /// Area of the unit shape.
    fn unit_area(self) -> f64 {
        const PI: f64 = std::f64::consts::PI;
        match self {
            Self::Circle => PI,
            Self::Square => 4.0 * SQUARE_HALF * SQUARE_HALF,
            Self::Triangle => 3.0 * SQRT3_2 / 2.0,
            Self::Star { inner } => 5.0 * inner * S36,
            Self::Ring { inner } => PI * (1.0 - inner * inner),
            Self::Cross { half_width } => {
                8.0 * CROSS_ARM * half_width - 4.0 * half_width * half_width
            }
        }
    }

    fn contains(self, u: f64, v: f64) -> bool {
        match self {
            Self::Circle => u * u + v * v <= 1.0,
            Self::Square => u.abs() <= SQUARE_HALF && v.abs() <= SQUARE_HALF,
            Self::Triangle => in_polygon(u, v, &TRIANGLE),
            Self::Star { inner } => {
                let pts: [(f64, f64); 10] = std::array::from_fn(|k| {
                    let r = if k % 2 == 0 { 1.0 } else { inner };
                    (STAR_DIRS[k].0 * r, STAR_DIRS[k].1 * r)
                });
                in_polygon(u, v, &pts)
            }
            Self::Ring { inner } => {
                let r2 = u * u + v * v;
                r2 <= 1.0 && r2 >= inner * inner
            }
            Self::Cross { half_width } => {
                let (au, av) = (u.abs(), v.abs());
                (au <= half_width && av <= CROSS_ARM) || (av <= half_width && au <= CROSS_ARM)
            }
        }
    }
}

/// Even-odd point-in-polygon test.
fn in_polygon(u: f64, v: f64, pts: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let mut j = pts.len() - 1;
    for (i, &(xi, yi)) in pts.iter().enumerate() {
        let (xj, yj) = pts[j];
        if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

struct Shape {
    class: usize,
    kind: Kind,
    cx: f64,
    cy: f64,
    /// Radius of the unit disk in pixels.
    r: f64,
    /// Rotation `(cos, sin)`.
    rot: (f64, f64),
    colour: [f64; 3],
    /// Brightness slope along the shape's own axes.
    shade: (f64, f64),
    /// Darker stripes across the shape: period in unit coordinates.
    stripes: Option<f64>,
}

impl Shape {
    /// Pixel centre `(px, py)` in the shape's unit coordinates.
    fn local(&self, px: f64, py: f64) -> (f64, f64) {
        let (dx, dy) = (px - self.cx, py - self.cy);
        let (c, s) = self.rot;
        ((c * dx + s * dy) / self.r, (c * dy - s * dx) / self.r)
    }

    /// Pixel range `(x0, x1, y0, y1)`, end-exclusive, that can hold the shape.
    fn bounds(&self, size: ImageSize) -> (usize, usize, usize, usize) {
        let clip = |v: f64, n: usize| v.clamp(0.0, n as f64) as usize;
        (
            clip((self.cx - self.r - 1.0).floor(), size.width),
            clip((self.cx + self.r + 1.0).ceil(), size.width),
            clip((self.cy - self.r - 1.0).floor(), size.height),
            clip((self.cy + self.r + 1.0).ceil(), size.height),
        )
    }

    fn colour_at(&self, u: f64, v: f64) -> [f64; 3] {
        let mut gain = 1.0 + self.shade.0 * u + self.shade.1 * v;
        if let Some(period) = self.stripes {
            let p = (u + 1.0) / period;
            if (p.floor() as i64) % 2 == 1 {
                gain *= 0.65;
            }
        }
        self.colour.map(|c| c * gain)
    }
}

/// A shape colour at least `min_dist` from every colour in `avoid` (the best of 24 tries).
fn contrasting_colour(rng: &mut Rng, avoid: &[[f64; 3]], min_dist: f64) -> [f64; 3] {
    let mut best = ([0.0; 3], f64::NEG_INFINITY);
    for _ in 0..24 {
        let c = rng.colour();
        let d = avoid
            .iter()
            .map(|&a| dist(a, c))
            .fold(f64::INFINITY, f64::min);
        if d > best.1 {
            best = (c, d);
        }
        if d >= min_dist {
            break;
        }
    }
    best.0
}

fn sample_shapes(rng: &mut Rng, cfg: &SynthConfig, bg: &Background) -> Vec<Shape> {
    let size = cfg.size;
    let (w, h) = (size.width as f64, size.height as f64);
    let n = cfg.min_objects + rng.below(cfg.max_objects - cfg.min_objects + 1);
    let bg_colours = bg.key_colours();
    let mut used: Vec<[f64; 3]> = Vec::new();
    let max_area = 0.4 * w * h;
    (0..n)
        .map(|_| {
            let class = rng.below(CLASS_NAMES.len());
            let kind = Kind::sample(class, rng);
            // Target area before occlusion: the side length sqrt(area) is uniform within a COCO
            // bucket, small 40%, medium 40%, large 20%.
            let (lo, hi) = match cfg.object_sides {
                Some((lo, hi)) => (lo * lo, hi * hi),
                None => match rng.u01() {
                    t if t < 0.4 => (64.0, SMALL_AREA as f64),
                    t if t < 0.8 => (SMALL_AREA as f64, LARGE_AREA as f64),
                    _ => (LARGE_AREA as f64, 3.5 * LARGE_AREA as f64),
                },
            };
            let hi = hi.min(max_area);
            let lo = lo.min(0.5 * hi);
            let side = rng.range(lo.sqrt(), hi.sqrt());
            let r = (side * side / kind.unit_area()).sqrt();
            let (cx, cy) = (rng.range(0.0, w), rng.range(0.0, h));
            let rot = rng.direction();
            let mut avoid = bg_colours.clone();
            avoid.extend_from_slice(&used);
            let colour = contrasting_colour(rng, &avoid, 90.0);
            used.push(colour);
            let shade = (rng.range(-0.25, 0.25), rng.range(-0.25, 0.25));
            let stripes = rng.chance(0.2).then(|| rng.range(0.15, 0.4));
            Shape {
                class,
                kind,
                cx,
                cy,
                r,
                rot,
                colour,
                shade,
                stripes,
            }
        })
        .collect()
}

/// Paint the kept shapes' indices + 1 (0: background) into an ownership map; later shapes win.
fn paint_owners(shapes: &[Shape], keep: &[bool], size: ImageSize) -> Vec<u16> {
    let mut owner = vec![0u16; size.area()];
    for (k, s) in shapes.iter().enumerate().filter(|&(k, _)| keep[k]) {
        let (x0, x1, y0, y1) = s.bounds(size);
        for y in y0..y1 {
            for x in x0..x1 {
                let (u, v) = s.local(x as f64 + 0.5, y as f64 + 0.5);
                if s.kind.contains(u, v) {
                    owner[y * size.width + x] = k as u16 + 1;
                }
            }
        }
    }
    owner
}

/// Render image `index` of the dataset `cfg` describes (`cfg.images`, `val_fraction` and
/// `preview` play no part).
pub fn render_sample(cfg: &SynthConfig, index: usize) -> Sample {
    let size = cfg.size;
    let (w, h) = (size.width, size.height);
    let mut rng = Rng::for_image(cfg.seed, index);
    let bg = Background::sample(&mut rng, size);
    let shapes = sample_shapes(&mut rng, cfg, &bg);

    // Occlusion: drop shapes whose visible part is too small. Removing a shape only uncovers
    // the others, so one repaint settles it.
    let mut keep = vec![true; shapes.len()];
    let mut owner = paint_owners(&shapes, &keep, size);
    let mut visible = vec![0u64; shapes.len()];
    for &o in &owner {
        if o > 0 {
            visible[o as usize - 1] += 1;
        }
    }
    for (k, &v) in visible.iter().enumerate() {
        keep[k] = v >= cfg.min_area;
    }
    if keep.iter().any(|&k| !k) {
        owner = paint_owners(&shapes, &keep, size);
    }

    let noise = rng.range(0.0, 8.0);
    let mut image = RgbImage::new(w as u32, h as u32);
    let mut semantic = GrayImage::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let back = bg.colour_at(px, py, &mut rng);
            let o = owner[y * w + x];
            let c = if o == 0 {
                back
            } else {
                let s = &shapes[o as usize - 1];
                semantic.put_pixel(x as u32, y as u32, image::Luma([s.class as u8 + 1]));
                let (u, v) = s.local(px, py);
                s.colour_at(u, v)
            };
            let px: [u8; 3] = std::array::from_fn(|k| {
                (c[k] + rng.range(-noise, noise)).round().clamp(0.0, 255.0) as u8
            });
            image.put_pixel(x as u32, y as u32, Rgb(px));
        }
    }

    let instances = shapes
        .iter()
        .enumerate()
        .filter(|&(k, _)| keep[k])
        .map(|(k, s)| {
            let id = k as u16 + 1;
            let data: Vec<u8> = owner.iter().map(|&o| u8::from(o == id)).collect();
            let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
            let mut area = 0u64;
            for (i, &m) in data.iter().enumerate() {
                if m != 0 {
                    let (x, y) = (i % w, i / w);
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(y);
                    y1 = y1.max(y);
                    area += 1;
                }
            }
            Instance {
                class: ClassIdx(s.class as u32),
                mask: BitMask::new(size, data).expect("mask has the image size"),
                bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(|v| v as u32),
                area,
            }
        })
        .collect();
    Sample {
        index,
        image,
        instances,
        semantic,
    }
}

// ---------------------------------------------------------------------------------------------
// Pictures of samples.

/// The class colour used in previews and `palette.txt` (the same as `pvt_vis`'s box colours).
pub fn class_palette() -> Vec<[u8; 3]> {
    (0..CLASS_NAMES.len())
        .map(|c| pvt_vis::class_color(c).0)
        .collect()
}

/// A sample with its masks blended in (45%) and its boxes and class names drawn.
pub fn draw_sample(sample: &Sample) -> RgbImage {
    let mut img = sample.image.clone();
    let palette = class_palette();
    for inst in &sample.instances {
        let c = palette[inst.class.0 as usize];
        for (p, &m) in img.pixels_mut().zip(inst.mask.data()) {
            if m != 0 {
                for k in 0..3 {
                    p[k] = (0.55 * f32::from(p[k]) + 0.45 * f32::from(c[k])).round() as u8;
                }
            }
        }
    }
    let size = ImageSize::new(img.height() as usize, img.width() as usize);
    let n = sample.instances.len();
    let dets = Detections::new(
        size,
        sample.instances.iter().map(Instance::bbox_xyxy).collect(),
        vec![1.0; n],
        sample.instances.iter().map(|i| i.class).collect(),
        None,
    )
    .expect("valid boxes");
    let names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    pvt_vis::draw_detections(&mut img, &dets, &names, 0.0);
    img
}

/// Drawn samples side by side, four per row, with 4-pixel white gaps.
pub fn preview_grid(samples: &[Sample]) -> RgbImage {
    let tiles: Vec<RgbImage> = samples.iter().map(draw_sample).collect();
    let Some(first) = tiles.first() else {
        return RgbImage::new(1, 1);
    };
    let (tw, th, gap) = (first.width(), first.height(), 4u32);
    let cols = tiles.len().min(4) as u32;
    let rows = tiles.len().div_ceil(4) as u32;
    let mut out = RgbImage::from_pixel(
        cols * tw + (cols + 1) * gap,
        rows * th + (rows + 1) * gap,
        Rgb([255, 255, 255]),
    );
    for (i, t) in tiles.iter().enumerate() {
        let (c, r) = (i as u32 % 4, i as u32 / 4);
        image::imageops::replace(
            &mut out,
            t,
            i64::from(gap + c * (tw + gap)),
            i64::from(gap + r * (th + gap)),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Files.

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SynthSummary {
    /// Images in the training split.
    pub train_images: usize,
    /// Images in the validation split.
    pub val_images: usize,
    /// Annotated objects in the training split.
    pub train_instances: usize,
    /// Annotated objects in the validation split.
    pub val_instances: usize,
    /// Objects per class (both splits), in [`CLASS_NAMES`] order.
    pub per_class: Vec<usize>,
    /// Objects per COCO size bucket (small, medium, large), both splits.
    pub per_size: [usize; 3],
    /// Files of an earlier run that are not part of this dataset and were removed.
    pub removed_stale: usize,
}

fn encode_png(img: image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("PNG encoding")?;
    Ok(bytes)
}

/// What one image contributes to the annotation files.
struct ImageRecord {
    split: Split,
    image: CocoImage,
    /// Annotations without their ids (given per split afterwards).
    anns: Vec<CocoAnnotation>,
    classes: Vec<usize>,
    buckets: Vec<SizeBucket>,
}

fn write_one(cfg: &SynthConfig, out: &Path, index: usize) -> Result<ImageRecord> {
    let sample = render_sample(cfg, index);
    let split = cfg.split_of(index);
    let stem = file_stem(index);
    let file_name = format!("{stem}.png");
    let image_id = index as u64 + 1;
    write_atomic(
        &out.join("images").join(split.name()).join(&file_name),
        &encode_png(image::DynamicImage::ImageRgb8(sample.image))?,
    )?;
    write_atomic(
        &out.join("labels").join(split.name()).join(&file_name),
        &encode_png(image::DynamicImage::ImageLuma8(sample.semantic))?,
    )?;
    let anns = sample
        .instances
        .iter()
        .map(|inst| CocoAnnotation {
            id: 0,
            image_id,
            category_id: inst.category_id(),
            bbox: inst.bbox.map(f64::from),
            area: inst.area as f64,
            iscrowd: 0,
            segmentation: CocoSegmentation::from_rle(&inst.rle()),
        })
        .collect();
    Ok(ImageRecord {
        split,
        image: CocoImage {
            id: image_id,
            file_name,
            width: cfg.size.width as u32,
            height: cfg.size.height as u32,
        },
        anns,
        classes: sample
            .instances
            .iter()
            .map(|i| i.class.0 as usize)
            .collect(),
        buckets: sample.instances.iter().map(Instance::size_bucket).collect(),
    })
}

/// The category records: ids `1..=K` in [`CLASS_NAMES`] order.
pub fn coco_categories() -> Vec<CocoCategory> {
    CLASS_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| CocoCategory {
            id: i as u64 + 1,
            name: n.to_string(),
            supercategory: "shape".to_string(),
        })
        .collect()
}

/// Remove `synth_*.png` files of an earlier run that are not in this dataset's split folders
/// (fewer images, or another split fraction), and leftover temporary files. Nothing else in
/// `out` is touched.
fn remove_stale(cfg: &SynthConfig, out: &Path) -> Result<usize> {
    let mut removed = 0;
    for top in ["images", "labels"] {
        for split in Split::ALL {
            let dir = out.join(top).join(split.name());
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let stale = match parse_file_name(name) {
                    Some(i) => i >= cfg.images || cfg.split_of(i) != split,
                    None => name.starts_with(".synth_") && name.contains(".png.tmp"),
                };
                if stale {
                    std::fs::remove_file(e.path())
                        .with_context(|| format!("cannot remove {}", e.path().display()))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// Write the dataset under `out` (see the module docs for the layout), in parallel, ticking
/// `progress` once per image. Every file is written atomically, so the command can be rerun
/// (or rerun after an interruption) and converges to the same bytes.
pub fn generate(cfg: &SynthConfig, out: &Path, progress: &ProgressBar) -> Result<SynthSummary> {
    cfg.validate()?;
    for top in ["images", "labels"] {
        for split in Split::ALL {
            let d = out.join(top).join(split.name());
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
    }
    let ann_dir = out.join("annotations");
    std::fs::create_dir_all(&ann_dir)
        .with_context(|| format!("cannot create {}", ann_dir.display()))?;

    let records: Vec<ImageRecord> = (0..cfg.images)
        .into_par_iter()
        .map(|i| {
            let r = write_one(cfg, out, i).with_context(|| format!("image {i}"));
            progress.inc(1);
            r
        })
        .collect::<Result<_>>()?;

    let mut summary = SynthSummary {
        train_images: 0,
        val_images: 0,
        train_instances: 0,
        val_instances: 0,
        per_class: vec![0; CLASS_NAMES.len()],
        per_size: [0; 3],
        removed_stale: 0,
    };
    for r in &records {
        for &c in &r.classes {
            summary.per_class[c] += 1;
        }
        for &b in &r.buckets {
            summary.per_size[b as usize] += 1;
        }
    }
    for split in Split::ALL {
        let mut images = Vec::new();
        let mut annotations = Vec::new();
        for r in records.iter().filter(|r| r.split == split) {
            images.push(r.image.clone());
            for a in &r.anns {
                let mut a = a.clone();
                a.id = annotations.len() as u64 + 1;
                annotations.push(a);
            }
        }
        match split {
            Split::Train => {
                summary.train_images = images.len();
                summary.train_instances = annotations.len();
            }
            Split::Val => {
                summary.val_images = images.len();
                summary.val_instances = annotations.len();
            }
        }
        let file = CocoFile {
            info: CocoInfo {
                description: format!(
                    "pvt synth: synthetic shapes, seed {}, {} split",
                    cfg.seed,
                    split.name()
                ),
                version: FORMAT_VERSION.to_string(),
            },
            licenses: Vec::new(),
            images,
            categories: coco_categories(),
            annotations,
        };
        let bytes = serde_json::to_vec(&file).context("serializing annotations")?;
        write_atomic(
            &ann_dir.join(format!("instances_{}.json", split.name())),
            &bytes,
        )?;
    }

    let palette = class_palette();
    write_atomic(
        &out.join("classes.txt"),
        (CLASS_NAMES.join("\n") + "\n").as_bytes(),
    )?;
    let pal: String = palette
        .iter()
        .map(|[r, g, b]| format!("{r} {g} {b}\n"))
        .collect();
    write_atomic(&out.join("palette.txt"), pal.as_bytes())?;

    summary.removed_stale = remove_stale(cfg, out)?;
    let meta = serde_json::json!({
        "generator": "pvt synth",
        "format_version": FORMAT_VERSION,
        "config": cfg,
        "classes": CLASS_NAMES,
        "palette": palette,
        "category_ids": "1..=K in classes order; contiguous class index = category id - 1",
        "labels": "8-bit PNG, 0 = background, c = category id c; with reduce_zero_label, \
                   background -> 255 (ignored) and c -> c - 1",
        "summary": summary,
    });
    write_atomic(
        &out.join("synth.json"),
        &serde_json::to_vec_pretty(&meta).context("serializing synth.json")?,
    )?;

    if cfg.preview > 0 && cfg.images > 0 {
        let samples: Vec<Sample> = (0..cfg.preview.min(cfg.images))
            .into_par_iter()
            .map(|i| render_sample(cfg, i))
            .collect();
        write_atomic(
            &out.join("preview.png"),
            &encode_png(image::DynamicImage::ImageRgb8(preview_grid(&samples)))?,
        )?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spreads_the_fraction_and_ignores_the_count() {
        let cfg = SynthConfig {
            images: 100,
            val_fraction: 0.2,
            ..SynthConfig::default()
        };
        assert_eq!(cfg.split_len(Split::Val), 20);
        let val: Vec<usize> = (0..10).filter(|&i| cfg.split_of(i) == Split::Val).collect();
        assert_eq!(val, vec![4, 9]);
        let none = SynthConfig {
            val_fraction: 0.0,
            ..cfg.clone()
        };
        assert_eq!(none.split_len(Split::Val), 0);
        let all = SynthConfig {
            val_fraction: 1.0,
            ..cfg
        };
        assert_eq!(all.split_len(Split::Train), 0);
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_stem(42), "synth_000042");
        assert_eq!(parse_file_name("synth_000042.png"), Some(42));
        assert_eq!(parse_file_name("synth_1234567.png"), Some(1_234_567));
        assert_eq!(parse_file_name("synth_42.png"), None);
        assert_eq!(parse_file_name("other_000042.png"), None);
        assert_eq!(parse_file_name("synth_000042.jpg"), None);
    }

    #[test]
    fn unit_shapes_fit_the_unit_disk_and_have_their_area() {
        // Sample each kind on a fine grid over [-1.1, 1.1]²: nothing outside the unit disk, and
        // the covered area matches `unit_area`.
        let kinds = [
            Kind::Circle,
            Kind::Square,
            Kind::Triangle,
            Kind::Star { inner: 0.45 },
            Kind::Ring { inner: 0.6 },
            Kind::Cross { half_width: 0.3 },
        ];
        let n = 800;
        let step = 2.2 / n as f64;
        for kind in kinds {
            let mut inside = 0usize;
            for i in 0..n {
                for j in 0..n {
                    let (u, v) = (
                        -1.1 + (i as f64 + 0.5) * step,
                        -1.1 + (j as f64 + 0.5) * step,
                    );
                    if kind.contains(u, v) {
                        assert!(u * u + v * v <= 1.0 + 1e-9, "outside the unit disk");
                        inside += 1;
                    }
                }
            }
            let area = inside as f64 * step * step;
            let rel = (area - kind.unit_area()).abs() / kind.unit_area();
            assert!(rel < 0.01, "area {area} vs {}", kind.unit_area());
        }
    }

    #[test]
    fn directions_are_unit_vectors() {
        let mut rng = Rng::for_image(1, 2);
        for _ in 0..1000 {
            let (c, s) = rng.direction();
            assert!((c * c + s * s - 1.0).abs() < 1e-12);
        }
    }
}
