#!/usr/bin/env python3
"""Cross-check assets/fixtures/pvt_v1/mini_det_mmdet_f16.pth against REAL mmdetection code.

Needs a Python environment with torch + timm (tools/requirements-fixtures.txt) plus
`mmdet==3.3.0 mmengine==0.10.7 mmcv-lite==2.1.0` installed with --no-deps (and mmengine's small
pure-Python dependencies: addict yapf termcolor rich opencv-python-headless). mmcv-lite has no
compiled ops, so `mmdet.models` cannot be imported as a package (it pulls mmcv.ops); we load
mmdet/models/backbones/pvt.py on its own and give it a stand-in `mmdet.models.layers` that holds
only what it uses (PatchEmbed, nchw_to_nlc, nlc_to_nchw from mmdet/models/layers/transformer/utils.py).

Checks:
1. mmdet's own `pvt_convert` applied to the official classification fixture gives exactly the
   tensors of the mmdet fixture (names, shapes, values).
2. mmdet's PyramidVisionTransformer built with embed_dims=8, num_heads=[2,4,5,8] has the mini
   channel widths [16,32,40,64] (mmdet uses embed_dims * num_heads[i]); it loads the fixture's
   backbone with strict=True. Then the stage-1/2 attention modules are switched to the mini head
   counts [1,2] (a head count changes no parameter shape) and its features are compared with the
   official detection code run with mmdet's conventions (all LayerNorm eps 1e-6, pos-embed always
   interpolated).
"""

import importlib.util
import os
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
FIX = os.path.join(os.path.dirname(HERE), "assets", "fixtures", "pvt_v1")

import make_pvt_v1_fixtures as mk  # noqa: E402  (imports the official code through its shims)


def load_mmdet_pvt():
    import mmdet

    root = os.path.dirname(mmdet.__file__)

    def load(name, path):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    models = types.ModuleType("mmdet.models")
    models.__path__ = []
    backbones = types.ModuleType("mmdet.models.backbones")
    backbones.__path__ = []
    sys.modules["mmdet.models"] = models
    sys.modules["mmdet.models.backbones"] = backbones
    tutils = load("mmdet_transformer_utils", os.path.join(root, "models", "layers", "transformer", "utils.py"))
    layers = types.ModuleType("mmdet.models.layers")
    layers.PatchEmbed = tutils.PatchEmbed
    layers.nchw_to_nlc = tutils.nchw_to_nlc
    layers.nlc_to_nchw = tutils.nlc_to_nchw
    sys.modules["mmdet.models.layers"] = layers
    return load("mmdet.models.backbones.pvt", os.path.join(root, "models", "backbones", "pvt.py")), mmdet.__version__


def main():
    torch.set_num_threads(1)
    pvt, version = load_mmdet_pvt()
    print("mmdet", version, "loaded", pvt.__file__)

    cls_sd = torch.load(os.path.join(FIX, "mini_cls_official_f16.pth"), map_location="cpu")
    ck = torch.load(os.path.join(FIX, "mini_det_mmdet_f16.pth"), map_location="cpu", weights_only=False)
    mm = {k[len("backbone."):]: v for k, v in ck["state_dict"].items() if k.startswith("backbone.")}

    # 1. mmdet's converter
    conv = pvt.pvt_convert(cls_sd)
    assert set(conv) == set(mm), (set(conv) ^ set(mm))
    for k in conv:
        assert conv[k].shape == mm[k].shape, (k, conv[k].shape, mm[k].shape)
        assert torch.equal(conv[k], mm[k]), k
    print(f"1. pvt_convert(official cls fixture) == mmdet fixture: {len(conv)} tensors, names/shapes/values equal")

    # 2. real mmdet model, strict load
    c = mk.MINI
    model = pvt.PyramidVisionTransformer(
        pretrain_img_size=224, embed_dims=8, num_layers=c["depths"], num_heads=[2, 4, 5, 8],
        patch_sizes=[4, 2, 2, 2], strides=[4, 2, 2, 2], sr_ratios=c["sr_ratios"], mlp_ratios=c["mlp_ratios"],
        qkv_bias=True, drop_path_rate=0.0).eval()
    widths = [model.layers[i][0].projection.out_channels for i in range(4)]
    assert widths == c["embed_dims"], widths
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in mm.items()}, strict=True)
    print(f"2. mmdet PyramidVisionTransformer(embed_dims=8, num_heads=[2,4,5,8]) -> widths {widths}; "
          f"strict load of the fixture OK ({len(mm)} tensors)")
    for s, heads in enumerate(c["num_heads"]):
        for layer in model.layers[s][1][1:]:
            layer.attn.num_heads = heads
            layer.attn.attn.num_heads = heads
            layer.attn.attn.head_dim = layer.attn.attn.embed_dim // heads

    _, det_mod, _, det_model = mk.build_models()
    det_model.load_state_dict({k: v.float() for k, v in cls_sd.items() if k not in mk.DET_DROPPED}, strict=True)
    lns = [m for m in det_model.modules() if isinstance(m, nn.LayerNorm)]
    worst = 0.0
    with torch.no_grad(), mk.patched([(m, "eps", 1e-6) for m in lns] + [
            (det_model, "_get_pos_embed", mk.always_interp_get_pos_embed.__get__(det_model))]):
        for (H, W) in [(224, 224), (320, 480), (256, 196)]:
            x = mk.make_input(H, W)
            a = model(x)
            b = det_model(x)
            d = [mk.rel_diff(p, q) for p, q in zip(a, b)]
            worst = max(worst, *d)
            print(f"   {H}x{W}: mmdet vs official(eps 1e-6, always interp) max rel diff per stage "
                  + ", ".join(f"{v:.1e}" for v in d))
    from safetensors.torch import load_file
    stored = load_file(os.path.join(FIX, "mini_reference.safetensors"))
    with torch.no_grad():
        a = model(mk.make_input(256, 196))
    d = [mk.rel_diff(p, stored[f"feat{i + 1}_256x196_mmdet"]) for i, p in enumerate(a)]
    worst = max(worst, *d)
    print("   mmdet model vs stored feat*_256x196_mmdet: " + ", ".join(f"{v:.1e}" for v in d))
    ref = mk.make_input(320, 480)
    with torch.no_grad():
        off = det_model(ref)
        mmo = model(ref)
    print("   (for scale: mmdet vs official with official eps, 320x480: "
          + ", ".join(f"{mk.rel_diff(p, q):.1e}" for p, q in zip(mmo, off)) + ")")
    assert worst < 1e-5, worst
    print("OK")


if __name__ == "__main__":
    main()
