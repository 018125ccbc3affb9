"""Import the OFFICIAL whai362/PVT v1 model code, unmodified, under today's timm.

The official files are NOT part of this repository. Put them in tools/_ref/ (gitignored) with
the `fetch` tool's git mirror of github:whai362/PVT:

    C=57e2dfaa5a46f9050d76f306a4fcd9a7c061f520   # branch v2 (default branch)
    git --git-dir=<mirror> show $C:classification/pvt.py > tools/_ref/cls_pvt.py
    git --git-dir=<mirror> show $C:detection/pvt.py      > tools/_ref/det_pvt.py

The files import names that moved in timm >= 0.9 and (detection) mmdet 2.x / mmcv 1.x modules.
Instead of editing them we put stand-in modules into `sys.modules` while they are imported:

* `timm.models.layers`   -> alias of `timm.layers` (DropPath, to_2tuple, trunc_normal_)
* `timm.models.registry` -> a module whose `register_model` is the identity decorator (so the
  official `pvt_tiny` ... functions are not pushed into timm's global registry)
* `mmdet`, `mmdet.models`, `mmdet.models.builder` (BACKBONES.register_module() -> identity
  decorator), `mmdet.utils` (get_root_logger -> logging.getLogger), `mmcv`, `mmcv.runner`
  (load_checkpoint -> raises; it is only reached when `pretrained` is a string, which we never pass)

The stand-ins are removed from `sys.modules` again afterwards, so a real mmdet (if installed)
is untouched.
"""

import importlib.util
import logging
import os
import sys
import types

REF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ref")
PVT_COMMIT = "57e2dfaa5a46f9050d76f306a4fcd9a7c061f520"  # whai362/PVT branch v2 head used


class _Registry:
    def register_module(self, *args, **kwargs):
        def deco(cls):
            return cls

        # Support both @register_module() and @register_module
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return deco


def _load_checkpoint(*args, **kwargs):
    raise RuntimeError("mmcv.runner.load_checkpoint shim: not available in fixture generation")


def _stub_modules():
    import timm.layers

    reg = types.ModuleType("timm.models.registry")
    reg.register_model = lambda fn: fn

    mmdet = types.ModuleType("mmdet")
    mmdet_models = types.ModuleType("mmdet.models")
    mmdet_builder = types.ModuleType("mmdet.models.builder")
    mmdet_builder.BACKBONES = _Registry()
    mmdet_utils = types.ModuleType("mmdet.utils")
    mmdet_utils.get_root_logger = lambda *a, **k: logging.getLogger("pvt_official")
    mmcv = types.ModuleType("mmcv")
    mmcv_runner = types.ModuleType("mmcv.runner")
    mmcv_runner.load_checkpoint = _load_checkpoint
    mmdet.models = mmdet_models
    mmdet_models.builder = mmdet_builder
    mmdet.utils = mmdet_utils
    mmcv.runner = mmcv_runner
    return {
        "timm.models.layers": timm.layers,
        "timm.models.registry": reg,
        "mmdet": mmdet,
        "mmdet.models": mmdet_models,
        "mmdet.models.builder": mmdet_builder,
        "mmdet.utils": mmdet_utils,
        "mmcv": mmcv,
        "mmcv.runner": mmcv_runner,
    }


def _import_file(modname, path):
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} missing: extract it from the whai362/PVT mirror (see tools/pvt_official.py docstring)"
        )
    import timm.models  # noqa: F401  (make sure the real package is initialised first)

    stubs = _stub_modules()
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


_cache = {}


def classification_module():
    if "cls" not in _cache:
        _cache["cls"] = _import_file("pvt_official_cls", os.path.join(REF_DIR, "cls_pvt.py"))
    return _cache["cls"]


def detection_module():
    if "det" not in _cache:
        _cache["det"] = _import_file("pvt_official_det", os.path.join(REF_DIR, "det_pvt.py"))
    return _cache["det"]
