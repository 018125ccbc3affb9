"""Reference tables for pvt-det-ops, computed with torch / torchvision float32 ops.

Anchors and the box coder follow mmdet 2.x's code line by line (AnchorGenerator.gen_single_level_base_anchors
with scale_major=True; bbox2delta / delta2bbox), NMS with IoU > thr is torchvision.ops.nms / batched_nms
(CPU, stable sort), the IoU >= thr and CUDA (inter > thr*union) variants are float32 loops over the same sort.
Writes a Rust file of constant tables to stdout:

    python gen_tables.py > tables.rs   # any Python with torch, torchvision and numpy (checked: torch 2.15, torchvision 0.29)
"""
import math, sys
import numpy as np
import torch, torchvision

g = torch.Generator().manual_seed(20240607)
out = []
def f(x):  # shortest repr that round-trips as float32
    x = np.float32(x)
    if np.isnan(x): return "f32::NAN"
    r = repr(float(x)) if False else np.format_float_positional(x, unique=True, trim='0') if abs(x) < 1e6 else np.format_float_scientific(x, unique=True)
    if "." not in r and "e" not in r: r += ".0"
    return r
def box(b): return "[" + ", ".join(f(v) for v in b) + "]"
def emit(name, ty, rows):
    out.append(f"pub const {name}: &[{ty}] = &[\n" + "".join(f"    {r},\n" for r in rows) + "];\n")

# ---- anchors (mmdet gen_single_level_base_anchors, scale_major=True, center_offset=0)
def base_anchors(base, ratios, scales):
    ratios = torch.Tensor(ratios); scales = torch.Tensor(scales)
    h_ratios = torch.sqrt(ratios); w_ratios = 1 / h_ratios
    ws = (base * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (base * h_ratios[:, None] * scales[None, :]).view(-1)
    return torch.stack([0. - 0.5 * ws, 0. - 0.5 * hs, 0. + 0.5 * ws, 0. + 0.5 * hs], dim=-1)
octave = np.array([2 ** (i / 3) for i in range(3)]) * 4
ret = torch.cat([base_anchors(s, [0.5, 1.0, 2.0], octave) for s in [8, 16, 32, 64, 128]])
rpn = torch.cat([base_anchors(s, [0.5, 1.0, 2.0], [8]) for s in [4, 8, 16, 32, 64]])
emit("RETINANET_BASE_ANCHORS", "[f32; 4]", [box(b) for b in ret.tolist()])
emit("RPN_BASE_ANCHORS", "[f32; 4]", [box(b) for b in rpn.tolist()])

# ---- coder
def bbox2delta(p, gt, means, stds):
    px = (p[..., 0] + p[..., 2]) * 0.5; py = (p[..., 1] + p[..., 3]) * 0.5
    pw = p[..., 2] - p[..., 0]; ph = p[..., 3] - p[..., 1]
    gx = (gt[..., 0] + gt[..., 2]) * 0.5; gy = (gt[..., 1] + gt[..., 3]) * 0.5
    gw = gt[..., 2] - gt[..., 0]; gh = gt[..., 3] - gt[..., 1]
    d = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], -1)
    return (d - d.new_tensor(means)) / d.new_tensor(stds)
def delta2bbox(rois, deltas, means, stds, max_shape, wh_ratio_clip=16 / 1000):
    d = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
    dx, dy, dw, dh = d[:, 0], d[:, 1], d[:, 2], d[:, 3]
    x1, y1, x2, y2 = rois.unbind(-1)
    px = (x1 + x2) * 0.5; py = (y1 + y2) * 0.5; pw = x2 - x1; ph = y2 - y1
    dxw = pw * dx; dyh = ph * dy
    mr = np.abs(np.log(wh_ratio_clip))
    dw = dw.clamp(min=-mr, max=mr); dh = dh.clamp(min=-mr, max=mr)
    gw = pw * dw.exp(); gh = ph * dh.exp(); gx = px + dxw; gy = py + dyh
    b = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], -1)
    if max_shape is not None:
        mx = torch.tensor([max_shape[1], max_shape[0]] * 2, dtype=torch.float32)
        b = torch.where(b < 0, torch.tensor(0.), b); b = torch.where(b > mx, mx, b)
    return b
def rand_boxes(n, lo, hi, minsz, maxsz):
    xy = torch.rand(n, 2, generator=g) * (hi - lo) + lo
    wh = torch.rand(n, 2, generator=g) * (maxsz - minsz) + minsz
    return torch.cat([xy, xy + wh], 1)
rois = rand_boxes(24, -20, 80, 0.5, 60)
deltas = (torch.rand(24, 4, generator=g) - 0.5) * 4
deltas[::5, 2:] *= 4  # some beyond the clamp
tgt = rand_boxes(24, -20, 80, 0.5, 60)
rows = []
for name, means, stds in [("STD1", (0., 0., 0., 0.), (1., 1., 1., 1.)), ("RCNN", (0., 0., 0., 0.), (0.1, 0.1, 0.2, 0.2))]:
    dec = delta2bbox(rois, deltas, means, stds, (50, 70))
    dec_free = delta2bbox(rois, deltas, means, stds, None)
    enc = bbox2delta(rois, tgt, means, stds)
    emit(f"CODER_{name}_DECODE", "([f32; 4], [f32; 4], [f32; 4], [f32; 4])",
         [f"({box(r)}, {box(d)}, {box(o)}, {box(o2)})" for r, d, o, o2 in zip(rois.tolist(), deltas.tolist(), dec.tolist(), dec_free.tolist())])
    emit(f"CODER_{name}_ENCODE", "([f32; 4], [f32; 4], [f32; 4])",
         [f"({box(r)}, {box(t)}, {box(e)})" for r, t, e in zip(rois.tolist(), tgt.tolist(), enc.tolist())])

# ---- NMS
def nms_loop(boxes, scores, thr, rule):
    order = scores.sort(descending=True, stable=True)[1].tolist()
    b = boxes.numpy().astype(np.float32); thr = np.float32(thr)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = [True] * len(order); keep = []
    for p, i in enumerate(order):
        if not alive[p]: continue
        keep.append(i)
        for q in range(p + 1, len(order)):
            j = order[q]
            if not alive[q]: continue
            w = max(np.float32(0), min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(np.float32(0), min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = np.float32(w * h); union = np.float32(np.float32(area[i] + area[j]) - inter)
            if rule == ">=": s = np.float32(inter / union) >= thr
            elif rule == ">": s = np.float32(inter / union) > thr
            else: s = inter > np.float32(thr * union)
            if s: alive[q] = False
    return keep
cases = []
# integer boxes on a small grid and quantised scores: many exact-threshold IoUs and ties
xy = torch.randint(0, 12, (70, 2), generator=g).float(); wh = torch.randint(1, 6, (70, 2), generator=g).float()
cases.append(("GRID", torch.cat([xy, xy + wh], 1), (torch.randint(1, 10, (70,), generator=g).float() / 10), 0.5))
cases.append(("GRID_THR_THIRD", cases[0][1], cases[0][2], 1 / 3))
cases.append(("CONTINUOUS", rand_boxes(80, 0, 30, 5, 25), torch.rand(80, generator=g), 0.7))
for name, b, s, thr in cases:
    # torchvision compares the f32 IoU with a double threshold, mmcv with a float one: they differ
    # when the IoU equals float32(thr) > thr (e.g. 1/3); use torchvision as the check where they agree.
    tv = nms_loop(b, s, thr, ">")
    if float(np.float32(thr)) <= thr:
        assert tv == torchvision.ops.nms(b, s, thr).tolist(), name
    else:
        print(name, "torchvision (double thr):", torchvision.ops.nms(b, s, thr).tolist(), "mmcv (float thr):", tv, file=sys.stderr)
    out.append(f"pub const NMS_{name}_THR: f32 = {f(thr)};\n")
    emit(f"NMS_{name}_BOXES", "[f32; 4]", [box(x) for x in b.tolist()])
    emit(f"NMS_{name}_SCORES", "f32", [f(x) for x in s.tolist()])
    for rule, tag in [(">", "ABOVE"), (">=", "AT_LEAST"), ("cuda", "CUDA")]:
        k = tv if rule == ">" else nms_loop(b, s, thr, rule)
        out.append(f"pub const NMS_{name}_KEEP_{tag}: &[usize] = &{k};\n")
# batched: torchvision's coordinate trick (numel <= 4000 on CPU) == mmcv's below split_thr
labels = torch.randint(0, 4, (70,), generator=g)
bk = torchvision.ops.batched_nms(cases[0][1], cases[0][2], labels, 0.5).tolist()
out.append(f"pub const BATCHED_GRID_LABELS: &[usize] = &{labels.tolist()};\n")
out.append(f"pub const BATCHED_GRID_KEEP_ABOVE: &[usize] = &{bk};\n")
# IoU matrix (mmdet bbox_overlaps, eps 1e-6) on the grid boxes' first 6 x 6
def overlaps(a, b, eps=1e-6):
    a1 = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); a2 = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2]); rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0); ov = wh[..., 0] * wh[..., 1]
    u = torch.max(a1[:, None] + a2[None, :] - ov, torch.tensor([eps])); return ov / u
cb = cases[2][1][:8]
emit("IOU_BOXES", "[f32; 4]", [box(x) for x in cb.tolist()])
emit("IOU_MATRIX", "[f32; 8]", ["[" + ", ".join(f(v) for v in r) + "]" for r in overlaps(cb, cb).tolist()])
sys.stdout.write("// @generated by tests/reference/gen_tables.py (torch " + torch.__version__.split("+")[0]
                 + ", torchvision " + torchvision.__version__.split("+")[0] + "); do not edit.\n")
sys.stdout.write("#![allow(dead_code, clippy::type_complexity)]\n\n" + "".join(out))
