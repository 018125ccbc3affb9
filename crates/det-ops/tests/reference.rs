//! Tables computed by the reference implementations (torch / torchvision float32 ops following
//! mmdet's and mmcv's code; see `reference/gen_tables.py`), checked against this crate.

#[rustfmt::skip]
#[path = "reference/tables.rs"]
mod tables;

use pvt_det_ops::{
    batched_nms, iou_matrix, nms, AnchorConfig, AnchorGenerator, DeltaXywhCoder, NmsThreshold,
};
use pvt_types::ImageSize;
use tables::*;

fn all_base_anchors(cfg: &AnchorConfig) -> Vec<[f32; 4]> {
    let gen = AnchorGenerator::new(cfg).unwrap();
    (0..gen.num_levels())
        .flat_map(|l| gen.base_anchors(l).unwrap().to_vec())
        .collect()
}

#[test]
fn base_anchors_bit_exact() {
    assert_eq!(
        all_base_anchors(&AnchorConfig::retinanet()),
        RETINANET_BASE_ANCHORS
    );
    assert_eq!(all_base_anchors(&AnchorConfig::rpn()), RPN_BASE_ANCHORS);
}

/// Largest difference in units of `tol · max(1, |expected|)`; exp / ln may differ by an ulp
/// between libm and PyTorch's vectorised kernels, and the box arithmetic can scale that ulp.
fn check_close(got: [f32; 4], want: [f32; 4], what: &str) {
    for k in 0..4 {
        let tol = 4e-6 * want[k].abs().max(1.0);
        assert!(
            (got[k] - want[k]).abs() <= tol,
            "{what}: {got:?} vs reference {want:?}"
        );
    }
}

#[test]
fn coder_matches_reference() {
    let size = Some(ImageSize::new(50, 70));
    let mut exact = 0;
    let mut total = 0;
    for (coder, dec, enc) in [
        (
            DeltaXywhCoder::retinanet(),
            CODER_STD1_DECODE,
            CODER_STD1_ENCODE,
        ),
        (DeltaXywhCoder::rcnn(), CODER_RCNN_DECODE, CODER_RCNN_ENCODE),
    ] {
        for &(roi, delta, clipped, free) in dec {
            let got = coder.decode_one(roi, delta, size);
            check_close(got, clipped, "decode, clipped");
            check_close(coder.decode_one(roi, delta, None), free, "decode");
            exact += (got == clipped) as usize;
            total += 1;
        }
        for &(roi, target, delta) in enc {
            check_close(coder.encode_one(roi, target), delta, "encode");
        }
    }
    // Only exp may round differently; with glibc's expf all 48 rows are bit-identical to
    // PyTorch's (checked when the tables were made), so demand nearly all.
    assert!(
        exact * 10 >= total * 9,
        "{exact} of {total} decoded boxes bit-exact"
    );
}

#[test]
fn nms_matches_reference_for_every_rule() {
    let cases = [
        (
            NMS_GRID_BOXES,
            NMS_GRID_SCORES,
            NMS_GRID_THR,
            [
                NMS_GRID_KEEP_ABOVE,
                NMS_GRID_KEEP_AT_LEAST,
                NMS_GRID_KEEP_CUDA,
            ],
        ),
        (
            NMS_GRID_THR_THIRD_BOXES,
            NMS_GRID_THR_THIRD_SCORES,
            NMS_GRID_THR_THIRD_THR,
            [
                NMS_GRID_THR_THIRD_KEEP_ABOVE,
                NMS_GRID_THR_THIRD_KEEP_AT_LEAST,
                NMS_GRID_THR_THIRD_KEEP_CUDA,
            ],
        ),
        (
            NMS_CONTINUOUS_BOXES,
            NMS_CONTINUOUS_SCORES,
            NMS_CONTINUOUS_THR,
            [
                NMS_CONTINUOUS_KEEP_ABOVE,
                NMS_CONTINUOUS_KEEP_AT_LEAST,
                NMS_CONTINUOUS_KEEP_CUDA,
            ],
        ),
    ];
    for (boxes, scores, thr, [above, at_least, cuda]) in cases {
        assert_eq!(nms(boxes, scores, NmsThreshold::cpu(thr)).unwrap(), above);
        assert_eq!(
            nms(boxes, scores, NmsThreshold::cpu_legacy(thr)).unwrap(),
            at_least
        );
        assert_eq!(nms(boxes, scores, NmsThreshold::cuda(thr)).unwrap(), cuda);
    }
    // The grid case has pairs at exactly IoU 0.5: the CPU rules must differ there.
    assert_ne!(NMS_GRID_KEEP_ABOVE, NMS_GRID_KEEP_AT_LEAST);
}

#[test]
fn batched_nms_matches_torchvision() {
    let keep = batched_nms(
        NMS_GRID_BOXES,
        NMS_GRID_SCORES,
        BATCHED_GRID_LABELS,
        NmsThreshold::cpu(NMS_GRID_THR),
    )
    .unwrap();
    assert_eq!(keep, BATCHED_GRID_KEEP_ABOVE);
}

#[test]
fn iou_matrix_bit_exact() {
    let m = iou_matrix(IOU_BOXES, IOU_BOXES);
    for (i, row) in IOU_MATRIX.iter().enumerate() {
        assert_eq!(m.row(i).unwrap(), &row[..]);
    }
}
