#!/usr/bin/env python3
"""Golden fixtures for the Mask R-CNN RPN head (`pvt-mask-rcnn`, heads/mask-rcnn/tests/rpn_parity.rs).

    /tmp/mmdet-venv/bin/python tools/make_rpn_fixtures.py

Who computes what:
* forward: mmdet 3.3.0's `RPNHead` module (num_convs=1: `rpn_conv` 3x3 + ReLU, `rpn_cls` 1x1, `rpn_reg` 1x1;
  the same layers and forward as mmdet 2.13's RPNHead._init_layers / forward_single);
* proposals: mmdet 2.13.0's own `RPNHead._get_bboxes` (mmdet/models/dense_heads/rpn_head.py, taken from the
  sources with tools/mmdet_compat.py) with 2.13's `AnchorGenerator` / `DeltaXYWHBBoxCoder` and mmcv 1.3.8's
  `batched_nms` on the CPU rule of mmcv <= 1.3.x (suppress when IoU >= thr), run on the stored raw outputs.

Inputs: random FPN-like levels [1, 32, H, W] for a 128x160 (HxW) image at strides 4..64. Weights are rounded
to values exact in f16 and bf16. A bias offset on `rpn_reg` (anchor 0, dx) pushes some boxes past the right
border, so that clipping produces zero-width boxes that the min-size filter drops. Writes
assets/fixtures/rpn/{rpn_weights,rpn_reference}.safetensors and manifest.json.
"""

import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mmdet_compat as mc  # noqa: E402

mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "assets", "fixtures", "rpn")
SEED = 20240404
C = 32
IMG_H, IMG_W = 128, 160
STRIDES = [4, 8, 16, 32, 64]
ANCHOR_CFG = dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=STRIDES)
CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
TEST_CFG = dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
REG_BIAS_OFFSETS = {0: 2.5, 7: 4.5}  # (anchor 0, dx): off the right border; (anchor 1, dh): past the clamp


def exactly_half_representable(t):
    t = t.to(torch.bfloat16).float()
    t = torch.where(t.abs() < 1e-4, torch.zeros_like(t), t)
    assert torch.equal(t.half().float(), t) and torch.equal(t.bfloat16().float(), t)
    return t.contiguous()


def main():
    from mmengine.config import ConfigDict
    from mmdet.models.dense_heads import RPNHead
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(SEED)
    head = RPNHead(in_channels=C, feat_channels=C, num_convs=1, anchor_generator=ANCHOR_CFG,
                   bbox_coder=CODER_CFG, train_cfg=None, test_cfg=ConfigDict(TEST_CFG)).eval()
    sd = {}
    for name, ref in head.state_dict().items():
        shape = ref.shape
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else None
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        if name == "rpn_conv.weight":
            v = r * math.sqrt(2.0 / fan_in)
        elif name == "rpn_cls.weight":
            v = r * 1.5 / math.sqrt(fan_in)
        elif name == "rpn_reg.weight":
            v = r * 0.3 / math.sqrt(fan_in)
        elif name == "rpn_reg.bias":
            v = 0.2 * r
            for ch, off in REG_BIAS_OFFSETS.items():
                v[ch] += off
        elif name == "rpn_cls.bias":
            v = -2.0 + 0.5 * r
        else:
            v = 0.1 * r
        sd[name] = exactly_half_representable(v.float())
    head.load_state_dict(sd, strict=True)

    feats = [torch.randn((1, C, math.ceil(IMG_H / s), math.ceil(IMG_W / s)), generator=g) for s in STRIDES]
    with torch.no_grad():
        cls_scores, bbox_preds = head(tuple(feats))

    # mmdet 2.13 proposals on the raw outputs
    m = mc.MMDet213(1, ANCHOR_CFG, CODER_CFG, ConfigDict(TEST_CFG), nms_rule=">=")
    rpn = mc.load_defs(os.path.join(mc.MMDET213, "models", "dense_heads", "rpn_head.py"), [],
                       dict(torch=torch, copy=__import__("copy"), batched_nms=m.nms_ns.batched_nms),
                       methods_of=("RPNHead", ["_get_bboxes"]))

    class Rpn213:
        use_sigmoid_cls = True
        cls_out_channels = 1
        test_cfg = ConfigDict(TEST_CFG)
        bbox_coder = m.bbox_coder

    sizes = [f.shape[-2:] for f in feats]
    anchors = m.anchor_generator.grid_anchors(sizes, device="cpu")
    with torch.no_grad():
        (dets,) = rpn._get_bboxes(Rpn213(), cls_scores, bbox_preds, anchors, [(IMG_H, IMG_W, 3)],
                                  [np.ones(4, dtype=np.float32)], ConfigDict(TEST_CFG))

    # statistics for the manifest: candidates, min-size drops
    n_cand = sum(min(TEST_CFG["nms_pre"], c.numel()) for c in cls_scores)
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "rpn_weights.safetensors"))
    ref = {}
    for i, (f, c, b) in enumerate(zip(feats, cls_scores, bbox_preds)):
        ref[f"input.{i}"] = f.contiguous()
        ref[f"rpn_cls.{i}"] = c.contiguous()
        ref[f"rpn_reg.{i}"] = b.contiguous()
    ref["proposals.boxes"] = dets[:, :4].contiguous()
    ref["proposals.scores"] = dets[:, 4].contiguous()
    save_file(ref, os.path.join(OUT, "rpn_reference.safetensors"))
    manifest = dict(
        generator="tools/make_rpn_fixtures.py", seed=SEED, img_shape=[IMG_H, IMG_W], strides=STRIDES,
        channels=C, anchor_cfg=ANCHOR_CFG, coder_cfg=CODER_CFG, test_cfg=TEST_CFG,
        reg_bias_offsets={str(k): v for k, v in REG_BIAS_OFFSETS.items()},
        forward="mmdet 3.3.0 RPNHead (num_convs=1)",
        proposals="mmdet 2.13.0 RPNHead._get_bboxes + mmcv 1.3.8 batched_nms, CPU rule IoU >= thr",
        source_sha256=dict(m.source_sha256, **{
            "mmdet/models/dense_heads/rpn_head.py": mc.sha256_file(
                os.path.join(mc.MMDET213, "models", "dense_heads", "rpn_head.py"))}),
        num_candidates=n_cand, num_proposals=int(dets.shape[0]),
        torch=torch.__version__,
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps({k: manifest[k] for k in ("num_candidates", "num_proposals")}))


if __name__ == "__main__":
    main()
