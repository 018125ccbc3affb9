//! COCO-format detection data for training: the dataset reader, mmdetection's training
//! pipeline (resize with optional scale jitter, horizontal flip, normalise, pad to 32), batching,
//! and the seeded sample order.
//!
//! # Determinism
//!
//! Nothing here keeps random state between calls. The order of epoch `e` is a shuffle drawn from
//! a ChaCha8 stream keyed by `(seed, e)`, and the augmentation of the sample at position `p` of
//! that order from one keyed by `(seed, e, p)`. A batch is therefore a pure function of
//! `(seed, epoch, batch index)`: a resumed run sees exactly the batches an uninterrupted one does,
//! whatever the thread schedule of the parallel image loading.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use candle::{Device, Tensor};
use pvt_data::coco::CocoFile;
use pvt_nn::cv_resize::mmdet_resize;
use pvt_nn::image::{load_rgb, normalize_255};
use pvt_nn::ImageBatch;
use pvt_types::{CategoryMap, ImageSize};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One image of a detection dataset with its usable boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetRecord {
    /// Image id in the annotation file.
    pub id: u64,
    /// Image file.
    pub path: PathBuf,
    /// Size recorded in the annotation file.
    pub size: ImageSize,
    /// `[x1, y1, x2, y2]` in pixels of the original image.
    pub boxes: Vec<[f32; 4]>,
    /// Contiguous class index per box (categories in ascending id order).
    pub labels: Vec<u32>,
}

/// A COCO-format detection split (`instances_*.json` + an image folder).
#[derive(Debug, Clone)]
pub struct CocoDetDataset {
    /// The images kept, in annotation-file order.
    pub records: Vec<DetRecord>,
    /// `(category id, name)` in ascending id order: class index `i` is `categories[i]`.
    pub categories: Vec<(u64, String)>,
    /// The annotation file.
    pub ann_file: PathBuf,
}

impl CocoDetDataset {
    /// Reads `ann_file`, resolving image names under `img_dir`. Boxes are kept as mmdet's
    /// `CocoDataset._parse_ann_info` keeps them: not crowd, inside the image by a non-empty
    /// area, `area > 0`, width and height at least 1. With `filter_empty`, images left without a
    /// box are dropped (mmdet's `filter_empty_gt` for training).
    pub fn load(ann_file: &Path, img_dir: &Path, filter_empty: bool) -> Result<Self> {
        let text = std::fs::read(ann_file)
            .with_context(|| format!("cannot read {}", ann_file.display()))?;
        let coco: CocoFile = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a COCO instances file", ann_file.display()))?;
        let mut categories: Vec<(u64, String)> = coco
            .categories
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect();
        categories.sort_by_key(|c| c.0);
        ensure!(
            !categories.is_empty(),
            "{}: no categories",
            ann_file.display()
        );
        let index_of = |id: u64| categories.iter().position(|c| c.0 == id);
        let mut by_image: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        for (i, a) in coco.annotations.iter().enumerate() {
            by_image.entry(a.image_id).or_default().push(i);
        }
        let mut records = Vec::new();
        for img in &coco.images {
            let (w, h) = (img.width as f64, img.height as f64);
            let mut boxes = Vec::new();
            let mut labels = Vec::new();
            for &ai in by_image.get(&img.id).map(Vec::as_slice).unwrap_or(&[]) {
                let a = &coco.annotations[ai];
                let [x1, y1, bw, bh] = a.bbox;
                let inter_w = ((x1 + bw).min(w) - x1.max(0.0)).max(0.0);
                let inter_h = ((y1 + bh).min(h) - y1.max(0.0)).max(0.0);
                if inter_w * inter_h == 0.0 || a.area <= 0.0 || bw < 1.0 || bh < 1.0 {
                    continue;
                }
                let Some(label) = index_of(a.category_id) else {
                    continue;
                };
                if a.iscrowd != 0 {
                    continue; // RetinaNet does not use ignore boxes
                }
                boxes.push([x1 as f32, y1 as f32, (x1 + bw) as f32, (y1 + bh) as f32]);
                labels.push(label as u32);
            }
            if filter_empty && boxes.is_empty() {
                continue;
            }
            records.push(DetRecord {
                id: img.id,
                path: img_dir.join(&img.file_name),
                size: ImageSize::new(img.height as usize, img.width as usize),
                boxes,
                labels,
            });
        }
        if records.is_empty() {
            bail!("{}: no usable image", ann_file.display());
        }
        Ok(Self {
            records,
            categories,
            ann_file: ann_file.to_path_buf(),
        })
    }

    /// A split of the layout `pvt synth` and COCO use: `DIR/annotations/instances_{split}.json`
    /// with images in `DIR/images/{split}/` (or `DIR/{split}2017/` for COCO itself).
    pub fn from_dir(dir: &Path, split: &str, filter_empty: bool) -> Result<Self> {
        let (ann, imgs) = split_paths(dir, split)?;
        Self::load(&ann, &imgs, filter_empty)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.categories.len()
    }

    /// Class index ↔ category id.
    pub fn category_map(&self) -> Result<CategoryMap> {
        let (ids, names) = self.categories.iter().cloned().unzip();
        Ok(CategoryMap::new(ids, names)?)
    }
}

/// The annotation file and image folder of `split` under `dir` (see
/// [`CocoDetDataset::from_dir`]).
pub fn split_paths(dir: &Path, split: &str) -> Result<(PathBuf, PathBuf)> {
    let ann = dir
        .join("annotations")
        .join(format!("instances_{split}.json"));
    ensure!(ann.is_file(), "{} does not exist", ann.display());
    let candidates = [
        dir.join("images").join(split),
        dir.join(format!("{split}2017")),
        dir.join(split),
    ];
    match candidates.iter().find(|p| p.is_dir()) {
        Some(p) => Ok((ann, p.clone())),
        None => bail!(
            "no image folder for split `{split}` under {} (tried images/{split}, {split}2017, {split})",
            dir.display()
        ),
    }
}

/// The training pipeline's random parts (mmdet `Resize` with `ratio_range`, `RandomFlip`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// `(long, short)` image scale of the keep-ratio resize (mmdet `img_scale`).
    pub scale: (usize, usize),
    /// Scale jitter: the scale is multiplied by a ratio drawn uniformly from this range.
    #[serde(default)]
    pub ratio_range: Option<(f64, f64)>,
    /// Probability of a horizontal flip.
    #[serde(default)]
    pub flip_prob: f64,
}

impl Augment {
    /// No randomness: resize to `scale`, no flip (the test pipeline's geometry).
    pub fn fixed(scale: (usize, usize)) -> Self {
        Self {
            scale,
            ratio_range: None,
            flip_prob: 0.0,
        }
    }
}

/// A uniform number in `[0, 1)` from 53 random bits.
pub fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// splitmix64 finaliser: mixes several integers into one seed.
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// A ChaCha8 stream keyed by `parts` (e.g. `[seed, epoch]`).
pub fn keyed_rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

/// The sample order of `epoch`: a Fisher-Yates shuffle of `0..n` (or `0..n` when `shuffle` is
/// off).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = keyed_rng(&[seed, 0x0D5E, epoch as u64]);
        for i in (1..n).rev() {
            let j = (uniform(&mut rng) * (i + 1) as f64) as usize;
            order.swap(i, j.min(i));
        }
    }
    order
}

/// One image after the pipeline.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `[3, H, W]` normalised, unpadded.
    pub image: Tensor,
    /// The resized size (`img_shape`).
    pub img_shape: ImageSize,
    /// Boxes in the resized (and flipped) image, clipped to it.
    pub boxes: Vec<[f32; 4]>,
    /// Class indices.
    pub labels: Vec<u32>,
    /// Whether it was flipped.
    pub flipped: bool,
}

/// Runs the training pipeline on one image: keep-ratio resize to the (jittered) scale with
/// OpenCV-exact bilinear, boxes scaled and clipped (`bbox_clip_border`), flip with probability
/// `flip_prob`, normalisation (ImageNet mean/std on 0..255).
pub fn prepare(
    img: &image::RgbImage,
    boxes: &[[f32; 4]],
    labels: &[u32],
    aug: &Augment,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Prepared> {
    let scale = match aug.ratio_range {
        Some((lo, hi)) => {
            let r = uniform(rng) * (hi - lo) + lo;
            (
                (aug.scale.0 as f64 * r) as usize,
                (aug.scale.1 as f64 * r) as usize,
            )
        }
        None => aug.scale,
    };
    let flip = aug.flip_prob > 0.0 && uniform(rng) < aug.flip_prob;
    let r = mmdet_resize(img, scale)?;
    let mut im = r.img;
    let (w, h) = (im.width() as f32, im.height() as f32);
    let [sx, sy, _, _] = r.scale_factor;
    let mut out_boxes: Vec<[f32; 4]> = boxes
        .iter()
        .map(|b| {
            [
                (b[0] * sx).clamp(0.0, w),
                (b[1] * sy).clamp(0.0, h),
                (b[2] * sx).clamp(0.0, w),
                (b[3] * sy).clamp(0.0, h),
            ]
        })
        .collect();
    if flip {
        image::imageops::flip_horizontal_in_place(&mut im);
        for b in &mut out_boxes {
            *b = [w - b[2], b[1], w - b[0], b[3]];
        }
    }
    let img_shape = ImageSize::new(im.height() as usize, im.width() as usize);
    Ok(Prepared {
        image: normalize_255(&im, device)?,
        img_shape,
        boxes: out_boxes,
        labels: labels.to_vec(),
        flipped: flip,
    })
}

/// A padded batch with its ground truth.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, 3, Hp, Wp]`, every image padded bottom/right with zeros to the batch's largest size
    /// rounded up to 32.
    pub images: Tensor,
    /// Per image: the resized size (`img_shape`).
    pub img_shapes: Vec<ImageSize>,
    /// Per image: its own size rounded up to 32 (`pad_shape`), for the anchors' valid flags.
    pub pad_shapes: Vec<ImageSize>,
    /// Per image: boxes in network-input pixels.
    pub boxes: Vec<Vec<[f32; 4]>>,
    /// Per image: class indices.
    pub labels: Vec<Vec<u32>>,
    /// Per image: dataset image id.
    pub image_ids: Vec<u64>,
}

/// Pads and stacks prepared images (`image_ids` in the same order).
pub fn collate(items: Vec<Prepared>, image_ids: Vec<u64>) -> Result<Batch> {
    ensure!(items.len() == image_ids.len(), "one id per image");
    let tensors: Vec<Tensor> = items.iter().map(|p| p.image.clone()).collect();
    let batch = ImageBatch::from_images(&tensors, 32, true)?;
    let pad = |s: ImageSize| ImageSize::new(s.height.div_ceil(32) * 32, s.width.div_ceil(32) * 32);
    Ok(Batch {
        images: batch.pixels,
        img_shapes: items.iter().map(|p| p.img_shape).collect(),
        pad_shapes: items.iter().map(|p| pad(p.img_shape)).collect(),
        boxes: items.iter().map(|p| p.boxes.clone()).collect(),
        labels: items.iter().map(|p| p.labels.clone()).collect(),
        image_ids,
    })
}

/// Batches of a dataset in the seeded order, images decoded and augmented in parallel.
#[derive(Debug, Clone)]
pub struct Loader {
    /// The data.
    pub dataset: CocoDetDataset,
    /// The pipeline.
    pub augment: Augment,
    /// Images per batch (the last, incomplete batch of an epoch is dropped when the epoch has
    /// more than one batch, else kept).
    pub batch_size: usize,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Shuffle every epoch.
    pub shuffle: bool,
}

impl Loader {
    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.dataset.len();
        (n / self.batch_size).max(1)
    }

    /// Batch `index` of `epoch` (0-based).
    pub fn batch(&self, epoch: usize, index: usize, device: &Device) -> Result<Batch> {
        let order = epoch_order(self.dataset.len(), self.seed, epoch, self.shuffle);
        let bs = self.batch_size.min(order.len());
        ensure!(
            index < self.batches_per_epoch(),
            "batch {index} out of range"
        );
        let positions: Vec<usize> = (index * bs..(index + 1) * bs).collect();
        let items = positions
            .par_iter()
            .map(|&pos| {
                let rec = &self.dataset.records[order[pos]];
                let img = load_rgb(&rec.path)?;
                let mut rng = keyed_rng(&[self.seed, 0xA06, epoch as u64, pos as u64]);
                // boxes are in the annotation's coordinates; the file may disagree with the
                // picture's real size, so scale by the recorded size
                ensure!(
                    img.width() as usize == rec.size.width
                        && img.height() as usize == rec.size.height,
                    "{}: the image is {}x{}, the annotation file says {}x{} (WxH)",
                    rec.path.display(),
                    img.width(),
                    img.height(),
                    rec.size.width,
                    rec.size.height
                );
                prepare(
                    &img,
                    &rec.boxes,
                    &rec.labels,
                    &self.augment,
                    &mut rng,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let ids = positions
            .iter()
            .map(|&p| self.dataset.records[order[p]].id)
            .collect();
        collate(items, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_permutations_and_depend_on_seed_and_epoch() {
        let a = epoch_order(50, 1, 0, true);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0, true));
        assert_ne!(a, epoch_order(50, 1, 1, true));
        assert_ne!(a, epoch_order(50, 2, 0, true));
        assert_eq!(epoch_order(5, 1, 3, false), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn resize_and_flip_move_the_boxes_with_the_pixels() {
        // a white 10x6 rectangle at x 4..14, y 2..8 on a 40x20 black image
        let mut img = image::RgbImage::new(40, 20);
        for y in 2..8 {
            for x in 4..14 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let aug = Augment {
            scale: (80, 40),
            ratio_range: None,
            flip_prob: 1.0,
        };
        let mut rng = keyed_rng(&[0]);
        let p = prepare(
            &img,
            &[[4.0, 2.0, 14.0, 8.0]],
            &[2],
            &aug,
            &mut rng,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(p.img_shape, ImageSize::new(40, 80));
        assert!(p.flipped);
        assert_eq!(p.boxes, vec![[80.0 - 28.0, 4.0, 80.0 - 8.0, 16.0]]);
        // the box's centre pixel is white after the pipeline (normalised value > 2)
        let v = p
            .image
            .get(0)
            .unwrap()
            .get(10)
            .unwrap()
            .get(62)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(v > 2.0, "{v}");
        // jitter stays in range and is reproducible
        let aug = Augment {
            scale: (80, 40),
            ratio_range: Some((0.5, 1.0)),
            flip_prob: 0.5,
        };
        let a = prepare(&img, &[], &[], &aug, &mut keyed_rng(&[7]), &Device::Cpu).unwrap();
        let b = prepare(&img, &[], &[], &aug, &mut keyed_rng(&[7]), &Device::Cpu).unwrap();
        assert_eq!(a.img_shape, b.img_shape);
        assert_eq!(a.flipped, b.flipped);
        assert!((20..=40).contains(&a.img_shape.height));
    }

    #[test]
    fn collate_pads_to_the_largest_multiple_of_32() {
        let dev = Device::Cpu;
        let mk = |h: usize, w: usize| Prepared {
            image: Tensor::ones((3, h, w), candle::DType::F32, &dev).unwrap(),
            img_shape: ImageSize::new(h, w),
            boxes: vec![],
            labels: vec![],
            flipped: false,
        };
        let b = collate(vec![mk(40, 70), mk(65, 30)], vec![1, 2]).unwrap();
        assert_eq!(b.images.dims(), &[2, 3, 96, 96]);
        assert_eq!(
            b.pad_shapes,
            vec![ImageSize::new(64, 96), ImageSize::new(96, 32)]
        );
        // padding is zero
        let s = b
            .images
            .get(0)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(s, (3 * 40 * 70) as f32);
    }
}
