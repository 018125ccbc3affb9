#!/usr/bin/env python3
"""Golden fixtures for PVT Mask R-CNN (mini PVT v1 backbone + FPN + RPN + Shared2FC box head + FCN mask head),
mmdetection 2.13 test-time semantics, on real photos through the mmdet test pipeline.

    /tmp/mmdet-venv/bin/python tools/make_mask_rcnn_fixtures.py [--search SEED0 SEED1 ...]

Runs in the Python described in tools/requirements-fixtures.txt (mmdet 3.3.0 + mmengine + mmcv-lite + opencv +
pycocotools, seeing tools/.venv's torch/timm through a .pth file). Needs tools/_ref/{cls_pvt.py, det_pvt.py}
(official PVT code, see tools/pvt_official.py) and the mmdet 2.13.0 / mmcv 1.3.8 sources described in
tools/mmdet_compat.py. Writes assets/fixtures/mask_rcnn/* and assets/configs/mask_rcnn_pvt_mini.json.
`--search` only prints detection counts and decision margins for the given weight seeds (nothing is written).

The model is PVT-det's `_base_/models/mask_rcnn_r50_fpn.py` wiring with reduced widths ("mini"):
backbone = the mini PVT v1 of assets/configs/retinanet_pvt_mini.json (official naming; weights =
assets/fixtures/pvt_v1/mini_det_official_f32.safetensors, the same values as the RetinaNet fixture's backbone);
FPN in [16, 32, 40, 64] -> 32, num_outs 5 (P6 = max_pool2d(P5, 1, stride 2)); RPNHead 32/32 (anchors scale 8,
ratios 0.5/1/2, strides 4..64); SingleRoIExtractor RoIAlign 7 (box) / 14 (mask), strides 4..32;
Shared2FCBBoxHead 32*7*7 -> 64 -> 64, 8 classes (+ background, last), class-specific deltas, stds
[.1, .1, .2, .2]; FCNMaskHead 4 x conv3x3 32 + deconv 2x2 s2 + 1x1 logits -> 8 x 28 x 28.

Who computes what:
* backbone: the OFFICIAL whai362/PVT detection/pvt.py (tools/pvt_official.py), as in the RetinaNet fixture;
* module forwards: mmdet 3.3.0 `FPN`, `RPNHead`, `SingleRoIExtractor`, `Shared2FCBBoxHead`, `FCNMaskHead`.
  Their forwards equal mmdet 2.13.0's: FPN.forward (2.13 adds the upsampled map in place, 3.3 out of place;
  same values; extra levels by max_pool2d(out, 1, stride=2) in both), RPNHead.forward_single (rpn_conv, ReLU,
  rpn_cls, rpn_reg), SingleRoIExtractor.forward/map_roi_levels (3.3 only adds `rois.type_as(feats[0])`),
  ConvFCBBoxHead.forward and FCNMaskHead.forward (token-identical bodies). Asserted at run time: the 2.13
  source of each of these forwards, executed on the 3.3 module instances, gives bitwise equal outputs;
* RoIAlign: mmcv-lite has no compiled ops; the mmcv.ops stand-in `RoIAlign` (tools/mmdet_compat.py) runs
  torchvision.ops.roi_align(aligned=True, sampling_ratio=0), the same Caffe2/detectron2 algorithm as mmcv
  1.3.8's CPU kernel with pool_mode='avg', aligned=True. Cross-checked here against `roi_align_mmcv_port`, a
  float32 numpy transcription of mmcv 1.3.8's mmcv/ops/csrc/pytorch/roi_align_cpu.cpp;
* the test path: mmdet 2.13.0's own code (tools/mmdet_compat.load_two_stage_213): TwoStageDetector.simple_test
  -> RPNTestMixin.simple_test_rpn -> AnchorHead.get_bboxes -> RPNHead._get_bboxes (per-level sort + top 1000,
  decode + clip, w/h > 0 filter, level-wise batched_nms 0.7, first 1000); StandardRoIHead.simple_test ->
  BBoxTestMixin.simple_test_bboxes -> BBoxHead.get_bboxes (softmax, decode with max_shape = img_shape, divide by
  scale_factor, multiclass_nms 0.05 / 0.5 / 100) -> MaskTestMixin.simple_test_mask (mask RoIs =
  det_bboxes[:, :4] * scale_factor) -> FCNMaskHead.get_seg_masks (paste boxes = mask RoIs / scale_factor, CPU
  path: one detection at a time, _do_paste_mask with skip_empty=True, threshold >= 0.5); mmcv 1.3.8's
  batched_nms on the CPU kernel rule of mmcv <= 1.3.x (suppress when IoU >= thr);
* self-checks: `box_postprocess_spec` (an independent torch/numpy transcription of the box post-processing)
  reproduces mmdet 2.13's detections bit for bit; `rpn_spec` likewise for the proposals; `paste_spec` (the
  grid_sample formula written out) reproduces the pasted masks; `roi_align_mmcv_port` the RoI features.

Weights: random, rounded to values exact in f16 and bf16 (make_pvt_v1_fixtures.exactly_half_representable);
all references are computed in float32 from exactly the values stored (f16) in mini_mask_rcnn_official_f16.pth.
The fc_cls and conv_logits biases are centred on the data (`calibrate_biases`) and each fc_cls row is scaled to
the same logit spread, so that several classes compete and tens of detections pass the 0.05 threshold; rpn_reg
has a dw/dh bias so that proposals are large enough to reach P3..P5 in the RoI level mapping. The seed was picked
with --search (manifest weights.seed_search).

Cases: chelsea and coffee_crop at scale (320, 256) (every FPN level stored, float16), and chelsea at (1333, 800)
(the only one whose RoIs reach all four RoI levels; only fpn.3/fpn.4 stored). The float32 input is not stored
(manifest "sizes"): cases.*.input_checks pin it. Outputs per case: reference_<case>.safetensors
(manifest tensor_descriptions) and manifest cases.<case> (shapes, scale_factor, the pasted masks as COCO RLE,
decision margins).
"""

import argparse
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
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mmdet_compat as mc  # noqa: E402

mc.install_mmcv_ops_stub(rule=">")  # before anything imports mmdet.models

import cv2  # noqa: E402
import make_pvt_v1_fixtures as mk  # noqa: E402
import make_retinanet_fixtures as mret  # noqa: E402  (preprocess, build_backbone)
import pvt_official  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "assets", "fixtures", "mask_rcnn")
CONFIG_OUT = os.path.join(ROOT, "assets", "configs", "mask_rcnn_pvt_mini.json")
RETINA_CKPT = os.path.join(ROOT, "assets", "fixtures", "retinanet", "mini_retinanet_official_f16.pth")
IMG_DIR = os.path.join(ROOT, "assets", "images")
RESIZE_DIR = os.path.join(ROOT, "assets", "fixtures", "resize")

SEED = 63  # picked with --search among seeds 1..70 (see manifest weights.seed_search)
SEED_SEARCH = ("seeds 1..70 scanned with --search; kept those where every case has 15..100 detections of >= 4 classes, "
               "no empty mask and at most 2 zero-area detections; preferred RoIs on all four levels in the 1333x800 "
               "case (proposals and mask RoIs), then the largest min over cases of stats.margins.min_over_decisions")
K = 8  # classes
C = 32  # FPN / RoI feature channels
FC = 64  # shared fc width
MASK_C = 32
IN_CHANNELS = [16, 32, 40, 64]
STRIDES = [4, 8, 16, 32, 64]

NECK_CFG = dict(type="FPN", in_channels=IN_CHANNELS, out_channels=C, num_outs=5)
RPN_ANCHOR_CFG = dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=STRIDES)
RPN_CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0])
RCNN_CODER_CFG = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[0.1, 0.1, 0.2, 0.2])
RPN_HEAD_CFG = dict(type="RPNHead", in_channels=C, feat_channels=C, anchor_generator=RPN_ANCHOR_CFG,
                    bbox_coder=RPN_CODER_CFG)
BBOX_ROI_EXTRACTOR = dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
                          out_channels=C, featmap_strides=[4, 8, 16, 32])
MASK_ROI_EXTRACTOR = dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
                          out_channels=C, featmap_strides=[4, 8, 16, 32])
BBOX_HEAD_CFG = dict(type="Shared2FCBBoxHead", in_channels=C, fc_out_channels=FC, roi_feat_size=7, num_classes=K,
                     bbox_coder=RCNN_CODER_CFG, reg_class_agnostic=False)
MASK_HEAD_CFG = dict(type="FCNMaskHead", num_convs=4, in_channels=C, conv_out_channels=MASK_C, num_classes=K)
RPN_TEST_CFG = dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
RCNN_TEST_CFG = dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)

# weight distributions (sampled in float64, then rounded to f16/bf16-exact float32 values)
W = OrderedDict(
    neck="conv weights N(0, 1/fan_in), biases N(0, 0.1^2)",
    rpn_conv="N(0, 2/fan_in), bias N(0, 0.1^2)",
    rpn_cls="N(0, RPN_CLS_GAIN^2/fan_in), bias RPN_CLS_BIAS + N(0, 0.5^2)",
    rpn_reg="N(0, RPN_REG_GAIN^2/fan_in), bias N(0, 0.2^2) + RPN_DWDH_BIAS on the dw and dh channels",
    shared_fcs="N(0, 2/fan_in), bias N(0, 0.1^2)",
    fc_cls="N(0, 1/fan_in), then each row scaled so that its logit has standard deviation CLS_GAIN over the "
           "proposals of all cases; bias = [CLS_FG_BIAS..., CLS_BG_BIAS] - W @ mean shared-fc feature over those "
           "proposals (calibrate_biases)",
    fc_reg="N(0, REG_GAIN^2/fan_in), bias N(0, 0.2^2)",
    mask_convs="N(0, 2/fan_in), bias N(0, 0.1^2) (upsample: fan_in = in_channels)",
    conv_logits="N(0, MASK_GAIN^2/fan_in), bias = MASK_BIAS + N(0, 0.25^2) (generator seed 1) - W @ mean "
                "upsampled mask feature over the first 300 proposals of each case (calibrate_biases)",
)
RPN_CLS_GAIN = 0.3
RPN_CLS_BIAS = -2.5
RPN_REG_GAIN = 0.1
RPN_DWDH_BIAS = 0.5
CLS_GAIN = 0.8
CLS_FG_BIAS = [0.0, 0.05, -0.05, 0.1, -0.1, 0.0, 0.05, -0.15]
CLS_BG_BIAS = 5.0
REG_GAIN = 1.0
MASK_GAIN = 2.0
MASK_BIAS = 0.0

CASES = [
    ("chelsea_320x256", "chelsea.png", (320, 256)),
    ("coffee_crop_320x256", "coffee_crop_233x599.png", (320, 256)),
    ("chelsea_1333x800", "chelsea.png", (1333, 800)),
]
# cases whose P2..P4 FPN outputs are not stored (too large; pinned by cases.*.fpn_f32): only fpn.3 / fpn.4
LIGHT = {"chelsea_1333x800"}
FPN_DTYPE = torch.float16  # see manifest "sizes"
STORE_INPUT = False  # the f32 input is pinned by cases.*.input_checks instead (see manifest "sizes")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def sha256_tensor(t):
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# models


def build_modules():
    from mmengine.config import ConfigDict
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.necks import FPN
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    def args(cfg):
        c = copy.deepcopy(cfg)
        c.pop("type")
        return c

    m = OrderedDict()
    m["neck"] = FPN(**args(NECK_CFG))
    m["rpn_head"] = RPNHead(**args(RPN_HEAD_CFG), train_cfg=None, test_cfg=ConfigDict(RPN_TEST_CFG))
    m["bbox_roi_extractor"] = SingleRoIExtractor(**args(BBOX_ROI_EXTRACTOR))
    m["mask_roi_extractor"] = SingleRoIExtractor(**args(MASK_ROI_EXTRACTOR))
    m["bbox_head"] = Shared2FCBBoxHead(**args(BBOX_HEAD_CFG))
    m["mask_head"] = FCNMaskHead(**args(MASK_HEAD_CFG))
    for v in m.values():
        v.eval()
    assert isinstance(m["bbox_roi_extractor"].roi_layers[0], mc.RoIAlign)
    return m


PREFIX = OrderedDict(neck="neck.", rpn_head="rpn_head.", bbox_head="roi_head.bbox_head.",
                     mask_head="roi_head.mask_head.")


def make_weights(mods, seed):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float64)

    for part, prefix in PREFIX.items():
        for name, ref in mods[part].state_dict().items():
            full = prefix + name
            shape = ref.shape
            is_w = name.endswith("weight")
            if full == "roi_head.mask_head.upsample.weight":
                fan_in = shape[0]  # ConvTranspose2d [in, out, 2, 2], stride 2: one tap per output pixel
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else None
            if part == "neck":
                v = randn(shape) / math.sqrt(fan_in) if is_w else 0.1 * randn(shape)
            elif full == "rpn_head.rpn_conv.weight":
                v = randn(shape) * math.sqrt(2.0 / fan_in)
            elif full == "rpn_head.rpn_cls.weight":
                v = randn(shape) * RPN_CLS_GAIN / math.sqrt(fan_in)
            elif full == "rpn_head.rpn_cls.bias":
                v = RPN_CLS_BIAS + 0.5 * randn(shape)
            elif full == "rpn_head.rpn_reg.weight":
                v = randn(shape) * RPN_REG_GAIN / math.sqrt(fan_in)
            elif full == "rpn_head.rpn_reg.bias":
                v = 0.2 * randn(shape)
                v[2::4] += RPN_DWDH_BIAS  # dw of each anchor: larger proposals, so RoIs reach P3..P5
                v[3::4] += RPN_DWDH_BIAS  # dh
            elif ".shared_fcs." in full or ".convs." in full or ".upsample." in full or full.endswith("rpn_conv.bias"):
                v = randn(shape) * math.sqrt(2.0 / fan_in) if is_w else 0.1 * randn(shape)
            elif full == "roi_head.bbox_head.fc_cls.weight":
                v = randn(shape) / math.sqrt(fan_in)
            elif full == "roi_head.bbox_head.fc_cls.bias":
                v = torch.tensor(CLS_FG_BIAS + [CLS_BG_BIAS], dtype=torch.float64)
            elif full == "roi_head.bbox_head.fc_reg.weight":
                v = randn(shape) * REG_GAIN / math.sqrt(fan_in)
            elif full == "roi_head.bbox_head.fc_reg.bias":
                v = 0.2 * randn(shape)
            elif full == "roi_head.mask_head.conv_logits.weight":
                v = randn(shape) * MASK_GAIN / math.sqrt(fan_in)
            elif full == "roi_head.mask_head.conv_logits.bias":
                v = MASK_BIAS + 0.25 * randn(shape)
            else:
                raise RuntimeError(full)
            sd[full] = mk.exactly_half_representable(v.float())
    for part, prefix in PREFIX.items():
        mods[part].load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    return sd


def calibrate_biases(mods, sd, ns, cached):
    """Centre the fc_cls and conv_logits biases on the data (the shared-fc / mask features have a large common
    mean after ReLU, which otherwise lets one class win everywhere): bias = target - W @ mean_feature, with the
    mean over the RPN proposals of all cases (proposals do not depend on these biases). `cached` = list of
    (backbone feats, input, img_meta)."""
    xs, ys = [], []
    head = mods["bbox_head"]
    mhead = mods["mask_head"]
    for feats, x, meta2 in cached:
        model, rec = build_213(CachedBackbone(feats), mods, ns)
        run_213(model, rec, x, meta2)
        props = rec["proposals"][:, :4]
        with torch.no_grad():
            h = rec["bbox_roi_feats"].flatten(1)
            for fc in head.shared_fcs:
                h = torch.relu(fc(h))
            xs.append(h)
            rois = torch.cat([torch.zeros(props.shape[0], 1), props], 1)[:300]
            m = mods["mask_roi_extractor"](rec["fpn"][:4], rois)
            for conv in mhead.convs:
                m = conv(m)
            m = torch.relu(mhead.upsample(m))
            ys.append(m.mean((2, 3)))
    xall = torch.cat(xs).double()
    xbar = xall.mean(0)
    ybar = torch.cat(ys).double().mean(0)
    wc = sd["roi_head.bbox_head.fc_cls.weight"].double()
    # every class's logit gets the same spread over the proposals: std_p(w_k . x_p) = CLS_GAIN
    proj_std = (xall @ wc.T).std(0)
    wc = mk.exactly_half_representable((wc * (CLS_GAIN / proj_std)[:, None]).float()).double()
    sd["roi_head.bbox_head.fc_cls.weight"] = wc.float()
    target = torch.tensor(CLS_FG_BIAS + [CLS_BG_BIAS], dtype=torch.float64)
    sd["roi_head.bbox_head.fc_cls.bias"] = mk.exactly_half_representable((target - wc @ xbar).float())
    wm = sd["roi_head.mask_head.conv_logits.weight"].double()[:, :, 0, 0]
    g = torch.Generator().manual_seed(1)
    tm = MASK_BIAS + 0.25 * torch.randn(K, generator=g, dtype=torch.float64)
    sd["roi_head.mask_head.conv_logits.bias"] = mk.exactly_half_representable((tm - wm @ ybar).float())
    for part, prefix in PREFIX.items():
        mods[part].load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    return dict(shared_fc_mean_norm=float(xbar.norm()), mask_feature_mean_norm=float(ybar.norm()),
                fc_cls_row_scale=(CLS_GAIN / proj_std).tolist())


def load_backbone():
    """The official PVT (mini) with the RetinaNet fixture's backbone values; returns it and the f16 backbone.*"""
    backbone, bb_sd = mret.build_backbone()
    ck = torch.load(RETINA_CKPT, map_location="cpu", weights_only=False)["state_dict"]
    ret = OrderedDict((k, v) for k, v in ck.items() if k.startswith("backbone."))
    assert list(ret) == list(bb_sd), "backbone key order differs from the RetinaNet checkpoint"
    for k, v in ret.items():
        assert v.dtype == torch.float16 and torch.equal(v.float(), bb_sd[k]), k
    return backbone, ret


# ----------------------------------------------------------------------------------------------
# mmdet 2.13 forward sources on the 3.3 modules


def check_213_forwards(mods, feats, rois_box, rois_mask):
    d = mc.MMDET213
    misc = mc.load_defs(os.path.join(d, "core", "utils", "misc.py"), ["multi_apply"],
                        dict(partial=__import__("functools").partial, torch=torch, np=np))
    fpn = mc.load_defs(os.path.join(d, "models", "necks", "fpn.py"), [], dict(F=F, nn=nn, torch=torch),
                       methods_of=("FPN", ["forward"]))
    ah = mc.load_defs(os.path.join(d, "models", "dense_heads", "anchor_head.py"), [],
                      dict(torch=torch, multi_apply=misc.multi_apply), methods_of=("AnchorHead", ["forward"]))
    rh = mc.load_defs(os.path.join(d, "models", "dense_heads", "rpn_head.py"), [], dict(torch=torch, F=F, nn=nn),
                      methods_of=("RPNHead", ["forward_single"]))
    sre = mc.load_defs(os.path.join(d, "models", "roi_heads", "roi_extractors", "single_level_roi_extractor.py"), [],
                       dict(torch=torch), methods_of=("SingleRoIExtractor", ["forward", "map_roi_levels"]))
    bh = mc.load_defs(os.path.join(d, "models", "roi_heads", "bbox_heads", "convfc_bbox_head.py"), [],
                      dict(torch=torch, nn=nn, F=F), methods_of=("ConvFCBBoxHead", ["forward"]))
    fm = mc.load_defs(os.path.join(d, "models", "roi_heads", "mask_heads", "fcn_mask_head.py"), [],
                      dict(torch=torch, nn=nn, F=F), methods_of=("FCNMaskHead", ["forward"]))

    class Rpn213:
        def __init__(self, m):
            self.m = m

        def forward_single(self, x):
            return rh.forward_single(self.m, x)

    class Extractor213:
        def __init__(self, m):
            self.m = m
            self.roi_layers = m.roi_layers
            self.out_channels = m.out_channels
            self.finest_scale = m.finest_scale
            self.parameters = m.parameters

        def map_roi_levels(self, rois, num_levels):
            return sre.map_roi_levels(self, rois, num_levels)

        def roi_rescale(self, *a):
            raise AssertionError("not used")

    res = OrderedDict()
    with torch.no_grad():
        out3 = mods["neck"](tuple(feats))
        out2 = fpn.forward(mods["neck"], tuple(feats))
        res["fpn"] = max(float((a - b).abs().max()) for a, b in zip(out3, out2))
        c3, r3 = mods["rpn_head"](out3)
        c2, r2 = ah.forward(Rpn213(mods["rpn_head"]), out3)
        res["rpn_cls"] = max(float((a - b).abs().max()) for a, b in zip(c3, c2))
        res["rpn_reg"] = max(float((a - b).abs().max()) for a, b in zip(r3, r2))
        for key, ext, rois in (("bbox_roi_feats", "bbox_roi_extractor", rois_box),
                               ("mask_roi_feats", "mask_roi_extractor", rois_mask)):
            e = mods[ext]
            f3 = e(out3[:e.num_inputs], rois)
            f2 = sre.forward(Extractor213(e), out3[:4], rois)
            res[key] = float((f3 - f2).abs().max())
            lv3 = e.map_roi_levels(rois, 4)
            lv2 = sre.map_roi_levels(Extractor213(e), rois, 4)
            assert torch.equal(lv3, lv2)
            if key == "bbox_roi_feats":
                s3, d3 = mods["bbox_head"](f3)
                s2, d2 = bh.forward(mods["bbox_head"], f3)
                res["bbox_cls_score"] = float((s3 - s2).abs().max())
                res["bbox_pred"] = float((d3 - d2).abs().max())
            else:
                res["mask_pred"] = float((mods["mask_head"](f3) - fm.forward(mods["mask_head"], f3)).abs().max())
    assert all(v == 0.0 for v in res.values()), res
    return res


# ----------------------------------------------------------------------------------------------
# the mmdet 2.13 test path, with recording


def build_213(backbone, mods, ns):
    rec = OrderedDict()

    class Rpn(ns.RPNHead):
        def __call__(self, x):
            out = self.module(x)
            rec["rpn_cls"] = [t.clone() for t in out[0]]
            rec["rpn_reg"] = [t.clone() for t in out[1]]
            return out

        def simple_test_rpn(self, x, img_metas):
            res = ns.RPNHead.simple_test_rpn(self, x, img_metas)
            rec["proposals"] = res[0].clone()
            return res

    class BBox(ns.BBoxHead):
        def __call__(self, x):
            rec["bbox_roi_feats"] = x.clone()
            s, d = self.module(x)
            rec["bbox_cls_score"] = s.clone()
            rec["bbox_pred"] = d.clone()
            return s, d

    class Mask(ns.MaskHead):
        def __call__(self, x):
            rec["mask_roi_feats"] = x.clone()
            out = self.module(x)
            rec["mask_pred_all"] = out.clone()
            return out

        def get_seg_masks(self, mask_pred, det_bboxes, det_labels, *a):
            rec["mask_seg_args"] = (mask_pred.clone(), det_bboxes.clone(), det_labels.clone()) + a
            return ns.MaskHead.get_seg_masks(self, mask_pred, det_bboxes, det_labels, *a)

    class Roi(ns.RoIHead):
        def simple_test_bboxes(self, *a, **k):
            b, l = ns.RoIHead.simple_test_bboxes(self, *a, **k)
            rec["det_bboxes"] = b[0].clone()
            rec["det_labels"] = l[0].clone()
            return b, l

    class Det(ns.Detector):
        def extract_feat(self, img):
            x = ns.Detector.extract_feat(self, img)
            rec["fpn"] = [t.clone() for t in x]
            return x

    class RecBackbone(nn.Module):
        def __init__(self, bb):
            super().__init__()
            self.bb = bb

        def forward(self, img):
            out = self.bb(img)
            rec["feats"] = [t.clone() for t in out]
            return out

    model = mc.build_two_stage_213(
        ns, RecBackbone(backbone), mods["neck"], mods["rpn_head"], mods["bbox_roi_extractor"], mods["bbox_head"],
        mods["mask_roi_extractor"], mods["mask_head"], RPN_ANCHOR_CFG, RPN_CODER_CFG, RPN_TEST_CFG, RCNN_CODER_CFG,
        RCNN_TEST_CFG, K, classes=dict(Detector=Det, RPNHead=Rpn, RoIHead=Roi, BBoxHead=BBox, MaskHead=Mask))
    return model, rec


class CachedBackbone(nn.Module):
    """Backbone stand-in returning precomputed features (for the seed search)."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats

    def forward(self, x):
        return [f.clone() for f in self.feats]


def run_213(model, rec, x, meta2):
    rec.clear()
    with torch.no_grad(), warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        out = model.simple_test(x, [meta2], rescale=True)
    (bbox_results, segm_results), = out
    return bbox_results, segm_results


def masks_in_det_order(segm_results, labels):
    """get_seg_masks returns masks grouped by class (detection order within a class): back to detection order."""
    seen = [0] * K
    out = []
    for lab in labels.tolist():
        out.append(segm_results[lab][seen[lab]])
        seen[lab] += 1
    assert seen == [len(s) for s in segm_results]
    return out


# ----------------------------------------------------------------------------------------------
# independent transcriptions (cross-checks)


def nms_ge(boxes, scores, thr):
    """NMS on float32 numpy boxes, mmcv 1.3.8 CPU rule (suppress when IoU >= thr); returns kept indices in
    descending-score order (order = torch sort, as in the kernel)."""
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


def class_offset_nms(boxes, scores, idxs, thr):
    """mmcv 1.3.8 batched_nms below split_thr: one NMS over boxes shifted by idx * (max coordinate + 1)."""
    assert boxes.shape[0] < 10000
    shift = idxs.to(boxes.dtype) * (boxes.max() + torch.tensor(1.0, dtype=boxes.dtype))
    kept = nms_ge((boxes + shift[:, None]).numpy(), scores.numpy(), thr)
    return torch.from_numpy(kept)


def decode(rois, deltas, stds, img_hw):
    """DeltaXYWHBBoxCoder.decode (means 0), float32, deltas [N, 4k] against rois [N, 4], clip to img_shape."""
    n = deltas.shape[0]
    d = deltas.reshape(n, -1, 4) * torch.tensor(stds, dtype=torch.float32)
    dx, dy, dw, dh = d.unbind(-1)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None]
    py = ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
    pw = (rois[:, 2] - rois[:, 0])[:, None]
    ph = (rois[:, 3] - rois[:, 1])[:, None]
    max_ratio = float(np.abs(np.log(16 / 1000)))
    dw = dw.clamp(-max_ratio, max_ratio)
    dh = dh.clamp(-max_ratio, max_ratio)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    b = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], -1)
    lim = torch.tensor([img_hw[1], img_hw[0], img_hw[1], img_hw[0]], dtype=torch.float32)
    b = torch.where(b < 0, torch.zeros(()), b)
    b = torch.where(b > lim, lim, b)
    return b.reshape(n, -1)


def rpn_spec(cls_scores, bbox_preds, anchors, img_hw, cfg=RPN_TEST_CFG):
    boxes, scores, lvl = [], [], []
    for i, (c, r, a) in enumerate(zip(cls_scores, bbox_preds, anchors)):
        s = c[0].permute(1, 2, 0).reshape(-1).sigmoid()
        d = r[0].permute(1, 2, 0).reshape(-1, 4)
        if s.numel() > cfg["nms_pre"]:
            ss, idx = s.sort(descending=True)
            s, d, a = ss[:cfg["nms_pre"]], d[idx[:cfg["nms_pre"]]], a[idx[:cfg["nms_pre"]]]
        boxes.append(decode(a, d, [1.0] * 4, img_hw))
        scores.append(s)
        lvl.append(torch.full((s.numel(),), i, dtype=torch.long))
    boxes, scores, lvl = torch.cat(boxes), torch.cat(scores), torch.cat(lvl)
    valid = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    # the 2.13 filter indexes with nonzero().squeeze() and compares the index SUM with the count (a quirk
    # that only skips the filter when no box is dropped), same result as the plain mask here
    boxes, scores, lvl = boxes[valid], scores[valid], lvl[valid]
    kept = class_offset_nms(boxes, scores, lvl, cfg["nms"]["iou_threshold"])
    kept = kept[: cfg["max_per_img"]]
    return boxes[kept], scores[kept], dict(candidates=int(valid.numel()), after_size_filter=int(valid.sum()))


def box_postprocess_spec(proposals, cls_score, bbox_pred, img_hw, sf, cfg=RCNN_TEST_CFG):
    scores = torch.softmax(cls_score, -1)
    boxes = decode(proposals, bbox_pred, RCNN_CODER_CFG["target_stds"], img_hw)
    boxes = boxes / torch.from_numpy(np.tile(sf, K))[None]
    fg = scores[:, :K]
    mask = fg > cfg["score_thr"]
    ri, ci = mask.nonzero(as_tuple=True)  # row-major: proposal, then class
    cb = boxes.reshape(-1, K, 4)[ri, ci]
    cs = fg[ri, ci]
    kept = class_offset_nms(cb, cs, ci, cfg["nms"]["iou_threshold"])[: cfg["max_per_img"]]
    return cb[kept], cs[kept], ci[kept], dict(candidates=int(ri.numel()), cand_rows=ri, cand_cls=ci, cand_boxes=cb,
                                              cand_scores=cs, kept=kept)


def paste_spec(logits, box, img_h, img_w):
    """Mask probability at every pixel centre of the original image, grid_sample(bilinear, zeros,
    align_corners=False) written out (float64): g = (x + 0.5 - x0) / (x1 - x0) * 2 - 1, an infinite g (zero-width
    box) replaced by 0 as _do_paste_mask does, u = ((g + 1) * 28 - 1) / 2, i.e. u = (x + 0.5 - x0) * 28 / (x1 - x0)
    - 0.5 for a proper box."""
    p = torch.sigmoid(logits.double())
    m = p.shape[-1]
    x0, y0, x1, y1 = (float(v) for v in box)

    def coord(n, a0, a1):
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (np.arange(n, dtype=np.float64) + 0.5 - a0) / np.float64(a1 - a0) * 2 - 1
        g[np.isinf(g)] = 0
        return torch.from_numpy(((g + 1) * m - 1) / 2)

    xs = coord(img_w, x0, x1)
    ys = coord(img_h, y0, y1)

    def taps(u):
        f = torch.floor(u)
        w1 = u - f
        i0 = f.long()
        return i0, i0 + 1, 1 - w1, w1

    xi0, xi1, wx0, wx1 = taps(xs)
    yi0, yi1, wy0, wy1 = taps(ys)
    out = torch.zeros(img_h, img_w, dtype=torch.float64)
    for yi, wy in ((yi0, wy0), (yi1, wy1)):
        for xi, wx in ((xi0, wx0), (xi1, wx1)):
            vy = (yi >= 0) & (yi < m)
            vx = (xi >= 0) & (xi < m)
            v = p[yi.clamp(0, m - 1)][:, xi.clamp(0, m - 1)] * (vy[:, None] & vx[None, :])
            out += v * wy[:, None] * wx[None, :]
    return out


def roi_align_mmcv_port(feat, rois, out, scale):
    """float32 numpy transcription of mmcv 1.3.8 ROIAlignForward (roi_align_cpu.cpp), avg mode, aligned=True,
    sampling_ratio=0. feat [C, H, W] (batch 1), rois [N, 5]."""
    f32 = np.float32
    x = feat.numpy()
    ch, h, w = x.shape
    flat = x.reshape(ch, -1)
    r = rois.numpy().astype(np.float32)
    res = np.zeros((r.shape[0], ch, out, out), np.float32)
    sc = f32(scale)
    for n in range(r.shape[0]):
        rs_w = r[n, 1] * sc - f32(0.5)
        rs_h = r[n, 2] * sc - f32(0.5)
        re_w = r[n, 3] * sc - f32(0.5)
        re_h = r[n, 4] * sc - f32(0.5)
        rw = re_w - rs_w
        rh = re_h - rs_h
        bh = rh / f32(out)
        bw = rw / f32(out)
        gh = int(math.ceil(rh / out))
        gw = int(math.ceil(rw / out))
        count = f32(max(gh * gw, 1))
        for ph in range(out):
            for pw in range(out):
                acc = np.zeros(ch, np.float32)
                for iy in range(gh):
                    yy = rs_h + f32(ph) * bh + f32(iy + 0.5) * bh / f32(gh)
                    for ix in range(gw):
                        xx = rs_w + f32(pw) * bw + f32(ix + 0.5) * bw / f32(gw)
                        yv, xv = yy, xx
                        if yv < -1.0 or yv > h or xv < -1.0 or xv > w:
                            continue
                        if yv <= 0:
                            yv = f32(0)
                        if xv <= 0:
                            xv = f32(0)
                        yl, xl = int(yv), int(xv)
                        if yl >= h - 1:
                            yh = yl = h - 1
                            yv = f32(yl)
                        else:
                            yh = yl + 1
                        if xl >= w - 1:
                            xh = xl = w - 1
                            xv = f32(xl)
                        else:
                            xh = xl + 1
                        ly = yv - f32(yl)
                        lx = xv - f32(xl)
                        hy = f32(1) - ly
                        hx = f32(1) - lx
                        acc = acc + ((hy * hx) * flat[:, yl * w + xl] + (hy * lx) * flat[:, yl * w + xh] +
                                     (ly * hx) * flat[:, yh * w + xl] + (ly * lx) * flat[:, yh * w + xh])
                res[n, :, ph, pw] = acc / count
    return torch.from_numpy(res)


# ----------------------------------------------------------------------------------------------
# margins


def pair_iou_margin(boxes, scores, groups, kept, thr):
    """min |IoU - thr| over pairs (i kept, j in the same group, j after i in score order), float64, unshifted."""
    best = float("inf")
    keptset = set(kept.tolist())
    for gval in groups.unique().tolist():
        sel = (groups == gval).nonzero(as_tuple=True)[0]
        b = boxes[sel].double()
        s = scores[sel].double()
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        for ii, gi in enumerate(sel.tolist()):
            if gi not in keptset:
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
                best = min(best, float((iou - thr).abs().min()))
    return best


def level_margin(rois_xyxy):
    """min distance of log2(sqrt(w h) / 56 + 1e-6) to the level boundaries 1, 2, 3 (float64)."""
    b = rois_xyxy.double()
    v = torch.log2(torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) / 56 + 1e-6)
    return float(torch.stack([(v - k).abs() for k in (1.0, 2.0, 3.0)]).min())


def grid_margin(rois_xyxy, levels, out):
    """RoIAlign adaptive sampling: min distance of (roi side * spatial_scale / out) to the nearest integer (where
    ceil() changes), over the sides that are not exactly an integer; and how many are exact integers (e.g. boxes
    clipped to both image borders; exact in any float32 implementation)."""
    b = rois_xyxy.double()
    scale = torch.tensor([1 / s for s in (4, 8, 16, 32)], dtype=torch.float64)[levels]
    v = torch.cat([(b[:, 2] - b[:, 0]) * scale / out, (b[:, 3] - b[:, 1]) * scale / out])
    d = (v - torch.round(v)).abs()
    return float(d[d > 0].min()), int((d == 0).sum())


# ----------------------------------------------------------------------------------------------


def case_meta(pre):
    m = pre["meta"]
    nh, nw = m["img_shape_hw"]
    h, w = m["ori_shape_hw"]
    ph, pw = m["pad_shape_hw"]
    return dict(img_shape=(nh, nw, 3), ori_shape=(h, w, 3), pad_shape=(ph, pw, 3), scale_factor=pre["sf2"],
                flip=False)


def run_case(name, img_file, scale, backbone, mods, ns, feats_cache=None, full=True):
    pre = mret.preprocess(os.path.join(IMG_DIR, img_file), scale)
    x = pre["x"]
    meta2 = case_meta(pre)
    nh, nw = pre["meta"]["img_shape_hw"]
    oh, ow = pre["meta"]["ori_shape_hw"]
    sf = pre["sf2"]
    bb = CachedBackbone(feats_cache) if feats_cache is not None else backbone
    model, rec = build_213(bb, mods, ns)
    bbox_results, segm_results = run_213(model, rec, x, meta2)

    fpn = rec["fpn"]
    props = rec["proposals"]
    dets = rec["det_bboxes"]
    labels = rec["det_labels"]
    M = dets.shape[0]
    if M == 0:
        return dict(stats=dict(num_detections=0, num_proposals=int(props.shape[0])))
    mask_all = rec["mask_pred_all"]
    assert mask_all.shape == (M, K, 28, 28)
    mask_pred = mask_all[torch.arange(M), labels]
    masks = masks_in_det_order(segm_results, labels)
    # bbox2result (2.13) == the recorded detections, grouped by class
    for k in range(K):
        ref = dets[labels == k].numpy()
        assert np.array_equal(bbox_results[k], ref)

    # ---- independent cross-checks
    sizes = [c.shape[-2:] for c in rec["rpn_cls"]]
    anchors = ns.AnchorGenerator(**mc._cfg_args(RPN_ANCHOR_CFG)).grid_anchors(sizes, device="cpu")
    pb, ps, pinfo = rpn_spec(rec["rpn_cls"], rec["rpn_reg"], anchors, (nh, nw))
    assert torch.equal(pb, props[:, :4]) and torch.equal(ps, props[:, 4]), "rpn_spec != mmdet 2.13 proposals"
    sb, ss, sl, binfo = box_postprocess_spec(props[:, :4], rec["bbox_cls_score"], rec["bbox_pred"], (nh, nw), sf)
    assert torch.equal(sb, dets[:, :4]) and torch.equal(ss, dets[:, 4]) and torch.equal(sl, labels), \
        "box_postprocess_spec != mmdet 2.13 detections"
    # mask RoIs and paste boxes (simple_test_mask / get_seg_masks round trip)
    sf_t = torch.from_numpy(sf)
    mask_rois = dets[:, :4] * sf_t
    paste_boxes = mask_rois / sf_t
    margs = rec["mask_seg_args"]
    assert torch.equal(margs[1], mask_rois) and torch.equal(margs[0], mask_all)
    probs = []
    n_near = 0
    min_gap = float("inf")
    paste_diff = 0.0
    paste_flips = 0
    for i in range(M):
        pm, (sy, sx) = ns._do_paste_mask(torch.sigmoid(mask_pred[i])[None, None], paste_boxes[i:i + 1], oh, ow,
                                         skip_empty=True)
        full_p = torch.zeros(oh, ow)
        full_p[sy, sx] = pm[0]
        assert np.array_equal(full_p.numpy() >= 0.5, masks[i]), "re-pasted mask differs from get_seg_masks"
        spec = paste_spec(mask_pred[i], paste_boxes[i], oh, ow)
        region = torch.zeros(oh, ow, dtype=torch.bool)
        region[sy, sx] = True
        spec = torch.where(region, spec, torch.zeros((), dtype=torch.float64))
        paste_diff = max(paste_diff, float((spec - full_p.double()).abs().max()))
        assert paste_diff < 1e-5, ("paste_spec != _do_paste_mask", paste_diff)
        flips = (spec >= 0.5) != torch.from_numpy(masks[i])
        assert bool(((spec[flips] - 0.5).abs() < 1e-5).all()), ("paste_spec threshold differs away from 0.5",
                                                                paste_boxes[i], int(flips.sum()))
        paste_flips += int(flips.sum())
        inside = full_p[sy, sx]
        n_near += int(((inside - 0.5).abs() <= 1e-4).sum())
        min_gap = min(min_gap, float((inside.double() - 0.5).abs().min()))
        probs.append(full_p)
    # RoIAlign: torchvision stand-in vs the mmcv 1.3.8 CPU kernel transcription (a subset of RoIs per level)
    roi_check = OrderedDict()
    if full:
        for key, ext, rois, out in (("bbox", "bbox_roi_extractor", torch.cat([torch.zeros(props.shape[0], 1),
                                                                             props[:, :4]], 1), 7),
                                    ("mask", "mask_roi_extractor", torch.cat([torch.zeros(M, 1), mask_rois], 1), 14)):
            e = mods[ext]
            lv = e.map_roi_levels(rois, 4)
            feats_ref = rec[f"{key}_roi_feats"]
            worst = 0.0
            n = 0
            for lvl in range(4):
                idx = (lv == lvl).nonzero(as_tuple=True)[0][:40]
                if idx.numel() == 0:
                    continue
                port = roi_align_mmcv_port(fpn[lvl][0], rois[idx], out, 1.0 / STRIDES[lvl])
                worst = max(worst, float((port - feats_ref[idx]).abs().max()))
                n += idx.numel()
            roi_check[key] = dict(rois_checked=n, max_abs_diff=worst,
                                  levels=torch.bincount(lv, minlength=4).tolist())
            assert worst <= 1e-6, roi_check
        fwd = check_213_forwards(mods, rec["feats"], torch.cat([torch.zeros(props.shape[0], 1), props[:, :4]], 1),
                                 torch.cat([torch.zeros(M, 1), mask_rois], 1))
    else:
        fwd = None

    # ---- margins
    mg = OrderedDict()
    # RPN: per-level top-1000 boundary, NMS 0.7 pairs, max_per_img
    rel = {}
    for i, c in enumerate(rec["rpn_cls"]):
        s = c[0].permute(1, 2, 0).reshape(-1).sigmoid().double().sort(descending=True).values
        if s.numel() > RPN_TEST_CFG["nms_pre"]:
            n = RPN_TEST_CFG["nms_pre"]
            rel[f"P{i + 2}"] = float((s[n - 1] - s[n]) / s[n - 1])
    mg["rpn_topk_boundary_rel_gap_per_level"] = rel
    # candidate boxes of the RPN NMS (recomputed as in rpn_spec) and which were kept
    cand_b, cand_s, cand_l = [], [], []
    for i, (c, r, a) in enumerate(zip(rec["rpn_cls"], rec["rpn_reg"], anchors)):
        s = c[0].permute(1, 2, 0).reshape(-1).sigmoid()
        d = r[0].permute(1, 2, 0).reshape(-1, 4)
        if s.numel() > 1000:
            ss, idx = s.sort(descending=True)
            s, d, a = ss[:1000], d[idx[:1000]], a[idx[:1000]]
        cand_b.append(decode(a, d, [1.0] * 4, (nh, nw)))
        cand_s.append(s)
        cand_l.append(torch.full((s.numel(),), i))
    cand_b, cand_s, cand_l = torch.cat(cand_b), torch.cat(cand_s), torch.cat(cand_l)
    valid = ((cand_b[:, 2] - cand_b[:, 0]) > 0) & ((cand_b[:, 3] - cand_b[:, 1]) > 0)
    cand_b, cand_s, cand_l = cand_b[valid], cand_s[valid], cand_l[valid]
    kept_all = class_offset_nms(cand_b, cand_s, cand_l, 0.7)
    mg["rpn_nms_survivors_before_max_per_img"] = int(kept_all.numel())
    if kept_all.numel() > 1000:
        s_sorted = cand_s[kept_all]
        mg["rpn_max_per_img_boundary_rel_gap"] = float((s_sorted[999] - s_sorted[1000]) / s_sorted[999])
    mg["rpn_min_abs_iou_minus_0.7_over_(kept,later)_pairs_same_level"] = pair_iou_margin(
        cand_b, cand_s, cand_l, kept_all, 0.7)
    # box head
    fg = torch.softmax(rec["bbox_cls_score"], -1)[:, :K].double()
    mg["min_abs_score_minus_0.05_over_all_(proposal,class)"] = float((fg - 0.05).abs().min())
    all_keep = class_offset_nms(binfo["cand_boxes"], binfo["cand_scores"], binfo["cand_cls"], 0.5)
    mg["box_nms_survivors_before_max_per_img"] = int(all_keep.numel())
    if all_keep.numel() > RCNN_TEST_CFG["max_per_img"]:
        s_sorted = binfo["cand_scores"][all_keep]
        mg["box_max_per_img_boundary_rel_gap"] = float((s_sorted[99] - s_sorted[100]) / s_sorted[99])
    mg["box_min_abs_iou_minus_0.5_over_(kept,later)_pairs_same_class"] = pair_iou_margin(
        binfo["cand_boxes"], binfo["cand_scores"], binfo["cand_cls"], all_keep, 0.5)
    cs_sorted = binfo["cand_scores"].double().sort(descending=True).values
    mg["min_gap_between_candidate_scores"] = float((cs_sorted[:-1] - cs_sorted[1:]).min()) \
        if cs_sorted.numel() > 1 else None
    # RoI level mapping / sampling grid
    plv = mods["bbox_roi_extractor"].map_roi_levels(torch.cat([torch.zeros(props.shape[0], 1), props[:, :4]], 1), 4)
    mlv = mods["mask_roi_extractor"].map_roi_levels(torch.cat([torch.zeros(M, 1), mask_rois], 1), 4)
    mg["roi_level_log2_margin_proposals"] = level_margin(props[:, :4])
    mg["roi_level_log2_margin_mask_rois"] = level_margin(mask_rois)
    mg["roi_align_grid_margin_proposals"], mg["roi_align_grid_exact_integer_sides_proposals"] = grid_margin(
        props[:, :4], plv, 7)
    mg["roi_align_grid_margin_mask_rois"], mg["roi_align_grid_exact_integer_sides_mask_rois"] = grid_margin(
        mask_rois, mlv, 14)
    mg["min_over_decisions"] = min(
        list(rel.values()) + [mg.get("rpn_max_per_img_boundary_rel_gap", 1.0),
                              mg["rpn_min_abs_iou_minus_0.7_over_(kept,later)_pairs_same_level"],
                              mg["min_abs_score_minus_0.05_over_all_(proposal,class)"] / 0.05,
                              mg.get("box_max_per_img_boundary_rel_gap", 1.0),
                              mg["box_min_abs_iou_minus_0.5_over_(kept,later)_pairs_same_class"],
                              mg["roi_level_log2_margin_proposals"], mg["roi_level_log2_margin_mask_rois"],
                              mg["roi_align_grid_margin_proposals"], mg["roi_align_grid_margin_mask_rois"]])
    # masks
    mg["pasted_pixels_with_abs_prob_minus_0.5_le_1e-4"] = n_near
    mg["min_abs_prob_minus_0.5_over_pasted_pixels"] = min_gap

    stats = OrderedDict(
        input_shape=list(x.shape),
        fpn_shapes=[list(p.shape) for p in fpn],
        rpn_candidates=pinfo["candidates"], rpn_after_size_filter=pinfo["after_size_filter"],
        num_proposals=int(props.shape[0]),
        proposal_levels_box_roi=torch.bincount(plv, minlength=4).tolist(),
        box_candidates=binfo["candidates"],
        num_detections=M,
        det_labels_histogram=torch.bincount(labels, minlength=K).tolist(),
        det_score_range=[float(dets[:, 4].min()), float(dets[:, 4].max())] if M else None,
        mask_roi_levels=torch.bincount(mlv, minlength=4).tolist(),
        mask_pixels=[int(m.sum()) for m in masks],
        mask_fraction_of_box=[round(float(m.sum()) / max(1.0, float((b[2] - b[0]) * (b[3] - b[1]))), 4)
                              for m, b in zip(masks, dets[:, :4])],
        empty_masks=sum(int(m.sum() == 0) for m in masks),
        zero_width_or_height_detections=int(((dets[:, 2] <= dets[:, 0]) | (dets[:, 3] <= dets[:, 1])).sum()),
        margins=mg,
        roi_align_port_check=roi_check,
        paste_spec_check=dict(max_abs_prob_diff_float64_formula_vs_mmdet=paste_diff,
                              pixels_thresholded_differently=paste_flips),
        mmdet_2_13_forward_source_on_3_3_modules_max_abs_diff=fwd,
    )
    return dict(pre=pre, rec=rec, props=props, dets=dets, labels=labels, mask_pred=mask_pred, masks=masks,
                stats=stats, meta2=meta2, probs=probs)


def summary(stats):
    if stats["num_detections"] == 0:
        return stats
    mg = stats["margins"]
    return dict(M=stats["num_detections"], N=stats["num_proposals"], hist=stats["det_labels_histogram"],
                lv=stats["proposal_levels_box_roi"], mlv=stats["mask_roi_levels"],
                empty=stats["empty_masks"], zero=stats["zero_width_or_height_detections"], min_over=float("%.3g" % mg["min_over_decisions"]),
                frac=[round(min(stats["mask_fraction_of_box"]), 2), round(max(stats["mask_fraction_of_box"]), 2)],
                score=round(mg["min_abs_score_minus_0.05_over_all_(proposal,class)"], 7),
                iou=round(mg["box_min_abs_iou_minus_0.5_over_(kept,later)_pairs_same_class"], 7),
                rpn_iou=round(mg["rpn_min_abs_iou_minus_0.7_over_(kept,later)_pairs_same_level"], 7),
                near=mg["pasted_pixels_with_abs_prob_minus_0.5_le_1e-4"],
                surv=mg["box_nms_survivors_before_max_per_img"])


# ----------------------------------------------------------------------------------------------
# outputs


def rle(mask):
    from pycocotools import mask as mask_util
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    dec = mask_util.decode(r)
    assert np.array_equal(dec.astype(bool), mask)
    return OrderedDict(size=[int(v) for v in r["size"]], counts=r["counts"].decode("ascii"))


def config_text():
    return (
        "# mmdet 2.x style config of the fixture model (PVT-det mask_rcnn_pvt_*_fpn_1x_coco.py wiring, mini backbone,\n"
        "# reduced widths)\n"
        "model = dict(\n"
        "    type='MaskRCNN',\n"
        f"    backbone=dict(type='PyramidVisionTransformer', embed_dims={mk.MINI['embed_dims']}, "
        f"num_heads={mk.MINI['num_heads']}, mlp_ratios={mk.MINI['mlp_ratios']}, depths={mk.MINI['depths']}, "
        f"sr_ratios={mk.MINI['sr_ratios']}, qkv_bias=True),\n"
        f"    neck={NECK_CFG!r},\n"
        f"    rpn_head={dict(RPN_HEAD_CFG)!r},\n"
        "    roi_head=dict(\n"
        "        type='StandardRoIHead',\n"
        f"        bbox_roi_extractor={BBOX_ROI_EXTRACTOR!r},\n"
        f"        bbox_head={BBOX_HEAD_CFG!r},\n"
        f"        mask_roi_extractor={MASK_ROI_EXTRACTOR!r},\n"
        f"        mask_head={MASK_HEAD_CFG!r}),\n"
        f"    test_cfg=dict(rpn={RPN_TEST_CFG!r},\n"
        f"                  rcnn={RCNN_TEST_CFG!r}))\n"
    )


def save_checkpoint(backbone_sd, heads_sd):
    sd = OrderedDict(backbone_sd)
    sd.update(heads_sd)
    classes = tuple(mret.coco_classes()[:K])
    meta = {"mmdet_version": "2.13.0", "CLASSES": classes, "config": config_text(), "epoch": 12, "iter": 87960,
            "time": "Thu Jan  1 00:00:00 1970", "note": "fixture: random weights, not a trained model"}
    ck = {"meta": meta, "state_dict": OrderedDict((k, v.to(torch.float16).contiguous().clone()) for k, v in sd.items())}
    p = os.path.join(OUT, "mini_mask_rcnn_official_f16.pth")
    torch.save(ck, p)
    back = torch.load(p, map_location="cpu", weights_only=False)["state_dict"]
    assert list(back) == list(sd) and all(torch.equal(back[k].float(), sd[k].float()) for k in sd)
    return OrderedDict(format="torch.save zip", container="mmcv-style {'meta': {...}, 'state_dict': {...}}",
                       naming="official PVT-det naming for backbone.* (same tensors and order as "
                              "assets/fixtures/retinanet/mini_retinanet_official_f16.pth), mmdet 2.13 names for "
                              "neck.* / rpn_head.* / roi_head.*", dtype="float16", tensors=len(sd),
                       head_tensors=len(heads_sd), keys={k: list(v.shape) for k, v in heads_sd.items()})


def write_config_json():
    with open(os.path.join(ROOT, "assets", "configs", "retinanet_pvt_mini.json")) as f:
        ret = json.load(f, object_pairs_hook=OrderedDict)
    cfg = OrderedDict(backbone=ret["backbone"], fpn_channels=C, num_classes=K, fc_channels=FC,
                      mask_channels=MASK_C, mask_convs=MASK_HEAD_CFG["num_convs"])
    with open(CONFIG_OUT, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def resized_png(pre):
    """the resize fixture's PNG that holds this case's resized uint8 image (checked equal)"""
    from PIL import Image
    nh, nw = pre["meta"]["img_shape_hw"]
    for fn in sorted(os.listdir(RESIZE_DIR)):
        if fn.endswith(f"_{nh}x{nw}.png"):
            stored = np.asarray(Image.open(os.path.join(RESIZE_DIR, fn)).convert("RGB"))
            if stored.shape == pre["resized"][:, :, ::-1].shape and np.array_equal(stored, pre["resized"][:, :, ::-1]):
                return f"assets/fixtures/resize/{fn} (RGB, equal to this case's resized image)"
    return None


def tensors_of(name, r):
    t = OrderedDict()
    if STORE_INPUT:
        t["input"] = r["pre"]["x"]
    for i, p in enumerate(r["rec"]["fpn"]):
        if name not in LIGHT or i >= 3:
            t[f"fpn.{i}"] = p.to(FPN_DTYPE)
    t["proposals"] = r["props"][:, :4]
    t["proposal_scores"] = r["props"][:, 4]
    t["bbox_cls_score"] = r["rec"]["bbox_cls_score"]
    t["bbox_pred"] = r["rec"]["bbox_pred"]
    t["det_bboxes"] = r["dets"][:, :4]
    t["det_scores"] = r["dets"][:, 4]
    t["det_labels"] = r["labels"].to(torch.int64)
    t["mask_pred"] = r["mask_pred"]
    return OrderedDict((k, v.detach().contiguous() if v.dtype in (torch.int64, torch.float16)
                        else v.detach().float().contiguous()) for k, v in t.items())


TENSOR_DOC = OrderedDict([
    ("input (not stored, see 'sizes')", "[1, 3, H, W] float32: the normalised, zero-padded network input (RGB, "
                                        "(x - mean) / std, padded bottom/right to multiples of 32): "
                                        "make_retinanet_fixtures.preprocess, the mmdet test pipeline"),
    ("fpn.{0..4}", "FPN outputs P2..P6 [1, 32, ceil(H/s), ceil(W/s)], strides 4, 8, 16, 32, 64; P6 = "
                   "max_pool2d(P5, 1, stride 2); stored as float16 (see manifest 'sizes'; the float32 values' "
                   "SHA-256 and sums are in cases.*.fpn_f32); the 1333x800 case stores fpn.3 and fpn.4 only"),
    ("proposals", "[N, 4] float32 xyxy RPN proposals in INPUT-image pixels (the resized image, img_shape frame; "
                  "clipped to [0, img_w] x [0, img_h]), in the order mmdet 2.13 returns them (score-descending "
                  "NMS output); N <= 1000"),
    ("proposal_scores", "[N] float32 sigmoid RPN objectness of each proposal"),
    ("bbox_cls_score", "[N, 9] float32 raw box-head logits (fc_cls) on the reference proposals; columns 0..7 = "
                       "classes, column 8 = background; softmax over all 9 gives the scores"),
    ("bbox_pred", "[N, 32] float32 raw box-head deltas (fc_reg), class k at columns 4k..4k+3 = (dx, dy, dw, dh) "
                  "before the stds [0.1, 0.1, 0.2, 0.2]; decoded against the proposal, clipped to img_shape"),
    ("det_bboxes", "[M, 4] float32 xyxy final detections in ORIGINAL-image pixels (decoded, clipped to img_shape, "
                   "divided by the float32 scale_factor), in multiclass_nms output order (score-descending)"),
    ("det_scores", "[M] float32 softmax score of the detection's class"),
    ("det_labels", "[M] int64 class 0..7"),
    ("mask_pred", "[M, 28, 28] float32 mask-head LOGITS of each detection's own label channel, computed on the "
                  "mask RoIs det_bboxes * scale_factor (input-image frame; RoIAlign 14x14 on P2..P5); "
                  "sigmoid, paste at (mask RoI / scale_factor) with grid_sample into the original image, >= 0.5"),
])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--search", type=int, nargs="*", help="only print stats for these weight seeds")
    ap.add_argument("--set", nargs="*", default=[], help="with --search: override weight constants, NAME=VALUE")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=", 1)
        assert k in ("RPN_DWDH_BIAS", "RPN_CLS_GAIN", "RPN_CLS_BIAS", "RPN_REG_GAIN", "CLS_GAIN", "CLS_BG_BIAS", "REG_GAIN", "MASK_GAIN", "MASK_BIAS") and args.search is not None
        globals()[k] = float(v)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cv2.setNumThreads(1)

    backbone, backbone_sd = load_backbone()
    mods = build_modules()
    ns = mc.load_two_stage_213(nms_rule=">=")

    cache = {}
    for name, img_file, scale in CASES:
        pre = mret.preprocess(os.path.join(IMG_DIR, img_file), scale)
        with torch.no_grad():
            cache[name] = ([f.clone() for f in backbone(pre["x"])], pre["x"], case_meta(pre))
    if args.search is not None:
        for seed in args.search:
            sd = make_weights(mods, seed)
            calibrate_biases(mods, sd, ns, list(cache.values()))
            for name, img_file, scale in CASES:
                r = run_case(name, img_file, scale, backbone, mods, ns, feats_cache=cache[name][0], full=False)
                print(seed, name, json.dumps(summary(r["stats"])), flush=True)
                if os.environ.get("MRCNN_VERBOSE"):
                    print(json.dumps(r["stats"]["margins"], indent=1))
        return

    os.makedirs(OUT, exist_ok=True)
    from safetensors.torch import save_file
    heads_sd = make_weights(mods, SEED)
    calib = calibrate_biases(mods, heads_sd, ns, list(cache.values()))
    for fn in os.listdir(OUT):
        os.remove(os.path.join(OUT, fn))
    files = OrderedDict()
    files["mini_mask_rcnn_official_f16.pth"] = save_checkpoint(backbone_sd, heads_sd)
    write_config_json()

    cases = OrderedDict()
    for name, img_file, scale in CASES:
        r = run_case(name, img_file, scale, backbone, mods, ns)
        print(f"[{name}] " + json.dumps(r["stats"], indent=1), flush=True)
        t = tensors_of(name, r)
        fn = f"reference_{name}.safetensors"
        save_file(dict(t), os.path.join(OUT, fn), metadata={"producer": "tools/make_mask_rcnn_fixtures.py"})
        os.chmod(os.path.join(OUT, fn), 0o644)
        m = r["pre"]["meta"]
        x = r["pre"]["x"]
        nh, nw = m["img_shape_hw"]
        cases[name] = OrderedDict(
            image=f"assets/images/{img_file}", test_scale=list(scale),
            img_shape=list(r["meta2"]["img_shape"]), ori_shape=list(r["meta2"]["ori_shape"]),
            pad_shape=list(r["meta2"]["pad_shape"]),
            scale_factor=[float(v) for v in r["pre"]["sf2"]],
            scale_factor_hex=[float(v).hex() for v in r["pre"]["sf2"]],
            preprocess_meta=m,
            input_checks=OrderedDict(
                shape=list(x.shape), sha256_f32_le=sha256_tensor(x), sum_f64=float(x.double().sum()),
                channel_sums_f64=[float(v) for v in x[0].double().sum((1, 2))],
                samples_chw={f"{c},{yy},{xx}": float(x[0, c, yy, xx])
                             for c, yy, xx in ((0, 0, 0), (1, nh // 2, nw // 2), (2, nh - 1, nw - 1),
                                               (0, nh - 1, 0), (1, 0, nw - 1))},
                padding_is_zero=bool((x[0, :, nh:, :] == 0).all() and (x[0, :, :, nw:] == 0).all()),
                resized_uint8_image=resized_png(r["pre"]),
                recipe="input[0, c, y, x] = float32((rgb[y, x, c] - mean[c]) / std[c]) for y < img_h, x < img_w "
                       "(rgb = the resized uint8 image), 0.0 in the padding"),
            fpn_f32=[OrderedDict(shape=list(p.shape), sha256_f32=sha256_tensor(p), sum_f64=float(p.double().sum()),
                                 abs_max=float(p.abs().max()),
                                 f16_max_abs_rounding_error=float((p.half().float() - p).abs().max()))
                     for p in r["rec"]["fpn"]],
            file=fn,
            tensors=OrderedDict((k, [list(v.shape), str(v.dtype).replace("torch.", "")]) for k, v in t.items()),
            masks=[rle(mk_) for mk_ in r["masks"]],
            masks_note="masks[i] belongs to detection i (det_bboxes row i): COCO compressed RLE (pycocotools "
                       "mask.encode of the Fortran-ordered uint8 [h, w] mask), size = [h, w] of the original image",
            stats=r["stats"],
        )

    for fn in sorted(os.listdir(OUT)):
        if fn == "manifest.json":
            continue
        fp = os.path.join(OUT, fn)
        files.setdefault(fn, OrderedDict())
        files[fn].update(bytes=os.path.getsize(fp), sha256=sha256(fp))

    import mmcv
    import mmdet
    import mmengine
    import importlib.metadata

    import safetensors
    import timm
    import torchvision
    manifest = OrderedDict(
        description="Golden fixtures for PVT Mask R-CNN (mini PVT v1 backbone + mmdet FPN + RPNHead + "
                    "Shared2FCBBoxHead + FCNMaskHead), mmdet 2.13 test-time semantics. Generated by "
                    "tools/make_mask_rcnn_fixtures.py (its docstring says which code computes what).",
        versions=OrderedDict(python=sys.version.split()[0], torch=torch.__version__,
                             torchvision=torchvision.__version__, timm=timm.__version__, numpy=np.__version__,
                             opencv=cv2.__version__, mmdet=mmdet.__version__, mmengine=mmengine.__version__,
                             mmcv_lite=mmcv.__version__, safetensors=safetensors.__version__,
                             pycocotools=importlib.metadata.version("pycocotools"),
                             mmdet_2_13_sources="mmdet-2.13.0-py3-none-any.whl (PyPI), mmcv v1.3.8 mmcv/ops/nms.py",
                             pvt_official=f"whai362/PVT {pvt_official.PVT_COMMIT} detection/pvt.py"),
        modules_run=OrderedDict(
            backbone="OFFICIAL whai362/PVT detection/pvt.py PyramidVisionTransformer, config 'mini' (as the "
                     "RetinaNet fixture: LayerNorm eps 1e-5 in patch-embed and SR norms, 1e-6 in blocks)",
            forwards="mmdet 3.3.0 FPN, RPNHead, SingleRoIExtractor, Shared2FCBBoxHead, FCNMaskHead; the mmdet 2.13.0 "
                     "source of each forward run on the same instances gives bitwise equal outputs (asserted)",
            roi_align="mmcv.ops stand-in on torchvision.ops.roi_align(aligned=True, sampling_ratio=0); equal to a "
                      "float32 transcription of mmcv 1.3.8's CPU kernel (stats.roi_align_port_check)",
            test_path="mmdet 2.13.0 TwoStageDetector.simple_test / RPNTestMixin.simple_test_rpn / "
                      "AnchorHead.get_bboxes / RPNHead._get_bboxes / StandardRoIHead.simple_test / "
                      "BBoxTestMixin.simple_test_bboxes / BBoxHead.get_bboxes / multiclass_nms / "
                      "MaskTestMixin.simple_test_mask / FCNMaskHead.get_seg_masks / _do_paste_mask (CPU path), "
                      "with 2.13's AnchorGenerator and DeltaXYWHBBoxCoder, on mmcv 1.3.8 batched_nms with the CPU "
                      "rule (suppress when IoU >= thr); sources loaded unmodified by tools/mmdet_compat.py",
            source_sha256=ns.source_sha256,
        ),
        config=OrderedDict(json="assets/configs/mask_rcnn_pvt_mini.json", neck=NECK_CFG, rpn_head=RPN_HEAD_CFG,
                           bbox_roi_extractor=BBOX_ROI_EXTRACTOR, mask_roi_extractor=MASK_ROI_EXTRACTOR,
                           bbox_head=BBOX_HEAD_CFG, mask_head=MASK_HEAD_CFG, rpn_test_cfg=RPN_TEST_CFG,
                           rcnn_test_cfg=RCNN_TEST_CFG, config_text=config_text()),
        weights=OrderedDict(seed=SEED, seed_search=SEED_SEARCH, distributions=W, RPN_CLS_GAIN=RPN_CLS_GAIN, RPN_CLS_BIAS=RPN_CLS_BIAS,
                            RPN_REG_GAIN=RPN_REG_GAIN, RPN_DWDH_BIAS=RPN_DWDH_BIAS, CLS_GAIN=CLS_GAIN, CLS_FG_BIAS=CLS_FG_BIAS,
                            CLS_BG_BIAS=CLS_BG_BIAS, calibration=calib, REG_GAIN=REG_GAIN, MASK_GAIN=MASK_GAIN, MASK_BIAS=MASK_BIAS,
                            rounding="sampled in float64, cast to float32, rounded to bfloat16, |w| < 1e-4 set to "
                                     "0: exact in f16 and bf16; references use exactly the stored f16 values",
                            backbone="assets/fixtures/pvt_v1/mini_det_official_f32.safetensors backbone.* (== the "
                                     "RetinaNet fixture checkpoint's backbone.*)"),
        fpn_dtype=str(FPN_DTYPE).replace("torch.", ""),
        sizes=("to keep the directory near 2.5 MB: the float32 network input (0.86 MB + 0.49 MB) is NOT stored; it is "
               "pinned exactly by cases.*.input_checks (SHA-256 of its little-endian float32 bytes, sums, samples; "
               "the resized uint8 image is the resize fixture's PNG named there) and is what "
               "make_retinanet_fixtures.preprocess gives; fpn.* are stored as float16 (rounded from the float32 "
               "references; max rounding error per level in cases.*.fpn_f32, whose SHA-256 / sums pin the float32 "
               "values); the 1333x800 case (LIGHT) stores only fpn.3 / fpn.4 of the FPN outputs. Everything else is "
               "float32 (det_labels int64)."),
        test_path=[
            "RPN (per level P2..P6): scores = sigmoid(rpn_cls) flattened (y, x, a); if > 1000 anchors: sort "
            "descending, keep the first 1000 (with their deltas and anchors); decode (stds 1, clamp dw/dh at "
            "|ln(16/1000)|), clip to img_shape; drop w <= 0 or h <= 0; batched_nms with the level as class "
            "(IoU >= 0.7 suppresses, offset trick below 10000 boxes); keep the first 1000 (score-descending)",
            "box head: rois = proposals (input frame); level = clamp(floor(log2(sqrt(w*h)/56 + 1e-6)), 0, 3) on "
            "P2..P5; RoIAlign 7x7 (aligned, adaptive sampling); flatten c*49 + y*7 + x; fc 1568->64 ReLU, fc "
            "64->64 ReLU; fc_cls -> 9 logits, fc_reg -> 32 deltas",
            "box post-processing (BBoxHead.get_bboxes + multiclass_nms): softmax over 9; decode each class's deltas "
            "against the proposal (stds [.1,.1,.2,.2], dw/dh clamp), clip to img_shape (torch.where, NaN passes), "
            "divide by float32 [sw, sh, sw, sh]; candidates = (proposal, class) with score > 0.05 in row-major "
            "order; batched_nms over classes (offset trick: + class * (max coord + 1), float32; IoU >= 0.5 "
            "suppresses); first 100",
            "mask head: mask RoIs = det_bboxes * scale_factor (float32); RoIAlign 14x14 on P2..P5 (same level rule); "
            "4 x (conv3x3 + ReLU), deconv 2x2 s2 + ReLU, conv1x1 -> 8 x 28 x 28 logits; take the label's channel",
            "paste (get_seg_masks, rescale=True, CPU): boxes = mask RoIs / scale_factor; per detection, region "
            "x in [max(floor(x0) - 1, 0), min(ceil(x1) + 1, ori_w)), y likewise; pixel centre (x + 0.5) maps to "
            "grid (x + 0.5 - x0) / (x1 - x0) * 2 - 1; grid_sample(sigmoid(logits), bilinear, zeros, "
            "align_corners=False); mask = prob >= 0.5 inside the region, False elsewhere",
        ],
        tensor_descriptions=TENSOR_DOC,
        margins_explained=(
            "stats.margins: how far each discrete decision is from flipping. rpn_topk_boundary_rel_gap_per_level = "
            "(s_1000 - s_1001) / s_1000 of the sorted objectness; rpn_min_abs_iou_minus_0.7 and "
            "box_min_abs_iou_minus_0.5 = min |IoU - thr| (float64, unshifted boxes) over pairs (kept i, later j of "
            "the same level/class); min_abs_score_minus_0.05 over every (proposal, class) softmax score; "
            "roi_level_log2_margin = min distance of log2(sqrt(wh)/56 + 1e-6) to 1, 2, 3; roi_align_grid_margin = "
            "min distance of side * scale / out to the nearest integer (where the adaptive sample count changes); "
            "pasted_pixels_with_abs_prob_minus_0.5_le_1e-4 counts pasted pixels (inside the paste regions) whose "
            "probability is within 1e-4 of the 0.5 threshold"),
        tolerance_hint=("f32 tensors: max|out-ref|/max|ref| <= 1e-4 (fpn.* against f16-rounded values: ~1e-3); "
                        "post-processing fed with the stored raw outputs must reproduce proposals / detections "
                        "exactly (count, order, labels; coordinates to ~1 ulp); masks: equal RLE except pixels near "
                        "0.5 (see margins)"),
        cases=cases,
        files=files,
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, fn)) for fn in os.listdir(OUT))
    print(f"wrote {OUT}: {total / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
