//! Mask R-CNN training (mini PVT config): the whole loss (RPN, box and mask heads) has
//! gradients that agree with finite differences in f64 for every parameter tensor checked, every
//! parameter gets one, and a few dozen AdamW steps on two synthetic images (masks read from the
//! COCO file through the mask data path) bring the loss down several times.

mod common;

use std::path::Path;
use std::time::Instant;

use candle::{DType, Device, Tensor};
use pvt_train::data::{Augment, Batch, CocoDetDataset};
use pvt_train::mask_rcnn::{MaskBatch, MaskLoader, MaskRcnnCriterion, MaskRcnnTrainConfig};
use pvt_train::optim::scalar;
use pvt_train::optim::{clip_grad_norm, collect_grads, AdamW, AdamWConfig};
use pvt_train::params::Params;
use pvt_types::{BitMask, ImageSize};
use pvt_zoo::{MaskRcnnConfig, MaskRcnnPvt};

fn mini_config() -> MaskRcnnConfig {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/configs/mask_rcnn_pvt_mini.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// An ellipse inscribed in `b`, on a `size` canvas.
fn ellipse(size: ImageSize, b: [f32; 4]) -> BitMask {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (rx, ry) = ((b[2] - b[0]) / 2.0, (b[3] - b[1]) / 2.0);
    let mut d = vec![0u8; size.area()];
    for y in 0..size.height {
        for x in 0..size.width {
            let u = (x as f32 + 0.5 - cx) / rx;
            let v = (y as f32 + 0.5 - cy) / ry;
            d[y * size.width + x] = u8::from(u * u + v * v <= 1.0);
        }
    }
    BitMask::new(size, d).unwrap()
}

/// Two 224x224 inputs (the second a 200x150 image padded), 3 and 2 objects with masks.
fn batch(dev: &Device) -> MaskBatch {
    let n = 2 * 3 * 224 * 224;
    let vals: Vec<f64> = (0..n).map(|i| ((i as f64) * 0.0173).sin() * 1.3).collect();
    let images = Tensor::from_vec(vals, (2, 3, 224, 224), dev).unwrap();
    let boxes = vec![
        vec![
            [10.0, 8.0, 60.0, 50.0],
            [100.0, 120.0, 210.0, 200.0],
            [30.0, 90.0, 150.0, 220.0],
        ],
        vec![[4.0, 4.0, 40.0, 96.0], [60.0, 30.0, 140.0, 190.0]],
    ];
    let pads = [ImageSize::new(224, 224), ImageSize::new(224, 160)];
    let masks = boxes
        .iter()
        .zip(pads)
        .map(|(bs, p)| bs.iter().map(|&b| ellipse(p, b)).collect())
        .collect();
    MaskBatch {
        batch: Batch {
            images,
            img_shapes: vec![ImageSize::new(224, 224), ImageSize::new(200, 150)],
            pad_shapes: pads.to_vec(),
            boxes,
            labels: vec![vec![1, 4, 7], vec![0, 4]],
            image_ids: vec![1, 2],
        },
        masks,
    }
}

/// Central difference of `f` along `var`'s normalised gradient `g`; returns (|g|, difference).
fn directional(var: &candle::Var, g: &Tensor, f: &dyn Fn() -> f64) -> (f64, f64) {
    let gn = scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt();
    let dir = (g / gn).unwrap();
    let p0 = var.as_tensor().detach().copy().unwrap();
    let eps = (1e-7 / gn).clamp(1e-6, 1e-3);
    let at = |s: f64| {
        var.set(&(&p0 + (&dir * (s * eps)).unwrap()).unwrap())
            .unwrap();
        f()
    };
    let num = (at(1.0) - at(-1.0)) / (2.0 * eps);
    var.set(&p0).unwrap();
    (gn, num)
}

/// Every parameter gets a gradient from the five losses, and every tensor's gradient agrees
/// with a central difference of the loss along it (proposals fixed at the starting point:
/// they are detached in the loss, as in mmdetection).
#[test]
fn mask_rcnn_gradients_match_finite_differences() {
    let t0 = Instant::now();
    let dev = Device::Cpu;
    let cfg = mini_config();
    let params = Params::mask_rcnn(&cfg, 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let crit = MaskRcnnCriterion::new(cfg.num_classes, MaskRcnnTrainConfig::default(), 9).unwrap();
    let b = batch(&dev);
    let model = MaskRcnnPvt::new(&cfg, params.var_builder()).unwrap();
    let (feats, rpn) = model.forward_rpn(&b.batch.images).unwrap();
    let props = crit.proposals(&rpn, &b.batch).unwrap();
    assert!(props.iter().all(|p| !p.is_empty()));
    let loss_of = |params: &Params| {
        let model = MaskRcnnPvt::new(&cfg, params.var_builder()).unwrap();
        let (feats, rpn) = model.forward_rpn(&b.batch.images).unwrap();
        crit.loss_with_proposals(&model, &feats, &rpn, &b, &props, 0)
            .unwrap()
    };
    let l = crit
        .loss_with_proposals(&model, &feats, &rpn, &b, &props, 0)
        .unwrap();
    drop((feats, rpn, model));
    assert_eq!(l.total.dtype(), DType::F64);
    eprintln!(
        "loss: rpn_cls {:.5} rpn_bbox {:.5} cls {:.5} bbox {:.5} mask {:.5} total {:.5}; \
         {} RPN positives, {} RoIs ({} positive)",
        scalar(&l.rpn_cls).unwrap(),
        scalar(&l.rpn_bbox).unwrap(),
        scalar(&l.cls).unwrap(),
        scalar(&l.bbox).unwrap(),
        scalar(&l.mask).unwrap(),
        scalar(&l.total).unwrap(),
        l.num_rpn_pos,
        l.num_rois,
        l.num_pos_rois
    );
    assert!(l.num_rpn_pos > 0 && l.num_pos_rois >= 5 && l.num_rois > l.num_pos_rois);
    for t in [&l.rpn_cls, &l.rpn_bbox, &l.cls, &l.bbox, &l.mask] {
        let v = scalar(t).unwrap();
        assert!(v.is_finite() && v > 0.0, "{v}");
    }
    let grads = l.total.backward().unwrap();
    let mut missing = vec![];
    for (name, var) in params.vars() {
        let norm = grads
            .get(var.as_tensor())
            .map(|g| scalar(&g.sqr().unwrap().sum_all().unwrap()).unwrap().sqrt())
            .unwrap_or(0.0);
        if norm.is_nan() || norm == 0.0 {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} parameters get no gradient: {missing:?}",
        missing.len(),
        params.vars().len()
    );
    let mut worst = (0f64, String::new());
    let mut checked = 0;
    for (i, (name, var)) in params.vars().iter().enumerate() {
        // every head / neck tensor, every third backbone tensor
        if name.starts_with("backbone.") && i % 3 != 0 {
            continue;
        }
        let g = grads.get(var.as_tensor()).unwrap();
        let (gn, num) = directional(var, g, &|| scalar(&loss_of(&params).total).unwrap());
        let err = (num - gn).abs() / gn;
        eprintln!("{name}: |g| {gn:.6e}, finite difference {num:.6e}, relative error {err:.1e}");
        checked += 1;
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    eprintln!(
        "{checked} of {} tensors checked in {:.1} s; worst relative error {:.1e} ({})",
        params.vars().len(),
        t0.elapsed().as_secs_f64(),
        worst.0,
        worst.1
    );
    assert!(
        worst.0 < 1e-3,
        "worst relative error {:e} ({})",
        worst.0,
        worst.1
    );
}

/// Images without objects: every anchor and RoI sampled is negative, the box and mask terms
/// are zero (still connected to the graph), everything stays finite; the loss is a pure
/// function of (parameters, batch, seed, step).
#[test]
fn empty_images_and_determinism() {
    let dev = Device::Cpu;
    let cfg = mini_config();
    let params = Params::mask_rcnn(&cfg, 3, &dev).unwrap();
    let model = MaskRcnnPvt::new(&cfg, params.var_builder()).unwrap();
    let crit = MaskRcnnCriterion::new(cfg.num_classes, MaskRcnnTrainConfig::default(), 9).unwrap();
    let mut b = batch(&dev);
    b.batch.images = b.batch.images.to_dtype(DType::F32).unwrap();
    let l1 = crit.loss(&model, &b, 3).unwrap();
    let l2 = crit.loss(&model, &b, 3).unwrap();
    let l3 = crit.loss(&model, &b, 4).unwrap();
    let v = |t: &Tensor| scalar(t).unwrap();
    assert_eq!(v(&l1.total), v(&l2.total));
    assert_ne!(v(&l1.total), v(&l3.total), "another step, another sample");
    // image 1 without objects
    b.batch.boxes[1].clear();
    b.batch.labels[1].clear();
    b.masks[1].clear();
    let l = crit.loss(&model, &b, 0).unwrap();
    assert!(l.num_pos_rois > 0 && v(&l.total).is_finite());
    // no objects at all
    b.batch.boxes[0].clear();
    b.batch.labels[0].clear();
    b.masks[0].clear();
    let l = crit.loss(&model, &b, 0).unwrap();
    assert_eq!((l.num_rpn_pos, l.num_pos_rois), (0, 0));
    assert_eq!(l.num_rois, 1024);
    for t in [&l.rpn_bbox, &l.bbox, &l.mask] {
        assert_eq!(v(t), 0.0);
    }
    assert!(v(&l.rpn_cls) > 0.0 && v(&l.cls) > 0.0);
    let g = l.total.backward().unwrap();
    let w = params.vars()["roi_head.bbox_head.fc_cls.weight"].as_tensor();
    assert!(v(&g.get(w).unwrap().abs().unwrap().sum_all().unwrap()) > 0.0);
    // a label out of range and a missing mask are errors naming the counts
    let mut b = batch(&dev);
    b.batch.images = b.batch.images.to_dtype(DType::F32).unwrap();
    b.batch.labels[0][0] = 8;
    let err = crit.loss(&model, &b, 0).unwrap_err().to_string();
    assert!(err.contains("label 8"), "{err}");
    let mut b = batch(&dev);
    b.batch.images = b.batch.images.to_dtype(DType::F32).unwrap();
    b.masks[1].pop();
    let err = crit.loss(&model, &b, 0).unwrap_err().to_string();
    assert!(err.contains("2 boxes, 2 labels, 1 masks"), "{err}");
}

/// `Params::mask_rcnn` initialises the heads as mmdetection 2.13: RPN N(0, 0.01²), shared fcs
/// Xavier-uniform, `fc_cls` N(0, 0.01²), `fc_reg` N(0, 0.001²), mask convs / `upsample` /
/// `conv_logits` Kaiming-normal (fan_out), biases 0.
#[test]
fn mask_rcnn_head_initialisation() {
    let cfg = mini_config();
    let params = Params::mask_rcnn(&cfg, 3, &Device::Cpu).unwrap();
    let stats = |name: &str| -> (f64, f64, usize) {
        let v = params.vars()[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let n = v.len();
        let std = (v.iter().map(|x| x * x).sum::<f64>() / n as f64).sqrt();
        let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
        (std, max, n)
    };
    let normal = |name: &str, want: f64| {
        let (std, _, n) = stats(name);
        let tol = 4.0 * want / (2.0 * n as f64).sqrt() + 1e-12;
        assert!((std - want).abs() < tol, "{name}: std {std}, want {want}");
    };
    normal("rpn_head.rpn_conv.weight", 0.01);
    normal("rpn_head.rpn_cls.weight", 0.01);
    normal("roi_head.bbox_head.fc_cls.weight", 0.01);
    normal("roi_head.bbox_head.fc_reg.weight", 0.001);
    let c = cfg.mask_channels as f64;
    normal(
        "roi_head.mask_head.convs.1.conv.weight",
        (2.0 / (c * 9.0)).sqrt(),
    );
    normal(
        "roi_head.mask_head.upsample.weight",
        (2.0 / (c * 4.0)).sqrt(),
    );
    normal(
        "roi_head.mask_head.conv_logits.weight",
        (2.0 / cfg.num_classes as f64).sqrt(),
    );
    let fan_in = cfg.fpn_channels * 49;
    let bound = (6.0 / (fan_in + cfg.fc_channels) as f64).sqrt();
    let (_, max, _) = stats("roi_head.bbox_head.shared_fcs.0.weight");
    assert!(max <= bound && max > 0.95 * bound, "{max} vs {bound}");
    for name in [
        "roi_head.bbox_head.fc_reg.bias",
        "roi_head.mask_head.upsample.bias",
        "rpn_head.rpn_reg.bias",
    ] {
        assert_eq!(stats(name).1, 0.0, "{name}");
    }
}

/// The tight box `[x1, y1, x2, y2]` of a mask's foreground.
fn tight_box(mask: &BitMask) -> [f32; 4] {
    let s = mask.size();
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
    for (k, &v) in mask.data().iter().enumerate() {
        if v != 0 {
            let (y, x) = (k / s.width, k % s.width);
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    [x1 as f32, y1 as f32, x2 as f32, y2 as f32]
}

/// The mask data path follows the images: a 0.75 resize and a flip move the masks with the
/// boxes (to within the nearest-neighbour rounding), masks are padded to the image's
/// `pad_shape`, and the batch equals `Loader`'s.
#[test]
fn mask_loader_resizes_and_flips_masks_with_the_boxes() {
    let dir = common::synth_dataset("mask-rcnn-loader", 3, (128, 160), 0.0);
    let data = CocoDetDataset::from_dir(&dir, "train", true).unwrap();
    let aug = Augment {
        scale: (120, 96),
        ratio_range: None,
        flip_prob: 1.0,
    };
    let loader = MaskLoader::new(data.clone(), aug, 3, 4, true).unwrap();
    let plain = pvt_train::data::Loader {
        dataset: data,
        augment: aug,
        batch_size: 3,
        seed: 4,
        shuffle: true,
    };
    let dev = Device::Cpu;
    let b = loader.batch(1, 0, &dev).unwrap();
    let p = plain.batch(1, 0, &dev).unwrap();
    assert_eq!(b.batch.image_ids, p.image_ids);
    assert_eq!(b.batch.boxes, p.boxes);
    let d = (&b.batch.images - &p.images)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
    let mut n = 0;
    for (i, (m, bx)) in b.masks.iter().zip(&b.batch.boxes).enumerate() {
        assert_eq!(b.batch.img_shapes[i], ImageSize::new(96, 120));
        for (mask, bb) in m.iter().zip(bx) {
            assert_eq!(mask.size(), ImageSize::new(96, 128));
            let t = tight_box(mask);
            for k in 0..4 {
                assert!(
                    (t[k] - bb[k]).abs() <= 1.5,
                    "image {i}: mask box {t:?}, box {bb:?}"
                );
            }
            n += 1;
        }
    }
    assert!(n >= 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// COCO polygons are read as pycocotools' `annToRLE` rasterizes them: every synthetic
/// annotation rewritten as the polygon of its (integer) box becomes exactly the box's pixels
/// `[x1, x2) x [y1, y2)` (pycocotools' result for integer corners); a polygon that is not
/// numbers is an error naming the file.
#[test]
fn instance_masks_from_polygons() {
    let dir = common::synth_dataset("mask-rcnn-polygons", 2, (64, 80), 0.0);
    let ann = dir.join("annotations/instances_train.json");
    let mut coco: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ann).unwrap()).unwrap();
    for a in coco["annotations"].as_array_mut().unwrap() {
        let b: Vec<f64> = serde_json::from_value(a["bbox"].clone()).unwrap();
        let (x2, y2) = (b[0] + b[2], b[1] + b[3]);
        a["segmentation"] = serde_json::json!([[b[0], b[1], x2, b[1], x2, y2, b[0], y2]]);
    }
    std::fs::write(&ann, serde_json::to_string(&coco).unwrap()).unwrap();
    let data = CocoDetDataset::from_dir(&dir, "train", true).unwrap();
    let masks = pvt_train::mask_rcnn::load_instance_masks(&data).unwrap();
    let mut n = 0;
    for (rec, m) in data.records.iter().zip(&masks) {
        assert_eq!(m.len(), rec.boxes.len());
        for (rle, b) in m.iter().zip(&rec.boxes) {
            let mask = rle.decode();
            assert_eq!(tight_box(&mask), *b);
            assert_eq!(rle.area() as f32, (b[2] - b[0]) * (b[3] - b[1]));
            n += 1;
        }
    }
    assert!(n >= 4);
    coco["annotations"][0]["segmentation"] = serde_json::json!([[1.0, 2.0, "x", 3.0]]);
    std::fs::write(&ann, serde_json::to_string(&coco).unwrap()).unwrap();
    let err = CocoDetDataset::from_dir(&dir, "train", true)
        .map(|d| pvt_train::mask_rcnn::load_instance_masks(&d))
        .err()
        .map(|e| format!("{e:#}"));
    assert!(
        err.is_some_and(|e| e.contains("instances_train.json")),
        "bad polygon accepted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two synthetic 128x128 images with their masks from the COCO file: AdamW on the whole loss
/// (samplers keyed by the step) brings the loss down at least 3x.
#[test]
fn mask_rcnn_overfits_two_images() {
    let dir = common::synth_dataset("mask-rcnn-overfit", 2, (128, 128), 0.0);
    let data = CocoDetDataset::from_dir(&dir, "train", true).unwrap();
    let loader = MaskLoader::new(data, Augment::fixed((128, 128)), 2, 5, false).unwrap();
    let dev = Device::Cpu;
    let b = loader.batch(0, 0, &dev).unwrap();
    assert_eq!(b.batch.images.dims(), &[2, 3, 128, 128]);
    for (i, (m, bx)) in b.masks.iter().zip(&b.batch.boxes).enumerate() {
        assert_eq!(m.len(), bx.len());
        for (mask, bb) in m.iter().zip(bx) {
            // the synthetic box is the tight box of the visible mask
            assert_eq!(tight_box(mask), *bb, "image {i}");
        }
    }
    let mut cfg = mini_config();
    cfg.num_classes = 6;
    let params = Params::mask_rcnn(&cfg, 1, &dev).unwrap();
    let crit = MaskRcnnCriterion::new(6, MaskRcnnTrainConfig::default(), 2).unwrap();
    let mut opt = AdamW::new(AdamWConfig {
        lr: 1e-3,
        ..AdamWConfig::default()
    });
    let iters = 50;
    let t0 = Instant::now();
    let mut losses = vec![];
    for step in 0..iters {
        let model = MaskRcnnPvt::new(&cfg, params.var_builder()).unwrap();
        let l = crit.loss(&model, &b, step as u64).unwrap();
        let v = scalar(&l.total).unwrap();
        if step % 10 == 0 || step == iters - 1 {
            eprintln!(
                "step {step}: total {v:.4} (rpn_cls {:.4} rpn_bbox {:.4} cls {:.4} bbox {:.4} \
                 mask {:.4}), {} RoIs, {} positive",
                scalar(&l.rpn_cls).unwrap(),
                scalar(&l.rpn_bbox).unwrap(),
                scalar(&l.cls).unwrap(),
                scalar(&l.bbox).unwrap(),
                scalar(&l.mask).unwrap(),
                l.num_rois,
                l.num_pos_rois
            );
        }
        losses.push(v);
        let g = l.total.backward().unwrap();
        let mut grads = collect_grads(&params, &g);
        clip_grad_norm(&mut grads, 10.0).unwrap();
        let lr = 1e-3 * ((step + 1) as f64 / 10.0).min(1.0);
        opt.step(&params, &grads, lr).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[iters - 3..].iter().sum::<f64>() / 3.0;
    eprintln!(
        "{iters} iterations in {secs:.1} s: loss {first:.4} -> {last:.4} ({:.1}x)",
        first / last
    );
    assert!(
        first / last >= 3.0,
        "loss fell only {first:.4} -> {last:.4}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
