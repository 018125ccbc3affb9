//! mmdetection's COCO test pipeline for one image (PVT detection configs):
//! `Resize(1333x800, keep_ratio)` with OpenCV-exact bilinear on uint8, RGB, normalise with the
//! ImageNet mean/std on 0..255, zero-pad bottom/right to a multiple of 32.

use anyhow::Result;
use candle::Device;
use image::RgbImage;
use pvt_nn::cv_resize::{mmdet_resize, MMDET_COCO_SCALE};
use pvt_nn::image::normalize_255;
use pvt_nn::ImageBatch;
use pvt_types::ImageSize;

/// A preprocessed image and what the pipeline records about it.
#[derive(Debug, Clone)]
pub struct DetInput {
    /// `[1, 3, Hp, Wp]`, normalised, padded to multiples of 32.
    pub batch: ImageBatch,
    /// Size of the resized, unpadded image (`img_shape`): boxes are clipped to it.
    pub img_shape: ImageSize,
    /// Size of the original image (`ori_shape`).
    pub ori_shape: ImageSize,
    /// `[w'/w, h'/h, w'/w, h'/h]` as float32: boxes are divided by it to return to the original
    /// image.
    pub scale_factor: [f32; 4],
}

/// Runs the pipeline with mmdetection's COCO test scale (1333, 800).
pub fn preprocess_det(img: &RgbImage, device: &Device) -> Result<DetInput> {
    preprocess_det_scale(img, MMDET_COCO_SCALE, device)
}

/// Runs the pipeline with another `(long, short)` scale (e.g. (1066, 640)).
pub fn preprocess_det_scale(
    img: &RgbImage,
    scale: (usize, usize),
    device: &Device,
) -> Result<DetInput> {
    let ori_shape = ImageSize::new(img.height() as usize, img.width() as usize);
    let r = mmdet_resize(img, scale)?;
    let img_shape = ImageSize::new(r.img.height() as usize, r.img.width() as usize);
    let t = normalize_255(&r.img, device)?;
    let batch = ImageBatch::from_images(&[t], 32, true)?;
    Ok(DetInput {
        batch,
        img_shape,
        ori_shape,
        scale_factor: r.scale_factor,
    })
}
