#!/usr/bin/env python3
"""Golden fixtures for the Rust PVT v2 port, produced by timm's `PyramidVisionTransformerV2`
and cross-checked against the OFFICIAL whai362/PVT v2 code.

Usage (from the repository root):

    tools/.venv/bin/python tools/make_pvt_v2_fixtures.py            # writes assets/fixtures/pvt_v2/
    <mmdet venv>/bin/python tools/make_pvt_v2_fixtures.py --check-mmdet   # optional, see below

The official files are not part of this repository; put them in tools/_ref/ (gitignored) from the
`fetch` tool's git mirror of github:whai362/PVT (same commit as tools/pvt_official.py):

    C=57e2dfaa5a46f9050d76f306a4fcd9a7c061f520
    git --git-dir=<mirror> show $C:classification/pvt_v2.py > tools/_ref/cls_pvt_v2.py
    git --git-dir=<mirror> show $C:detection/pvt_v2.py      > tools/_ref/det_pvt_v2.py

They are imported unmodified through tools/pvt_official.py's stand-in modules.

Two reduced "mini" models are made (dims [16, 32, 40, 64], heads [1, 2, 5, 8], depths
[2, 1, 1, 2], MLP ratios [8, 8, 4, 4], SR ratios [8, 4, 2, 1]): `conv` (spatial-reduction
attention, as b0-b5) and `linear` (linear SRA, as b2_li). Weights are random, non-trivial and
exactly representable in float16 and bfloat16, so every weight file holds identical values.

`--check-mmdet` (needs mmdet 3.3.0 + mmengine + mmcv-lite, as tools/check_mmdet_naming.py) checks
the mmdetection-named file against REAL mmdetection code: its `pvt_convert` applied to the
official file gives exactly the stored tensors, its `PyramidVisionTransformerV2` loads them with
strict=True, and its features equal the stored `*_mmdet` references.
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pvt_official  # noqa: E402

ROOT = os.path.dirname(HERE)
FIX_DIR = os.path.join(ROOT, "assets", "fixtures", "pvt_v2")
SEED = 20240617
BUDGET = 4_000_000  # bytes for the whole fixture folder

MINI = dict(
    embed_dims=[16, 32, 40, 64],
    num_heads=[1, 2, 5, 8],
    mlp_ratios=[8, 8, 4, 4],
    depths=[2, 1, 1, 2],
    sr_ratios=[8, 4, 2, 1],
    num_classes=100,
    qkv_bias=True,
)
VARIANTS = OrderedDict([("conv", False), ("linear", True)])

# Same input as the v1 fixtures (assets/fixtures/pvt_v1/manifest.json `input`).
INPUT_FORMULA = (
    "x[0,c,h,w] = (float32)( 2.0*sin((0.05*h + 0.07*w) + 1.3*c) + 0.5*cos(((0.11*h)*w)/W + c) ); "
    "batch 1, 3 channels, c in 0..3, h in 0..H, w in 0..W; h, w, c, W converted to float64 and every "
    "operation done in float64 left to right as parenthesised (so 0.11*h*w/W is ((0.11*h)*w)/W, a true "
    "floating-point division by the image width W), sin/cos = libm float64, one final round-to-nearest "
    "cast to float32. No normalisation is applied."
)
SIZES = [(224, 224), (200, 300)]
# Dense references stored per model (the linear model's 224x224 maps are left out to stay within the
# size budget; its 224x224 logits and its 200x300 maps are stored).
DENSE_SIZES = {"conv": [(224, 224), (200, 300)], "linear": [(200, 300)]}
MMDET_SIZE = (100, 150)

# Tensors scaled down after sampling so that a wrong LayerNorm eps moves the outputs far more than
# the tolerance (without them an eps mistake changes outputs by ~1e-6 relative).
EPS_PROBES = {
    # stage-2 patch-embed LayerNorm (eps 1e-5 in official/timm, 1e-6 in mmdet)
    "patch_embed2.proj.weight": 1e-2,
    "patch_embed2.proj.bias": 1e-2,
    # stage-3 spatial-reduction LayerNorm attn.norm (1e-5 / 1e-6); 1x1 conv in the linear model
    "block3.0.attn.sr.weight": 1e-2,
    "block3.0.attn.sr.bias": 1e-2,
    # tokens entering stage 4 are tiny, so block4.0.norm1 (eps 1e-6) sees variance ~1e-6
    "patch_embed4.norm.weight": 1e-3,
    "patch_embed4.norm.bias": 1e-3,
}
TOL = 2e-5


# ----------------------------------------------------------------------------------------------
# models


def official_modules():
    cls = pvt_official._import_file("pvt_official_cls_v2", os.path.join(pvt_official.REF_DIR, "cls_pvt_v2.py"))
    det = pvt_official._import_file("pvt_official_det_v2", os.path.join(pvt_official.REF_DIR, "det_pvt_v2.py"))
    return cls, det


def official_kwargs(linear):
    from functools import partial
    return dict(MINI, patch_size=4, norm_layer=partial(nn.LayerNorm, eps=1e-6), linear=linear)


def timm_model(linear):
    from timm.models.pvt_v2 import PyramidVisionTransformerV2
    m = PyramidVisionTransformerV2(
        depths=tuple(MINI["depths"]), embed_dims=tuple(MINI["embed_dims"]), num_heads=tuple(MINI["num_heads"]),
        sr_ratios=tuple(MINI["sr_ratios"]), mlp_ratios=tuple(MINI["mlp_ratios"]), qkv_bias=True, linear=linear,
        num_classes=MINI["num_classes"]).eval()
    for mod in m.modules():  # explicit softmax(q k^T) like the official code, not SDPA
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = False
    return m


def exactly_half_representable(t):
    t = t.to(torch.bfloat16).float()
    t = torch.where(t.abs() < 1e-4, torch.zeros_like(t), t)
    assert torch.equal(t.half().float(), t), "not f16-exact"
    assert torch.equal(t.bfloat16().float(), t), "not bf16-exact"
    return t.contiguous()


def make_weights(model, seed):
    """Random weights for an official-named model (distributions as the v1 fixtures)."""
    g = torch.Generator().manual_seed(seed)
    kinds = {}
    for mname, m in model.named_modules():
        for pname, _ in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(m, nn.LayerNorm):
                kinds[full] = "ln_" + pname
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                kinds[full] = "lin_" + pname
            else:
                raise RuntimeError(f"unexpected parameter {full}")
    sd = OrderedDict()
    for name, ref in model.state_dict().items():
        n = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        kind = kinds[name]
        if kind == "ln_weight":
            v = 1.0 + 0.2 * n
        elif kind == "ln_bias":
            v = 0.2 * n
        elif kind == "lin_weight":
            v = n / math.sqrt(int(np.prod(ref.shape[1:])))
        else:
            v = 0.1 * n
        v = v * EPS_PROBES.get(name, 1.0)
        sd[name] = exactly_half_representable(v.float())
    return sd


def official_to_timm(sd, model):
    from timm.models.pvt_v2 import checkpoint_filter_fn
    out = checkpoint_filter_fn(dict(sd), model)
    return OrderedDict((k, out[k]) for k in out)


def official_to_mmdet(sd):
    """Official -> mmdetection PyramidVisionTransformerV2 names, as mmdet's `pvt_convert` does for a
    checkpoint without pos_embed and with dwconv (checked against the real one by --check-mmdet)."""
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith("head"):
            continue
        if k.startswith("patch_embed"):
            i = int(k.split(".")[0][len("patch_embed"):])
            out[k.replace(f"patch_embed{i}", f"layers.{i - 1}.0").replace("proj.", "projection.")] = v
        elif k.startswith("block"):
            i, j = int(k.split(".")[0][len("block"):]), int(k.split(".")[1])
            nk = k.replace(f"block{i}.{j}", f"layers.{i - 1}.1.{j}")
            if ".attn.q." in nk:
                out[nk.replace("q.", "attn.in_proj_")] = torch.cat([v, sd[k.replace("q.", "kv.")]], 0)
            elif ".attn.kv." in nk:
                continue
            elif ".attn.proj." in nk:
                out[nk.replace("proj.", "attn.out_proj.")] = v
            elif ".mlp." in nk:
                nv = v.reshape(*v.shape, 1, 1) if ("fc1.weight" in nk or "fc2.weight" in nk) else v
                nk = nk.replace("mlp.", "ffn.layers.").replace("fc1.", "0.").replace("dwconv.dwconv.", "1.")
                out[nk.replace("fc2.", "4.")] = nv
            else:
                out[nk] = v
        elif re.match(r"^norm\d", k):
            i = int(k[4])
            out[k.replace(f"norm{i}", f"layers.{i - 1}.2")] = v
        else:
            raise RuntimeError(k)
    return OrderedDict((k, v.contiguous().clone()) for k, v in out.items())


# ----------------------------------------------------------------------------------------------
# helpers


def make_input(H, W):
    x = np.empty((1, 3, H, W), dtype=np.float64)
    Wf = float(W)
    for c in range(3):
        for h in range(H):
            for w in range(W):
                x[0, c, h, w] = 2.0 * math.sin((0.05 * float(h) + 0.07 * float(w)) + 1.3 * float(c)) + 0.5 * math.cos(
                    ((0.11 * float(h)) * float(w)) / Wf + float(c))
    return torch.from_numpy(x.astype(np.float32))


def rel_diff(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def tag(H, W):
    return "224" if (H, W) == (224, 224) else f"{H}x{W}"


class patched:
    def __init__(self, items):
        self.items = items

    def __enter__(self):
        self.saved = [(o, a, getattr(o, a)) for o, a, _ in self.items]
        for o, a, v in self.items:
            setattr(o, a, v)

    def __exit__(self, *exc):
        for o, a, v in reversed(self.saved):
            setattr(o, a, v)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cast(sd, dtype):
    return OrderedDict((k, v.to(dtype).contiguous().clone()) for k, v in sd.items())


def rust_config(linear):
    stages = []
    for i in range(4):
        stages.append(dict(patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2, embed_dim=MINI["embed_dims"][i],
                           num_heads=MINI["num_heads"][i], mlp_ratio=MINI["mlp_ratios"][i],
                           sr_ratio=MINI["sr_ratios"][i], depth=MINI["depths"][i]))
    return dict(stages=stages, kv_reduction={"linear_pool": {"size": 7}} if linear else "conv", in_channels=3,
                num_classes=MINI["num_classes"], qkv_bias=True)


# ----------------------------------------------------------------------------------------------


def build_variant(name, linear, cls_mod, det_mod, inputs):
    """Weights, references, cross-checks and sensitivities of one mini model."""
    cls_model = cls_mod.PyramidVisionTransformerV2(**official_kwargs(linear)).eval()
    det_kw = {k: v for k, v in official_kwargs(linear).items() if k != "num_classes"}
    det_model = det_mod.PyramidVisionTransformerV2(**det_kw).eval()
    tm = timm_model(linear)
    sd = make_weights(cls_model, SEED + (1000 if linear else 0))
    cls_model.load_state_dict(sd, strict=True)
    det_sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("head."))
    det_model.load_state_dict(det_sd, strict=True)
    timm_sd = official_to_timm(sd, tm)
    tm.load_state_dict(timm_sd, strict=True)
    print(f"[{name}] {len(sd)} tensors, {sum(v.numel() for v in sd.values())} values; timm {len(timm_sd)} tensors")

    ref = OrderedDict()
    checks = OrderedDict()
    with torch.no_grad():
        x224 = inputs[(224, 224)]
        ref[f"{name}_logits_224"] = tm(x224)
        checks["official classification logits_224"] = rel_diff(cls_model(x224), ref[f"{name}_logits_224"])
        for (H, W) in SIZES:
            feats = tm.forward_intermediates(inputs[(H, W)], intermediates_only=True)
            off = det_model(inputs[(H, W)])
            for i, (f, o) in enumerate(zip(feats, off)):
                checks[f"official detection feat{i + 1}_{tag(H, W)}"] = rel_diff(o, f)
                if (H, W) in DENSE_SIZES[name]:
                    ref[f"{name}_feat{i + 1}_{tag(H, W)}"] = f
        logits200 = tm(inputs[(200, 300)])
        checks["official classification logits_200x300"] = rel_diff(cls_model(inputs[(200, 300)]), logits200)
        if not linear:
            # mmdetection's conventions: every LayerNorm eps 1e-6
            lns = [m for m in tm.modules() if isinstance(m, nn.LayerNorm)]
            with patched([(m, "eps", 1e-6) for m in lns]):
                feats = tm.forward_intermediates(inputs[MMDET_SIZE], intermediates_only=True)
            for i, f in enumerate(feats):
                ref[f"{name}_feat{i + 1}_{tag(*MMDET_SIZE)}_mmdet"] = f
        # timm with fused attention (SDPA) for scale
        for mod in tm.modules():
            if hasattr(mod, "fused_attn"):
                mod.fused_attn = True
        checks["timm fused-attention (SDPA) logits_224"] = rel_diff(tm(x224), ref[f"{name}_logits_224"])
        for mod in tm.modules():
            if hasattr(mod, "fused_attn"):
                mod.fused_attn = False
    assert max(checks.values()) < 1e-5, checks
    for k, v in checks.items():
        print(f"  [{name}] {k}: max rel diff {v:.1e}")

    # --- sensitivity: does each classic mistake move the outputs by more than the tolerance?
    sens = OrderedDict()
    x = inputs[(200, 300)]
    t = tag(200, 300)

    def worst():
        feats = tm.forward_intermediates(x, intermediates_only=True)
        return max(rel_diff(f, ref[f"{name}_feat{i + 1}_{t}"]) for i, f in enumerate(feats))

    attn_mods = [m for m in tm.modules() if type(m).__name__ == "Attention"]
    mlps = [m for m in tm.modules() if type(m).__name__ == "MlpWithDepthwiseConv"]
    pe_norms = [tm.patch_embed.norm] + [s.downsample.norm for s in tm.stages if s.downsample is not None]
    sr_norms = [a.norm for a in attn_mods if a.norm is not None]
    blk_norms = [m for b in tm.modules() if type(b).__name__ == "Block" for m in (b.norm1, b.norm2)]
    stage_norms = [s.norm for s in tm.stages]
    gelus = [m.act for m in mlps] + [a.act for a in attn_mods if a.act is not None]
    with torch.no_grad():
        with patched([(m, "eps", 1e-6) for m in pe_norms]):
            sens["patch-embed LayerNorm eps 1e-6 instead of 1e-5"] = worst()
        with patched([(m, "eps", 1e-6) for m in sr_norms]):
            sens["SR LayerNorm eps 1e-6 instead of 1e-5"] = worst()
        with patched([(m, "eps", 1e-5) for m in blk_norms + stage_norms]):
            sens["block and stage LayerNorm eps 1e-5 instead of 1e-6"] = worst()
        with patched([(m, "approximate", "tanh") for m in gelus]):
            sens["tanh-approximate GELU"] = worst()
        with patched([(m, "norm", nn.Identity()) for m in tm.stages]):
            sens["features taken before the stage norm"] = worst()
        kvs = [a.kv for a in attn_mods]
        saved = [(l.weight.clone(), l.bias.clone()) for l in kvs]
        for l in kvs:
            C = l.weight.shape[1]
            l.weight.copy_(torch.cat([l.weight[C:], l.weight[:C]]))
            l.bias.copy_(torch.cat([l.bias[C:], l.bias[:C]]))
        sens["K and V halves of attn.kv swapped"] = worst()
        for l, (w, b) in zip(kvs, saved):
            l.weight.copy_(w)
            l.bias.copy_(b)
        dws = [m.dwconv for m in mlps]
        saved = [m.weight.clone() for m in dws]
        for m in dws:
            m.weight.copy_(m.weight.flip(-1).flip(-2))
        sens["depth-wise kernel mirrored (correlation vs convolution)"] = worst()
        for m, w in zip(dws, saved):
            m.weight.copy_(w)
        if linear:
            with patched([(m, "relu", nn.Identity()) for m in mlps]):
                sens["ReLU after fc1 omitted (linear variant)"] = worst()

            class BilinearPool(nn.Module):
                def forward(self, z):
                    return F.interpolate(z, size=(7, 7), mode="bilinear", align_corners=False)

            with patched([(a, "pool", BilinearPool()) for a in attn_mods]):
                sens["7x7 keys by bilinear resize instead of adaptive average pooling"] = worst()

            class FloorPool(nn.Module):  # uniform bins of floor(H/7), the remainder dropped
                def forward(self, z):
                    kh, kw = z.shape[2] // 7, z.shape[3] // 7
                    return F.avg_pool2d(z[:, :, :7 * kh, :7 * kw], (kh, kw))

            with patched([(a, "pool", FloorPool()) for a in attn_mods]):
                sens["adaptive pooling with floor-sized bins (remainder dropped)"] = worst()
        sens["re-run (must be 0)"] = worst()
    for k, v in sens.items():
        flag = "OK" if v > 10 * TOL or k.startswith("re-run") else "WEAK"
        print(f"  [{name}] sensitivity {k:62s} {v:.3e} {flag}")
    assert sens["re-run (must be 0)"] == 0.0

    # --- float32 noise: float64 run of the same model
    f64 = OrderedDict()
    with torch.no_grad():
        tm.double()
        f64[f"{name}_logits_224"] = rel_diff(tm(inputs[(224, 224)].double()), ref[f"{name}_logits_224"])
        for (H, W) in DENSE_SIZES[name]:
            feats = tm.forward_intermediates(inputs[(H, W)].double(), intermediates_only=True)
            for i, f in enumerate(feats):
                f64[f"{name}_feat{i + 1}_{tag(H, W)}"] = rel_diff(f, ref[f"{name}_feat{i + 1}_{tag(H, W)}"])
        tm.float()
    print(f"  [{name}] float32 refs vs float64 run, max rel diff {max(f64.values()):.1e}")
    return dict(sd=sd, timm_sd=timm_sd, ref=ref, checks=checks, sens=sens, f64=f64)


def fake_neck(g):
    w = torch.randn(8, 64, 1, 1, generator=g) / 8.0
    b = 0.1 * torch.randn(8, generator=g)
    return OrderedDict([("neck.lateral_convs.0.conv.weight", exactly_half_representable(w)),
                        ("neck.lateral_convs.0.conv.bias", exactly_half_representable(b))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-mmdet", action="store_true", help="verify the mmdet file with real mmdetection code")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.check_mmdet:
        return check_mmdet()
    os.makedirs(FIX_DIR, exist_ok=True)
    from safetensors.torch import save_file

    cls_mod, det_mod = official_modules()
    inputs = {s: make_input(*s) for s in SIZES + [MMDET_SIZE]}
    out = OrderedDict((name, build_variant(name, lin, cls_mod, det_mod, inputs)) for name, lin in VARIANTS.items())

    ref = OrderedDict()
    for v in out.values():
        ref.update(v["ref"])
    ref = OrderedDict((k, v.contiguous().float()) for k, v in ref.items())
    for k, v in ref.items():
        print(f"  ref {k:30s} {list(v.shape)} max|x|={float(v.abs().max()):.4f}")
    for fn in os.listdir(FIX_DIR):
        os.remove(os.path.join(FIX_DIR, fn))
    save_file(dict(ref), os.path.join(FIX_DIR, "mini_v2_reference.safetensors"),
              metadata={"producer": "tools/make_pvt_v2_fixtures.py"})

    files = OrderedDict()
    conv, lin = out["conv"], out["linear"]

    def put(fn, **info):
        files[fn] = info

    torch.save(cast(conv["sd"], torch.float16), os.path.join(FIX_DIR, "mini_v2_cls_official_f16.pth"))
    put("mini_v2_cls_official_f16.pth", format="torch.save zip", container="plain state dict (like released pvt_v2_b*.pth)",
        naming="official whai362/PVT v2 classification", model="conv", dtype="float16", tensors=len(conv["sd"]))
    save_file(dict(cast(conv["timm_sd"], torch.bfloat16)), os.path.join(FIX_DIR, "mini_v2_cls_timm_bf16.safetensors"))
    put("mini_v2_cls_timm_bf16.safetensors", format="safetensors", container="flat",
        naming="timm pvt_v2 (timm.models.pvt_v2.checkpoint_filter_fn applied to the official file)", model="conv",
        dtype="bfloat16", tensors=len(conv["timm_sd"]))
    g = torch.Generator().manual_seed(SEED + 7)
    mm = OrderedDict(("backbone." + k, v) for k, v in official_to_mmdet(conv["sd"]).items())
    mm.update(fake_neck(g))
    meta = {"mmdet_version": "2.25.3", "config": "model = dict(type='RetinaNet', backbone=dict(type="
            "'PyramidVisionTransformerV2', num_layers=[2, 1, 1, 2]))\n# fake config text for a fixture\n",
            "CLASSES": ("person", "bicycle"), "epoch": 12}
    torch.save({"meta": meta, "state_dict": cast(mm, torch.float16)}, os.path.join(FIX_DIR, "mini_v2_det_mmdet_f16.pth"))
    put("mini_v2_det_mmdet_f16.pth", format="torch.save zip", container="mmcv-style {'meta': ..., 'state_dict': ...}",
        naming="mmdetection PyramidVisionTransformerV2 with 'backbone.' prefix: layers.{s}.0.projection/norm, "
               "layers.{s}.1.{j} blocks (no pos-embed slot), attn.attn.in_proj_weight/bias = cat(q, kv), "
               "attn.attn.out_proj, ffn.layers.0/1/4 (1x1 conv fc1 [h,C,1,1], depth-wise conv, 1x1 conv fc2), "
               "layers.{s}.2 stage norm; head dropped; + 2 fake neck tensors",
        model="conv", dtype="float16", tensors=len(mm),
        verified_with_mmdet="`--check-mmdet` with mmdet 3.3.0 (mmcv-lite 2.1.0, mmengine 0.10.7): mmdet's "
                            "pvt_convert() applied to mini_v2_cls_official_f16.pth gives exactly these 124 backbone "
                            "tensors; mmdet's PyramidVisionTransformerV2(embed_dims=8, num_heads=[2,4,5,8]) has "
                            "widths [16,32,40,64] and loads them with strict=True; with its head counts set to "
                            "[1,2,5,8] its features match conv_feat*_100x150_mmdet to <= 6.3e-7 relative")
    torch.save({"model": cast(lin["sd"], torch.float16)}, os.path.join(FIX_DIR, "mini_v2_li_cls_official_model_f16.pth"))
    put("mini_v2_li_cls_official_model_f16.pth", format="torch.save zip", container="{'model': state_dict}",
        naming="official whai362/PVT v2 (linear=True)", model="linear", dtype="float16", tensors=len(lin["sd"]))
    det_t = OrderedDict(("backbone." + k, v) for k, v in lin["timm_sd"].items() if not k.startswith("head."))
    save_file({k: v.to(torch.float16).contiguous() for k, v in det_t.items()},
              os.path.join(FIX_DIR, "mini_v2_li_det_timm_f16.safetensors"))
    put("mini_v2_li_det_timm_f16.safetensors", format="safetensors", container="flat",
        naming="timm pvt_v2 names with 'backbone.' prefix, head removed (a dense checkpoint)", model="linear",
        dtype="float16", tensors=len(det_t))

    # round trips
    a = torch.load(os.path.join(FIX_DIR, "mini_v2_cls_official_f16.pth"), map_location="cpu")
    assert set(a) == set(conv["sd"]) and all(torch.equal(a[k].float(), conv["sd"][k]) for k in a)
    b = torch.load(os.path.join(FIX_DIR, "mini_v2_li_cls_official_model_f16.pth"), map_location="cpu")["model"]
    assert all(torch.equal(b[k].float(), lin["sd"][k]) for k in lin["sd"])

    fsizes = {fn: dict(bytes=os.path.getsize(os.path.join(FIX_DIR, fn)), sha256=sha256(os.path.join(FIX_DIR, fn)))
              for fn in sorted(os.listdir(FIX_DIR))}
    for fn, info in files.items():
        info.update(fsizes[fn])
    files["mini_v2_reference.safetensors"] = dict(format="safetensors", dtype="float32",
                                                  **fsizes["mini_v2_reference.safetensors"],
                                                  tensors={k: list(v.shape) for k, v in ref.items()})
    input_checks = {f"{H}x{W}": {"sum_f64": float(x.double().sum()), "x[0,1,5,7]": float(x[0, 1, 5, 7]),
                                 f"x[0,2,{H - 1},{W - 1}]": float(x[0, 2, H - 1, W - 1])}
                    for (H, W), x in inputs.items()}

    import timm
    import safetensors
    manifest = OrderedDict(
        description="Golden fixtures for the Rust PVT v2 port, generated by tools/make_pvt_v2_fixtures.py with timm's "
                    "PyramidVisionTransformerV2 (explicit attention, not SDPA) and cross-checked against the OFFICIAL "
                    "whai362/PVT v2 code (imports shimmed, tools/pvt_official.py).",
        source=dict(timm=f"timm {timm.__version__} timm/models/pvt_v2.py (references)",
                    official=dict(repo="whai362/PVT", branch="v2", commit=pvt_official.PVT_COMMIT,
                                  files=["classification/pvt_v2.py", "detection/pvt_v2.py"])),
        versions=dict(python=sys.version.split()[0], torch=torch.__version__, timm=timm.__version__,
                      numpy=np.__version__, safetensors=safetensors.__version__),
        config=dict(
            name="mini_v2", **MINI,
            patch_embed="stage 1: conv k7 s4 p3; stages 2-4: conv k3 s2 p1; then LayerNorm",
            layernorm_eps=dict(patch_embed_norm=1e-5, attn_sr_norm=1e-5, block_norm1_norm2=1e-6, stage_norm=1e-6,
                               mmdet="1e-6 everywhere"),
            gelu="exact erf (nn.GELU default), in the FFN and (linear variant) after the SR norm",
            variants={"conv": "linear=False (spatial-reduction attention, as b0-b5)",
                      "linear": "linear=True (AdaptiveAvgPool2d(7) + 1x1 conv + LN + GELU keys/values, ReLU after fc1, as b2_li)"},
            rust={k: rust_config(v) for k, v in VARIANTS.items()},
        ),
        weights=dict(
            seeds={"conv": SEED, "linear": SEED + 1000},
            distributions={"Linear/Conv weight": "N(0, 1/fan_in), fan_in = prod(shape[1:]) (9 for the depth-wise conv)",
                           "Linear/Conv bias": "N(0, 0.1^2)", "LayerNorm weight": "1 + N(0, 0.2^2)",
                           "LayerNorm bias": "N(0, 0.2^2)"},
            eps_probes=dict(scale=EPS_PROBES, why="multiplied after sampling so that the LayerNorm inputs they feed have "
                                                  "tiny variance and a wrong eps is visible (see sensitivity)"),
            rounding="sampled in float64, cast to float32, rounded to bfloat16, |w| < 1e-4 set to 0: every value is "
                     "exactly representable in float16 and bfloat16, so all files of a model hold identical values",
            num_values={k: sum(v.numel() for v in o["sd"].values()) for k, o in out.items()},
        ),
        input=dict(formula=INPUT_FORMULA,
                   python="2.0*math.sin((0.05*h + 0.07*w) + 1.3*c) + 0.5*math.cos(((0.11*h)*w)/W + c)",
                   shapes=[[1, 3, H, W] for (H, W) in inputs], checks=input_checks),
        references=OrderedDict(
            file="mini_v2_reference.safetensors", dtype="float32",
            mode="timm model.eval(), torch.no_grad(), float32, CPU, 1 thread, fused_attn=False",
            tensors=OrderedDict([
                ("{conv,linear}_logits_224", "classifier logits (mean of the final tokens after norm4, head), input "
                                             "224x224, [1, 100]"),
                ("conv_feat{1..4}_224", "dense features after each stage norm (NCHW), input 224x224 (for the "
                                        "linear model only the logits are stored at this size, to stay within "
                                        "the 4 MB budget)"),
                ("{conv,linear}_feat{1..4}_200x300", "same, input H=200 W=300 (not multiples of 32): grids are "
                                                     "ceil-rounded, 50x75, 25x38, 13x19, 7x10"),
                ("conv_feat{1..4}_100x150_mmdet", "conv model with mmdetection's LayerNorm eps (1e-6 everywhere), "
                                                  "input H=100 W=150: what mmdet's PyramidVisionTransformerV2 gives "
                                                  "for mini_v2_det_mmdet_f16.pth"),
            ]),
            shapes={k: list(v.shape) for k, v in ref.items()},
            cross_checks_max_rel_diff={k: o["checks"] for k, o in out.items()},
            tolerance=dict(metric="max|out - ref| / max|ref| per tensor", value=TOL,
                           note="float32 noise is < 1e-6 (float32_vs_float64_max_rel_diff); a tanh-approximate GELU "
                                "moves the outputs by ~1.7e-4 (conv) / 2.9e-4 (linear), 8x / 14x the tolerance"),
            sensitivity_max_rel_diff={k: o["sens"] for k, o in out.items()},
            float32_vs_float64_max_rel_diff={k: max(o["f64"].values()) for k, o in out.items()},
        ),
        files=files,
    )
    with open(os.path.join(FIX_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(FIX_DIR, fn)) for fn in os.listdir(FIX_DIR))
    print(f"wrote {FIX_DIR}: {total / 1e6:.2f} MB")
    assert total <= BUDGET, f"fixtures take {total} bytes > {BUDGET}"


# ----------------------------------------------------------------------------------------------
# optional: real mmdetection


def check_mmdet():
    import check_mmdet_naming as cm  # its loader of mmdet/models/backbones/pvt.py without mmcv ops
    pvt, version = cm.load_mmdet_pvt()
    print("mmdet", version, pvt.__file__)
    off = torch.load(os.path.join(FIX_DIR, "mini_v2_cls_official_f16.pth"), map_location="cpu")
    ck = torch.load(os.path.join(FIX_DIR, "mini_v2_det_mmdet_f16.pth"), map_location="cpu", weights_only=False)
    mm = {k[len("backbone."):]: v for k, v in ck["state_dict"].items() if k.startswith("backbone.")}
    conv = pvt.pvt_convert(off)
    assert set(conv) == set(mm), set(conv) ^ set(mm)
    for k in conv:
        assert conv[k].shape == mm[k].shape and torch.equal(conv[k], mm[k]), k
    print(f"1. pvt_convert(official) == mmdet fixture: {len(conv)} tensors equal")
    model = pvt.PyramidVisionTransformerV2(
        embed_dims=8, num_layers=MINI["depths"], num_heads=[2, 4, 5, 8], sr_ratios=MINI["sr_ratios"],
        mlp_ratios=MINI["mlp_ratios"], qkv_bias=True, drop_path_rate=0.0).eval()
    widths = [model.layers[i][0].projection.out_channels for i in range(4)]
    assert widths == MINI["embed_dims"], widths
    model.load_state_dict({k: v.float() for k, v in mm.items()}, strict=True)
    print(f"2. mmdet PyramidVisionTransformerV2(embed_dims=8, num_heads=[2,4,5,8]) widths {widths}: strict load OK")
    for s, heads in enumerate(MINI["num_heads"]):  # a head count changes no parameter shape
        for layer in model.layers[s][1]:
            layer.attn.num_heads = heads
            layer.attn.attn.num_heads = heads
            layer.attn.attn.head_dim = layer.attn.attn.embed_dim // heads
    from safetensors.torch import load_file
    stored = load_file(os.path.join(FIX_DIR, "mini_v2_reference.safetensors"))
    with torch.no_grad():
        feats = model(make_input(*MMDET_SIZE))
    d = [rel_diff(f, stored[f"conv_feat{i + 1}_{tag(*MMDET_SIZE)}_mmdet"]) for i, f in enumerate(feats)]
    print("3. mmdet features vs stored conv_feat*_100x150_mmdet, max rel diff: " + ", ".join(f"{v:.1e}" for v in d))
    assert max(d) < 1e-5
    print("OK")


if __name__ == "__main__":
    main()
