//! The RoI head at test time (mmdetection 2.13 `StandardRoIHead.simple_test` with
//! `rescale=True`), for one image:
//!
//! 1. box RoI features: `SingleRoIExtractor` over P2–P5 (finest scale 56), aligned RoIAlign
//!    7×7 with adaptive sampling (`pvt_det_ops::multi_level_roi_align`);
//! 2. [`BBoxHead`] forward and [`box_detections`] (softmax, class-specific decode clipped to
//!    `img_shape`, ÷ `scale_factor`, `multiclass_nms`) → at most 100 detections in the original
//!    image's frame;
//! 3. mask RoIs = the detection boxes × `scale_factor` (back in the resized frame, f32), RoIAlign
//!    14×14, [`MaskHead`] logits of each detection's class, sigmoid;
//! 4. paste each 28×28 probability mask into the original image at the box `mask RoI ÷
//!    scale_factor` (mmdet's round trip, which can differ from the detection box in the last
//!    bit), threshold `≥ mask_thr_binary` (0.5), encode as RLE.

use anyhow::{ensure, Result};
use candle::{DType, Tensor};
use candle_nn::VarBuilder;
use pvt_det_ops::nms::{MulticlassNmsConfig, NmsThreshold};
use pvt_det_ops::roi::FINEST_SCALE;
use pvt_det_ops::{multi_level_roi_align, paste_masks, ImageMeta, RoiLevel, MASK_THR_BINARY};
use pvt_nn::FeaturePyramid;
use pvt_types::{ClassIdx, Detections, Rle};

use crate::bbox_head::{box_detections, BBoxHead, BBoxHeadConfig};
use crate::mask_head::{MaskHead, MaskHeadConfig};
use crate::rpn::Proposals;

/// Test-time settings of the RoI head (mmdet `test_cfg.rcnn`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiTestConfig {
    /// Score threshold, class-wise NMS and `max_per_img` of the box head (0.05, 0.5, 100).
    pub nms: MulticlassNmsConfig,
    /// Pasted probabilities `≥` this are foreground (0.5).
    pub mask_thr_binary: f32,
}

impl RoiTestConfig {
    /// The PVT Mask R-CNN test config with the given NMS suppression test (mmcv's CUDA rule
    /// produced the published numbers).
    pub fn coco(nms: fn(f32) -> NmsThreshold) -> Self {
        Self {
            nms: MulticlassNmsConfig::coco_test(nms),
            mask_thr_binary: MASK_THR_BINARY,
        }
    }
}

impl Default for RoiTestConfig {
    /// [`RoiTestConfig::coco`] with mmcv's CUDA suppression rule.
    fn default() -> Self {
        Self::coco(NmsThreshold::cuda)
    }
}

/// Per-level feature maps of one image, on the host, for RoIAlign.
#[derive(Debug, Clone)]
pub struct HostLevels {
    maps: Vec<Vec<f32>>,
    shapes: Vec<(usize, usize, usize)>,
    strides: Vec<usize>,
}

impl HostLevels {
    /// Copies the first `num_levels` levels of image `b` (f32, `[C, H, W]` row-major).
    pub fn new(feats: &FeaturePyramid, b: usize, num_levels: usize) -> Result<Self> {
        let levels = feats.levels();
        ensure!(
            levels.len() >= num_levels,
            "RoI extractor needs {num_levels} levels, the pyramid has {}",
            levels.len()
        );
        let mut maps = vec![];
        let mut shapes = vec![];
        for t in &levels[..num_levels] {
            let (batch, c, h, w) = t.dims4()?;
            ensure!(b < batch, "image {b} requested from a batch of {batch}");
            maps.push(
                t.get(b)?
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
            shapes.push((c, h, w));
        }
        let strides = feats.spec().levels()[..num_levels]
            .iter()
            .map(|l| l.stride)
            .collect();
        Ok(Self {
            maps,
            shapes,
            strides,
        })
    }

    /// `SingleRoIExtractor` + aligned RoIAlign: `[N, C, out, out]` on `device`.
    pub fn extract(
        &self,
        rois: &[[f32; 4]],
        out: usize,
        device: &candle::Device,
    ) -> Result<Tensor> {
        let levels: Vec<RoiLevel<'_>> = self
            .maps
            .iter()
            .zip(&self.shapes)
            .zip(&self.strides)
            .map(|((m, &s), &st)| (m.as_slice(), s, st))
            .collect();
        let c = self.shapes[0].0;
        let v = multi_level_roi_align(&levels, rois, out, FINEST_SCALE)?;
        Ok(Tensor::from_vec(v, (rois.len(), c, out, out), device)?)
    }
}

/// The box and mask heads with loaded weights.
#[derive(Debug, Clone)]
pub struct RoiHead {
    /// `Shared2FCBBoxHead`.
    pub bbox_head: BBoxHead,
    /// `FCNMaskHead`.
    pub mask_head: MaskHead,
}

/// RoI levels: P2–P5.
const ROI_LEVELS: usize = 4;

impl RoiHead {
    /// Reads `bbox_head.*` and `mask_head.*` from `vb` (typically `vb.pp("roi_head")`).
    pub fn new(bbox: BBoxHeadConfig, mask: MaskHeadConfig, vb: VarBuilder) -> Result<Self> {
        ensure!(
            bbox.num_classes == mask.num_classes,
            "box head has {} classes, mask head {}",
            bbox.num_classes,
            mask.num_classes
        );
        ensure!(
            bbox.in_channels == mask.in_channels,
            "box head reads {} channels, mask head {}",
            bbox.in_channels,
            mask.in_channels
        );
        Ok(Self {
            bbox_head: BBoxHead::new(bbox, vb.pp("bbox_head"))?,
            mask_head: MaskHead::new(mask, vb.pp("mask_head"))?,
        })
    }

    /// Box detections of image `b` (original-image frame) from its proposals (resized frame),
    /// steps 1–2 of the module docs.
    pub fn detect_boxes(
        &self,
        levels: &HostLevels,
        proposals: &Proposals,
        meta: &ImageMeta,
        cfg: &RoiTestConfig,
        device: &candle::Device,
    ) -> Result<Vec<pvt_det_ops::nms::ClassDetection>> {
        if proposals.is_empty() {
            return Ok(vec![]);
        }
        let bc = self.bbox_head.config();
        let feats = levels.extract(&proposals.boxes, bc.roi_feat_size, device)?;
        let out = self.bbox_head.forward(&feats)?;
        let cls = out
            .cls_score
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let reg = out
            .bbox_pred
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        box_detections(&proposals.boxes, &cls, &reg, bc.num_classes, meta, &cfg.nms)
    }

    /// Sigmoid mask probabilities `[N, 28·28]` (row-major, flattened) for boxes in the resized
    /// frame and their classes, step 3 of the module docs.
    pub fn mask_probs(
        &self,
        levels: &HostLevels,
        rois: &[[f32; 4]],
        labels: &[usize],
        device: &candle::Device,
    ) -> Result<Vec<f32>> {
        if rois.is_empty() {
            return Ok(vec![]);
        }
        let mc = self.mask_head.config();
        let feats = levels.extract(rois, mc.roi_feat_size, device)?;
        let logits = self.mask_head.forward_labels(&feats, labels)?;
        let v = logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(v.into_iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect())
    }

    /// Detections with masks for image `b` of `feats` (the FPN levels, P2 first).
    pub fn simple_test(
        &self,
        feats: &FeaturePyramid,
        b: usize,
        proposals: &Proposals,
        meta: &ImageMeta,
        cfg: &RoiTestConfig,
    ) -> Result<Detections> {
        let device = feats.levels()[0].device().clone();
        let levels = HostLevels::new(feats, b, ROI_LEVELS)?;
        let dets = self.detect_boxes(&levels, proposals, meta, cfg, &device)?;
        let sf = meta.scale_factor;
        let mask_rois: Vec<[f32; 4]> = dets
            .iter()
            .map(|d| {
                let b = d.bbox;
                [b[0] * sf[0], b[1] * sf[1], b[2] * sf[2], b[3] * sf[3]]
            })
            .collect();
        let labels: Vec<usize> = dets.iter().map(|d| d.class).collect();
        let probs = self.mask_probs(&levels, &mask_rois, &labels, &device)?;
        let paste_boxes: Vec<[f32; 4]> = mask_rois
            .iter()
            .map(|b| [b[0] / sf[0], b[1] / sf[1], b[2] / sf[2], b[3] / sf[3]])
            .collect();
        let m = self.mask_head.config().mask_size();
        let masks = if dets.is_empty() {
            vec![]
        } else {
            paste_masks(
                &probs,
                (m, m),
                &paste_boxes,
                meta.ori_shape,
                cfg.mask_thr_binary,
            )?
        };
        Ok(Detections::new(
            meta.ori_shape,
            dets.iter().map(|d| d.bbox).collect(),
            dets.iter().map(|d| d.score).collect(),
            dets.iter().map(|d| ClassIdx(d.class as u32)).collect(),
            Some(masks.iter().map(Rle::encode).collect()),
        )?)
    }
}
