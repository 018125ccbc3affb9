#!/usr/bin/env python3
"""PyTorch counterpart of `pvt bench-detect` for Mask R-CNN-PVT: the end-to-end test-time path on one image.

Model (random weights, full size): the OFFICIAL whai362/PVT detection backbone `pvt_tiny` / `pvt_small`
(detection/pvt.py, imported through tools/pvt_official.py) + mmdet 3.3.0 `FPN` (in [64, 128, 320, 512], out
256, num_outs 5, P6 = max_pool2d(P5, 1, stride 2)) + `RPNHead` (256/256, anchors scale 8, ratios 0.5/1/2,
strides 4..64) + the StandardRoIHead parts `SingleRoIExtractor` (RoIAlign 7 for boxes, 14 for masks, strides
4..32, sampling_ratio 0), `Shared2FCBBoxHead` (fc 1024, 80 classes, class-specific deltas, stds
[.1, .1, .2, .2]) and `FCNMaskHead` (4 convs of 256, deconv x2, 80 classes) -- PVT-det's
`_base_/models/mask_rcnn_r50_fpn.py` at full size, i.e. tools/make_mask_rcnn_fixtures.py's wiring with the
published widths. Test cfg of that config: rpn nms_pre 1000, max_per_img 1000, nms 0.7, min_bbox_size 0;
rcnn score_thr 0.05, nms 0.5, max_per_img 100, mask_thr_binary 0.5. float32, CPU, eval mode,
torch.no_grad(), `torch.set_num_threads(--threads)` and cv2.setNumThreads likewise (default: the number of
cores this process may run on, as candle's default).

One timed iteration = the whole test path for one image, the image already decoded (as in
`pvt bench-detect`, which decodes it once before timing); stage times are reported separately:
  preprocess   --preprocess mmdet2 (default): the mmdet 2.x test pipeline steps the official PVT detection
               code runs, mmcv.imrescale(bgr, (1333, 800), bilinear, cv2) -> mmcv.imnormalize(mean, std,
               to_rgb) -> mmcv.impad_to_multiple(32, 0) -> NCHW tensor + img_shape / ori_shape / pad_shape /
               float32 scale_factor meta; --preprocess mmdet3: mmdet 3.3 Resize(keep_ratio) + PackDetInputs +
               DetDataPreprocessor. Both as in tools/bench_torch_retinanet.py; their outputs are asserted
               equal once before timing.
  backbone_fpn TwoStageDetector.extract_feat (mmdet 2.13 source): backbone -> FPN.
  rpn          RPNTestMixin.simple_test_rpn -> RPNHead forward (mmdet 3.3 module) -> AnchorHead.get_bboxes
               -> RPNHead._get_bboxes (mmdet 2.13 source: per level top 1000, decode + clip, w/h > 0,
               level-wise batched_nms 0.7, first 1000).
  bbox         StandardRoIHead.simple_test -> BBoxTestMixin.simple_test_bboxes (2.13): RoIAlign 7x7 on
               P2..P5 (SingleRoIExtractor, mmdet 3.3 module), Shared2FCBBoxHead forward (3.3 module),
               BBoxHead.get_bboxes (2.13: softmax, decode, clip, / scale_factor, multiclass_nms 0.05 / 0.5 /
               100), then bbox2result (2.13).
  mask         MaskTestMixin.simple_test_mask (2.13): mask RoIs = det_bboxes * scale_factor, RoIAlign 14x14,
               FCNMaskHead forward (3.3 module), FCNMaskHead.get_seg_masks (2.13, rescale=True, CPU path:
               one detection at a time, _do_paste_mask with skip_empty, >= 0.5) -> per-class lists of boolean
               [ori_h, ori_w] numpy masks.
  rle          mmdet 2.13's encode_mask_results (mmdet/core/mask/utils.py: pycocotools mask.encode of each
               Fortran-ordered uint8 mask), which mmdet 2.13's single_gpu_test (mmdet/apis/test.py) runs on
               every result right after the forward, before evaluation. Included by default because
               `pvt bench-detect`'s detect() encodes its masks as RLE too; --no-rle leaves it out (the
               result is then the boolean masks).
The mmdet 2.13 test-path code is executed from the unmodified 2.13.0 sources by
tools/mmdet_compat.load_two_stage_213 (see there; forwards of the 3.3 modules equal 2.13's, which
tools/make_mask_rcnn_fixtures.py asserts). Compiled kernels only: NMS = torchvision.ops.nms (compiled C++
CPU kernel, IoU > thr; the mmcv >= 1.4 CPU rule) under mmcv 1.3.8's batched_nms / NMSop; RoIAlign =
torchvision.ops.roi_align(aligned=True, sampling_ratio=0) through the mmcv.ops stand-in of
tools/mmdet_compat.py (the same algorithm as mmcv's CPU kernel). No Python-loop NMS is timed: after timing
(and after reading the peak RSS) the same test path is run once more on the same FPN features with
tools/mmdet_compat.py's numpy port of mmcv 1.3.8's CPU NMS kernel (IoU >= thr) and the detections, labels and
RLE masks compared ("nms_backends_agree").

Weights: drawn like `pvt bench-detect`'s random_mask_rcnn (crates/cli/src/detect_cmd.rs; candle VarMap
initialisation through crates/cli/src/bench_util.rs random_model): Linear weights Kaiming-normal
N(0, 2/fan_in), Linear biases U(+-1/sqrt(fan_in)), LayerNorm weight 1 and bias N(0, 0.02^2), conv and deconv
weights and biases and position embeddings N(0, 0.02^2); then rpn_cls bias -4.595 (p = 0.01) and fc_cls bias
3.0 on every class index i with i % 10 == 0 (i < 80), 0 elsewhere (background, index 80, included), so that
thousands of (proposal, class) scores pass 0.05 and the full 100 detections (and masks) come out. Seeded. (The
Kaiming-normal shared fcs leave a large common feature mean after the ReLUs, so one or two classes, not
necessarily biased ones, win on most proposals with scores near 0.9 rather than 0.09; the JSON line reports the
workload: proposals, box_candidates, detections, classes_detected, mask_pixels.)

Each model runs in a fresh subprocess so its peak RSS (getrusage ru_maxrss) is its own. One JSON line per model
on stdout. Needs the Python of tools/requirements-fixtures.txt (torch/timm/torchvision, mmdet 3.3 + mmengine +
mmcv-lite + opencv + pycocotools) and tools/_ref/ (official PVT code, see tools/pvt_official.py; mmdet 2.13.0 /
mmcv 1.3.8 sources, see tools/mmdet_compat.py):

    /tmp/mmdet-venv/bin/python tools/bench_torch_mask_rcnn.py
    /tmp/mmdet-venv/bin/python tools/bench_torch_mask_rcnn.py --models tiny --scale 320x256 --runs 1 --warmup 0
    bash tools/bench_mask_rcnn.sh   # with `pvt bench-detect --model mask_rcnn_pvt_{m}_fpn_1x_coco --json`
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_torch_retinanet import MEAN, STD, TorchvisionNmsExt, _proc_status_mib, parse_scale  # noqa: E402

NUM_CLASSES = 80
STRIDES = [4, 8, 16, 32, 64]
NECK_CFG = dict(in_channels=[64, 128, 320, 512], out_channels=256, num_outs=5)
RPN_ANCHOR_CFG = dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=STRIDES)
RPN_CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
RCNN_CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                      target_stds=[0.1, 0.1, 0.2, 0.2])
RPN_HEAD_CFG = dict(in_channels=256, feat_channels=256, anchor_generator=RPN_ANCHOR_CFG, bbox_coder=RPN_CODER_CFG)
BBOX_ROI_EXTRACTOR = dict(roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0), out_channels=256,
                          featmap_strides=[4, 8, 16, 32])
MASK_ROI_EXTRACTOR = dict(roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0), out_channels=256,
                          featmap_strides=[4, 8, 16, 32])
BBOX_HEAD_CFG = dict(in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=NUM_CLASSES,
                     bbox_coder=RCNN_CODER_CFG, reg_class_agnostic=False)
MASK_HEAD_CFG = dict(num_convs=4, in_channels=256, conv_out_channels=256, num_classes=NUM_CLASSES)
RPN_TEST_CFG = dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
RCNN_TEST_CFG = dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)
RPN_CLS_BIAS = -4.595  # -log((1 - 0.01) / 0.01), as pvt bench-detect
CLS_BIAS = 3.0  # fc_cls bias on classes 0, 10, ..., 70, as pvt bench-detect


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def init_like_pvt_rs(modules, seed):
    """Random weights drawn like `pvt bench-detect` (candle VarMap init; all-zero tensors -> N(0, 0.02^2)).
    Asserts that every parameter was drawn."""
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)
    done = set()
    with torch.no_grad():
        for root in modules:
            for m in root.modules():
                if isinstance(m, nn.Linear):
                    fan_in = m.weight.shape[1]
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
                    if m.bias is not None:
                        b = 1.0 / math.sqrt(fan_in)
                        m.bias.uniform_(-b, b, generator=g)
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.normal_(0.0, 0.02, generator=g)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    m.weight.normal_(0.0, 0.02, generator=g)
                    if m.bias is not None:
                        m.bias.normal_(0.0, 0.02, generator=g)
                else:
                    continue
                done.update(id(p) for p in m.parameters(recurse=False))
            for name, p in root.named_parameters():
                if "pos_embed" in name:
                    p.normal_(0.0, 0.02, generator=g)
                    done.add(id(p))
            missed = [n for n, p in root.named_parameters() if id(p) not in done]
            assert not missed, f"parameters without a pvt-rs-like initialisation: {missed}"


def run_case(model_name, image, scale, runs, warmup, threads, preprocess_kind, seed, rpn_cls_bias, cls_bias,
             with_rle):
    load_start = os.getloadavg()[0]
    import numpy as np
    import torch
    import cv2

    import mmdet_compat as mc
    mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models
    import mmcv
    import pycocotools.mask as mask_util
    import pvt_official
    from mmengine.config import ConfigDict
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.necks import FPN
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    from mmdet.datasets.transforms import PackDetInputs, Resize
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    # ---- model
    det = pvt_official.detection_module()
    backbone = getattr(det, f"pvt_{model_name}")(pretrained=None).eval()
    neck = FPN(**NECK_CFG).eval()
    rpn_head = RPNHead(**RPN_HEAD_CFG, train_cfg=None, test_cfg=ConfigDict(RPN_TEST_CFG)).eval()
    bbox_roi_extractor = SingleRoIExtractor(**BBOX_ROI_EXTRACTOR).eval()
    mask_roi_extractor = SingleRoIExtractor(**MASK_ROI_EXTRACTOR).eval()
    bbox_head = Shared2FCBBoxHead(**BBOX_HEAD_CFG).eval()
    mask_head = FCNMaskHead(**MASK_HEAD_CFG).eval()
    assert isinstance(bbox_roi_extractor.roi_layers[0], mc.RoIAlign)
    assert isinstance(mask_roi_extractor.roi_layers[0], mc.RoIAlign)
    init_like_pvt_rs([backbone, neck, rpn_head, bbox_head, mask_head], seed)
    with torch.no_grad():
        rpn_head.rpn_cls.bias.fill_(rpn_cls_bias)
        b = torch.zeros(NUM_CLASSES + 1)
        b[[i for i in range(NUM_CLASSES) if i % 10 == 0]] = cls_bias
        bbox_head.fc_cls.bias.copy_(b)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in
              (("backbone", backbone), ("neck", neck), ("rpn_head", rpn_head),
               ("roi_head", torch.nn.ModuleList([bbox_head, mask_head])))}

    # the mmdet 2.13 two-stage test path; encode_mask_results from the 2.13 source
    enc = mc.load_defs(os.path.join(mc.MMDET213, "core", "mask", "utils.py"), ["encode_mask_results"],
                       dict(np=np, mask_util=mask_util))
    encode_mask_results = enc.encode_mask_results
    marks = {}

    def make_model(nms_kind, bb):
        ns = mc.load_two_stage_213(nms_rule=">=" if nms_kind == "python" else ">")
        if nms_kind == "torchvision":
            ns.nms_ns.nms.__globals__["ext_module"] = TorchvisionNmsExt()
            assert ns.nms_ns.batched_nms.__globals__["ext_module"].__class__ is TorchvisionNmsExt

        class Det(ns.Detector):
            def extract_feat(self, img):
                x = ns.Detector.extract_feat(self, img)
                marks["backbone_fpn"] = time.perf_counter()
                return x

        class Rpn(ns.RPNHead):
            def simple_test_rpn(self, x, img_metas):
                r = ns.RPNHead.simple_test_rpn(self, x, img_metas)
                marks["rpn"] = time.perf_counter()
                return r

        class Roi(ns.RoIHead):
            def simple_test_bboxes(self, *a, **k):
                r = ns.RoIHead.simple_test_bboxes(self, *a, **k)
                marks["bbox_nms"] = time.perf_counter()
                return r

        model = mc.build_two_stage_213(
            ns, bb, neck, rpn_head, bbox_roi_extractor, bbox_head, mask_roi_extractor, mask_head,
            RPN_ANCHOR_CFG, RPN_CODER_CFG, RPN_TEST_CFG, RCNN_CODER_CFG, RCNN_TEST_CFG, NUM_CLASSES,
            classes=dict(Detector=Det, RPNHead=Rpn, RoIHead=Roi))
        return model, ns

    model, ns = make_model("torchvision", backbone)

    # ---- the image, decoded once (not timed, as in pvt bench-detect)
    bgr = cv2.imread(image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {image}")
    ori_h, ori_w = bgr.shape[:2]
    mean = np.array(MEAN, dtype=np.float32)
    std = np.array(STD, dtype=np.float32)
    dp = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)

    def meta2(img_hw, pad_hw, sf):
        return dict(img_shape=(img_hw[0], img_hw[1], 3), ori_shape=(ori_h, ori_w, 3),
                    pad_shape=(pad_hw[0], pad_hw[1], 3), scale_factor=sf, flip=False)

    def preprocess_mmdet2():
        resized = mmcv.imrescale(bgr, scale, interpolation="bilinear", backend="cv2")
        nh, nw = resized.shape[:2]
        sf = np.array([nw / ori_w, nh / ori_h, nw / ori_w, nh / ori_h], dtype=np.float32)
        norm = mmcv.imnormalize(resized, mean, std, to_rgb=True)
        padded = mmcv.impad_to_multiple(norm, 32, pad_val=0)
        x = torch.from_numpy(padded.transpose(2, 0, 1).copy())[None]
        return x, meta2((nh, nw), padded.shape[:2], sf)

    def preprocess_mmdet3():
        r = Resize(scale=scale, keep_ratio=True)(
            dict(img=bgr, img_path=image, img_shape=(ori_h, ori_w), ori_shape=(ori_h, ori_w)))
        packed = PackDetInputs(meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))(
            dict(r, img_id=0))
        data = dp(dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]]), training=False)
        meta = data["data_samples"][0].metainfo
        nh, nw = meta["img_shape"]
        x = data["inputs"].float()
        # the 2.x meta the 2.13 test path takes: float32 [w_scale, h_scale, w_scale, h_scale]
        sf = np.array([nw / ori_w, nh / ori_h, nw / ori_w, nh / ori_h], dtype=np.float32)
        return x, meta2((nh, nw), tuple(x.shape[-2:]), sf)

    preprocess = preprocess_mmdet2 if preprocess_kind == "mmdet2" else preprocess_mmdet3

    def test_path(m, x, meta):
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")
            result = m.simple_test(x, [meta], rescale=True)
            marks["mask"] = time.perf_counter()
            if with_rle:  # mmdet 2.13 single_gpu_test
                result = [(bbox_results, encode_mask_results(mask_results))
                          for bbox_results, mask_results in result]
        return result

    # ---- checks, once, before timing
    with torch.no_grad():
        x2, m2 = preprocess_mmdet2()
        x3, m3 = preprocess_mmdet3()
    preprocess_paths_equal = bool(torch.equal(x2, x3) and m2["img_shape"] == m3["img_shape"]
                                  and m2["pad_shape"] == m3["pad_shape"]
                                  and np.array_equal(m2["scale_factor"], m3["scale_factor"]))
    assert preprocess_paths_equal, "mmdet 2.x steps != mmdet 3.3 pipeline"
    del x2, x3

    rss_before = _proc_status_mib("VmRSS")
    hwm_before = _proc_status_mib("VmHWM")
    stages = ("preprocess", "backbone_fpn", "rpn", "bbox", "mask", "rle")
    t_stage = {s: [] for s in stages}
    t_all = []
    out = None
    with torch.no_grad():
        for i in range(warmup + runs):
            marks.clear()
            t0 = time.perf_counter()
            x, meta = preprocess()
            t1 = time.perf_counter()
            result = test_path(model, x, meta)
            t_end = time.perf_counter()
            if i >= warmup:
                pts = [t0, t1, marks["backbone_fpn"], marks["rpn"], marks["bbox_nms"], marks["mask"], t_end]
                for s, a, b in zip(stages, pts[:-1], pts[1:]):
                    t_stage[s].append((b - a) * 1e3)
                t_all.append((t_end - t0) * 1e3)
            out = (x, meta, result)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    load_end = os.getloadavg()[0]

    # ---- workload figures and the NMS-kernel cross-check (after timing and after ru_maxrss)
    x, meta, result = out
    (bbox_results, segm_results), = result
    det_rows = [(k, r) for k in range(NUM_CLASSES) for r in bbox_results[k]]
    n_det = len(det_rows)
    assert n_det == sum(len(s) for s in segm_results)
    if with_rle:
        mask_area = sum(int(mask_util.area(r)) for s in segm_results for r in s)
    else:
        mask_area = sum(int(m.sum()) for s in segm_results for m in s)

    rec = {}
    with torch.no_grad():
        feats = [f.clone() for f in backbone(x)]

        def cached(img):
            return [f.clone() for f in feats]

        # proposals and box-head outputs (the workload of the timed run)
        m_tv, ns_tv = make_model("torchvision", cached)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fpn = m_tv.extract_feat(x)
            props = m_tv.rpn_head.simple_test_rpn(fpn, [meta])[0]
            rois = torch.cat([props.new_zeros(props.shape[0], 1), props[:, :4]], 1)
            cls_score = m_tv.roi_head._bbox_forward(fpn, rois)["cls_score"]
        scores = torch.softmax(cls_score, -1)[:, :NUM_CLASSES]
        rec["proposals"] = int(props.shape[0])
        rec["box_candidates"] = int((scores > RCNN_TEST_CFG["score_thr"]).sum())
        rec["max_fg_score"] = round(float(scores.max()), 4)
        # the same test path on the numpy port of mmcv 1.3.8's CPU NMS kernel (not timed)
        m_py, _ = make_model("python", cached)
        result_py = test_path(m_py, x, meta)
        result_tv = test_path(m_tv, x, meta)
    (b_py, s_py), = result_py
    (b_tv, s_tv), = result_tv
    same_as_timed = all(np.array_equal(a, c) for a, c in zip(b_tv, bbox_results))
    agree = bool(all(a.shape == c.shape and np.array_equal(a, c) for a, c in zip(b_py, bbox_results))
                 and all(len(a) == len(c) for a, c in zip(s_py, segm_results)))
    if agree:
        for a, c in zip(s_py, segm_results):
            for ma, mb in zip(a, c):
                agree &= bool(ma == mb) if with_rle else bool(np.array_equal(ma, mb))

    def r2(v):
        return round(v, 2)

    return {
        "impl": "pytorch (official PVT + mmdet FPN/RPNHead/RoI heads + mmdet 2.13 test path)",
        "model": f"mask_rcnn_pvt_{model_name}_fpn_1x_coco",
        "image": os.path.relpath(image, ROOT) if image.startswith(ROOT) else image,
        "image_hw": [ori_h, ori_w],
        "scale": list(scale),
        "resized_hw": list(meta["img_shape"][:2]),
        "input": list(x.shape),
        "params": params,
        "dtype": "f32",
        "device": "cpu",
        "threads": threads,
        "warmup": warmup,
        "runs": runs,
        "median_ms": r2(statistics.median(t_all)),
        "min_ms": r2(min(t_all)),
        "max_ms": r2(max(t_all)),
        **{f"{s}_median_ms": r2(statistics.median(t_stage[s])) for s in stages},
        "times_ms": [r2(v) for v in t_all],
        "detections": n_det,
        "classes_detected": sorted({k for k, _ in det_rows}),
        "max_det_score": round(max((float(r[4]) for _, r in det_rows), default=0.0), 4),
        "mask_pixels": mask_area,
        **rec,
        "preprocess": preprocess_kind,
        "preprocess_paths_equal": preprocess_paths_equal,
        "test_path": "mmdet 2.13.0 TwoStageDetector.simple_test(rescale=True) (RPN proposals, box head + "
                     "multiclass_nms, masks pasted at the original size with get_seg_masks' CPU path), "
                     "mmcv 1.3.8 batched_nms",
        "masks": ("RLE: mmdet 2.13 encode_mask_results (pycocotools), as single_gpu_test" if with_rle
                  else "boolean numpy arrays (no RLE encoding)"),
        "nms_kernel": "torchvision.ops.nms (compiled CPU, IoU > thr)",
        "roi_align": "torchvision.ops.roi_align (compiled CPU, aligned=True, sampling_ratio=0)",
        "nms_backends_agree": agree,
        "nms_backends_note": "timed result vs the same path on mmdet_compat's numpy port of mmcv 1.3.8's CPU "
                             "kernel (IoU >= thr), same FPN features, after timing",
        "rerun_equals_timed": bool(same_as_timed),
        "init": "like pvt bench-detect random_mask_rcnn (Linear Kaiming-normal / U(+-1/sqrt(fan_in)) bias, "
                "conv/deconv/pos-embed/LN-bias N(0,0.02^2), LN weight 1, "
                f"rpn_cls bias {rpn_cls_bias}, fc_cls bias {cls_bias} on classes i % 10 == 0, i < 80, 0 "
                f"elsewhere), seed {seed}",
        "peak_rss_mib": round(peak_kib / 1024.0, 1),
        "rss_before_forward_mib": round(rss_before, 1),
        "hwm_before_forward_mib": round(hwm_before, 1),
        "torch": torch.__version__,
        "loadavg_1m_start": r2(load_start),
        "loadavg_1m_end": r2(load_end),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,small", help="comma list of tiny,small")
    ap.add_argument("--image", default=os.path.join(ROOT, "assets", "images", "chelsea.png"))
    ap.add_argument("--scale", default="1333x800", help="mmdet test scale LONGxSHORT (keep ratio)")
    ap.add_argument("--runs", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="torch.set_num_threads / cv2.setNumThreads (default: the cores available)")
    ap.add_argument("--preprocess", choices=["mmdet2", "mmdet3"], default="mmdet2")
    ap.add_argument("--no-rle", action="store_true",
                    help="leave mmdet 2.13's encode_mask_results (pycocotools RLE) out of the timed path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rpn-cls-bias", type=float, default=RPN_CLS_BIAS, help="rpn_cls bias (pvt bench-detect's)")
    ap.add_argument("--cls-bias", type=float, default=CLS_BIAS,
                    help="fc_cls bias on classes 0, 10, ..., 70 (pvt bench-detect's); 0 elsewhere")
    ap.add_argument("--case", metavar="MODEL", help=argparse.SUPPRESS)  # internal: run one model here
    args = ap.parse_args()
    image = os.path.abspath(args.image)
    scale = parse_scale(args.scale)

    if args.case:
        res = run_case(args.case, image, scale, args.runs, args.warmup, args.threads, args.preprocess,
                       args.seed, args.rpn_cls_bias, args.cls_bias, not args.no_rle)
        print(json.dumps(res), flush=True)
        return

    for m in args.models.split(","):
        if m not in ("tiny", "small"):
            raise SystemExit(f"unknown model {m!r} (tiny, small)")
        cmd = [sys.executable, os.path.abspath(__file__), "--case", m, "--image", image, "--scale", args.scale,
               "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--preprocess", args.preprocess, "--seed", str(args.seed),
               "--rpn-cls-bias", repr(args.rpn_cls_bias), "--cls-bias", repr(args.cls_bias)]
        if args.no_rle:
            cmd.append("--no-rle")
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"model {m} failed")
        line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
        print(line, flush=True)


if __name__ == "__main__":
    main()
