//! What every semantic segmenter offers the CLI and library callers, and the Semantic FPN one.

use anyhow::{ensure, Result};
use image::RgbImage;
use pvt_backbone::AnyLoadInfo;
use pvt_types::SegMap;

use crate::semantic_fpn::{ade20k_palette, SegTestConfig, SemanticFpnPvt};

/// A model that labels every pixel of an image.
pub trait Segmenter: Send + Sync {
    /// The label map of `img` at its size (class indices `0..num_classes`), with the
    /// segmenter's test settings.
    fn segment(&self, img: &RgbImage) -> Result<SegMap>;

    /// Names of the classes.
    fn class_names(&self) -> &[String];

    /// One colour per class, for overlays.
    fn palette(&self) -> &[[u8; 3]];

    /// Whether ground-truth label files are read with mmseg's `reduce_zero_label` (0 ignored,
    /// `v` becomes class `v − 1`) when scoring this model: ADE20K's convention, unless its
    /// training run recorded another.
    fn reduce_zero_label(&self) -> bool;

    /// The test pipeline's settings (scale, whole or sliding-window inference, augmentation).
    fn test_config(&self) -> &SegTestConfig;

    /// Replaces the test settings; bad augmentation ratios are an error here, before any image
    /// is read.
    fn set_test_config(&mut self, test: SegTestConfig) -> Result<()>;

    /// What loading the checkpoint found (naming, dropped tensors), when it was loaded from one.
    fn load_info(&self) -> Option<&AnyLoadInfo> {
        None
    }
}

/// Semantic FPN-PVT with its test pipeline, class names and palette.
#[derive(Debug, Clone)]
pub struct SemanticFpnSegmenter {
    /// The network.
    pub model: SemanticFpnPvt,
    /// See [`Segmenter::reduce_zero_label`].
    pub reduce_zero_label: bool,
    test: SegTestConfig,
    names: Vec<String>,
    palette: Vec<[u8; 3]>,
    info: Option<AnyLoadInfo>,
}

impl SemanticFpnSegmenter {
    /// Wraps a network with the ADE20K test pipeline. Classes are named by `names` (one per
    /// class), else ADE20K's for 150 classes, else `class i`; colours are ADE20K's palette.
    pub fn new(model: SemanticFpnPvt, names: Option<Vec<String>>) -> Result<Self> {
        let k = model.config.num_classes;
        let names = match names {
            Some(n) => {
                ensure!(
                    n.len() == k,
                    "{} class names for a segmenter of {k} classes",
                    n.len()
                );
                n
            }
            None if k == 150 => pvt_eval::ade20k::ade20k_class_names(),
            None => (0..k).map(|i| format!("class {i}")).collect(),
        };
        let pal = ade20k_palette();
        let palette = (0..k).map(|i| pal[i % pal.len()]).collect();
        Ok(Self {
            model,
            reduce_zero_label: true,
            test: SegTestConfig::ade20k(),
            names,
            palette,
            info: None,
        })
    }

    /// Records what loading the checkpoint found ([`Segmenter::load_info`]).
    pub fn with_load_info(mut self, info: AnyLoadInfo) -> Self {
        self.info = Some(info);
        self
    }
}

impl Segmenter for SemanticFpnSegmenter {
    fn segment(&self, img: &RgbImage) -> Result<SegMap> {
        self.model.segment_with(img, &self.test)
    }

    fn class_names(&self) -> &[String] {
        &self.names
    }

    fn palette(&self) -> &[[u8; 3]] {
        &self.palette
    }

    fn reduce_zero_label(&self) -> bool {
        self.reduce_zero_label
    }

    fn test_config(&self) -> &SegTestConfig {
        &self.test
    }

    fn set_test_config(&mut self, test: SegTestConfig) -> Result<()> {
        if let Some(aug) = &test.aug {
            aug.scales(test.scale)?;
        }
        self.test = test;
        Ok(())
    }

    fn load_info(&self) -> Option<&AnyLoadInfo> {
        self.info.as_ref()
    }
}
