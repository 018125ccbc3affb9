#!/usr/bin/env python3
"""PyTorch counterpart of `pvt bench-train` for a RetinaNet-PVT training config.

Model, built from the same JSON training config (e.g. assets/configs/retinanet_pvt_synth_demo.json):
  backbone  the OFFICIAL whai362/PVT v1 detection backbone with the config's stages (as
            tools/bench_torch_train_semantic_fpn.py builds it; drop / drop-path 0).
  neck      mmdet 3.3.0 `FPN(in_channels=embed_dims, out_channels=fpn_channels, start_level=1,
            add_extra_convs='on_input', num_outs=5)` (the PVT RetinaNet configs).
  head      mmdet 3.3.0 `RetinaHead(num_classes, in_channels=feat_channels=fpn_channels,
            stacked_convs)` with RetinaNet's anchors (octave base 4, 3 scales, ratios 0.5/1/2,
            strides 8-128) and coder, FocalLoss(use_sigmoid, gamma 2, alpha 0.25) and L1Loss, train_cfg
            MaxIoUAssigner(0.5, 0.4, min_pos_iou 0, ignore_iof_thr -1) + PseudoSampler, allowed_border
            -1, pos_weight -1 (the configs' settings; our `MaxIouAssigner::retinanet`, `FocalLoss`).
            mmdet's own init_weights for neck and head (classification bias at the p = 0.01 prior).
  float32, CPU, `torch.set_num_threads(--threads)`.

One timed iteration = one training step on a fixed batch (built before timing), what mmdet's
SingleStageDetector.loss + the optimizer hook do per iteration minus data loading:
  optimizer.zero_grad(); cls_scores, bbox_preds = head(neck(backbone(x))) (train mode);
  head.loss_by_feat(cls_scores, bbox_preds, gt instances, img metas) (anchors, valid flags, max-IoU
  assignment, targets, focal loss + L1 averaged over the positives: mmdet 3.3's code, the 2.x algorithm;
  on CPU mmdet's FocalLoss runs its Python `py_sigmoid_focal_loss`); backward; clip_grad_norm_(params,
  grad_clip); torch.optim.AdamW(lr, betas, eps, weight_decay of the config) step; loss.item().

Batch: the numbers of `pvt bench-train` (crates/cli/src/bench_train_cmd.rs): pixels as in
tools/bench_torch_train_semantic_fpn.py; three boxes per image from stream 4 of the same hash (sides
20 + 52 u px, at most the image side - 1, corner uniform inside the image, class floor(u * K)); every
image is H x W (img_shape = pad_shape = the batch size). `box_coord_sum` / `label_sum` are checksums to
compare with ours.

One JSON line on stdout. Needs torch/timm (tools/.venv) + mmdet 3.3 + mmengine + mmcv-lite (the venv of
tools/requirements-fixtures.txt) and tools/_ref/det_pvt.py (tools/pvt_official.py):

    /tmp/mmdet-venv/bin/python tools/bench_torch_train_retinanet.py \\
        --config assets/configs/retinanet_pvt_synth_demo.json --iters 10 --warmup 2
"""

import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_torch_train_semantic_fpn import (  # noqa: E402
    _proc_status_mib, freeze_stages, official_backbone, parse_args, random_images, time_steps,
    u01)

PER_IMAGE = 3
ANCHOR_CFG = dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                  strides=[8, 16, 32, 64, 128])
CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
TRAIN_CFG = dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                               ignore_iof_thr=-1),
                 sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False)


def random_boxes(b, h, w, k):
    """`pvt bench-train`'s boxes: per image a [3, 4] float32 array (x1, y1, x2, y2) and 3 labels."""
    import numpy as np
    boxes, labels = [], []
    for i in range(b):
        bi, li = [], []
        for j in range(PER_IMAGE):
            base = (i * PER_IMAGE + j) * 8
            r = u01(4, np.arange(base, base + 5, dtype=np.uint64))
            bw = min(20.0 + 52.0 * r[0], w - 1.0)
            bh = min(20.0 + 52.0 * r[1], h - 1.0)
            x1 = r[2] * (w - bw)
            y1 = r[3] * (h - bh)
            bi.append(np.array([x1, y1, x1 + bw, y1 + bh], dtype=np.float64).astype(np.float32))
            li.append(min(int(r[4] * k), k - 1))
        boxes.append(np.stack(bi))
        labels.append(np.array(li, dtype=np.int64))
    return boxes, labels


def run(args):
    load_start = os.getloadavg()[0]
    import numpy as np
    import torch

    import mmdet_compat as mc
    mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models
    warnings.filterwarnings("ignore")
    import mmdet
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger
    from mmengine.structures import InstanceData
    register_all_modules()
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.necks import FPN

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rss_imports = _proc_status_mib("VmRSS")

    with open(args.config) as f:
        cfg = json.load(f)
    tr = cfg["train"]
    batch = args.batch or tr["batch_size"]
    if args.size:
        h, w = (int(v) for v in args.size.lower().split("x"))
    else:
        long_side, short_side = tr["augment"]["scale"]
        h, w = short_side, long_side
    assert h % 32 == 0 and w % 32 == 0, "size: multiples of 32"
    k = cfg["num_classes"]
    c = cfg["fpn_channels"]
    opt_cfg = tr.get("optimizer", {})
    lr = opt_cfg.get("lr", 1e-4)
    wd = opt_cfg.get("weight_decay", 1e-4)
    betas = tuple(opt_cfg.get("betas", (0.9, 0.999)))
    eps = opt_cfg.get("eps", 1e-8)
    grad_clip = tr.get("grad_clip")
    focal = tr.get("focal") or {}
    assigner = tr.get("assigner") or {}
    train_cfg = json.loads(json.dumps(TRAIN_CFG))
    for ours, theirs in (("pos_iou_thr", "pos_iou_thr"), ("neg_iou_thr", "neg_iou_thr"),
                         ("min_pos_iou", "min_pos_iou")):
        if ours in assigner:
            train_cfg["assigner"][theirs] = assigner[ours]

    # ---- model
    backbone = official_backbone(cfg["backbone"])
    embed_dims = [s["embed_dim"] for s in cfg["backbone"]["stages"]]
    neck = FPN(in_channels=embed_dims, out_channels=c, start_level=1, add_extra_convs="on_input", num_outs=5)
    head = RetinaHead(num_classes=k, in_channels=c, stacked_convs=cfg.get("stacked_convs", 4), feat_channels=c,
                      anchor_generator=ANCHOR_CFG, bbox_coder=CODER_CFG,
                      loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=focal.get("gamma", 2.0),
                                    alpha=focal.get("alpha", 0.25), loss_weight=1.0),
                      loss_bbox=dict(type="L1Loss", loss_weight=1.0), train_cfg=ConfigDict(train_cfg))
    MMLogger.get_instance("bench_train", log_level="ERROR")  # init_weights logs every tensor at INFO
    neck.init_weights()
    head.init_weights()
    freeze_stages(backbone, tr.get("frozen_stages", 0))
    model = torch.nn.ModuleDict(dict(backbone=backbone, neck=neck, bbox_head=head)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)

    # ---- the batch (not timed)
    x = torch.from_numpy(random_images(batch, h, w))
    boxes, labels = random_boxes(batch, h, w, k)
    gts = [InstanceData(bboxes=torch.from_numpy(b), labels=torch.from_numpy(l)) for b, l in zip(boxes, labels)]
    metas = [dict(img_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w)) for _ in range(batch)]
    num_pos = [0]

    def step():
        optimizer.zero_grad(set_to_none=True)
        cls_scores, bbox_preds = head(neck(backbone(x)))
        losses = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
        loss = sum(losses["loss_cls"]) + sum(losses["loss_bbox"])
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm=grad_clip, norm_type=2)
        optimizer.step()
        return loss.item()

    rec = time_steps(step, args, batch, h, w, model, params, grad_clip, lr, wd,
                     (load_start, rss_imports))

    # positives of the batch (after timing), for comparison with ours
    with torch.no_grad():
        cls_scores, _ = head(neck(backbone(x)))
        featmap_sizes = [s.shape[-2:] for s in cls_scores]
        anchors, valid = head.get_anchors(featmap_sizes, metas, device="cpu")
        for a, v, g, m in zip(anchors, valid, gts, metas):
            res = head._get_targets_single(torch.cat(a), torch.cat(v), g, m)
            num_pos[0] += len(res[4])
    return {
        **rec,
        "impl": "pytorch (official PVT + mmdet 3.3 FPN/RetinaHead loss, AdamW, clip_grad_norm_)",
        "family": "retinanet",
        "num_classes": k,
        "boxes_per_image": PER_IMAGE,
        "num_pos": num_pos[0],
        "box_coord_sum": float(sum(float(b.astype(np.float64).sum()) for b in boxes)),
        "label_sum": int(sum(int(l.sum()) for l in labels)),
        "mmdet": mmdet.__version__,
    }


def main():
    args = parse_args('RetinaNet training config (JSON)', "HxW, multiples of 32 (default: the config's train scale, short x long)", 'torch seed (weights)')
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
