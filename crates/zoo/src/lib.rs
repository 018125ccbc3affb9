//! Named models end to end, and the one API a program embeds: which backbone, neck and head a
//! published name or a JSON config describes, how a checkpoint's tensors are split between
//! them, the test pipelines, and ready-to-run detectors and segmenters.
//!
//! Detect objects in an image:
//!
//! ```
//! use pvt_zoo::{load_detector, load_image, LoadOptions, ModelConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let config = ModelConfig::from_file("../../assets/demo/retinanet_pvt_synth.json")?;
//! let weights = "../../assets/demo/retinanet_pvt_synth.safetensors";
//! let detector = load_detector(&config, weights, &LoadOptions::default())?;
//! let image = load_image("../../assets/demo/shapes.png")?;
//! for d in &detector.detect(&image)? {
//!     let name = &detector.class_names()[d.class.0 as usize];
//!     println!("{name:<10} {:.3} {:?}", d.score, d.bbox);
//! }
//! # assert!(detector.detect(&image)?.iter().any(|d| d.score > 0.5));
//! # Ok(())
//! # }
//! ```
//!
//! Label every pixel of one:
//!
//! ```
//! use pvt_zoo::{load_image, load_segmenter, LoadOptions, ModelConfig};
//!
//! # fn main() -> anyhow::Result<()> {
//! let config = ModelConfig::from_file("../../assets/demo/fpn_pvt_synth.json")?;
//! let weights = "../../assets/demo/fpn_pvt_synth.safetensors";
//! let segmenter = load_segmenter(&config, weights, &LoadOptions::default())?;
//! let image = load_image("../../assets/demo/shapes.png")?;
//! let map = segmenter.segment(&image)?;
//! let shapes = map.labels().iter().filter(|&&l| l != 0).count();
//! println!("{shapes} of {} pixels are shapes", map.labels().len());
//! # assert!(shapes > 0 && shapes < map.labels().len());
//! # Ok(())
//! # }
//! ```
//!
//! This is the only crate that knows model families and names (`retinanet_pvt_tiny_fpn_1x_coco`,
//! ...), and whole-model checkpoint layouts (`backbone.`, `neck.`, `bbox_head.` prefixes).
//! Backbones and heads stay ignorant of each other; they meet here through `FeaturePyramid`.
//! It knows nothing of training (the training crate builds on it) nor of the command line.
#![deny(missing_docs)]

pub mod det_input;
pub mod detector;
pub mod mask_rcnn;
pub mod model;
pub mod retinanet;
pub mod runner;
pub mod segmenter;
pub mod semantic_fpn;

pub use detector::ImageDetector;
pub use mask_rcnn::{MaskRcnnConfig, MaskRcnnDetector, MaskRcnnPvt};
pub use model::{
    load_detector, load_segmenter, Architecture, Family, LoadOptions, ModelConfig, TestSettings,
    MODEL_NAMES,
};
pub use pvt_nn::image::load_rgb as load_image;
pub use pvt_types::{Detection, Detections, SegMap};
pub use retinanet::{BackboneConfig, RetinaNetConfig, RetinaNetDetector, RetinaNetPvt};
pub use segmenter::{Segmenter, SemanticFpnSegmenter};
pub use semantic_fpn::{SemanticFpnConfig, SemanticFpnPvt};
