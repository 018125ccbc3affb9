#!/usr/bin/env python3
"""Golden fixtures for the PVT RetinaNet pipeline (FPN neck, RetinaHead, mmdet test-time preprocessing and
post-processing), on top of the "mini" PVT v1 backbone fixture.

Runs in a Python that has torch/timm (tools/.venv) AND mmdet 3.3.0 + mmengine + mmcv-lite + opencv, e.g.
the separate venv described in tools/requirements-fixtures.txt (a .pth file makes tools/.venv visible):

    /tmp/mmdet-venv/bin/python tools/make_retinanet_fixtures.py

Needs tools/_ref/{cls_pvt.py, det_pvt.py} (official PVT code, see tools/pvt_official.py) and the mmdet 2.13.0
/ mmcv 1.3.8 sources described in tools/mmdet_compat.py. Run tools/make_resize_fixtures.py first (the
resized photos it stores are re-checked here). Writes assets/fixtures/retinanet/* and assets/coco_classes.txt.

Who computes what:
* backbone: the OFFICIAL whai362/PVT detection/pvt.py (what the official RetinaNet checkpoints run), weights =
  assets/fixtures/pvt_v1/mini_det_official_f32.safetensors (backbone.* only);
* neck / head forward: mmdet 3.3.0 `FPN` / `RetinaHead` modules (their forward equals mmdet 2.13's, see the
  manifest);
* preprocessing: mmcv.transforms.LoadImageFromFile + mmdet 3.3.0 `Resize(scale, keep_ratio=True)` +
  `PackDetInputs` + `DetDataPreprocessor` (mean/std/bgr_to_rgb/pad_size_divisor=32), cross-checked against the
  mmdet 2.x pipeline steps (mmcv.imrescale, imnormalize, impad_to_multiple);
* post-processing "le217": mmdet 2.13.0's own AnchorHead.get_bboxes / multiclass_nms on mmcv 1.3.8's
  batched_nms with the CPU NMS rule (suppress when IoU >= thr), see tools/mmdet_compat.py; cross-checked
  against an independent re-implementation (`le217_spec` below);
* post-processing "ge218": mmdet 3.3.0's RetinaHead.predict_by_feat (score filter, then top-k) on mmcv 2.1's
  batched_nms (CPU rule IoU > thr).
"""

import copy
import hashlib
import json
import math
import os
import sys
import warnings
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mmdet_compat as mc  # noqa: E402

MMCV2_NMS = mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models

import cv2  # noqa: E402
import make_pvt_v1_fixtures as mk  # noqa: E402
import pvt_official  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "assets", "fixtures", "retinanet")
RESIZE_DIR = os.path.join(ROOT, "assets", "fixtures", "resize")
PVT_DIR = os.path.join(ROOT, "assets", "fixtures", "pvt_v1")
IMG_DIR = os.path.join(ROOT, "assets", "images")

SEED = 14  # picked among seeds 0..14 (+20240303) for the widest decision margins, see manifest
C_OUT = 32
K = 8  # classes (reduced from 80)
IN_CHANNELS = [16, 32, 40, 64]  # mini backbone widths
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]

NECK_CFG = dict(type="FPN", in_channels=IN_CHANNELS, out_channels=C_OUT, start_level=1, add_extra_convs="on_input",
                num_outs=5)
ANCHOR_CFG = dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                  strides=[8, 16, 32, 64, 128])
CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
HEAD_CFG = dict(type="RetinaHead", num_classes=K, in_channels=C_OUT, stacked_convs=4, feat_channels=C_OUT,
                anchor_generator=ANCHOR_CFG, bbox_coder=CODER_CFG,
                loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                loss_bbox=dict(type="L1Loss", loss_weight=1.0))
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                max_per_img=100)

# Weight distributions (then rounded to values exact in f16 and bf16, like the backbone fixture)
W = dict(
    neck_w="N(0, 1/fan_in)", neck_b="N(0, 0.1^2)",
    head_conv_w="N(0, 2/fan_in) (He: each is followed by ReLU)", head_conv_b="N(0, 0.1^2)",
    cls_w="N(0, (CLS_GAIN^2)/fan_in)", cls_b="CLS_BIAS + N(0, CLS_BIAS_STD^2) per output channel",
    reg_w="N(0, (REG_GAIN^2)/fan_in)", reg_b="N(0, 0.2^2) + REG_BIAS_OFFSETS[channel]",
)
CLS_GAIN = 1.0
CLS_BIAS = -5.5
CLS_BIAS_STD = 0.75
REG_GAIN = 0.3
# retina_reg bias offsets that push some deltas past the +-ln(1000/16) = 4.135 clamp: channel 3 = (anchor 0, dh),
# channel 18 = (anchor 4, dw)
REG_BIAS_OFFSETS = {3: 3.0, 18: -3.0}

# test cases: (name, image file, test scale)
CASES = [
    ("chelsea_320x256", "chelsea.png", (320, 256)),
    ("chelsea_1333x800", "chelsea.png", (1333, 800)),
    ("coffee_crop_320x256", "coffee_crop_233x599.png", (320, 256)),
    ("coffee_crop_1333x800", "coffee_crop_233x599.png", (1333, 800)),
]
FULL = {"chelsea_320x256"}  # cases whose every intermediate is stored; the others store P6/P7 + detections
LEVELS = ["p3", "p4", "p5", "p6", "p7"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----------------------------------------------------------------------------------------------
# models


def build_backbone():
    from safetensors.torch import load_file
    det_mod = pvt_official.detection_module()
    kw = dict(mk.MINI, norm_layer=mk.partial(nn.LayerNorm, eps=mk.NORM_EPS))
    model = det_mod.PyramidVisionTransformer(**kw).eval()
    sd = load_file(os.path.join(PVT_DIR, "mini_det_official_f32.safetensors"))
    bb = OrderedDict((k[len("backbone."):], v) for k, v in sd.items() if k.startswith("backbone."))
    model.load_state_dict(bb, strict=True)
    return model, OrderedDict(("backbone." + k, v) for k, v in bb.items())


def build_neck_head():
    from mmengine.config import ConfigDict
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.necks import FPN
    ncfg = dict(NECK_CFG)
    ncfg.pop("type")
    hcfg = copy.deepcopy(HEAD_CFG)
    hcfg.pop("type")
    neck = FPN(**ncfg).eval()
    head = RetinaHead(**hcfg, train_cfg=None, test_cfg=ConfigDict(TEST_CFG)).eval()
    return neck, head


def make_neck_head_weights(neck, head):
    g = torch.Generator().manual_seed(SEED)
    sd = OrderedDict()

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float64)

    for prefix, mod in (("neck.", neck), ("bbox_head.", head)):
        for name, ref in mod.state_dict().items():
            full = prefix + name
            shape = ref.shape
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else None
            if full.startswith("neck."):
                v = randn(shape) / math.sqrt(fan_in) if name.endswith("weight") else 0.1 * randn(shape)
            elif ".cls_convs." in full or ".reg_convs." in full:
                v = randn(shape) * math.sqrt(2.0 / fan_in) if name.endswith("weight") else 0.1 * randn(shape)
            elif full == "bbox_head.retina_cls.weight":
                v = randn(shape) * CLS_GAIN / math.sqrt(fan_in)
            elif full == "bbox_head.retina_cls.bias":
                v = CLS_BIAS + CLS_BIAS_STD * randn(shape)
            elif full == "bbox_head.retina_reg.weight":
                v = randn(shape) * REG_GAIN / math.sqrt(fan_in)
            elif full == "bbox_head.retina_reg.bias":
                v = 0.2 * randn(shape)
                for ch, off in REG_BIAS_OFFSETS.items():
                    v[ch] += off
            else:
                raise RuntimeError(full)
            sd[full] = mk.exactly_half_representable(v.float())
    neck.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("neck.")}, strict=True)
    head.load_state_dict({k[10:]: v for k, v in sd.items() if k.startswith("bbox_head.")}, strict=True)
    return sd


def check_213_forward(neck, head, feats):
    """Run mmdet 2.13.0's FPN.forward / AnchorHead.forward / RetinaHead.forward_single / multi_apply source on the
    3.3 module instances (same attribute names) and compare with the 3.3 forward. Returns max abs diffs."""
    import torch.nn.functional as F
    d = mc.MMDET213
    fpn213 = mc.load_defs(os.path.join(d, "models", "necks", "fpn.py"), [], dict(F=F, nn=nn, torch=torch),
                          methods_of=("FPN", ["forward"]))
    misc = mc.load_defs(os.path.join(d, "core", "utils", "misc.py"), ["multi_apply"],
                        dict(partial=__import__("functools").partial, torch=torch, np=np))
    ah = mc.load_defs(os.path.join(d, "models", "dense_heads", "anchor_head.py"), [],
                      dict(torch=torch, multi_apply=misc.multi_apply), methods_of=("AnchorHead", ["forward"]))
    rh = mc.load_defs(os.path.join(d, "models", "dense_heads", "retina_head.py"), [], dict(torch=torch, nn=nn),
                      methods_of=("RetinaHead", ["forward_single"]))

    class Head213:
        def __init__(self, h):
            self.h = h

        def forward_single(self, x):
            return rh.forward_single(self.h, x)

    with torch.no_grad():
        out3 = neck(tuple(feats))
        out2 = fpn213.forward(neck, tuple(feats))
        c3, r3 = head(out3)
        c2, r2 = ah.forward(Head213(head), out2)
    res = dict(fpn=max(float((a - b).abs().max()) for a, b in zip(out3, out2)),
               cls_score=max(float((a - b).abs().max()) for a, b in zip(c3, c2)),
               bbox_pred=max(float((a - b).abs().max()) for a, b in zip(r3, r2)))
    assert len(out2) == len(out3) == 5 and all(v == 0.0 for v in res.values()), res
    return res


# ----------------------------------------------------------------------------------------------
# preprocessing


def preprocess(img_path, scale):
    """mmdet 3.3 test pipeline + DetDataPreprocessor; cross-checked against the mmdet 2.x steps."""
    import mmcv
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets.transforms import PackDetInputs, Resize
    from mmdet.models.data_preprocessors import DetDataPreprocessor

    r = LoadImageFromFile()(dict(img_path=img_path))
    bgr = r["img"]
    assert bgr.dtype == np.uint8 and bgr.ndim == 3
    assert np.array_equal(bgr, cv2.imread(img_path, cv2.IMREAD_COLOR))
    r = Resize(scale=scale, keep_ratio=True)(r)
    packed = PackDetInputs(meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))(
        dict(r, img_id=0))
    dp = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)
    with torch.no_grad():
        data = dp(dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]]), training=False)
    x3 = data["inputs"].float()
    meta3 = data["data_samples"][0].metainfo

    # --- the mmdet 2.x steps (mmcv.imrescale + Resize's scale_factor, imnormalize, impad_to_multiple)
    resized, _ = mmcv.imrescale(bgr, scale, return_scale=True, interpolation="bilinear", backend="cv2")
    h, w = bgr.shape[:2]
    nh, nw = resized.shape[:2]
    sf2 = np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)
    norm = mmcv.imnormalize(resized, np.array(MEAN, dtype=np.float32), np.array(STD, dtype=np.float32), to_rgb=True)
    padded = mmcv.impad_to_multiple(norm, 32, pad_val=0)
    x2 = torch.from_numpy(padded.transpose(2, 0, 1).copy())[None]
    assert np.array_equal(resized, r["img"]), "mmdet 3.3 Resize != mmcv.imrescale"
    assert torch.equal(x2, x3), "mmdet 3.3 DetDataPreprocessor != mmcv.imnormalize + impad (2.x)"
    # --- and the plain formula the Rust side implements: float32 (x - mean) / std in RGB order, zero pad
    rgb = resized[:, :, ::-1].astype(np.float32)
    x_formula = np.zeros((1, 3, x3.shape[2], x3.shape[3]), dtype=np.float32)
    x_formula[0, :, :nh, :nw] = ((rgb - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
                                 ).transpose(2, 0, 1)
    assert np.array_equal(x_formula, x3.numpy()), "float32 (x-mean)/std differs"
    # --- OpenCV kernel == numpy re-implementation
    import cv_resize_ref
    assert np.array_equal(cv_resize_ref.resize_linear_u8(bgr, nw, nh), resized)

    assert tuple(meta3["img_shape"]) == (nh, nw)
    assert tuple(meta3["pad_shape"]) == tuple(x3.shape[2:])
    meta = OrderedDict(
        ori_shape_hw=[h, w],
        img_shape_hw=[nh, nw],
        pad_shape_hw=list(x3.shape[2:]),
        scale_factor_wh_f64=[nw / w, nh / h],
        scale_factor_f32_2x=[float(v) for v in sf2],
        scale_factor_f32_hex=[float(v).hex() for v in sf2[:2]],
        rescale_ratio_f64=float(min(max(scale) / max(h, w), min(scale) / min(h, w))),
    )
    return dict(bgr=bgr, resized=resized, x=x3.contiguous(), meta=meta, meta3=meta3, sf2=sf2)


def norm_lut():
    """normalised value of every uint8 for each RGB channel: lut[c, v] = float32((v - mean[c]) / std[c])."""
    v = np.arange(256, dtype=np.float32)[None, :]
    return torch.from_numpy((v - np.array(MEAN, dtype=np.float32)[:, None]) / np.array(STD, dtype=np.float32)[:, None])


# ----------------------------------------------------------------------------------------------
# post-processing: independent re-implementation of the mmdet <= 2.17 algorithm (cross-check)


def nms_ge(boxes, scores, thr=0.5):
    """per-class NMS on float32 numpy, mmcv 1.3.8 CPU rule; returns kept indices in descending-score order."""
    order = torch.from_numpy(scores).sort(0, descending=True)[1].numpy()
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep = np.ones(len(order), bool)
    t = np.float32(thr)
    for i in range(len(order)):
        if not keep[i]:
            continue
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[i + 1:] - inter)
        keep[i + 1:] &= ~(iou >= t)
    return order[keep]


def decode(anchors, deltas, img_hw):
    """DeltaXYWHBBoxCoder.decode, means 0, stds 1, float32, clip to img_shape."""
    px = (anchors[:, 0] + anchors[:, 2]) * 0.5
    py = (anchors[:, 1] + anchors[:, 3]) * 0.5
    pw = anchors[:, 2] - anchors[:, 0]
    ph = anchors[:, 3] - anchors[:, 1]
    dx, dy, dw, dh = deltas.unbind(1)
    max_ratio = abs(math.log(16 / 1000))
    dw = dw.clamp(-max_ratio, max_ratio)
    dh = dh.clamp(-max_ratio, max_ratio)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    b = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], 1)
    b[:, 0::2] = b[:, 0::2].clamp(0, img_hw[1])
    b[:, 1::2] = b[:, 1::2].clamp(0, img_hw[0])
    return b


def le217_spec(cls_scores, bbox_preds, anchors, img_hw, sf2, cfg=TEST_CFG):
    boxes, scores, info = [], [], []
    for c, r, a in zip(cls_scores, bbox_preds, anchors):
        s = c[0].permute(1, 2, 0).reshape(-1, K).sigmoid()
        d = r[0].permute(1, 2, 0).reshape(-1, 4)
        if cfg["nms_pre"] < s.shape[0]:
            idx = s.max(1).values.topk(cfg["nms_pre"]).indices
            s, d, a = s[idx], d[idx], a[idx]
        boxes.append(decode(a, d, img_hw))
        scores.append(s)
    boxes = torch.cat(boxes) / torch.from_numpy(sf2)
    scores = torch.cat(scores)
    mask = scores > cfg["score_thr"]
    ai, ci = mask.nonzero(as_tuple=True)
    cb, cs = boxes[ai].numpy(), scores[ai, ci].numpy()
    # mmcv batched_nms runs NMS on boxes shifted by label * (max coordinate + 1), in float32 (this rounds the
    # shifted coordinates, so IoUs differ in the last bits from those of the unshifted boxes)
    shift = ci.to(torch.float32) * (boxes[ai].max() + torch.tensor(1.0))
    cb_nms = (boxes[ai] + shift[:, None]).numpy()
    kept = []
    for k in range(K):
        sel = np.nonzero(ci.numpy() == k)[0]
        if len(sel):
            kept.extend(sel[nms_ge(cb_nms[sel], cs[sel])])
    kept = np.array(kept, dtype=np.int64)
    order = torch.from_numpy(cs[kept]).sort(descending=True, stable=True)[1].numpy()
    kept = kept[order][: cfg["max_per_img"]]
    return (torch.from_numpy(cb[kept]), torch.from_numpy(cs[kept]), ci[torch.from_numpy(kept)],
            dict(candidate_pairs=int(mask.sum()), anchors_after_topk=int(boxes.shape[0])))


# ----------------------------------------------------------------------------------------------
# robustness margins (how far every discrete decision is from flipping)


def margins(cls_scores, pre_scores, dets_scores, thr=0.05, nms_pre=1000):
    out = OrderedDict()
    gaps = []
    for lvl, c in zip(LEVELS, cls_scores):
        m = c[0].permute(1, 2, 0).reshape(-1, K).sigmoid().max(1).values.double()
        if m.numel() > nms_pre:
            top = m.topk(nms_pre + 1).values
            gaps.append((lvl, float((top[nms_pre - 1] - top[nms_pre]) / top[nms_pre - 1])))
    out["topk_boundary_rel_gap_per_level"] = {k: v for k, v in gaps}
    s = pre_scores.double()
    out["min_rel_abs_score_minus_thr_over_candidates"] = float((s - thr).abs().min() / thr)
    if dets_scores.numel() > 0:
        ds = dets_scores.double().sort(descending=True).values
        out["min_gap_between_consecutive_final_scores"] = float((ds[:-1] - ds[1:]).min()) if ds.numel() > 1 else None
    return out


def nms_iou_margin(boxes, scores, labels, kept_idx):
    """min |IoU - 0.5| over pairs (i kept, j same class, score_j <= score_i)."""
    best = float("inf")
    kept = set(kept_idx.tolist())
    for k in labels.unique().tolist():
        sel = (labels == k).nonzero(as_tuple=True)[0]
        b = boxes[sel].double()
        s = scores[sel]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        for ii, gi in enumerate(sel.tolist()):
            if gi not in kept:
                continue
            later = s <= s[ii]
            later[ii] = False
            if not later.any():
                continue
            bj = b[later]
            w = (torch.minimum(b[ii, 2], bj[:, 2]) - torch.maximum(b[ii, 0], bj[:, 0])).clamp(min=0)
            h = (torch.minimum(b[ii, 3], bj[:, 3]) - torch.maximum(b[ii, 1], bj[:, 1])).clamp(min=0)
            inter = w * h
            iou = inter / (area[ii] + area[later] - inter)
            iou = iou[torch.isfinite(iou)]
            if iou.numel():
                best = min(best, float((iou - 0.5).abs().min()))
    return best


# ----------------------------------------------------------------------------------------------


def run_case(name, img_file, scale, backbone, neck, head, m213, mmdet_conv_backbone=None):
    pre = preprocess(os.path.join(IMG_DIR, img_file), scale)
    x = pre["x"]
    meta = pre["meta"]
    nh, nw = meta["img_shape_hw"]
    with torch.no_grad():
        feats = backbone(x)
        fpn = neck(tuple(feats))
        cls_scores, bbox_preds = head(fpn)
    fwd213 = check_213_forward(neck, head, feats)
    featmap_sizes = [c.shape[-2:] for c in cls_scores]
    anchors213 = m213.anchor_generator.grid_anchors(featmap_sizes, device="cpu")
    anchors33 = head.prior_generator.grid_priors(featmap_sizes, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(anchors213, anchors33)), "anchors 2.13 != 3.3"

    # ---- mmdet 2.13 (<= 2.17 algorithm)
    meta2 = dict(img_shape=(nh, nw, 3), scale_factor=pre["sf2"], ori_shape=tuple(meta["ori_shape_hw"]) + (3,))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        det213, lab213 = m213.get_bboxes(list(cls_scores), list(bbox_preds), [meta2], rescale=True)[0]
        mlvl_boxes, mlvl_scores = m213.get_bboxes(list(cls_scores), list(bbox_preds), [meta2], rescale=True,
                                                  with_nms=False)[0]
    # ---- independent re-implementation
    sb, ss, sl, sinfo = le217_spec(cls_scores, bbox_preds, anchors213, (nh, nw), pre["sf2"])
    assert torch.equal(sb, det213[:, :4]) and torch.equal(ss, det213[:, 4]) and torch.equal(sl, lab213), \
        "le217 re-implementation != mmdet 2.13 code"
    # ---- mmdet 2.13 with the CUDA / mmcv>=1.4 rule (IoU > thr): same?
    from mmengine.config import ConfigDict
    m213_gt = mc.MMDet213(K, ANCHOR_CFG, CODER_CFG, ConfigDict(TEST_CFG), nms_rule=">")
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        det213g, lab213g = m213_gt.get_bboxes(list(cls_scores), list(bbox_preds), [meta2], rescale=True)[0]
    same_rule = torch.equal(det213g, det213) and torch.equal(lab213g, lab213)

    # ---- mmdet 3.3 (>= 2.18 algorithm)
    meta3 = dict(img_shape=(nh, nw), scale_factor=tuple(meta["scale_factor_wh_f64"]),
                 ori_shape=tuple(meta["ori_shape_hw"]), pad_shape=tuple(meta["pad_shape_hw"]))
    with np.errstate(invalid="ignore", divide="ignore"):
        res3 = head.predict_by_feat(list(cls_scores), list(bbox_preds), batch_img_metas=[meta3], rescale=True)[0]
    det3_boxes, det3_scores, det3_labels = res3.bboxes, res3.scores, res3.labels

    # ---- comparisons / stats
    pre_scores = mlvl_scores[:, :K]
    cand = pre_scores[pre_scores > TEST_CFG["score_thr"]]
    all_scores = torch.cat([c[0].permute(1, 2, 0).reshape(-1, K).sigmoid() for c in cls_scores])
    # keep indices for the IoU margin: which rows of the candidate list survived
    mask = pre_scores > TEST_CFG["score_thr"]
    ai, ci = mask.nonzero(as_tuple=True)
    cboxes = mlvl_boxes[ai]
    cscores = pre_scores[ai, ci]
    kept_rows = []
    for b, s in zip(det213[:, :4], det213[:, 4]):
        hit = ((cboxes == b).all(1) & (cscores == s)).nonzero(as_tuple=True)[0]
        kept_rows.append(int(hit[0]))
    mg = margins(cls_scores, cand, det213[:, 4])
    mg["min_abs_iou_minus_0.5_over_(kept,later)_pairs_same_class"] = nms_iou_margin(
        cboxes, cscores, ci, torch.tensor(kept_rows))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        all_det, _ = m213.multiclass_nms(mlvl_boxes, mlvl_scores, TEST_CFG["score_thr"], dict(TEST_CFG["nms"]), -1)
    mg["nms_survivors_before_max_per_img"] = int(all_det.shape[0])
    mp = TEST_CFG["max_per_img"]
    if all_det.shape[0] > mp:
        mg["max_per_img_boundary_rel_gap"] = float((all_det[mp - 1, 4] - all_det[mp, 4]) / all_det[mp - 1, 4])
    mg["min_over_decisions"] = min(
        [v for v in mg["topk_boundary_rel_gap_per_level"].values()] +
        [mg["min_rel_abs_score_minus_thr_over_candidates"], mg["min_abs_iou_minus_0.5_over_(kept,later)_pairs_same_class"],
         mg.get("max_per_img_boundary_rel_gap", 1.0)])

    def same_dets(b1, s1, l1, b2, s2, l2):
        if b1.shape != b2.shape:
            return False
        return bool(torch.equal(l1, l2) and torch.allclose(b1, b2, rtol=0, atol=1e-3) and torch.allclose(s1, s2))

    cmp = OrderedDict(
        le217_count=int(det213.shape[0]), ge218_count=int(det3_boxes.shape[0]),
        identical_up_to_1e3_px=same_dets(det213[:, :4], det213[:, 4], lab213, det3_boxes, det3_scores, det3_labels),
    )
    # matching: how many le217 detections appear in ge218 (same label, IoU > 0.99)
    if det3_boxes.numel() and det213.numel():
        from torchvision.ops import box_iou
        iou = box_iou(det213[:, :4].double(), det3_boxes.double())
        same_lab = lab213[:, None] == det3_labels[None, :]
        cmp["le217_dets_found_in_ge218"] = int(((iou > 0.99) & same_lab).any(1).sum())
        n = min(det213.shape[0], det3_boxes.shape[0])
        cmp["first_index_where_they_differ"] = next(
            (i for i in range(n) if not (lab213[i] == det3_labels[i] and
                                         torch.allclose(det213[i, :4], det3_boxes[i], atol=1e-3))), None)
        if det3_boxes.shape == det213[:, :4].shape and torch.equal(lab213, det3_labels):
            cmp["max_abs_box_diff_px"] = float((det213[:, :4] - det3_boxes).abs().max())
            cmp["boxes_bitwise_equal"] = bool(torch.equal(det213[:, :4], det3_boxes))
    cmp["ge218_candidates_note"] = ("ge218 keeps per level the top-1000 (anchor,class) pairs with score > 0.05; "
                                    "le217 keeps per level the top-1000 anchors by max class score, then every "
                                    "pair > 0.05")
    cmp["le217_nms_rule_ge_vs_gt_same_result"] = bool(same_rule)

    stats = OrderedDict(
        input_shape=list(x.shape),
        feature_shapes={f"c{i + 2}": list(f.shape) for i, f in enumerate(feats)},
        fpn_shapes={l: list(p.shape) for l, p in zip(LEVELS, fpn)},
        anchors_per_level=[int(a.shape[0]) for a in anchors213],
        pairs_total=int(all_scores.numel()),
        pairs_score_gt_005=int((all_scores > 0.05).sum()),
        pairs_score_gt_03=int((all_scores > 0.3).sum()),
        pairs_score_gt_05=int((all_scores > 0.5).sum()),
        max_score=float(all_scores.max()),
        anchors_after_per_level_topk_le217=int(mlvl_boxes.shape[0]),
        candidate_pairs_le217=int(cand.numel()),
        le217_nms_branch="offset trick (< 10000 candidates)" if cand.numel() < 10000
        else "per-class loop (>= 10000 candidates, split_thr)",
        dets_le217=int(det213.shape[0]),
        dets_le217_score_range=[float(det213[:, 4].min()), float(det213[:, 4].max())] if det213.numel() else None,
        dets_le217_labels_histogram=torch.bincount(lab213, minlength=K).tolist(),
        dets_le217_zero_area=int(((det213[:, 2] <= det213[:, 0]) | (det213[:, 3] <= det213[:, 1])).sum()),
        dets_ge218=int(det3_boxes.shape[0]),
        dets_ge218_score_range=[float(det3_scores.min()), float(det3_scores.max())] if det3_scores.numel() else None,
        bbox_delta_abs_max=float(torch.cat([b.flatten() for b in bbox_preds]).abs().max()),
        frac_dwdh_clamped=float(torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4)[:, 2:] for b in bbox_preds])
                                .abs().gt(abs(math.log(16 / 1000))).float().mean()),
        margins=mg,
        le217_vs_ge218=cmp,
        mmdet_2_13_forward_source_on_same_modules_max_abs_diff=fwd213,
    )
    print(f"[{name}] " + json.dumps(stats, indent=1))

    t = OrderedDict()
    if name in FULL:
        for i, f in enumerate(feats[1:], start=3):
            t[f"c{i}"] = f
    for lvl, p, c, r in zip(LEVELS, fpn, cls_scores, bbox_preds):
        if name in FULL or lvl in ("p6", "p7"):
            t[f"fpn_{lvl}"] = p
            t[f"cls_score_{lvl}"] = c
            t[f"bbox_pred_{lvl}"] = r
    if name in FULL:
        # the <= 2.17 multiclass_nms input (rows = anchors kept by the per-level top-1000, level order)
        t["le217_mlvl_bboxes"] = mlvl_boxes
        t["le217_mlvl_scores"] = mlvl_scores[:, :K]
        t["norm_lut_rgb"] = norm_lut()
        t["base_anchors"] = torch.stack(m213.anchor_generator.base_anchors)
    t["dets_le217_bboxes"] = det213[:, :4]
    t["dets_le217_scores"] = det213[:, 4]
    t["dets_le217_labels"] = lab213.to(torch.int64)
    t["dets_ge218_bboxes"] = det3_boxes
    t["dets_ge218_scores"] = det3_scores
    t["dets_ge218_labels"] = det3_labels.to(torch.int64)
    t = OrderedDict((k, v.detach().contiguous() if v.dtype == torch.int64 else v.detach().float().contiguous())
                    for k, v in t.items())

    # mmdet-convention backbone (what the mmdet-naming weights give in mmdet's own PVT): effect on the outputs
    conv = None
    if mmdet_conv_backbone is not None:
        with torch.no_grad():
            fpn_m = neck(tuple(mmdet_conv_backbone(x)))
            cls_m, reg_m = head(fpn_m)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")
            dm, lm = m213.get_bboxes(list(cls_m), list(reg_m), [meta2], rescale=True)[0]
        conv = OrderedDict(
            fpn_max_rel_diff=max(mk.rel_diff(a, b) for a, b in zip(fpn_m, fpn)),
            cls_score_max_abs_diff=max(float((a - b).abs().max()) for a, b in zip(cls_m, cls_scores)),
            dets_le217_same_count=bool(dm.shape == det213.shape),
            dets_le217_same_labels=bool(dm.shape == det213.shape and torch.equal(lm, lab213)),
            dets_le217_max_abs_box_diff_px=float((dm[:, :4] - det213[:, :4]).abs().max())
            if dm.shape == det213.shape else None,
        )
        print(f"[{name}] mmdet-convention backbone: {conv}")
    return t, stats, meta, pre, conv


def save_checkpoints(backbone_sd, neckhead_sd):
    """Two mmcv-style checkpoints (f16): official backbone naming and mmdet backbone naming."""
    files = OrderedDict()
    classes = tuple(coco_classes()[:K])
    off = OrderedDict(backbone_sd)
    off.update(neckhead_sd)
    mm_ck = torch.load(os.path.join(PVT_DIR, "mini_det_mmdet_f16.pth"), map_location="cpu", weights_only=False)
    mm = OrderedDict((k, v) for k, v in mm_ck["state_dict"].items() if k.startswith("backbone."))
    # the mmdet-naming backbone of the pvt_v1 fixture is the converted official one (checked by
    # tools/check_mmdet_naming.py); re-check the conversion here
    conv = mk.to_mmdet(OrderedDict((k[len("backbone."):], v) for k, v in backbone_sd.items()))
    assert set("backbone." + k for k in conv) == set(mm)
    assert all(torch.equal(conv[k].half(), mm["backbone." + k]) for k in conv)
    # strict load into mmdet 3.3's own PyramidVisionTransformer (widths = embed_dims * num_heads[i], so the mini
    # widths [16, 32, 40, 64] need embed_dims=8, num_heads=[2, 4, 5, 8]; see tools/check_mmdet_naming.py)
    from mmdet.models.backbones.pvt import PyramidVisionTransformer as MMDetPVT
    mmpvt = MMDetPVT(pretrain_img_size=224, embed_dims=8, num_layers=mk.MINI["depths"], num_heads=[2, 4, 5, 8],
                     patch_sizes=[4, 2, 2, 2], strides=[4, 2, 2, 2], sr_ratios=mk.MINI["sr_ratios"],
                     mlp_ratios=mk.MINI["mlp_ratios"], qkv_bias=True)
    mmpvt.load_state_dict({k[len("backbone."):]: v.float() for k, v in mm.items()}, strict=True)
    mm.update(neckhead_sd)
    cfg_text = config_text()
    for fn, sd, naming, mmdet_version in (
            ("mini_retinanet_official_f16.pth", off,
             "official PVT-det naming (spec Appendix C): backbone.patch_embed{i}/pos_embed{i}/block{i}.{j}... "
             "(pos_embed4 keeps 50 rows) + neck.* + bbox_head.*", "2.13.0"),
            ("mini_retinanet_mmdet_f16.pth", mm,
             "mmdetection PyramidVisionTransformer naming: backbone.layers.{s}... "
             "+ neck.* + bbox_head.*", "2.25.3")):
        meta = {"mmdet_version": mmdet_version, "CLASSES": classes, "config": cfg_text, "epoch": 12,
                "iter": 87960, "time": "Thu Jan  1 00:00:00 1970",
                "note": "fixture: random weights, not a trained model"}
        ck = {"meta": meta, "state_dict": OrderedDict((k, v.to(torch.float16).contiguous().clone())
                                                      for k, v in sd.items())}
        p = os.path.join(OUT, fn)
        torch.save(ck, p)
        back = torch.load(p, map_location="cpu", weights_only=False)["state_dict"]
        assert set(back) == set(sd) and all(torch.equal(back[k].float(), sd[k].float()) for k in sd)
        files[fn] = dict(format="torch.save zip", container="mmcv-style {'meta': {...}, 'state_dict': {...}}",
                         naming=naming, dtype="float16", tensors=len(sd),
                         neck_head_tensors=len(neckhead_sd),
                         checked=("neck.*/bbox_head.* load strictly into mmdet 3.3 FPN/RetinaHead" +
                                  ("; backbone.* loads strictly into mmdet 3.3 PyramidVisionTransformer(embed_dims=8, "
                                   "num_heads=[2,4,5,8], num_layers=[2,1,1,2], ...)" if "mmdet" in fn else
                                   "; backbone.* loads strictly into the official detection PVT (mini)")))
    return files


def config_text():
    return (
        "# mmdet 2.x style config of the fixture model (PVT-det retinanet_pvt_*_fpn_1x_coco.py with the mini "
        "backbone and reduced widths)\n"
        "model = dict(\n"
        "    type='RetinaNet',\n"
        f"    backbone=dict(type='PyramidVisionTransformer', embed_dims={mk.MINI['embed_dims']}, "
        f"num_heads={mk.MINI['num_heads']}, mlp_ratios={mk.MINI['mlp_ratios']}, depths={mk.MINI['depths']}, "
        f"sr_ratios={mk.MINI['sr_ratios']}, qkv_bias=True),\n"
        f"    neck={NECK_CFG!r},\n"
        f"    bbox_head={HEAD_CFG!r},\n"
        f"    test_cfg={TEST_CFG!r})\n"
    )


def coco_classes():
    from mmdet.datasets import CocoDataset
    return list(CocoDataset.METAINFO["classes"])


def write_coco_classes():
    names = coco_classes()
    # mmdet 2.13's CocoDataset.CLASSES (read from the 2.13.0 wheel source) must agree
    import ast
    src = open(os.path.join(mc.MMDET213, "datasets", "coco.py")).read()
    tree = ast.parse(src)
    old = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CLASSES" for t in node.targets):
            old = list(ast.literal_eval(node.value))
    assert old == names, "mmdet 2.13 and 3.3 COCO class lists differ"
    assert len(names) == 80 and names[0] == "person" and names[79] == "toothbrush"
    p = os.path.join(ROOT, "assets", "coco_classes.txt")
    with open(p, "w") as f:
        f.write("\n".join(names) + "\n")
    return dict(file="assets/coco_classes.txt", lines=80,
                source="mmdet 3.3.0 CocoDataset.METAINFO['classes'] (== mmdet 2.13.0 CocoDataset.CLASSES)",
                note="line i (0-based) = label i of mmdet's detection outputs; the COCO category_id is a separate "
                     "mapping (cat_ids sorted: 1..90 with gaps)")


def rescale_table():
    """img_shape / pad_shape / scale_factor for some image sizes, as mmdet 3.3 Resize + pad computes them."""
    from mmdet.datasets.transforms import Resize
    rows = []
    for (h, w) in [(300, 451), (480, 640), (427, 640), (640, 480), (375, 500), (512, 512), (400, 600),
                   (240, 451), (333, 1000), (1000, 333), (800, 1333), (612, 612), (500, 333), (1, 1)]:
        for scale in ((1333, 800), (320, 256)):
            r = Resize(scale=scale, keep_ratio=True)(dict(img=np.zeros((h, w, 3), np.uint8)))
            nh, nw = r["img_shape"]
            sf = np.array(r["scale_factor"], dtype=np.float32)
            rows.append(dict(ori_hw=[h, w], scale=list(scale), img_shape_hw=[nh, nw],
                             pad_shape_hw=[int(math.ceil(nh / 32) * 32), int(math.ceil(nw / 32) * 32)],
                             scale_factor_wh_f64=[float(v) for v in r["scale_factor"]],
                             scale_factor_wh_f32_hex=[float(v).hex() for v in sf]))
    return rows


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cv2.setNumThreads(1)
    os.makedirs(OUT, exist_ok=True)
    from safetensors.torch import save_file

    backbone, backbone_sd = build_backbone()
    neck, head = build_neck_head()
    neckhead_sd = make_neck_head_weights(neck, head)
    from mmengine.config import ConfigDict
    m213 = mc.MMDet213(K, ANCHOR_CFG, CODER_CFG, ConfigDict(TEST_CFG), nms_rule=">=")

    # backbone with mmdetection's conventions (all LayerNorm eps 1e-6, pos-embed always interpolated)
    lns = [m for m in backbone.modules() if isinstance(m, nn.LayerNorm)]

    class MMDetConv(nn.Module):
        def __init__(self, bb):
            super().__init__()
            self.bb = bb

        def forward(self, x):
            with mk.patched([(m, "eps", 1e-6) for m in lns] +
                            [(self.bb, "_get_pos_embed", mk.always_interp_get_pos_embed.__get__(self.bb))]):
                return self.bb(x)

    cases = OrderedDict()
    for name, img_file, scale in CASES:
        t, stats, meta, pre, conv = run_case(name, img_file, scale, backbone, neck, head, m213,
                                             mmdet_conv_backbone=MMDetConv(backbone))
        # the resized photo must equal the one recorded by make_resize_fixtures.py
        from PIL import Image
        nh, nw = meta["img_shape_hw"]
        with open(os.path.join(RESIZE_DIR, "manifest.json")) as f:
            rman = json.load(f)
        hits = [k for k, v in rman["photo_cases"].items()
                if v["src"].startswith(f"assets/images/{img_file} ") and v["dst_hwc"] == [nh, nw, 3]]
        assert len(hits) == 1, (name, hits)
        rcase = rman["photo_cases"][hits[0]]
        assert hashlib.sha256(pre["resized"].tobytes()).hexdigest() == rcase["sha256_of_hwc_bgr_bytes"]
        png = os.path.join(RESIZE_DIR, hits[0] + ".png")
        if os.path.exists(png):
            stored = np.asarray(Image.open(png).convert("RGB"))
            assert np.array_equal(stored, pre["resized"][:, :, ::-1]), png
        fn = f"reference_{name}.safetensors"
        save_file(dict(t), os.path.join(OUT, fn), metadata={"producer": "tools/make_retinanet_fixtures.py"})
        cases[name] = OrderedDict(
            image=f"assets/images/{img_file}", test_scale=list(scale),
            resized_image=(os.path.relpath(png, ROOT) if os.path.exists(png) else
                           f"not stored; assets/fixtures/resize/manifest.json photo_cases.{hits[0]} has its SHA-256"),
            **meta,
            input_checks=OrderedDict(sum_f64=float(pre["x"].double().sum()),
                                     x_0_0_0_0=float(pre["x"][0, 0, 0, 0]),
                                     x_0_2_last_row_of_image_last_col=float(pre["x"][0, 2, nh - 1, nw - 1]),
                                     padding_is_zero=bool((pre["x"][0, :, nh:, :] == 0).all() and
                                                          (pre["x"][0, :, :, nw:] == 0).all())),
            file=fn, tensors=OrderedDict((k, [list(v.shape), str(v.dtype).replace("torch.", "")])
                                         for k, v in t.items()),
            stats=stats, mmdet_convention_backbone_effect=conv)

    files = save_checkpoints(backbone_sd, neckhead_sd)
    classes_info = write_coco_classes()
    table = rescale_table()

    for fn in sorted(os.listdir(OUT)):
        if fn == "manifest.json":
            continue
        fp = os.path.join(OUT, fn)
        files.setdefault(fn, OrderedDict())
        files[fn].update(bytes=os.path.getsize(fp), sha256=sha256(fp))

    import mmcv
    import mmdet
    import mmengine
    import safetensors
    import timm
    manifest = OrderedDict(
        description="Golden fixtures for PVT RetinaNet (mini PVT v1 backbone + mmdet FPN + RetinaHead), mmdet "
                    "test-time preprocessing and post-processing. Generated by tools/make_retinanet_fixtures.py.",
        versions=dict(python=sys.version.split()[0], torch=torch.__version__, timm=timm.__version__,
                      numpy=np.__version__, opencv=cv2.__version__, mmdet=mmdet.__version__,
                      mmengine=mmengine.__version__, mmcv_lite=mmcv.__version__,
                      safetensors=safetensors.__version__),
        modules_run=OrderedDict(
            backbone=f"OFFICIAL whai362/PVT detection/pvt.py PyramidVisionTransformer (commit "
                     f"{pvt_official.PVT_COMMIT}, imports shimmed by tools/pvt_official.py), config 'mini' of "
                     "assets/fixtures/pvt_v1 (LayerNorm eps 1e-5 in patch-embed and SR norms, 1e-6 in blocks; "
                     "pos-embed quirk not triggered at these sizes), weights "
                     "assets/fixtures/pvt_v1/mini_det_official_f32.safetensors (backbone.* only)",
            neck="mmdet 3.3.0 mmdet.models.necks.FPN (forward identical to mmdet 2.13.0, see forward_diff_2_13_vs_3_3)",
            head="mmdet 3.3.0 mmdet.models.dense_heads.RetinaHead (forward identical to mmdet 2.13.0)",
            preprocessing="mmcv 2.1 LoadImageFromFile + mmdet 3.3.0 Resize(scale, keep_ratio=True) + PackDetInputs + "
                          "DetDataPreprocessor(mean, std, bgr_to_rgb=True, pad_size_divisor=32); asserted equal "
                          "to the mmdet 2.x steps mmcv.imrescale -> mmcv.imnormalize(to_rgb=True) -> "
                          "mmcv.impad_to_multiple(32, pad_val=0), and to the float32 formula below",
            postprocessing_le217="mmdet 2.13.0 AnchorHead.get_bboxes/_get_bboxes, AnchorGenerator, "
                                 "DeltaXYWHBBoxCoder/delta2bbox, multiclass_nms, get_k_for_topk, executed from the "
                                 "2.13.0 wheel sources; mmcv 1.3.8 mmcv/ops/nms.py (NMSop, nms, batched_nms) on a "
                                 "Python port of the 1.3.8 CPU kernel (suppress when IoU >= 0.5); see "
                                 "tools/mmdet_compat.py. Also reproduced bit for bit by the independent "
                                 "re-implementation le217_spec() in the generator.",
            postprocessing_ge218="mmdet 3.3.0 RetinaHead.predict_by_feat (BaseDenseHead._predict_by_feat_single + "
                                 "_bbox_post_process), mmcv 2.1.0 mmcv/ops/nms.py on the Python port of the 2.1 CPU "
                                 "kernel (suppress when IoU > 0.5)",
            mmdet_2_13_source_sha256=m213.source_sha256,
        ),
        forward_diff_2_13_vs_3_3=[
            "FPN.forward: identical algorithm; 2.13 adds the upsampled map in place (laterals[i-1] += "
            "F.interpolate(...)), 3.3 out of place (same values). 2.13 has the deprecated extra_convs_on_inputs "
            "argument (True -> 'on_input') and end_level=-1 semantics differ in __init__ only; with the RetinaNet "
            "config (start_level=1, add_extra_convs='on_input', num_outs=5, relu_before_extra_convs=False, "
            "upsample nearest by size) the modules and outputs are the same",
            "RetinaHead: _init_layers/forward_single identical (3.3 only threads in_channels for stacked_convs=0 "
            "and names num_base_priors/encode_size); ConvModule (mmcv 1.3 vs 2.1) = conv + bias + ReLU, no norm",
            "AnchorGenerator: 2.13 grid_anchors and 3.3 grid_priors give bitwise equal anchors (asserted)",
            "post-processing differs (see postprocessing), incl. 3.3 extras: rescale multiplies by 1/scale_factor "
            "(scale_boxes) instead of dividing (1-ulp box differences), and drops boxes with width or height <= "
            "min_bbox_size=0 before NMS (2.13 RetinaNet ignores min_bbox_size)",
        ],
        config=OrderedDict(
            C_OUT=C_OUT, K=K, backbone="mini (assets/fixtures/pvt_v1/manifest.json)",
            neck=NECK_CFG, bbox_head=HEAD_CFG, test_cfg=TEST_CFG,
            num_anchors_per_location=9,
            anchor_order="a = ratio_idx*3 + scale_idx, ratios [0.5,1,2] (h/w), scales 4*2^(k/3); flattened (y, x, a)",
            channel_layout="cls_score channel = a*K + class; bbox_pred channel = a*4 + (dx,dy,dw,dh)",
            config_text=config_text(),
        ),
        weights=OrderedDict(
            seed=SEED, distributions=W, CLS_GAIN=CLS_GAIN, CLS_BIAS=CLS_BIAS, CLS_BIAS_STD=CLS_BIAS_STD,
            REG_GAIN=REG_GAIN, REG_BIAS_OFFSETS=REG_BIAS_OFFSETS,
            rounding="sampled in float64, cast to float32, rounded to bfloat16, |w| < 1e-4 set to 0 "
                     "(make_pvt_v1_fixtures.exactly_half_representable): exact in f16 and bf16",
            backbone="identical values to assets/fixtures/pvt_v1 (mini_det_official_f32.safetensors backbone.*)",
            neck_head_keys={k: list(v.shape) for k, v in neckhead_sd.items()},
        ),
        preprocessing=OrderedDict(
            steps=[
                "LoadImageFromFile: cv2 IMREAD_COLOR -> HxWx3 uint8 BGR (PNG ICC profile ignored)",
                "Resize(scale=(L, S), keep_ratio=True) = mmcv.imrescale: s = min(max(L,S)/max(h,w), "
                "min(L,S)/min(h,w)) (float64); new (w', h') = (int(w*s + 0.5), int(h*s + 0.5)); cv2.resize "
                "INTER_LINEAR on uint8 (exact kernel: assets/fixtures/resize/manifest.json); img_shape = (h', w'); "
                "scale_factor = (w'/w, h'/h) (float64 in 3.x; float32 array [w'/w, h'/h, w'/w, h'/h] in 2.x)",
                "Normalize: float32, BGR->RGB, (x - mean) / std with mean [123.675, 116.28, 103.53], std "
                "[58.395, 57.12, 57.375] (RGB order); float32 true division equals mmcv's cv2.subtract/multiply "
                "(asserted) -- norm_lut_rgb in the 320x256 reference holds all 3x256 values",
                "Pad bottom/right to multiples of 32 with 0.0 (after normalisation); pad_shape = padded (H, W)",
                "NCHW float32, batch 1",
            ],
            rescale_table=table,
        ),
        postprocessing=OrderedDict(
            le217=[
                "per level l (P3..P7): scores = sigmoid(cls_score) as (H*W*A, K) in (y, x, a) order; deltas "
                "(H*W*A, 4); if H*W*A > nms_pre=1000: idx = topk(max_c scores, 1000) (descending), keep those "
                "rows (else all rows, original order)",
                "decode (DeltaXYWHBBoxCoder, float32): px=(x1+x2)*0.5, py=(y1+y2)*0.5, pw=x2-x1, ph=y2-y1; "
                "dw, dh clamped to +-|ln(16/1000)|; gx = px + pw*dx, gy = py + ph*dy, gw = pw*exp(dw), "
                "gh = ph*exp(dh); box = (gx - gw*0.5, gy - gh*0.5, gx + gw*0.5, gy + gh*0.5); clip x to "
                "[0, img_w], y to [0, img_h] (img_shape, not pad_shape)",
                "concatenate levels; boxes /= float32 [w_scale, h_scale, w_scale, h_scale] (division)",
                "multiclass_nms: candidates = every (row, class) with score > 0.05 (strict), in row-major order "
                "(class fastest); mmcv 1.3.8 batched_nms: shifted = boxes + label * (max over all candidate box "
                "coordinates + 1), float32; if < 10000 candidates one NMS over all of them, else one NMS per class "
                "(on the same shifted boxes) and the survivors sorted by score descending; NMS (mmcv 1.3.8 CPU "
                "kernel): order = scores sorted descending; walk the order, keep i if not suppressed and suppress "
                "every later j with IoU(i, j) >= 0.5, IoU = inter / (area_i + area_j - inter) in float32 on the "
                "SHIFTED boxes, area = (x2-x1)*(y2-y1) (no +1), inter from max(0, min-max) widths; 0/0 (two "
                "zero-area boxes) is NaN and never suppresses; keep the first max_per_img=100 survivors "
                "(score-descending), with the UNshifted boxes",
                "output boxes in original-image coordinates (not re-clipped), scores, labels 0..K-1",
            ],
            ge218="per level: pairs with score > 0.05, then the top-1000 PAIRS by score (filter_scores_and_topk); "
                  "decode; concatenate; boxes *= 1/scale_factor; drop boxes with w <= 0 or h <= 0 "
                  "(min_bbox_size=0); batched_nms (IoU > 0.5 suppresses); first 100",
        ),
        tensor_descriptions=OrderedDict([
            ("c3, c4, c5", "official PVT backbone outputs feat2..feat4 (NCHW f32) = the FPN inputs used "
                           "(start_level=1; feat1/C2 is not used by this FPN)"),
            ("fpn_p3 .. fpn_p7", "FPN outputs, strides 8..128, [1, C_OUT, H, W]; P6 = fpn_convs.3 (3x3 s2 p1) on "
                                 "C5, P7 = fpn_convs.4 on P6 (no ReLU)"),
            ("cls_score_pN", "RetinaHead raw logits [1, 9*K, H, W] (channel = a*K + class)"),
            ("bbox_pred_pN", "RetinaHead raw deltas [1, 9*4, H, W] (channel = a*4 + (dx, dy, dw, dh))"),
            ("le217_mlvl_bboxes", "<= 2.17 multiclass_nms input boxes [M, 4] (xyxy, ORIGINAL-image coordinates, "
                                  "i.e. decoded, clipped to img_shape, divided by scale_factor): rows = per level "
                                  "the top-1000 anchors by max class score (topk order, score-descending) or all "
                                  "anchors of a level with <= 1000 (y, x, a order), levels P3..P7 concatenated"),
            ("le217_mlvl_scores", "matching sigmoid scores [M, K] (mmdet appends a zero background column, "
                                  "omitted here)"),
            ("dets_le217_bboxes/scores/labels", "FINAL detections, mmdet <= 2.17 algorithm (what the published "
                                                "PVT RetinaNet numbers use): [N, 4] xyxy in original-image "
                                                "coordinates, [N], [N] int64 label 0..K-1; sorted by score "
                                                "descending (the NMS output order)"),
            ("dets_ge218_bboxes/scores/labels", "the same from mmdet 3.3's predict_by_feat (>= 2.18 algorithm)"),
            ("base_anchors", "[5, 9, 4] AnchorGenerator base anchors per level (centre (0,0)); level anchors = "
                             "base + (x*stride, y*stride, x*stride, y*stride), flattened (y, x, a)"),
            ("norm_lut_rgb", "[3, 256] float32 (v - mean[c]) / std[c] for c in RGB order, v = 0..255"),
        ]),
        margins_explained=(
            "stats.margins measures how far each discrete decision of the <= 2.17 post-processing is from flipping: "
            "topk_boundary_rel_gap_per_level = (s_1000 - s_1001) / s_1000 of the per-level max class scores; "
            "min_rel_abs_score_minus_thr = min |s - 0.05| / 0.05 over the candidate pairs; "
            "min_abs_iou_minus_0.5 over (kept i, later j of the same class) pairs (float64 on unshifted boxes); "
            "max_per_img_boundary_rel_gap = (s_100 - s_101) / s_100 among NMS survivors. The weight seed was "
            "chosen (among 16) so that min_over_decisions >= 4.5e-5 in every case: feeding the stored raw head "
            "outputs to a correct f32 post-processing must reproduce the detections exactly (same count, order, "
            "labels; boxes and scores to ~1 ulp). End to end (image -> detections), an f32 implementation whose "
            "logits differ from PyTorch's by ~1e-5 relative may flip a decision; compare with a tolerance and "
            "treat mismatches near a listed margin as such."),
        notes=[
            "zero-area detections are legitimate outputs here: boxes decoded from anchors in the padded rows (or "
            "entirely outside the image) clip to x1 == x2 or y1 == y2; mmdet <= 2.17 keeps them (NMS IoU with them is "
            "0, or NaN between two such boxes, so they never suppress anything), mmdet 3.3 drops them "
            "(min_bbox_size=0 filter). Zero-area le217 detections per case: " + ", ".join(
                f"{k} {v['stats']['dets_le217_zero_area']}" for k, v in cases.items()),
            "the labels are meaningless (random weights); class k of this fixture has nothing to do with COCO "
            "class k (the checkpoints' meta CLASSES lists the first K COCO names only as a placeholder)",
            "mmdet_convention_backbone_effect: loading mini_retinanet_mmdet_f16.pth into mmdet's own "
            "PyramidVisionTransformer gives a slightly different model (LayerNorm eps 1e-6 everywhere, pos-embed "
            "always interpolated); with the mini weights (whose EPS_PROBES make a wrong eps visible, see "
            "assets/fixtures/pvt_v1/manifest.json) it moves the FPN outputs by ~2-3% relative and changes the "
            "detections, so the references here are only valid for the OFFICIAL backbone conventions (eps 1e-5 in "
            "patch-embed and SR norms), whichever weight file is loaded",
            "le217 vs ge218 (count le217 / count ge218 / le217 detections found in ge218 with the same label "
            "and IoU > 0.99): " + "; ".join(
                f"{k} {v['stats']['le217_vs_ge218']['le217_count']}/{v['stats']['le217_vs_ge218']['ge218_count']}/"
                f"{v['stats']['le217_vs_ge218'].get('le217_dets_found_in_ge218')}" for k, v in cases.items()) +
            " (identical lists differ only by the rescale: multiplication by 1/scale_factor vs division)",
            "mmcv NMS rule: the le217 results with IoU > 0.5 (mmcv >= 1.4 CPU rule; the CUDA kernels of all "
            "versions test inter > 0.5 * union) equal those with IoU >= 0.5 (mmcv 1.3.x CPU): " + ", ".join(
                f"{k} {v['stats']['le217_vs_ge218']['le217_nms_rule_ge_vs_gt_same_result']}" for k, v in cases.items()),
        ],
        cases=cases,
        files=files,
        coco_classes=classes_info,
        tolerance_hint=("f32 tensors: max|out-ref|/max|ref| <= 1e-4 per tensor (as the backbone fixture); the "
                        "detections: same count and labels, boxes within 1e-3 px relative to 1e-5 of their "
                        "magnitude, scores within 1e-5, provided the implementation's scores differ from "
                        "the reference by less than the decision margins listed under stats.margins"),
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, fn)) for fn in os.listdir(OUT))
    print(f"wrote {OUT}: {total / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
