#!/usr/bin/env python3
"""PyTorch counterpart of `pvt bench-detect`: end-to-end RetinaNet-PVT test-time path on one image.

Model (random weights): the OFFICIAL whai362/PVT detection backbone `pvt_tiny` / `pvt_small`
(detection/pvt.py, imported through tools/pvt_official.py) + mmdet 3.3.0 `FPN` (in [64, 128, 320,
512], out 256, start_level 1, add_extra_convs 'on_input', num_outs 5) + mmdet 3.3.0 `RetinaHead`
(80 classes, 256 channels, 4 stacked convs, RetinaNet anchors) -- the modules, configs and code paths
of tools/make_retinanet_fixtures.py at full size. float32, CPU, eval mode, torch.no_grad(),
`torch.set_num_threads(--threads)` (and cv2.setNumThreads likewise).

One timed iteration = the whole test path for one image, the image already decoded (as in
`pvt bench-detect`, which decodes it once before timing):
  preprocess  --preprocess mmdet2 (default): the mmdet 2.x test pipeline steps the official PVT
              detection code runs, mmcv.imrescale(bgr, (1333, 800), bilinear, cv2) ->
              mmcv.imnormalize(mean, std, to_rgb) -> mmcv.impad_to_multiple(32, 0) -> NCHW tensor,
              scale_factor / img_shape meta;
              --preprocess mmdet3: mmdet 3.3 Resize(keep_ratio) + PackDetInputs + DetDataPreprocessor.
              Both are the steps of make_retinanet_fixtures.preprocess(); their outputs are asserted
              equal once before timing.
  network     backbone -> FPN -> RetinaHead forward.
  postprocess mmdet 2.13.0's own AnchorHead.get_bboxes (the <= 2.17 algorithm: per level top-1000
              anchors by max class score, delta decode, multiclass_nms score > 0.05, NMS IoU 0.5,
              100 per image, rescale to the original image), executed from the 2.13.0 sources by
              tools/mmdet_compat.py.MMDet213 on mmcv 1.3.8's batched_nms. The NMS kernel under it
              (--nms): `torchvision` (default) = torchvision.ops.nms, a compiled C++ CPU kernel with
              the same algorithm as mmcv's compiled CPU kernel (sort by score, greedy suppression;
              suppress when IoU > thr, the mmcv >= 1.4 rule); `python` = tools/mmdet_compat.py's
              exact numpy port of the mmcv 1.3.8 kernel (IoU >= thr; slower than any compiled op).
              Once per model, before timing, both kernels are run on the same head outputs and the
              detections compared ("nms_backends_agree").

Weights: drawn like `pvt bench-detect`'s random_retinanet (candle VarMap initialisation), so the
post-processing sees a comparable workload: Linear weights Kaiming-normal N(0, 2/fan_in), Linear
biases U(+-1/sqrt(fan_in)), LayerNorm weight 1 and bias N(0, 0.02^2), conv weights and biases and
position embeddings N(0, 0.02^2), retina_cls bias -4.595 (focal-loss prior p = 0.01). Seeded.

Each model runs in a fresh subprocess so its peak RSS (getrusage ru_maxrss) is its own. One JSON
line per model on stdout. Needs a Python with torch/timm/torchvision AND mmdet 3.3 + mmengine +
mmcv-lite + opencv (the venv of tools/requirements-fixtures.txt), plus tools/_ref/ (official PVT
code, see tools/pvt_official.py; mmdet 2.13.0 / mmcv 1.3.8 sources, see tools/mmdet_compat.py):

    /tmp/mmdet-venv/bin/python tools/bench_torch_retinanet.py
    /tmp/mmdet-venv/bin/python tools/bench_torch_retinanet.py --models tiny --scale 320x256 --runs 1 --warmup 0
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

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
NUM_CLASSES = 80
NECK_CFG = dict(in_channels=[64, 128, 320, 512], out_channels=256, start_level=1, add_extra_convs="on_input",
                num_outs=5)
ANCHOR_CFG = dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                  strides=[8, 16, 32, 64, 128])
CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
HEAD_CFG = dict(num_classes=NUM_CLASSES, in_channels=256, stacked_convs=4, feat_channels=256,
                anchor_generator=ANCHOR_CFG, bbox_coder=CODER_CFG,
                loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0))
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                max_per_img=100)
CLS_BIAS = -4.595  # -log((1 - 0.01) / 0.01), as pvt bench-detect


def _proc_status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class TorchvisionNmsExt:
    """Stands in for mmcv's compiled `ext_module` under mmcv 1.3.8's NMSop: torchvision's CPU kernel."""

    def __init__(self):
        import torchvision.ops
        self._nms = torchvision.ops.nms

    def nms(self, boxes, scores, iou_threshold, offset):
        assert offset == 0, "torchvision's kernel has no +1 offset"
        return self._nms(boxes, scores, float(iou_threshold))


def init_like_pvt_rs(modules, seed):
    """Random weights drawn like `pvt bench-detect` (candle VarMap init; all-zero tensors -> N(0, 0.02^2))."""
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)
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
                elif isinstance(m, nn.Conv2d):
                    m.weight.normal_(0.0, 0.02, generator=g)
                    if m.bias is not None:
                        m.bias.normal_(0.0, 0.02, generator=g)
            for name, p in root.named_parameters():
                if "pos_embed" in name:
                    p.normal_(0.0, 0.02, generator=g)


def run_case(model_name, image, scale, runs, warmup, threads, preprocess_kind, nms_kind, seed, cls_bias):
    load_start = os.getloadavg()[0]
    import numpy as np
    import torch
    import cv2

    sys.path.insert(0, HERE)
    import mmdet_compat as mc
    mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models
    import mmcv
    import pvt_official
    from mmengine.config import ConfigDict
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.necks import FPN
    from mmdet.datasets.transforms import PackDetInputs, Resize
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    # ---- model
    det = pvt_official.detection_module()
    backbone = getattr(det, f"pvt_{model_name}")(pretrained=None).eval()
    neck = FPN(**NECK_CFG).eval()
    head = RetinaHead(**HEAD_CFG, train_cfg=None, test_cfg=ConfigDict(TEST_CFG)).eval()
    init_like_pvt_rs([backbone, neck, head], seed)
    with torch.no_grad():
        head.retina_cls.bias.fill_(cls_bias)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in
              (("backbone", backbone), ("neck", neck), ("head", head))}

    def make_post(kind):
        m = mc.MMDet213(NUM_CLASSES, ANCHOR_CFG, CODER_CFG, ConfigDict(TEST_CFG),
                        nms_rule=">=" if kind == "python" else ">")
        if kind == "torchvision":
            m.nms_ns.nms.__globals__["ext_module"] = TorchvisionNmsExt()
        return m

    post = make_post(nms_kind)

    # ---- the image, decoded once (not timed, as in pvt bench-detect)
    bgr = cv2.imread(image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {image}")
    ori_h, ori_w = bgr.shape[:2]
    mean = np.array(MEAN, dtype=np.float32)
    std = np.array(STD, dtype=np.float32)
    dp = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)

    def preprocess_mmdet2():
        resized = mmcv.imrescale(bgr, scale, interpolation="bilinear", backend="cv2")
        nh, nw = resized.shape[:2]
        sf = np.array([nw / ori_w, nh / ori_h, nw / ori_w, nh / ori_h], dtype=np.float32)
        norm = mmcv.imnormalize(resized, mean, std, to_rgb=True)
        padded = mmcv.impad_to_multiple(norm, 32, pad_val=0)
        x = torch.from_numpy(padded.transpose(2, 0, 1).copy())[None]
        return x, (nh, nw), sf

    def preprocess_mmdet3():
        r = Resize(scale=scale, keep_ratio=True)(
            dict(img=bgr, img_path=image, img_shape=(ori_h, ori_w), ori_shape=(ori_h, ori_w)))
        packed = PackDetInputs(meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))(
            dict(r, img_id=0))
        data = dp(dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]]), training=False)
        meta = data["data_samples"][0].metainfo
        nh, nw = meta["img_shape"]
        # the 2.x meta the <= 2.17 post-processing takes: float32 [w_scale, h_scale, w_scale, h_scale]
        sf = np.array([nw / ori_w, nh / ori_h, nw / ori_w, nh / ori_h], dtype=np.float32)
        return data["inputs"].float(), (nh, nw), sf

    preprocess = preprocess_mmdet2 if preprocess_kind == "mmdet2" else preprocess_mmdet3

    def network(x):
        feats = backbone(x)
        fpn = neck(tuple(feats))
        return head(fpn)

    def postprocess(pp, cls_scores, bbox_preds, img_hw, sf, with_nms=True):
        meta2 = dict(img_shape=(img_hw[0], img_hw[1], 3), scale_factor=sf, ori_shape=(ori_h, ori_w, 3))
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")
            return pp.get_bboxes(list(cls_scores), list(bbox_preds), [meta2], rescale=True, with_nms=with_nms)[0]

    # ---- checks, once, before timing
    with torch.no_grad():
        x2, hw2, sf2 = preprocess_mmdet2()
        x3, hw3, sf3 = preprocess_mmdet3()
    preprocess_paths_equal = bool(torch.equal(x2, x3) and hw2 == hw3 and np.array_equal(sf2, sf3))
    assert preprocess_paths_equal, "mmdet 2.x steps != mmdet 3.3 pipeline"
    del x2, x3

    rss_before = _proc_status_mib("VmRSS")
    hwm_before = _proc_status_mib("VmHWM")
    t_pre, t_net, t_post, t_all = [], [], [], []
    out = None
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            x, img_hw, sf = preprocess()
            t1 = time.perf_counter()
            cls_scores, bbox_preds = network(x)
            t2 = time.perf_counter()
            dets, labels = postprocess(post, cls_scores, bbox_preds, img_hw, sf)
            t3 = time.perf_counter()
            if i >= warmup:
                t_pre.append((t1 - t0) * 1e3)
                t_net.append((t2 - t1) * 1e3)
                t_post.append((t3 - t2) * 1e3)
                t_all.append((t3 - t0) * 1e3)
            out = (x, img_hw, sf, cls_scores, bbox_preds, dets, labels)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    load_end = os.getloadavg()[0]

    # ---- workload figures and the NMS-kernel cross-check (after timing and after ru_maxrss)
    x, img_hw, sf, cls_scores, bbox_preds, dets, labels = out
    with torch.no_grad():
        mlvl_boxes, mlvl_scores = postprocess(post, cls_scores, bbox_preds, img_hw, sf, with_nms=False)
        other = make_post("python" if nms_kind == "torchvision" else "torchvision")
        dets_o, labels_o = postprocess(other, cls_scores, bbox_preds, img_hw, sf)
    agree = bool(dets.shape == dets_o.shape and torch.equal(labels, labels_o)
                 and torch.equal(dets, dets_o))
    all_scores = torch.cat([c[0].permute(1, 2, 0).reshape(-1, NUM_CLASSES).sigmoid() for c in cls_scores])

    def r2(v):
        return round(v, 2)

    return {
        "impl": "pytorch (official PVT + mmdet FPN/RetinaHead + mmdet 2.13 post-processing)",
        "model": f"retinanet_pvt_{model_name}_fpn_1x_coco",
        "image": os.path.relpath(image, ROOT) if image.startswith(ROOT) else image,
        "image_hw": [ori_h, ori_w],
        "scale": list(scale),
        "resized_hw": list(img_hw),
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
        "preprocess_median_ms": r2(statistics.median(t_pre)),
        "network_median_ms": r2(statistics.median(t_net)),
        "postprocess_median_ms": r2(statistics.median(t_post)),
        "times_ms": [r2(v) for v in t_all],
        "detections": int(dets.shape[0]),
        "anchors_total": int(all_scores.shape[0]),
        "anchors_after_topk": int(mlvl_boxes.shape[0]),
        "nms_candidates": int((mlvl_scores[:, :NUM_CLASSES] > TEST_CFG["score_thr"]).sum()),
        "max_score": round(float(all_scores.max()), 4),
        "preprocess": preprocess_kind,
        "preprocess_paths_equal": preprocess_paths_equal,
        "postprocess": "mmdet 2.13.0 AnchorHead.get_bboxes (<= 2.17 algorithm), mmcv 1.3.8 batched_nms",
        "nms_kernel": ("torchvision.ops.nms (compiled CPU, IoU > thr)" if nms_kind == "torchvision"
                       else "mmdet_compat numpy port of mmcv 1.3.8 CPU kernel (IoU >= thr)"),
        "nms_backends_agree": agree,
        "init": "like pvt bench-detect (Linear Kaiming-normal, conv/pos-embed/LN-bias N(0,0.02^2), "
                f"retina_cls bias {cls_bias}), seed {seed}",
        "peak_rss_mib": round(peak_kib / 1024.0, 1),
        "rss_before_forward_mib": round(rss_before, 1),
        "hwm_before_forward_mib": round(hwm_before, 1),
        "torch": torch.__version__,
        "loadavg_1m_start": r2(load_start),
        "loadavg_1m_end": r2(load_end),
    }


def parse_scale(s):
    a, b = (int(v) for v in s.lower().split("x"))
    return (a, b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,small", help="comma list of tiny,small")
    ap.add_argument("--image", default=os.path.join(ROOT, "assets", "images", "chelsea.png"))
    ap.add_argument("--scale", default="1333x800", help="mmdet test scale LONGxSHORT (keep ratio)")
    ap.add_argument("--runs", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads / cv2.setNumThreads")
    ap.add_argument("--preprocess", choices=["mmdet2", "mmdet3"], default="mmdet2")
    ap.add_argument("--nms", choices=["torchvision", "python"], default="torchvision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cls-bias", type=float, default=CLS_BIAS,
                    help="retina_cls bias (default = pvt bench-detect's); higher -> more NMS candidates")
    ap.add_argument("--case", metavar="MODEL", help=argparse.SUPPRESS)  # internal: run one model here
    args = ap.parse_args()
    image = os.path.abspath(args.image)
    scale = parse_scale(args.scale)

    if args.case:
        res = run_case(args.case, image, scale, args.runs, args.warmup, args.threads, args.preprocess,
                       args.nms, args.seed, args.cls_bias)
        print(json.dumps(res), flush=True)
        return

    for m in args.models.split(","):
        if m not in ("tiny", "small"):
            raise SystemExit(f"unknown model {m!r} (tiny, small)")
        cmd = [sys.executable, os.path.abspath(__file__), "--case", m, "--image", image, "--scale", args.scale,
               "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--preprocess", args.preprocess, "--nms", args.nms, "--seed", str(args.seed),
               "--cls-bias", repr(args.cls_bias)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"model {m} failed")
        line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
        print(line, flush=True)


if __name__ == "__main__":
    main()
