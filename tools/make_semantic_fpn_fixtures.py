#!/usr/bin/env python3
"""Golden fixtures for the Rust Semantic FPN port (heads/semantic-fpn, crates/zoo semantic_fpn),
produced by REAL mmsegmentation code on top of the OFFICIAL whai362/PVT segmentation backbone.

Reference side only: CI never runs this; the Rust tests (tests/semantic_fpn_parity.rs) read the
committed files.

Code that computes the references, all unmodified:
  * backbone: whai362/PVT `segmentation/pvt.py` (class PyramidVisionTransformer), the file the
    official `fpn_pvt_*_ade20k_40k` configs train and test with. Extract it next to the other
    official files (tools/_ref is gitignored, see tools/pvt_official.py):
        git --git-dir=<fetch mirror of github:whai362/PVT> show \
            57e2dfaa5a46f9050d76f306a4fcd9a7c061f520:segmentation/pvt.py > tools/_ref/seg_pvt.py
  * neck and head: mmsegmentation 1.2.2 `FPN` (mmseg/models/necks/fpn.py), `FPNHead`
    (mmseg/models/decode_heads/fpn_head.py, with BaseDecodeHead.cls_seg / predict_by_feat),
    `mmseg.models.utils.resize` (= F.interpolate), `EncoderDecoder.slide_inference` (called on a
    stand-in `self` whose `encode_decode` is backbone -> neck -> head.predict, as in mmseg). These
    are the same algorithms as mmseg 0.13 used by PVT-seg. The whole-image test
    path is mmseg 0.13's `EncoderDecoder.whole_inference` + `inference`, written out here because
    1.x moved it: `encode_decode` (head output resized to the network input size), then a second
    bilinear resize (align_corners=False) to the original size, softmax, argmax.
  * preprocessing (photo case): PVT-seg `AlignResize(img_scale=(2048, 512), keep_ratio=True,
    size_divisor=32)` `_resize_img` (mmcv.imrescale then mmcv.imresize to the next multiples of 32;
    PVT's file imports mmcv 1.x utilities and IPython, so its two calls are repeated here) and mmcv
    `imnormalize(mean, std, to_rgb=True)` on the cv2-loaded BGR image.

Environment used (any venv outside the repository will do):

    python3 -m venv /tmp/mmseg-venv
    # torch/timm from tools/.venv and mmcv-lite 2.1.0 + mmengine 0.10.7 + opencv from the mmdet venv
    # (see tools/mmdet_compat.py) via a .pth file, then:
    /tmp/mmseg-venv/bin/pip install --no-deps mmsegmentation==1.2.2 && /tmp/mmseg-venv/bin/pip install ftfy regex
    /tmp/mmseg-venv/bin/python tools/make_semantic_fpn_fixtures.py

mmcv-lite has no compiled ops; `mmcv.ops` is replaced by a stand-in module whose names are
placeholder classes (only reached by mmseg code we never call, e.g. point_sample for Mask2Former).

Writes assets/fixtures/semantic_fpn/ and assets/ade20k_palette.txt. Deterministic (fixed seed, CPU,
float32, one thread).
"""

import hashlib
import importlib.util
import json
import logging
import math
import os
import sys
import types
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
FIX = os.path.join(ROOT, "assets", "fixtures", "semantic_fpn")
PVT_FIX = os.path.join(ROOT, "assets", "fixtures", "pvt_v1")
SEG_PVT = os.path.join(HERE, "_ref", "seg_pvt.py")
PVT_COMMIT = "57e2dfaa5a46f9050d76f306a4fcd9a7c061f520"

SEED = 20240607
NUM_CLASSES = 8
FPN_OUT = 32
HEAD_CHANNELS = 16
STRIDES = [4, 8, 16, 32]
BN_EPS = 1e-5
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
ALIGN_SCALE = (2048, 512)
FORMULA_HW = (96, 160)          # network input, by formula (already "normalised")
FORMULA_ORI_HW = (90, 150)      # the "original image" size the logits are resized back to
SLIDE_CROP, SLIDE_STRIDE = (64, 64), (43, 43)   # 512 / 341 scaled down to the small input
PHOTO_SLIDE_CROP, PHOTO_SLIDE_STRIDE = (512, 512), (341, 341)
PHOTO_ROW_STEP = 20             # photo final logits stored for rows 0, 10, 20, ... (size budget)
TOL = 1e-4


# ----------------------------------------------------------------------------------------------
# imports


def install_mmcv_ops_stub():
    import mmcv

    class _Ops(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

    ops = _Ops("mmcv.ops")
    ops.__path__ = []
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops


def import_seg_pvt():
    """Imports the official segmentation/pvt.py with stand-ins for its mmseg 0.x / old timm imports."""
    if not os.path.exists(SEG_PVT):
        raise FileNotFoundError(f"{SEG_PVT} missing; see this file's docstring")
    import timm.layers
    import timm.models  # noqa: F401

    class _Reg:
        def register_module(self, *a, **k):
            return (lambda c: c) if not (len(a) == 1 and callable(a[0])) else a[0]

    reg = types.ModuleType("timm.models.registry")
    reg.register_model = lambda fn: fn
    builder = types.ModuleType("mmseg.models.builder")
    builder.BACKBONES = _Reg()
    utils = types.ModuleType("mmseg.utils")
    utils.get_root_logger = lambda *a, **k: logging.getLogger("seg_pvt")
    runner = types.ModuleType("mmcv.runner")
    runner.load_checkpoint = None
    stubs = {"timm.models.layers": timm.layers, "timm.models.registry": reg,
             "mmseg.models.builder": builder, "mmseg.utils": utils, "mmcv.runner": runner}
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("pvt_official_seg", SEG_PVT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


# ----------------------------------------------------------------------------------------------
# helpers


def f16_exact(t):
    t = t.float().to(torch.bfloat16).float()
    t = torch.where(t.abs() < 1e-4, torch.zeros_like(t), t)
    assert torch.equal(t.half().float(), t), "not f16-exact"
    return t.contiguous()


def make_input(H, W):
    """The backbone fixtures' formula (assets/fixtures/pvt_v1/manifest.json `input.formula`)."""
    x = np.empty((1, 3, H, W), dtype=np.float64)
    Wf = float(W)
    for c in range(3):
        for h in range(H):
            for w in range(W):
                x[0, c, h, w] = 2.0 * math.sin((0.05 * h + 0.07 * w) + 1.3 * c) + 0.5 * math.cos(
                    ((0.11 * h) * w) / Wf + c)
    return torch.from_numpy(x.astype(np.float32))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def top2_gap(logits):
    """[1, K, H, W] -> [H, W]: largest minus second-largest logit."""
    t = logits[0].topk(2, dim=0).values
    return (t[0] - t[1]).contiguous()


# ----------------------------------------------------------------------------------------------
# model


class Segmentor(nn.Module):
    """backbone -> neck -> decode_head, named as mmseg's EncoderDecoder names them."""

    def __init__(self, backbone, neck, head):
        super().__init__()
        self.backbone, self.neck, self.decode_head = backbone, neck, head
        self.align_corners = head.align_corners
        self.out_channels = head.out_channels

    def head_logits(self, img):
        return self.decode_head(self.neck(self.backbone(img)))

    def encode_decode(self, img, metas):
        # mmseg 1.x EncoderDecoder.encode_decode: extract_feat, decode_head.predict (forward +
        # predict_by_feat: bilinear resize to img_shape for slide crops, else pad_shape)
        return self.decode_head.predict(self.neck(self.backbone(img)), metas, None)

    def whole(self, img, ori_hw):
        """mmseg 0.13 whole_inference(rescale=True) + inference + simple_test."""
        from mmseg.models.utils import resize
        H, W = img.shape[2:]
        at_input = self.encode_decode(img, [dict(img_shape=(H, W), pad_shape=(H, W))])
        at_ori = resize(at_input, size=ori_hw, mode="bilinear", align_corners=self.align_corners,
                        warning=False)
        labels = F.softmax(at_ori, dim=1).argmax(dim=1)[0]
        return at_input, at_ori, labels

    def slide(self, img, ori_hw, crop, stride):
        from mmseg.models.segmentors import EncoderDecoder
        from mmseg.models.utils import resize
        fake = types.SimpleNamespace(test_cfg=types.SimpleNamespace(crop_size=crop, stride=stride),
                                     out_channels=self.out_channels, encode_decode=self.encode_decode)
        H, W = img.shape[2:]
        at_input = EncoderDecoder.slide_inference(fake, img, [dict(img_shape=(H, W), pad_shape=(H, W))])
        at_ori = resize(at_input, size=ori_hw, mode="bilinear", align_corners=self.align_corners,
                        warning=False)
        labels = F.softmax(at_ori, dim=1).argmax(dim=1)[0]
        return at_input, at_ori, labels


def build(seg_mod, mini):
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.necks import FPN
    backbone = seg_mod.PyramidVisionTransformer(
        img_size=mini["img_size"], patch_size=mini["patch_size"], in_chans=3, num_classes=mini["num_classes"],
        embed_dims=mini["embed_dims"], num_heads=mini["num_heads"], mlp_ratios=mini["mlp_ratios"],
        qkv_bias=mini["qkv_bias"], depths=mini["depths"], sr_ratios=mini["sr_ratios"],
        norm_layer=partial(nn.LayerNorm, eps=1e-6))
    # fpn_r50.py: FPN(in_channels, out_channels=256, num_outs=4); start_level 0, no extra convs
    neck = FPN(in_channels=mini["embed_dims"], out_channels=FPN_OUT, num_outs=4)
    # fpn_r50.py decode_head, SyncBN as in the config (eval mode = BatchNorm with running stats)
    head = FPNHead(in_channels=[FPN_OUT] * 4, in_index=[0, 1, 2, 3], feature_strides=STRIDES,
                   channels=HEAD_CHANNELS, dropout_ratio=0.1, num_classes=NUM_CLASSES,
                   norm_cfg=dict(type="SyncBN", requires_grad=True), align_corners=False,
                   loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))
    return Segmentor(backbone, neck, head).eval()


def set_weights(model, backbone_sd, calib_input):
    g = torch.Generator().manual_seed(SEED)
    sd = OrderedDict()
    for k, v in backbone_sd.items():
        sd["backbone." + k] = v
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            continue
        n = torch.randn(p.shape, generator=g, dtype=torch.float64)
        leaf = name.rsplit(".", 1)[-1]
        if ".bn." in name:
            v = 1.0 + 0.2 * n if leaf == "weight" else 0.2 * n
        elif leaf == "weight":
            v = n / math.sqrt(int(np.prod(p.shape[1:])))
        else:
            v = 0.1 * n
        sd[name] = f16_exact(v)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(".bn.running" in m or "num_batches_tracked" in m for m in missing), \
        (missing, unexpected)
    # BatchNorm running statistics: calibrated on the formula input one BN at a time (in module
    # order, so each sees already-final upstream statistics), then perturbed so that they are
    # visibly not the batch statistics: mean + 0.3*std*N(0,1), var * exp(0.4*N(0,1)).
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for n, m in bns:
        seen = []
        h = m.register_forward_hook(lambda mod, i, o: seen.append(i[0].detach()))
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
        with torch.no_grad():
            model.head_logits(calib_input)
        h.remove()
        x = seen[0].double()
        mu = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        c = mu.numel()
        mean = mu + 0.3 * var.sqrt() * torch.randn(c, generator=g, dtype=torch.float64)
        var = var * torch.exp(0.4 * torch.randn(c, generator=g, dtype=torch.float64))
        m.running_mean.copy_(f16_exact(mean))
        m.running_var.copy_(f16_exact(var))
        assert (m.running_var > 1e-3).all(), n
        m.num_batches_tracked.fill_(40000)
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------------------------
# photo preprocessing (PVT-seg AlignResize + mmcv Normalize)


def photo_input(path):
    import cv2
    import mmcv
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    img = mmcv.imrescale(bgr, ALIGN_SCALE, return_scale=False)  # cv2 bilinear
    rh, rw = img.shape[:2]
    ah, aw = int(np.ceil(rh / 32)) * 32, int(np.ceil(rw / 32)) * 32
    img = mmcv.imresize(img, (aw, ah))
    rgb_u8 = img[:, :, ::-1].copy()
    norm = mmcv.imnormalize(img, np.array(MEAN, np.float32), np.array(STD, np.float32), to_rgb=True)
    x = torch.from_numpy(norm.transpose(2, 0, 1).copy())[None]
    return x, (h, w), (rh, rw), (ah, aw), rgb_u8


# ----------------------------------------------------------------------------------------------
# bilinear interpolation goldens (F.interpolate, the op mmseg's resize and Upsample call)

INTERP_CASES = [
    # name, (h, w), kwargs
    ("up2_scale", (5, 7), dict(scale_factor=2, mode="bilinear", align_corners=False)),
    ("up2_size", (5, 7), dict(size=(10, 14), mode="bilinear", align_corners=False)),
    ("up4_size", (6, 9), dict(size=(24, 36), mode="bilinear", align_corners=False)),
    ("up_odd", (7, 11), dict(size=(30, 17), mode="bilinear", align_corners=False)),
    ("down_odd", (24, 36), dict(size=(13, 19), mode="bilinear", align_corners=False)),
    ("down_ade", (64, 88), dict(size=(47, 61), mode="bilinear", align_corners=False)),
    ("same", (5, 6), dict(size=(5, 6), mode="bilinear", align_corners=False)),
    ("to_one", (5, 6), dict(size=(1, 1), mode="bilinear", align_corners=False)),
    ("from_one", (1, 1), dict(size=(3, 4), mode="bilinear", align_corners=False)),
    ("up_ac", (5, 7), dict(size=(13, 9), mode="bilinear", align_corners=True)),
    ("down_ac", (24, 36), dict(size=(13, 19), mode="bilinear", align_corners=True)),
]


def interp_goldens():
    out = OrderedDict()
    meta = []
    for name, (h, w), kw in INTERP_CASES:
        x = make_input(h, w)[:, :2].contiguous()
        y = F.interpolate(x, **kw)
        out[f"{name}_in"] = x
        out[f"{name}_out"] = y.contiguous()
        meta.append(dict(name=name, in_hw=[h, w], out_hw=list(y.shape[2:]),
                         call=f"F.interpolate(x, **{kw})"))
    return out, meta


# ----------------------------------------------------------------------------------------------
# full-size key names and shapes (no weights): what an official fpn_pvt_*_ade20k_40k checkpoint holds


def full_size_keys(seg_mod):
    """State-dict keys and shapes of fpn_pvt_{t,l}_ade20k_40k as the official code builds them
    (segmentation/pvt.py pvt_tiny / pvt_large + mmseg FPN / FPNHead with the config's arguments)."""
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.necks import FPN
    out = OrderedDict()
    for name, cls in [("fpn_pvt_t_ade20k_40k", seg_mod.pvt_tiny), ("fpn_pvt_l_ade20k_40k", seg_mod.pvt_large)]:
        m = nn.Module()
        m.backbone = cls()
        m.neck = FPN(in_channels=[64, 128, 320, 512], out_channels=256, num_outs=4)
        m.decode_head = FPNHead(in_channels=[256] * 4, in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
                                channels=128, dropout_ratio=0.1, num_classes=150,
                                norm_cfg=dict(type="SyncBN", requires_grad=True), align_corners=False)
        out[name] = OrderedDict((k, list(v.shape)) for k, v in m.state_dict().items())
    return out


# ----------------------------------------------------------------------------------------------


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(FIX, exist_ok=True)
    install_mmcv_ops_stub()
    import mmseg
    from mmseg.datasets import ADE20KDataset
    from safetensors.torch import load_file, save_file

    with open(os.path.join(PVT_FIX, "manifest.json")) as f:
        pvt_manifest = json.load(f)
    mini = dict(pvt_manifest["config"]["constructor_kwargs"])
    seg_mod = import_seg_pvt()
    model = build(seg_mod, mini)

    pvt_sd = load_file(os.path.join(PVT_FIX, "mini_det_official_f32.safetensors"))
    backbone_sd = OrderedDict((k[len("backbone."):], v) for k, v in pvt_sd.items() if k.startswith("backbone."))
    assert set(backbone_sd) == set(model.backbone.state_dict()), "backbone keys differ from seg pvt.py"
    x_formula = make_input(*FORMULA_HW)
    sd = set_weights(model, backbone_sd, x_formula)
    model.load_state_dict(sd, strict=True)
    model.eval()
    assert not model.training and not model.decode_head.dropout.training

    # --- checkpoint, mmcv style, f16 storage (every float value is f16-exact)
    ckpt_sd = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
    ckpt = dict(meta=dict(mmseg_version=mmseg.__version__, CLASSES=tuple(f"class{i}" for i in range(NUM_CLASSES)),
                          iter=40000, note="mini Semantic FPN test fixture"),
                state_dict=ckpt_sd)
    ckpt_path = os.path.join(FIX, "mini_fpn_pvt_f16.pth")
    torch.save(ckpt, ckpt_path)
    back = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    assert set(back) == set(sd) and all(torch.equal(back[k].to(sd[k].dtype), sd[k]) for k in sd)

    # --- references
    ref = OrderedDict()
    with torch.no_grad():
        # (a) formula input
        ref["formula_head_logits"] = model.head_logits(x_formula)
        at_in, at_ori, lab = model.whole(x_formula, FORMULA_ORI_HW)
        ref["formula_final_logits"] = at_ori
        ref["formula_labels"] = lab.to(torch.uint8)
        s_in, s_ori, s_lab = model.slide(x_formula, FORMULA_ORI_HW, SLIDE_CROP, SLIDE_STRIDE)
        ref["formula_slide_final_logits"] = s_ori
        ref["formula_slide_labels"] = s_lab.to(torch.uint8)
        # (b) photo through AlignResize
        photo = os.path.join(ROOT, "assets", "images", "chelsea.png")
        x_photo, ori, rescaled, aligned, rgb_u8 = photo_input(photo)
        ref["photo_input"] = x_photo[:, :, ::37, ::37].contiguous()  # a strided sample of the input
        ref["photo_head_logits"] = model.head_logits(x_photo)
        p_in, p_ori, p_lab = model.whole(x_photo, ori)
        ref["photo_final_logits_rows"] = p_ori[:, :, ::PHOTO_ROW_STEP].contiguous()
        ref["photo_labels"] = p_lab.to(torch.uint8)
        ps_in, ps_ori, ps_lab = model.slide(x_photo, ori, PHOTO_SLIDE_CROP, PHOTO_SLIDE_STRIDE)
        ref["photo_slide_final_logits_rows"] = ps_ori[:, :, ::PHOTO_ROW_STEP].contiguous()
        ref["photo_slide_labels"] = ps_lab.to(torch.uint8)

        # --- sensitivity: how far each classic mistake moves the outputs
        sens = OrderedDict()
        head = model.decode_head
        bns = [m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        base = ref["formula_head_logits"]
        for m in bns:
            m.eps = 1e-3
        sens["BatchNorm eps 1e-3 instead of 1e-5"] = rel(model.head_logits(x_formula), base)
        for m in bns:
            m.eps = BN_EPS
        for m in bns:
            m.track_running_stats_saved = (m.running_mean.clone(), m.running_var.clone())
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
        sens["BatchNorm running stats ignored (mean 0, var 1)"] = rel(model.head_logits(x_formula), base)
        for m in bns:
            m.running_mean.copy_(m.track_running_stats_saved[0])
            m.running_var.copy_(m.track_running_stats_saved[1])
        ups = [m for m in head.modules() if type(m).__name__ == "Upsample"]
        for m in ups:
            m.align_corners = True
        sens["x2 upsampling with align_corners=True"] = rel(model.head_logits(x_formula), base)
        for m in ups:
            m.align_corners = None
            m.mode = "nearest"
        sens["x2 upsampling nearest"] = rel(model.head_logits(x_formula), base)
        for m in ups:
            m.mode = "bilinear"
            m.align_corners = False
        assert rel(model.head_logits(x_formula), base) == 0.0
        from mmseg.models.utils import resize
        one = resize(ref["formula_head_logits"], size=FORMULA_ORI_HW, mode="bilinear", align_corners=False)
        sens["one resize (head output -> original size) instead of two"] = rel(one, ref["formula_final_logits"])
        ac = resize(resize(base, size=FORMULA_HW, mode="bilinear", align_corners=True), size=FORMULA_ORI_HW,
                    mode="bilinear", align_corners=True)
        sens["final resizes with align_corners=True"] = rel(ac, ref["formula_final_logits"])
        # float64 run of the same code: float32 noise floor
        model64 = build(seg_mod, mini).double()
        model64.load_state_dict(OrderedDict((k, v.double() if v.is_floating_point() else v) for k, v in sd.items()))
        model64.eval()
        noise = OrderedDict()
        noise["formula_head_logits"] = rel(model64.head_logits(x_formula.double()).float(), base)
        _, a64, _ = model64.whole(x_formula.double(), FORMULA_ORI_HW)
        noise["formula_final_logits"] = rel(a64.float(), ref["formula_final_logits"])
        noise["photo_head_logits"] = rel(model64.head_logits(x_photo.double()).float(), ref["photo_head_logits"])

    for k, v in ref.items():
        print(f"  {k:32s} {list(v.shape)} {v.dtype} max|x|={float(v.float().abs().max()):.4f}")
    print("sensitivity:", json.dumps(sens, indent=1))
    print("float64 noise:", noise)
    near_ties = OrderedDict()
    hist = torch.bincount(ref["photo_labels"].flatten().long(), minlength=NUM_CLASSES).tolist()
    print("photo label histogram:", hist)
    for name, lg in [("formula", at_ori), ("formula slide", s_ori), ("photo", p_ori), ("photo slide", ps_ori)]:
        near_ties[name] = int((top2_gap(lg) <= 1e-4 * lg.abs().max()).sum())
    print("pixels whose top-2 logits are within 1e-4 * max|logit|:", near_ties)

    ref_path = os.path.join(FIX, "mini_reference.safetensors")
    save_file(OrderedDict((k, v.contiguous()) for k, v in ref.items()), ref_path)
    keys = full_size_keys(seg_mod)
    with open(os.path.join(FIX, "full_size_keys.json"), "w") as f:
        json.dump(keys, f, indent=0)
        f.write("\n")
    interp, interp_meta = interp_goldens()
    interp_path = os.path.join(FIX, "interp_reference.safetensors")
    save_file(interp, interp_path)

    # --- ADE20K palette (mmseg ADE20KDataset.METAINFO, same order as assets/ade20k_classes.txt)
    meta = ADE20KDataset.METAINFO
    with open(os.path.join(ROOT, "assets", "ade20k_classes.txt")) as f:
        names = [l.rstrip("\n") for l in f if l.strip()]
    assert [c.strip() for c in meta["classes"]] == names, "assets/ade20k_classes.txt differs from mmseg's ADE20K classes"
    assert len(meta["palette"]) == 150
    with open(os.path.join(ROOT, "assets", "ade20k_palette.txt"), "w") as f:
        for rgb in meta["palette"]:
            f.write(" ".join(str(int(c)) for c in rgb) + "\n")

    # --- manifest
    import cv2
    import mmcv
    import mmengine
    import timm
    files = {fn: dict(bytes=os.path.getsize(os.path.join(FIX, fn)), sha256=sha256(os.path.join(FIX, fn)))
             for fn in sorted(os.listdir(FIX)) if fn != "manifest.json"}
    manifest = OrderedDict(
        description="Golden fixtures for the Rust Semantic FPN port, made by tools/make_semantic_fpn_fixtures.py: "
                    "official whai362/PVT segmentation backbone + mmsegmentation FPN / FPNHead / slide_inference, "
                    "mmseg 0.13 whole-image test path (two bilinear resizes, softmax, argmax).",
        source=dict(pvt=dict(repo="whai362/PVT", commit=PVT_COMMIT, file="segmentation/pvt.py"),
                    mmseg=dict(version=mmseg.__version__,
                               used=["mmseg/models/necks/fpn.py FPN", "mmseg/models/decode_heads/fpn_head.py FPNHead",
                                     "BaseDecodeHead.cls_seg/predict_by_feat", "mmseg.models.utils.resize",
                                     "EncoderDecoder.slide_inference"])),
        versions=dict(python=sys.version.split()[0], torch=torch.__version__, timm=timm.__version__,
                      mmseg=mmseg.__version__, mmcv=mmcv.__version__, mmengine=mmengine.__version__,
                      opencv=cv2.__version__, numpy=np.__version__),
        config=dict(
            backbone="the pvt_v1 'mini' backbone (assets/fixtures/pvt_v1/manifest.json config), same weight values "
                     "as mini_det_official_f32.safetensors, official numerics",
            neck=dict(type="FPN", in_channels=mini["embed_dims"], out_channels=FPN_OUT, num_outs=4, start_level=0,
                      add_extra_convs=False),
            decode_head=dict(type="FPNHead", in_channels=[FPN_OUT] * 4, in_index=[0, 1, 2, 3],
                             feature_strides=STRIDES, channels=HEAD_CHANNELS, dropout_ratio=0.1,
                             num_classes=NUM_CLASSES, norm_cfg="SyncBN (eval: running statistics)", bn_eps=BN_EPS,
                             align_corners=False),
        ),
        weights=dict(
            file="mini_fpn_pvt_f16.pth",
            container="torch.save({'meta': {...}, 'state_dict': OrderedDict}) (mmcv style); floats stored as "
                      "float16, every value f16-exact; num_batches_tracked int64 (40000)",
            seed=SEED,
            distributions={"conv weight": "N(0, 1/fan_in)", "conv bias": "N(0, 0.1^2)",
                           "bn weight": "1 + N(0, 0.2^2)", "bn bias": "N(0, 0.2^2)",
                           "bn running_mean / running_var": "batch statistics of the formula input, BN by BN, "
                           "then mean + 0.3*std*N(0,1) and var*exp(0.4*N(0,1))"},
            num_tensors=len(sd),
            keys=list(sd.keys()),
        ),
        formula=dict(
            formula=pvt_manifest["input"]["formula"],
            input_hw=list(FORMULA_HW),
            ori_hw=list(FORMULA_ORI_HW),
            note="the formula tensor is the network input as is (no normalisation); ori_hw is the 'original "
                 "image' size the logits are resized back to (second resize)",
            slide=dict(crop_hw=list(SLIDE_CROP), stride_hw=list(SLIDE_STRIDE)),
        ),
        photo=dict(
            image="assets/images/chelsea.png",
            ori_hw=list(ori),
            rescaled_hw=list(rescaled),
            aligned_hw=list(aligned),
            pipeline="cv2.imread(IMREAD_COLOR) -> mmcv.imrescale(img, (2048, 512)) -> mmcv.imresize to "
                     "(ceil(w/32)*32, ceil(h/32)*32) (PVT-seg AlignResize) -> mmcv.imnormalize(mean, std, to_rgb=True)",
            aligned_rgb_u8_sum=int(rgb_u8.astype(np.int64).sum()),
            photo_input="network input sampled at rows and columns 0, 37, 74, ... ([:, :, ::37, ::37])",
            row_step=PHOTO_ROW_STEP,
            slide=dict(crop_hw=list(PHOTO_SLIDE_CROP), stride_hw=list(PHOTO_SLIDE_STRIDE)),
        ),
        references=dict(
            file="mini_reference.safetensors",
            tensors={k: dict(shape=list(v.shape), dtype=str(v.dtype).replace("torch.", "")) for k, v in ref.items()},
            meaning={
                "*_head_logits": "decode_head output at stride 4, [1, K, H/4, W/4]",
                "*_final_logits*": "head logits resized to the network input size, then to the original size (second resize), [1, K, h, w]; the photo's "
                                   "only at rows 0, row_step, 2*row_step, ...",
                "*_labels": "softmax + argmax of the final logits, uint8 [h, w]",
                "*slide*": "mmseg slide_inference (crop, stride, count-matrix average) then the second resize",
            },
            tolerance=dict(logits="max|out - ref| / max|ref| <= 1e-4",
                           labels="equal except where the top two final logits are within 1e-4 * max|final logits|"),
            near_ties=near_ties,
            sensitivity_max_rel_diff=sens,
            float32_vs_float64_max_rel_diff=noise,
            photo_label_histogram=hist,
        ),
        full_size_keys=dict(file="full_size_keys.json",
                            content="{model name: {state-dict key: shape}} of fpn_pvt_t / fpn_pvt_l as the official "
                                    "segmentation/pvt.py + mmseg FPN / FPNHead build them (config arguments, 150 classes)",
                            num_keys={k: len(v) for k, v in keys.items()}),
        interp=dict(file="interp_reference.safetensors", cases=interp_meta,
                    input="formula above, channels 0..2 only, [1, 2, h, w]"),
        ade20k_palette=dict(file="assets/ade20k_palette.txt", source=f"mmseg {mmseg.__version__} "
                            "ADE20KDataset.METAINFO['palette'] (RGB, one 'r g b' line per class, in "
                            "assets/ade20k_classes.txt order, checked equal to METAINFO['classes'] stripped: mmseg spells the 8th 'bed ')"),
        files=files,
    )
    with open(os.path.join(FIX, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(FIX, fn)) for fn in os.listdir(FIX))
    print(f"wrote {FIX}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
