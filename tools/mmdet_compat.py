"""Run REAL mmdetection / mmcv code for the RetinaNet fixtures without compiled mmcv ops.

Two code bases are used, both unmodified:

* mmdet 3.3.0 (+ mmengine 0.10.7, mmcv-lite 2.1.0; pip-installed, see tools/requirements-fixtures.txt):
  `FPN`, `RetinaHead` (forward and `predict_by_feat`, i.e. the mmdet >= 2.18 post-processing), `Resize`,
  `DetDataPreprocessor`, `CocoDataset.METAINFO`. mmcv-lite has no compiled ops, so `mmcv.ops` is replaced
  by a stand-in module before mmdet is imported (`install_mmcv_ops_stub`): any name imported from it is a
  placeholder class (only reached by code we never call, e.g. deformable convs), except `nms` /
  `batched_nms`, which are mmcv 2.1.0's own Python functions (mmcv/ops/nms.py of the installed mmcv-lite,
  loaded unmodified) on top of `nms_cpu`, a line-by-line Python port of mmcv's C++ CPU kernel, and
  `RoIAlign`, a stand-in on `torchvision.ops.roi_align` (see `RoIAlign` below; only for the Mask R-CNN
  fixtures).

* mmdet 2.13.0 (what the official PVT detection code runs; the mmdet <= 2.17 post-processing) and
  mmcv 1.3.8's mmcv/ops/nms.py. These are NOT installed; the functions and classes needed are taken
  from the sources with `ast` (decorators such as registry / force_fp32 / mmcv.jit dropped, `@property`
  kept) and executed against stand-ins for their imports. Sources (not committed, tools/_ref is ignored):

      tools/.venv/bin/pip download --no-deps mmdet==2.13.0 -d /tmp/mmdet213
      python3 -m zipfile -e /tmp/mmdet213/mmdet-2.13.0-py3-none-any.whl tools/_ref/mmdet-2.13.0
      git --git-dir=<fetch mirror of github:open-mmlab/mmcv> show v1.3.8:mmcv/ops/nms.py \
          > tools/_ref/mmcv-1.3.8-nms.py

  Used from 2.13 (RetinaNet, class `MMDet213`): `AnchorHead.get_bboxes` / `AnchorHead._get_bboxes` (mmdet/models/dense_heads/anchor_head.py),
  `AnchorGenerator` (mmdet/core/anchor/anchor_generator.py), `DeltaXYWHBBoxCoder` + `delta2bbox`
  (mmdet/core/bbox/coder/delta_xywh_bbox_coder.py), `multiclass_nms` (mmdet/core/post_processing/
  bbox_nms.py), `get_k_for_topk` (mmdet/core/export/onnx_helper.py); from mmcv 1.3.8: `NMSop`, `nms`,
  `batched_nms` (mmcv/ops/nms.py).
  Used from 2.13 (Mask R-CNN test path, `load_two_stage_213`): `TwoStageDetector.extract_feat/simple_test`
  (mmdet/models/detectors/two_stage.py), `RPNTestMixin.simple_test_rpn`, `AnchorHead.get_bboxes`,
  `RPNHead._get_bboxes`, `StandardRoIHead.simple_test/_bbox_forward/_mask_forward`,
  `BBoxTestMixin.simple_test_bboxes`, `MaskTestMixin.simple_test_mask` (mmdet/models/roi_heads/test_mixins.py),
  `BBoxHead.get_bboxes`, `FCNMaskHead.get_seg_masks` + `_do_paste_mask`, `bbox2result`, plus the pieces above.

mmcv's CPU NMS kernel (mmcv/ops/csrc/pytorch/cpu/nms.cpp; in 1.3.8 mmcv/ops/csrc/pytorch/nms.cpp):
suppress box j after kept box i when `ovr >= iou_threshold` in mmcv <= 1.3.x (checked: tag v1.3.8) and
`ovr > iou_threshold` from mmcv 1.4.0 on (checked: v1.4.0 ... v2.1.0); the CUDA kernel uses
`inter > thr * (area_a + area_b - inter)` in all versions.
"""

import ast
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "_ref")
MMDET213 = os.path.join(REF, "mmdet-2.13.0", "mmdet")
MMCV138_NMS = os.path.join(REF, "mmcv-1.3.8-nms.py")


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# mmcv CPU NMS kernel, ported from C++


def make_nms_cpu(rule):
    """Python port of mmcv's `nms_cpu(boxes, scores, iou_threshold, offset)`.

    rule '>=' (mmcv <= 1.3.x) or '>' (mmcv >= 1.4). All arithmetic in float32 in the kernel's order:
    areas = (x2 - x1 + offset) * (y2 - y1 + offset); order = scores.sort(descending) (the same ATen op the
    kernel calls); for each still-selected box i in that order and each later still-selected j:
    w = max(0, min(x2i, x2j) - max(x1i, x1j) + offset), h likewise, inter = w * h,
    ovr = inter / (area_i + area_j - inter); suppress j if ovr >= thr (or > thr). Returns order[selected].
    """
    assert rule in (">=", ">")

    def nms_cpu(boxes, scores, iou_threshold, offset):
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.long)
        assert boxes.dtype == torch.float32 and scores.dtype == torch.float32
        x1_t, y1_t, x2_t, y2_t = (boxes.select(1, k).contiguous() for k in range(4))
        areas_t = (x2_t - x1_t + offset) * (y2_t - y1_t + offset)
        order_t = scores.sort(0, descending=True)[1]
        order = order_t.numpy()
        x1, y1, x2, y2, areas = (t.numpy()[order] for t in (x1_t, y1_t, x2_t, y2_t, areas_t))
        n = len(order)
        select = np.ones(n, dtype=bool)
        thr = np.float32(iou_threshold)  # the kernel's `float iou_threshold`
        off = np.float32(offset)
        zero = np.float32(0)
        for i in range(n):
            if not select[i]:
                continue
            sl = slice(i + 1, n)
            xx1 = np.maximum(x1[i], x1[sl])
            yy1 = np.maximum(y1[i], y1[sl])
            xx2 = np.minimum(x2[i], x2[sl])
            yy2 = np.minimum(y2[i], y2[sl])
            w = np.maximum(zero, xx2 - xx1 + off)
            h = np.maximum(zero, yy2 - yy1 + off)
            inter = w * h
            ovr = inter / (areas[i] + areas[sl] - inter)
            sup = (ovr >= thr) if rule == ">=" else (ovr > thr)
            select[sl] &= ~sup
        return order_t[torch.from_numpy(select)]

    return nms_cpu


class _ExtModule:
    def __init__(self, rule):
        self.nms = make_nms_cpu(rule)
        self.rule = rule


# ---------------------------------------------------------------------------------------------
# loading selected definitions from a source file


def _keep_decorator(d):
    return isinstance(d, ast.Name) and d.id in ("property", "staticmethod", "classmethod")


def load_defs(path, names, env, methods_of=None):
    """Execute the top-level defs `names` (functions/classes) of `path` in a namespace built from `env`.

    Decorators are dropped except @property/@staticmethod/@classmethod. If `methods_of` = (class, [m...]),
    those methods of that class are returned as plain functions (decorators dropped likewise)."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            node.decorator_list = [d for d in node.decorator_list if _keep_decorator(d)]
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef):
                        sub.decorator_list = [d for d in sub.decorator_list if _keep_decorator(d)]
            body.append(node)
        if methods_of and isinstance(node, ast.ClassDef) and node.name == methods_of[0]:
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and sub.name in methods_of[1]:
                    sub.decorator_list = [d for d in sub.decorator_list if _keep_decorator(d)]
                    body.append(sub)
    found = {n.name for n in body}
    want = set(names) | set(methods_of[1] if methods_of else [])
    assert found == want, (path, want - found)
    ns = dict(env)
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    return types.SimpleNamespace(**{k: ns[k] for k in want})


def _identity_decorator_factory(*a, **k):
    def deco(fn):
        return fn
    return deco


def load_mmcv_nms(path, rule):
    """`nms`, `batched_nms` (and `NMSop`) of an mmcv/ops/nms.py, on the Python CPU kernel with `rule`."""
    env = dict(torch=torch, np=np, os=os, ext_module=_ExtModule(rule),
               deprecated_api_warning=_identity_decorator_factory)
    # type names used in annotations of the 2.x file
    from typing import Any, Dict, List, Optional, Tuple, Union  # noqa: F401
    env.update(Any=Any, Dict=Dict, List=List, Optional=Optional, Tuple=Tuple, Union=Union,
               Tensor=torch.Tensor, array_like_type=object)
    ns = load_defs(path, ["NMSop", "nms", "batched_nms"], env)
    ns.nms.__globals__["nms"] = ns.nms  # batched_nms does eval('nms')
    return ns


# ---------------------------------------------------------------------------------------------
# mmdet 3.3 with a stand-in mmcv.ops


class _Placeholder:
    def __init__(self, *a, **k):
        raise RuntimeError(f"{type(self).__name__}: mmcv.ops stand-in (no compiled ops in mmcv-lite)")


class _OpsModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        c = type(name, (_Placeholder,), {})
        setattr(self, name, c)
        return c


class _OpsFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("mmcv.ops."):
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        m = _OpsModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


class RoIAlign(torch.nn.Module):
    """Stand-in for mmcv.ops.RoIAlign (avg pool_mode, aligned=True only) on `torchvision.ops.roi_align`.

    mmcv 1.3.8's CPU kernel (mmcv/ops/csrc/pytorch/roi_align_cpu.cpp, "modified from detectron2") and
    torchvision's CPU kernel are the same Caffe2 algorithm: roi_start = x1 * spatial_scale - 0.5 (aligned),
    roi size without the min-1 clamp, bin = size / out, sampling grid ceil(size / out) per axis when
    sampling_ratio <= 0, sample points start + p * bin + (i + 0.5) * bin / grid, bilinear with the
    (-1, H) / (-1, W) validity test, clamping at 0 and H-1 / W-1, and the average over max(grid_h*grid_w, 1)."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0, pool_mode="avg", aligned=True,
                 use_torchvision=False):
        super().__init__()
        from torch.nn.modules.utils import _pair
        assert pool_mode == "avg" and aligned, "stand-in covers pool_mode='avg', aligned=True only"
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned

    def forward(self, input, rois):
        from torchvision.ops import roi_align
        assert rois.dim() == 2 and rois.size(1) == 5, "RoI must be (idx, x1, y1, x2, y2)!"
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, True)


_MMCV2_NMS = None


def install_mmcv_ops_stub(rule=">"):
    """Must run before mmdet.models is imported. Returns the mmcv 2.x nms namespace used."""
    global _MMCV2_NMS
    if _MMCV2_NMS is not None:
        return _MMCV2_NMS
    import mmcv
    assert "mmdet.models" not in sys.modules, "install the stub before importing mmdet.models"
    path = os.path.join(os.path.dirname(mmcv.__file__), "ops", "nms.py")
    ns = load_mmcv_nms(path, rule)
    ops = _OpsModule("mmcv.ops")
    ops.__path__ = []
    ops.nms = ns.nms
    ops.batched_nms = ns.batched_nms
    ops.RoIAlign = RoIAlign
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    sys.meta_path.insert(0, _OpsFinder())
    ns.source = path
    _MMCV2_NMS = ns
    return ns


# ---------------------------------------------------------------------------------------------
# mmdet 2.13 pieces


def check_213_sources():
    for p in (MMDET213, MMCV138_NMS):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} missing; see the docstring of tools/mmdet_compat.py")


@contextlib.contextmanager
def _fake_modules(mods):
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class MMDet213:
    """The mmdet 2.13.0 RetinaNet test-time post-processing (AnchorHead.get_bboxes), on mmcv 1.3.8 NMS."""

    def __init__(self, num_classes, anchor_cfg, coder_cfg, test_cfg, nms_rule=">="):
        check_213_sources()
        from torch.nn.modules.utils import _pair
        self.nms_ns = load_mmcv_nms(MMCV138_NMS, nms_rule)
        d = MMDET213
        self.onnx = load_defs(os.path.join(d, "core", "export", "onnx_helper.py"), ["get_k_for_topk"],
                              dict(torch=torch, os=os))
        bbox_nms = load_defs(os.path.join(d, "core", "post_processing", "bbox_nms.py"), ["multiclass_nms"],
                             dict(torch=torch, batched_nms=self.nms_ns.batched_nms, bbox_overlaps=None))
        self.multiclass_nms = bbox_nms.multiclass_nms

        class BaseBBoxCoder:
            pass

        coder = load_defs(os.path.join(d, "core", "bbox", "coder", "delta_xywh_bbox_coder.py"),
                          ["DeltaXYWHBBoxCoder", "delta2bbox", "bbox2delta"],
                          dict(torch=torch, np=np, mmcv=None, BaseBBoxCoder=BaseBBoxCoder))
        anchor = load_defs(os.path.join(d, "core", "anchor", "anchor_generator.py"), ["AnchorGenerator"],
                           dict(torch=torch, np=np, mmcv=None, _pair=_pair))
        head = load_defs(os.path.join(d, "models", "dense_heads", "anchor_head.py"), [],
                         dict(torch=torch, multiclass_nms=self.multiclass_nms),
                         methods_of=("AnchorHead", ["get_bboxes", "_get_bboxes"]))
        acfg = dict(anchor_cfg)
        acfg.pop("type")
        ccfg = dict(coder_cfg)
        ccfg.pop("type")
        self.anchor_generator = anchor.AnchorGenerator(**acfg)
        self.bbox_coder = coder.DeltaXYWHBBoxCoder(**ccfg)
        self.delta2bbox = coder.delta2bbox
        self.test_cfg = test_cfg
        self.use_sigmoid_cls = True
        self.cls_out_channels = num_classes
        self.num_classes = num_classes
        self._get_bboxes_fn = head._get_bboxes
        self._get_bboxes_outer = head.get_bboxes
        self.sources = {
            "mmdet/models/dense_heads/anchor_head.py": "AnchorHead.get_bboxes, AnchorHead._get_bboxes",
            "mmdet/core/anchor/anchor_generator.py": "AnchorGenerator",
            "mmdet/core/bbox/coder/delta_xywh_bbox_coder.py": "DeltaXYWHBBoxCoder, delta2bbox",
            "mmdet/core/post_processing/bbox_nms.py": "multiclass_nms",
            "mmdet/core/export/onnx_helper.py": "get_k_for_topk",
        }
        self.source_sha256 = {k: sha256_file(os.path.join(MMDET213, k.split("/", 1)[1])) for k in self.sources}
        self.source_sha256["mmcv 1.3.8 mmcv/ops/nms.py"] = sha256_file(MMCV138_NMS)

    # bound like the original methods
    def _get_bboxes(self, *a, **k):
        return self._get_bboxes_fn(self, *a, **k)

    def get_bboxes(self, cls_scores, bbox_preds, img_metas, cfg=None, rescale=False, with_nms=True):
        export = types.ModuleType("mmdet.core.export")
        export.get_k_for_topk = self.onnx.get_k_for_topk
        core = types.ModuleType("mmdet.core")
        core.export = export
        core.__path__ = []
        with _fake_modules({"mmdet.core": core, "mmdet.core.export": export}):
            return self._get_bboxes_outer(self, cls_scores, bbox_preds, img_metas, cfg=cfg, rescale=rescale,
                                          with_nms=with_nms)


# ---------------------------------------------------------------------------------------------
# mmdet 2.13 two-stage (Mask R-CNN) test path


def load_two_stage_213(nms_rule=">="):
    """The mmdet 2.13.0 Mask R-CNN test-time code path, as plain classes to be given forward modules.

    Returns a namespace with the classes `Detector`, `RPNHead`, `RoIHead`, `BBoxHead`, `MaskHead` (methods
    taken unmodified from the 2.13 sources; attributes such as `backbone`, `neck`, `module`, `anchor_generator`,
    `bbox_coder`, `test_cfg` are set by the caller, see `build_two_stage_213`), the 2.13 pieces used
    (`AnchorGenerator`, `DeltaXYWHBBoxCoder`, `multiclass_nms`, `bbox2result`, `_do_paste_mask`), mmcv 1.3.8's
    `batched_nms` namespace on the CPU rule `nms_rule`, and the SHA-256 of every source file used."""
    check_213_sources()
    import copy
    import warnings

    import torch.nn.functional as F
    from torch.nn.modules.utils import _pair
    d = MMDET213
    nms_ns = load_mmcv_nms(MMCV138_NMS, nms_rule)
    files = {}

    def src(*parts):
        path = os.path.join(d, *parts)
        files["mmdet/" + "/".join(parts)] = sha256_file(path)
        return path

    bbox_nms = load_defs(src("core", "post_processing", "bbox_nms.py"), ["multiclass_nms"],
                         dict(torch=torch, batched_nms=nms_ns.batched_nms, bbox_overlaps=None))
    transforms = load_defs(src("core", "bbox", "transforms.py"), ["bbox2result"], dict(torch=torch, np=np))

    class BaseBBoxCoder:
        pass

    coder = load_defs(src("core", "bbox", "coder", "delta_xywh_bbox_coder.py"),
                      ["DeltaXYWHBBoxCoder", "delta2bbox", "bbox2delta"],
                      dict(torch=torch, np=np, mmcv=None, BaseBBoxCoder=BaseBBoxCoder))
    anchor = load_defs(src("core", "anchor", "anchor_generator.py"), ["AnchorGenerator"],
                       dict(torch=torch, np=np, mmcv=None, _pair=_pair))
    det = load_defs(src("models", "detectors", "two_stage.py"), [], dict(torch=torch),
                    methods_of=("TwoStageDetector", ["extract_feat", "simple_test"]))
    rpn_mixin = load_defs(src("models", "dense_heads", "rpn_test_mixin.py"), [], dict(torch=torch),
                          methods_of=("RPNTestMixin", ["simple_test_rpn"]))
    anchor_head = load_defs(src("models", "dense_heads", "anchor_head.py"), [], dict(torch=torch),
                            methods_of=("AnchorHead", ["get_bboxes"]))
    rpn_head = load_defs(src("models", "dense_heads", "rpn_head.py"), [],
                         dict(torch=torch, copy=copy, batched_nms=nms_ns.batched_nms),
                         methods_of=("RPNHead", ["_get_bboxes"]))
    roi_head = load_defs(src("models", "roi_heads", "standard_roi_head.py"), [],
                         dict(torch=torch, bbox2result=transforms.bbox2result),
                         methods_of=("StandardRoIHead", ["simple_test", "_bbox_forward", "_mask_forward"]))
    mixins = load_defs(src("models", "roi_heads", "test_mixins.py"), [], dict(torch=torch),
                       methods_of=("BBoxTestMixin", ["simple_test_bboxes"]))
    mask_mixin = load_defs(src("models", "roi_heads", "test_mixins.py"), [], dict(torch=torch),
                           methods_of=("MaskTestMixin", ["simple_test_mask"]))
    bbox_head = load_defs(src("models", "roi_heads", "bbox_heads", "bbox_head.py"), [],
                          dict(torch=torch, np=np, F=F, multiclass_nms=bbox_nms.multiclass_nms),
                          methods_of=("BBoxHead", ["get_bboxes", "custom_cls_channels"]))
    mask_head = load_defs(src("models", "roi_heads", "mask_heads", "fcn_mask_head.py"), ["_do_paste_mask"],
                          dict(torch=torch, np=np, F=F, warn=warnings.warn, BYTES_PER_FLOAT=4,
                               GPU_MEM_LIMIT=1024**3),
                          methods_of=("FCNMaskHead", ["get_seg_masks"]))
    # the constants the 2.13 file defines at module level (checked, not assumed)
    with open(os.path.join(d, "models", "roi_heads", "mask_heads", "fcn_mask_head.py")) as f:
        text = f.read()
    assert "BYTES_PER_FLOAT = 4" in text and "GPU_MEM_LIMIT = 1024**3" in text

    class _Called:
        def __call__(self, *a, **k):
            return self.module(*a, **k)

    Detector = type("TwoStageDetector213", (), dict(
        extract_feat=det.extract_feat, simple_test=det.simple_test, with_bbox=True, with_neck=True))
    RPNHead = type("RPNHead213", (_Called,), dict(
        simple_test_rpn=rpn_mixin.simple_test_rpn, get_bboxes=anchor_head.get_bboxes,
        _get_bboxes=rpn_head._get_bboxes, use_sigmoid_cls=True, cls_out_channels=1))
    RoIHead = type("StandardRoIHead213", (), dict(
        simple_test=roi_head.simple_test, _bbox_forward=roi_head._bbox_forward,
        _mask_forward=roi_head._mask_forward, simple_test_bboxes=mixins.simple_test_bboxes,
        simple_test_mask=mask_mixin.simple_test_mask, with_bbox=True, with_mask=True, with_shared_head=False))
    BBoxHead = type("BBoxHead213", (_Called,), dict(
        get_bboxes=bbox_head.get_bboxes, custom_cls_channels=bbox_head.custom_cls_channels, loss_cls=None))
    MaskHead = type("FCNMaskHead213", (_Called,), dict(get_seg_masks=mask_head.get_seg_masks,
                                                       class_agnostic=False))
    files["mmcv 1.3.8 mmcv/ops/nms.py"] = sha256_file(MMCV138_NMS)
    return types.SimpleNamespace(
        Detector=Detector, RPNHead=RPNHead, RoIHead=RoIHead, BBoxHead=BBoxHead, MaskHead=MaskHead,
        AnchorGenerator=anchor.AnchorGenerator, DeltaXYWHBBoxCoder=coder.DeltaXYWHBBoxCoder,
        multiclass_nms=bbox_nms.multiclass_nms, bbox2result=transforms.bbox2result,
        _do_paste_mask=mask_head._do_paste_mask, nms_ns=nms_ns, source_sha256=files)


def _cfg_args(cfg):
    c = dict(cfg)
    c.pop("type")
    return c


def build_two_stage_213(ns, backbone, neck, rpn_module, bbox_roi_extractor, bbox_module, mask_roi_extractor,
                        mask_module, rpn_anchor_cfg, rpn_coder_cfg, rpn_test_cfg, rcnn_coder_cfg, rcnn_test_cfg,
                        num_classes, classes=None):
    """Assemble `load_two_stage_213` classes around forward modules (any callables with the mmdet forward
    signatures). `classes` may override the namespace classes (e.g. subclasses that record outputs)."""
    from mmengine.config import ConfigDict
    c = dict(Detector=ns.Detector, RPNHead=ns.RPNHead, RoIHead=ns.RoIHead, BBoxHead=ns.BBoxHead,
             MaskHead=ns.MaskHead)
    c.update(classes or {})
    rpn = c["RPNHead"]()
    rpn.module = rpn_module
    rpn.anchor_generator = ns.AnchorGenerator(**_cfg_args(rpn_anchor_cfg))
    rpn.bbox_coder = ns.DeltaXYWHBBoxCoder(**_cfg_args(rpn_coder_cfg))
    rpn.test_cfg = ConfigDict(rpn_test_cfg)
    bbox = c["BBoxHead"]()
    bbox.module = bbox_module
    bbox.bbox_coder = ns.DeltaXYWHBBoxCoder(**_cfg_args(rcnn_coder_cfg))
    bbox.num_classes = num_classes
    mask = c["MaskHead"]()
    mask.module = mask_module
    mask.num_classes = num_classes
    roi = c["RoIHead"]()
    roi.bbox_roi_extractor = bbox_roi_extractor
    roi.mask_roi_extractor = mask_roi_extractor
    roi.bbox_head = bbox
    roi.mask_head = mask
    roi.test_cfg = ConfigDict(rcnn_test_cfg)
    model = c["Detector"]()
    model.backbone = backbone
    model.neck = neck
    model.rpn_head = rpn
    model.roi_head = roi
    return model
