#!/usr/bin/env python3
"""PyTorch counterpart of `pvt bench-segment`: end-to-end Semantic FPN + PVT whole-image test path.

Model (random weights): the OFFICIAL whai362/PVT segmentation backbone `pvt_tiny` / `pvt_small`
(segmentation/pvt.py = tools/_ref/seg_pvt.py, imported by make_semantic_fpn_fixtures.import_seg_pvt)
+ mmsegmentation 1.2.2 `FPN` (in [64, 128, 320, 512], out 256, num_outs 4) + `FPNHead` (in [256] * 4,
in_index [0..3], feature_strides [4, 8, 16, 32], channels 128, 150 classes, dropout 0.1, SyncBN ->
eval BatchNorm with running statistics, align_corners False): the fpn_pvt_{t,s}_ade20k_40k configs,
built as tools/make_semantic_fpn_fixtures.py builds them at mini size. float32, CPU, eval mode,
torch.no_grad(), `torch.set_num_threads(--threads)` (and cv2.setNumThreads likewise).

One timed iteration = the whole test path for one image (mmseg 0.13 `inference(mode='whole',
rescale=True)` as PVT-seg runs it), the image already decoded (as in `pvt bench-segment`, which
builds its RgbImage before timing; here the same pixels are held as cv2/mmcv hold a decoded image,
BGR uint8 HWC):
  preprocess  PVT-seg AlignResize(img_scale=(2048, 512), keep_ratio=True, size_divisor=32):
              mmcv.imrescale(bgr, (2048, 512)) then mmcv.imresize to the next multiples of 32 (cv2
              bilinear, both always called, as AlignResize._resize_img does) -> mmcv.imnormalize(mean,
              std, to_rgb=True) -> NCHW float32 tensor (make_semantic_fpn_fixtures.photo_input's steps).
  network     backbone -> FPN -> FPNHead forward (logits at stride 4, [1, 150, H/4, W/4]).
  postprocess FPNHead.predict_by_feat (mmseg resize = F.interpolate bilinear, align_corners False, to
              the network input size), mmseg resize to the original image size, softmax over classes,
              argmax, label map to numpy (mmseg 0.13 whole_inference + inference + simple_test).
  Once per case, before timing, these split steps are checked against
  make_semantic_fpn_fixtures.Segmentor.whole (the fixtures' reference path): same labels
  ("matches_fixture_path").

Image: synthetic, the pixels of `pvt bench-segment` (x = column, y = row, k = R/G/B channel):
  v_k = u8(((x*(3+k) + y*(5+2k)) % 251) * 0.6 + ((x ^ y) % 64))  (f32 arithmetic, truncated)
For 512x512 and 512x683 (HxW) the imrescale factor is 1 (min(2048/long, 512/short)), so AlignResize
only aligns: 512x512 stays, 512x683 -> 512x704.

Weights (seeded; timings do not depend on values, but BN sees non-trivial statistics): backbone drawn
like `pvt bench-detect` / tools/bench_torch_retinanet.py (Linear Kaiming-normal N(0, 2/fan_in),
Linear biases U(+-1/sqrt(fan_in)), LayerNorm weight 1 and bias N(0, 0.02^2), conv weights and biases
and position embeddings N(0, 0.02^2)); FPN / FPNHead as make_semantic_fpn_fixtures.set_weights draws
them (conv weight N(0, 1/fan_in), conv bias N(0, 0.1^2), BN weight 1 + N(0, 0.2^2), BN bias
N(0, 0.2^2)), BN running_mean N(0, 0.1^2), running_var exp(0.4 N(0, 1)).

Each (model, size) case runs in a fresh subprocess so its peak RSS (getrusage ru_maxrss) is its own;
RSS before the first forward is read after the model and the image are built (rss_after_imports_mib:
the interpreter + torch/cv2/mmseg imports alone, before the model). One JSON line per case
on stdout. Needs the mmseg venv of tools/make_semantic_fpn_fixtures.py (torch/timm + mmseg 1.2.2 +
mmcv-lite + mmengine + opencv) and tools/_ref/seg_pvt.py:

    /tmp/mmseg-venv/bin/python tools/bench_torch_semantic_fpn.py
    /tmp/mmseg-venv/bin/python tools/bench_torch_semantic_fpn.py --models tiny --sizes 256x320 --runs 1 --warmup 0
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
ALIGN_SCALE = (2048, 512)
SIZE_DIVISOR = 32
NUM_CLASSES = 150
EMBED_DIMS = [64, 128, 320, 512]
MODELS = {"tiny": "fpn_pvt_t_ade20k_40k", "small": "fpn_pvt_s_ade20k_40k"}


def _proc_status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synthetic_rgb(h, w):
    """`pvt bench-segment`'s image, [h, w, 3] uint8 RGB (f32 arithmetic, `as u8` truncation)."""
    import numpy as np
    y, x = np.mgrid[0:h, 0:w].astype(np.uint32)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for k in range(3):
        a = ((x * (3 + k) + y * (5 + 2 * k)) % 251).astype(np.float32) * np.float32(0.6)
        v = a + ((x ^ y) % 64).astype(np.float32)
        out[:, :, k] = np.clip(v, 0, 255).astype(np.uint8)  # Rust `f32 as u8`: truncate, saturate
    return out


def init_weights(backbone, neck, head, seed):
    import torch
    import torch.nn as nn
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in backbone.modules():  # like pvt bench-detect (candle VarMap init)
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
        for name, p in backbone.named_parameters():
            if "pos_embed" in name:
                p.normal_(0.0, 0.02, generator=g)
        for root in (neck, head):  # like make_semantic_fpn_fixtures.set_weights
            for m in root.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.normal_(0.0, 1.0 / math.sqrt(m.weight[0].numel()), generator=g)
                    if m.bias is not None:
                        m.bias.normal_(0.0, 0.1, generator=g)
                elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
                    m.bias.normal_(0.0, 0.2, generator=g)
                    m.running_mean.normal_(0.0, 0.1, generator=g)
                    m.running_var.copy_(torch.exp(0.4 * torch.randn(m.running_var.shape, generator=g)))
                    m.num_batches_tracked.fill_(40000)


def run_case(model_name, hw, runs, warmup, threads, seed):
    load_start = os.getloadavg()[0]
    import numpy as np
    import torch
    import torch.nn.functional as F
    import cv2

    sys.path.insert(0, HERE)
    import make_semantic_fpn_fixtures as fx
    fx.install_mmcv_ops_stub()
    import mmcv
    import mmseg
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.necks import FPN
    from mmseg.models.utils import resize

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    rss_imports = _proc_status_mib("VmRSS")

    # ---- model (fpn_pvt_*_ade20k_40k config arguments, as make_semantic_fpn_fixtures.full_size_keys)
    seg_mod = fx.import_seg_pvt()
    backbone = getattr(seg_mod, f"pvt_{model_name}")()
    neck = FPN(in_channels=EMBED_DIMS, out_channels=256, num_outs=4)
    head = FPNHead(in_channels=[256] * 4, in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32], channels=128,
                   dropout_ratio=0.1, num_classes=NUM_CLASSES, norm_cfg=dict(type="SyncBN", requires_grad=True),
                   align_corners=False,
                   loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))
    init_weights(backbone, neck, head, seed)
    model = fx.Segmentor(backbone, neck, head).eval()
    assert not head.training and not head.dropout.training
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in
              (("backbone", backbone), ("neck", neck), ("head", head))}
    bn_count = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in head.modules())

    # ---- the image, built once (not timed, as in pvt bench-segment); cv2/mmcv hold BGR
    ori_h, ori_w = hw
    bgr = np.ascontiguousarray(synthetic_rgb(ori_h, ori_w)[:, :, ::-1])
    mean = np.array(MEAN, dtype=np.float32)
    std = np.array(STD, dtype=np.float32)

    def preprocess():
        img = mmcv.imrescale(bgr, ALIGN_SCALE, return_scale=False)  # cv2 bilinear
        rh, rw = img.shape[:2]
        ah = int(np.ceil(rh / SIZE_DIVISOR)) * SIZE_DIVISOR
        aw = int(np.ceil(rw / SIZE_DIVISOR)) * SIZE_DIVISOR
        img = mmcv.imresize(img, (aw, ah))
        norm = mmcv.imnormalize(img, mean, std, to_rgb=True)
        return torch.from_numpy(norm.transpose(2, 0, 1).copy())[None]

    def network(x):
        return head(neck(backbone(x)))

    def postprocess(logits, x):
        H, W = x.shape[2:]
        at_input = head.predict_by_feat(logits, [dict(img_shape=(H, W), pad_shape=(H, W))])
        at_ori = resize(at_input, size=(ori_h, ori_w), mode="bilinear", align_corners=False, warning=False)
        return F.softmax(at_ori, dim=1).argmax(dim=1)[0].numpy()

    rss_before = _proc_status_mib("VmRSS")
    hwm_before = _proc_status_mib("VmHWM")
    t_pre, t_net, t_post, t_all = [], [], [], []
    out = None
    with torch.no_grad():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            x = preprocess()
            t1 = time.perf_counter()
            logits = network(x)
            t2 = time.perf_counter()
            labels = postprocess(logits, x)
            t3 = time.perf_counter()
            if i >= warmup:
                t_pre.append((t1 - t0) * 1e3)
                t_net.append((t2 - t1) * 1e3)
                t_post.append((t3 - t2) * 1e3)
                t_all.append((t3 - t0) * 1e3)
            out = (x, logits, labels)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    load_end = os.getloadavg()[0]

    # ---- cross-check against the fixture script's reference path (after timing and ru_maxrss)
    x, logits, labels = out
    with torch.no_grad():
        _, _, ref_labels = model.whole(x, (ori_h, ori_w))
    matches = bool(np.array_equal(labels, ref_labels.numpy()))
    hist = np.bincount(labels.ravel(), minlength=NUM_CLASSES)

    def r2(v):
        return round(v, 2)

    return {
        "impl": "pytorch (official PVT-seg + mmseg FPN/FPNHead, mmseg 0.13 whole-image test path)",
        "model": MODELS[model_name],
        "size": [ori_h, ori_w],
        "input": list(x.shape),
        "head_logits": list(logits.shape),
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
        "classes_present": int((hist > 0).sum()),
        "matches_fixture_path": matches,
        "init": f"backbone like pvt bench-detect, FPN/FPNHead like make_semantic_fpn_fixtures, {bn_count} BN "
                f"with random running stats, seed {seed}",
        "peak_rss_mib": round(peak_kib / 1024.0, 1),
        "rss_after_imports_mib": round(rss_imports, 1),
        "rss_before_forward_mib": round(rss_before, 1),
        "hwm_before_forward_mib": round(hwm_before, 1),
        "torch": torch.__version__,
        "mmseg": mmseg.__version__,
        "opencv": cv2.__version__,
        "loadavg_1m_start": r2(load_start),
        "loadavg_1m_end": r2(load_end),
    }


def parse_hw(s):
    h, w = (int(v) for v in s.lower().split("x"))
    return (h, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,small", help="comma list of tiny,small")
    ap.add_argument("--sizes", default="512x512,512x683", help="comma list of synthetic image sizes HxW")
    ap.add_argument("--runs", type=int, default=3, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads / cv2.setNumThreads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", metavar="MODEL", help=argparse.SUPPRESS)  # internal: run one case here
    args = ap.parse_args()
    sizes = [parse_hw(s) for s in args.sizes.split(",")]

    if args.case:
        assert len(sizes) == 1
        res = run_case(args.case, sizes[0], args.runs, args.warmup, args.threads, args.seed)
        print(json.dumps(res), flush=True)
        return

    for m in args.models.split(","):
        if m not in MODELS:
            raise SystemExit(f"unknown model {m!r} (tiny, small)")
        for h, w in sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--case", m, "--sizes", f"{h}x{w}",
                   "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--seed", str(args.seed)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.stderr.write(res.stdout + res.stderr)
                raise SystemExit(f"model {m} {h}x{w} failed")
            line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
            print(line, flush=True)


if __name__ == "__main__":
    main()
