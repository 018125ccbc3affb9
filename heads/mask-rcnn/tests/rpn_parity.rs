//! Golden test of the RPN head and its proposals against mmdetection (fixtures from
//! `tools/make_rpn_fixtures.py`: mmdet 3.3 `RPNHead` forward, mmdet 2.13 `RPNHead._get_bboxes`
//! on mmcv 1.3.8's CPU NMS).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use pvt_det_ops::nms::NmsThreshold;
use pvt_det_ops::{AnchorConfig, AnchorGenerator};
use pvt_mask_rcnn::{proposals, RpnHead, RpnHeadConfig, RpnOutputs, RpnProposalConfig};
use pvt_nn::{FeaturePyramid, LevelSpec, PyramidSpec};
use pvt_types::ImageSize;

const STRIDES: [usize; 5] = [4, 8, 16, 32, 64];
const IMG: ImageSize = ImageSize::new(128, 160);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../assets/fixtures/rpn/{name}"))
}

fn load(name: &str) -> Result<HashMap<String, Tensor>> {
    candle::safetensors::load(fixture(name), &Device::Cpu).with_context(|| name.to_string())
}

fn get<'a>(m: &'a HashMap<String, Tensor>, k: &str) -> Result<&'a Tensor> {
    m.get(k).with_context(|| format!("missing {k}"))
}

/// max |a - b| / max(max |b|, 1e-6) over the whole tensor.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let m = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(d / m.max(1e-6))
}

fn reference_outputs(r: &HashMap<String, Tensor>) -> Result<RpnOutputs> {
    let mut cls_logits = vec![];
    let mut box_deltas = vec![];
    for i in 0..STRIDES.len() {
        cls_logits.push(get(r, &format!("rpn_cls.{i}"))?.clone());
        box_deltas.push(get(r, &format!("rpn_reg.{i}"))?.clone());
    }
    Ok(RpnOutputs {
        cls_logits,
        box_deltas,
        strides: STRIDES.to_vec(),
    })
}

#[test]
fn rpn_forward_matches_mmdet() -> Result<()> {
    let w = load("rpn_weights.safetensors")?;
    let r = load("rpn_reference.safetensors")?;
    let vb = VarBuilder::from_tensors(w, DType::F32, &Device::Cpu);
    let cfg = RpnHeadConfig {
        in_channels: 32,
        feat_channels: 32,
        num_anchors: 3,
    };
    let head = RpnHead::new(cfg, vb)?;
    let spec = PyramidSpec::new(
        STRIDES
            .iter()
            .map(|&stride| LevelSpec {
                channels: 32,
                stride,
            })
            .collect(),
    )?;
    let levels = (0..STRIDES.len())
        .map(|i| get(&r, &format!("input.{i}")).cloned())
        .collect::<Result<Vec<_>>>()?;
    let out = head.forward(&FeaturePyramid::new(spec, levels)?)?;
    let want = reference_outputs(&r)?;
    let mut worst = 0f32;
    for i in 0..STRIDES.len() {
        let ec = rel_err(&out.cls_logits[i], &want.cls_logits[i])?;
        let er = rel_err(&out.box_deltas[i], &want.box_deltas[i])?;
        println!("level {i}: rpn_cls rel {ec:.3e}, rpn_reg rel {er:.3e}");
        worst = worst.max(ec).max(er);
    }
    assert!(worst <= 2e-5, "raw outputs: worst rel error {worst}");
    Ok(())
}

#[test]
fn rpn_proposals_match_mmdet_213() -> Result<()> {
    let r = load("rpn_reference.safetensors")?;
    let out = reference_outputs(&r)?;
    let anchors = AnchorGenerator::new(&AnchorConfig::rpn())?;
    let cfg = RpnProposalConfig::coco(NmsThreshold::cpu_legacy);
    let p = proposals(&out, 0, &anchors, IMG, &cfg)?;
    let want_boxes = get(&r, "proposals.boxes")?.to_vec2::<f32>()?;
    let want_scores = get(&r, "proposals.scores")?.to_vec1::<f32>()?;
    assert_eq!(p.len(), want_scores.len(), "number of proposals");
    let (mut eb, mut es) = (0f32, 0f32);
    for i in 0..p.len() {
        for (a, b) in p.boxes[i].iter().zip(&want_boxes[i]) {
            eb = eb.max((a - b).abs());
        }
        es = es.max((p.scores[i] - want_scores[i]).abs());
    }
    println!(
        "{} proposals: max |box| err {eb:.3e}, max |score| err {es:.3e}",
        p.len()
    );
    assert!(eb <= 1e-3, "boxes: max abs error {eb}");
    assert!(es <= 1e-5, "scores: max abs error {es}");

    // the fixture exercises the min-size filter: keeping empty boxes changes the result
    let mut keep_empty = cfg;
    keep_empty.min_bbox_size = -1.0;
    let q = proposals(&out, 0, &anchors, IMG, &keep_empty)?;
    assert_ne!(q, p, "the fixture has no empty boxes to filter");
    Ok(())
}
