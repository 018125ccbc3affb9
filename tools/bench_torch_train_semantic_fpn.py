#!/usr/bin/env python3
"""PyTorch counterpart of `pvt bench-train` for a Semantic FPN-PVT training config.

Model, built from the same JSON training config (e.g. assets/configs/fpn_pvt_synth_demo.json):
  backbone  the OFFICIAL whai362/PVT v1 `PyramidVisionTransformer` of detection/pvt.py (through
            tools/pvt_official.py; PVT-seg's segmentation/pvt.py computes the same, stage by stage,
            with the same position-table rule) with the config's stages: img_size = pretrain_img_size, embed_dims, num_heads, mlp_ratios, depths,
            sr_ratios, qkv_bias, LayerNorm eps 1e-6 ("mmdet" numerics) or 1e-5; drop / drop-path 0
            (our training has neither).
  neck      mmsegmentation 1.2.2 `FPN(in_channels=embed_dims, out_channels=fpn_channels, num_outs=4)`.
  head      mmsegmentation 1.2.2 `FPNHead(in_index [0..3], feature_strides [4, 8, 16, 32],
            channels=head_channels, num_classes, dropout_ratio 0.1, BN (train mode, requires_grad),
            align_corners False, CrossEntropyLoss(use_sigmoid False, avg_non_ignore as the config))`,
            as tools/make_semantic_fpn_fixtures.py / tools/bench_torch_semantic_fpn.py build it
            (BN instead of SyncBN: one process). mmseg's own init_weights for neck and head.
  float32, CPU, `torch.set_num_threads(--threads)`.

One timed iteration = one training step on a fixed batch (built before timing), what mmseg's
EncoderDecoder.loss + mmcv's OptimizerHook do per iteration minus data loading:
  optimizer.zero_grad(); logits = head(neck(backbone(x))) (model in train mode: BN batch statistics,
  Dropout2d 0.1); mmseg `resize` (bilinear, align_corners False) of the logits to the label size;
  head.loss_decode(logits, labels, ignore_index=255) (mmseg CrossEntropyLoss: mean over all pixels,
  ignored ones counting 0, unless avg_non_ignore); backward; torch.nn.utils.clip_grad_norm_(params,
  grad_clip) when the config clips; torch.optim.AdamW(lr, betas, eps, weight_decay of the config)
  step; loss.item(). (mmseg's loss_by_feat also computes a pixel accuracy for the log; it is left out,
  as our step has no such metric.)

Batch: the same numbers as `pvt bench-train` (crates/cli/src/bench_train_cmd.rs), from splitmix64:
u(s, i) = (splitmix64((s << 40) ^ i) >> 11) / 2^53; pixels u(1, i) * 4 - 2 ([B, 3, H, W] row-major);
labels 255 where u(3, i) < 0.1, else floor(u(2, i) * num_classes). `label_sum` / `ignored_pixels` in the
JSON line are checksums to compare with ours.

One JSON line on stdout. Needs torch/timm (tools/.venv) + mmsegmentation 1.2.2 + mmcv-lite + mmengine
(the mmseg venv of tools/make_semantic_fpn_fixtures.py) and tools/_ref/det_pvt.py (tools/pvt_official.py):

    /tmp/mmseg-venv/bin/python tools/bench_torch_train_semantic_fpn.py \\
        --config assets/configs/fpn_pvt_synth_demo.json --iters 10 --warmup 2
"""

import argparse
import json
import os
import resource
import sys
import time
import warnings
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))


def _proc_status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def u01(stream, idx):
    """The batch hash of `pvt bench-train`: uniform [0, 1) numbers `idx` (uint64 array) of `stream`."""
    import numpy as np
    with np.errstate(over="ignore"):
        z = (np.uint64(stream) << np.uint64(40)) ^ idx
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def random_images(b, h, w):
    import numpy as np
    n = b * 3 * h * w
    return (u01(1, np.arange(n, dtype=np.uint64)) * 4.0 - 2.0).astype(np.float32).reshape(b, 3, h, w)


def official_backbone(bcfg):
    """The official PVT v1 class with the stages of a pvt-rs backbone config."""
    import torch.nn as nn
    import pvt_official
    if "kv_reduction" in bcfg:
        raise SystemExit("PVT v2 backbones are not supported by this script")
    st = bcfg["stages"]
    assert len(st) == 4 and all(s["patch_size"] == 2 for s in st[1:]), "official PVT: patch 2 after stage 1"
    numerics = bcfg.get("numerics") or {}
    eps = 1e-6 if numerics.get("norm_eps") == "mmdet" else 1e-5
    det = pvt_official.detection_module()
    return det.PyramidVisionTransformer(
        img_size=bcfg["pretrain_img_size"], patch_size=st[0]["patch_size"], in_chans=bcfg.get("in_channels", 3),
        embed_dims=[s["embed_dim"] for s in st], num_heads=[s["num_heads"] for s in st],
        mlp_ratios=[s["mlp_ratio"] for s in st], qkv_bias=bcfg.get("qkv_bias", True),
        norm_layer=partial(nn.LayerNorm, eps=eps), depths=[s["depth"] for s in st],
        sr_ratios=[s["sr_ratio"] for s in st], drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
        pretrained=None)


def freeze_stages(backbone, n):
    for i in range(1, n + 1):
        for name, p in backbone.named_parameters():
            if name.startswith((f"patch_embed{i}.", f"block{i}.")) or name == f"pos_embed{i}":
                p.requires_grad_(False)


def time_steps(step, args, batch, h, w, model, params, grad_clip, lr, wd, start):
    """Run `step` (one training step returning the loss) `args.warmup` times untimed, then
    `args.iters` times timed; the JSON fields both training benchmarks report. `start`:
    (1-minute load average, RSS MiB) taken after the imports."""
    import torch  # already imported by the caller, after its thread settings

    rss_before = _proc_status_mib("VmRSS")
    times, losses = [], []
    for i in range(args.warmup + max(args.iters, 1)):
        t0 = time.perf_counter()
        losses.append(step())
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    med = sorted(times)[len(times) // 2]  # as pvt bench-train (the upper median of an even count)
    return {
        "config": args.config,
        "batch": batch,
        "size": [h, w],
        "warmup": args.warmup,
        "iters": len(times),
        "median_s": med,
        "min_s": min(times),
        "images_per_s": batch / med,
        "times_s": times,
        "loss_first": losses[0],
        "loss": losses[-1],
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in params),
        "grad_clip": grad_clip,
        "lr": lr,
        "weight_decay": wd,
        "threads": args.threads,
        "peak_rss_mib": round(peak_kib / 1024.0, 1),
        "rss_before_mib": round(rss_before, 1),
        "rss_after_imports_mib": round(start[1], 1),
        "torch": torch.__version__,
        "loadavg_1m_start": round(start[0], 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }


def parse_args(config_help, size_help, seed_help):
    """The command line both training benchmarks take."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help=config_help)
    ap.add_argument("--batch", type=int, help="images per step (default: the config's batch size)")
    ap.add_argument("--size", help=size_help)
    ap.add_argument("--iters", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0, help=seed_help)
    return ap.parse_args()


def run(args):
    load_start = os.getloadavg()[0]
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import make_semantic_fpn_fixtures as fx
    fx.install_mmcv_ops_stub()
    warnings.filterwarnings("ignore")
    import mmseg
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.necks import FPN
    from mmseg.models.utils import resize

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rss_imports = _proc_status_mib("VmRSS")

    with open(args.config) as f:
        cfg = json.load(f)
    tr = cfg["train"]
    batch = args.batch or tr["batch_size"]
    h, w = (int(v) for v in args.size.lower().split("x")) if args.size else tr["augment"]["crop"]
    assert h % 32 == 0 and w % 32 == 0, "size: multiples of 32"
    k = cfg["num_classes"]
    fpn_c, head_c = cfg["fpn_channels"], cfg["head_channels"]
    opt_cfg = tr.get("optimizer", {})
    lr = opt_cfg.get("lr", 1e-4)
    wd = opt_cfg.get("weight_decay", 1e-4)
    betas = tuple(opt_cfg.get("betas", (0.9, 0.999)))
    eps = opt_cfg.get("eps", 1e-8)
    grad_clip = tr.get("grad_clip")
    avg_non_ignore = bool(tr.get("avg_non_ignore", False))

    # ---- model
    backbone = official_backbone(cfg["backbone"])
    embed_dims = [s["embed_dim"] for s in cfg["backbone"]["stages"]]
    neck = FPN(in_channels=embed_dims, out_channels=fpn_c, num_outs=4)
    head = FPNHead(in_channels=[fpn_c] * 4, in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
                   channels=head_c, dropout_ratio=0.1, num_classes=k,
                   norm_cfg=dict(type="BN", requires_grad=True), align_corners=False,
                   loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0,
                                    avg_non_ignore=avg_non_ignore))
    from mmengine.logging import MMLogger
    MMLogger.get_instance("bench_train", log_level="ERROR")  # init_weights logs every tensor at INFO
    neck.init_weights()
    head.init_weights()
    freeze_stages(backbone, tr.get("frozen_stages", 0))
    model = torch.nn.ModuleDict(dict(backbone=backbone, neck=neck, decode_head=head)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)

    # ---- the batch (not timed)
    x = torch.from_numpy(random_images(batch, h, w))
    idx = np.arange(batch * h * w, dtype=np.uint64)
    cls = np.minimum(np.floor(u01(2, idx) * k), k - 1).astype(np.int64)
    lab = np.where(u01(3, idx) < 0.1, 255, cls).astype(np.int64)
    labels = torch.from_numpy(lab.reshape(batch, h, w))

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = head(neck(backbone(x)))
        seg = resize(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        loss = head.loss_decode(seg, labels, weight=None, ignore_index=255)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm=grad_clip, norm_type=2)
        optimizer.step()
        return loss.item()

    rec = time_steps(step, args, batch, h, w, model, params, grad_clip, lr, wd,
                     (load_start, rss_imports))
    return {
        **rec,
        "impl": "pytorch (official PVT + mmseg FPN/FPNHead, AdamW, clip_grad_norm_)",
        "family": "semantic_fpn",
        "num_classes": k,
        "avg_non_ignore": avg_non_ignore,
        "label_sum": int(lab.sum()),
        "ignored_pixels": int((lab == 255).sum()),
        "rss_after_imports_mib": round(rss_imports, 1),
        "mmseg": mmseg.__version__,
        "loadavg_1m_start": round(load_start, 2),
    }


def main():
    args = parse_args('segmenter training config (JSON)', "HxW, multiples of 32 (default: the config's crop)", 'torch seed (weights, dropout)')
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
