"""Reference tables for pvt-det-ops' RoIAlign, FPN RoI extractor and mask paste (torch float32, CPU).

- RoIAlign: torchvision.ops.roi_align (C++ CPU kernel), whose avg-mode forward is mmcv's RoIAlign
  expression for expression (see src/roi_align.rs for the comparison of the two sources).
- SingleRoIExtractor: mmdet 2.13 map_roi_levels (finest_scale 56, +1e-6) in float32, then RoIAlign on
  the chosen level with spatial_scale = 1 / stride, sampling_ratio 0, aligned True.
- Mask paste: mmdet 2.x FCNMaskHead._do_paste_mask transcribed below (skip_empty=True, the CPU path:
  one box per chunk) + torch.nn.functional.grid_sample(bilinear, zeros, align_corners=False), then
  >= 0.5 (mask_thr_binary). The GPU path (skip_empty=False, the whole image) is run too and must give
  the same thresholded masks.

PyTorch's CPU kernels are forced to ATen's `default` capability (no AVX2 / AVX-512 build), whose
grid_sample evaluates each float operation separately; the AVX2 / AVX-512 builds fuse some of them into
FMAs and move probabilities by up to ~7e-7 (measured with torch 2.15: 500 of 6669 probabilities differ,
no thresholded pixel). torchvision's roi_align is its own C++ kernel and is unaffected.

Writes a Rust file of constant tables to stdout:

    python gen_roi_tables.py > roi_tables.rs   # checked: torch 2.15, torchvision 0.29 (tools/.venv)
"""
import os
os.environ["ATEN_CPU_CAPABILITY"] = "default"  # before importing torch; see above
import sys
import numpy as np
import torch, torchvision
import torch.nn.functional as F

torch.set_num_threads(1)
g = torch.Generator().manual_seed(20240611)
out = []


def f(x):  # shortest text that round-trips as float32
    x = np.float32(x)
    if np.isnan(x): return "f32::NAN"
    if np.isinf(x): return "f32::INFINITY" if x > 0 else "f32::NEG_INFINITY"
    if x == 0: return "-0.0" if np.signbit(x) else "0.0"
    if 1e-4 <= abs(x) < 1e6:
        r = np.format_float_positional(x, unique=True, trim='0')
    else:
        r = np.format_float_scientific(x, unique=True, trim='0')
    if "." not in r and "e" not in r: r += ".0"
    return r


def arr(v): return "&[" + ", ".join(f(x) for x in np.asarray(v, dtype=np.float32).reshape(-1)) + "]"
def box(b): return "[" + ", ".join(f(x) for x in b) + "]"
def emit(s): out.append(s)


# ---------------------------------------------------------------- RoIAlign on one map
C, H, W = 2, 9, 11
feat = torch.randn(C, H, W, generator=g)
emit(f"pub const ROI_FEAT_SHAPE: (usize, usize, usize) = ({C}, {H}, {W});\n")
emit(f"pub const ROI_FEAT: &[f32] = {arr(feat)};\n")


def rois_for(scale, n_random):
    """RoIs in input pixels for a map of H x W at `scale`: designed edge cases + random ones."""
    s = 1.0 / scale
    fixed = [
        [0, 0, W * s, H * s],                      # the whole map
        [-1 * s, -1 * s, (W + 1) * s, (H + 1) * s],  # one cell beyond on every side
        [-3.3 * s, 2.2 * s, 2.7 * s, 6.1 * s],      # partly left of the map
        [7.4 * s, -2.9 * s, 13.8 * s, 4.4 * s],     # partly right of / above the map
        [12.5 * s, 10.5 * s, 16 * s, 14 * s],       # fully outside (below right)
        [4.31 * s, 3.77 * s, 4.36 * s, 3.79 * s],   # tiny
        [-9 * s, -7.5 * s, 25 * s, 21 * s],         # huge: three times the map
        [5 * s, 5 * s, 5 * s, 5 * s],               # empty
        [6 * s, 6 * s, 3 * s, 2 * s],               # inverted
        [0.5 * s, 8.6 * s, 10.7 * s, 9.2 * s],      # thin, at the bottom edge
    ]
    xy = torch.rand(n_random, 2, generator=g) * torch.tensor([W + 2, H + 2]) - 1
    wh = torch.rand(n_random, 2, generator=g) * torch.tensor([W, H]) * 0.8 + 0.05
    rnd = (torch.cat([xy, xy + wh], 1) * s).tolist()
    return torch.tensor(fixed + rnd, dtype=torch.float32)


def tv_roi_align(fm, rois, out_size, scale, sr, aligned):
    r = torch.cat([torch.zeros(len(rois), 1), rois], 1)
    return torchvision.ops.roi_align(fm[None], r, out_size, spatial_scale=scale,
                                     sampling_ratio=sr, aligned=aligned)


cases = []
for scale, out_size, aligned, sr, n_random in [
    (0.25, 7, True, 0, 6),     # Mask R-CNN box head on P2
    (0.125, 14, True, 0, 0),   # mask head size on P3 (designed RoIs only)
    (0.5, 3, True, 2, 6),      # fixed sampling ratio
    (0.5, 3, False, 0, 6),     # legacy aligned=False (min-1 clamp, no -0.5)
    (1.0, 4, True, 0, 4),
]:
    rois = rois_for(scale, n_random)
    if out_size == 14:
        rois = rois[[0, 2, 6, 9]]
    res = tv_roi_align(feat, rois, out_size, scale, sr, aligned)
    cases.append(f"    ({f(scale)}, {out_size}, {'true' if aligned else 'false'}, {sr}, &[{', '.join(box(b) for b in rois.tolist())}], {arr(res)}),\n")
emit("/// (spatial_scale, out, aligned, sampling_ratio, rois, expected [N, C, out, out])\n")
emit("pub const ROI_CASES: &[(f32, usize, bool, usize, &[[f32; 4]], &[f32])] = &[\n" + "".join(cases) + "];\n")

# ---------------------------------------------------------------- SingleRoIExtractor over P2-P5
IH, IW = 60, 76
strides = [4, 8, 16, 32]
shapes = [(C, -(-IH // s), -(-IW // s)) for s in strides]
feats = [torch.randn(*sh, generator=g) for sh in shapes]
xy = torch.rand(12, 2, generator=g) * torch.tensor([IW, IH]) - 10
side = torch.tensor([3., 20., 60., 111.9, 112.5, 150., 230., 300., 447., 460., 700., 1200.])
asp = torch.rand(12, generator=g) + 0.5
ml_rois = torch.stack([xy[:, 0], xy[:, 1], xy[:, 0] + side * asp, xy[:, 1] + side / asp], 1)


def map_roi_levels(rois, num_levels, finest_scale=56):  # mmdet 2.13 SingleRoIExtractor
    scale = torch.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    lv = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return lv.clamp(min=0, max=num_levels - 1).long()


lvls = map_roi_levels(ml_rois, 4)
ml_out = torch.zeros(len(ml_rois), C, 7, 7)
for i, s in enumerate(strides):
    inds = (lvls == i).nonzero(as_tuple=False).squeeze(1)
    if inds.numel() > 0:
        ml_out[inds] = tv_roi_align(feats[i], ml_rois[inds], 7, 1.0 / s, 0, True)
emit(f"pub const ML_STRIDES: [usize; 4] = {strides};\n")
emit("pub const ML_SHAPES: [(usize, usize, usize); 4] = [" + ", ".join(f"({a}, {b}, {c})" for a, b, c in shapes) + "];\n")
emit("pub const ML_FEATS: [&[f32]; 4] = [" + ", ".join(arr(x) for x in feats) + "];\n")
emit(f"pub const ML_ROIS: &[[f32; 4]] = &[{', '.join(box(b) for b in ml_rois.tolist())}];\n")
emit(f"pub const ML_LEVELS: &[usize] = &{lvls.tolist()};\n")
emit(f"pub const ML_OUT: &[f32] = {arr(ml_out)};\n")

# ---------------------------------------------------------------- mask paste
def do_paste_mask(masks, boxes, img_h, img_w, skip_empty=True):
    """mmdet 2.x fcn_mask_head._do_paste_mask."""
    if skip_empty:
        x0_int, y0_int = torch.clamp(boxes.min(dim=0).values.floor()[:2] - 1, min=0).to(dtype=torch.int32)
        x1_int = torch.clamp(boxes[:, 2].max().ceil() + 1, max=img_w).to(dtype=torch.int32)
        y1_int = torch.clamp(boxes[:, 3].max().ceil() + 1, max=img_h).to(dtype=torch.int32)
    else:
        x0_int, y0_int = 0, 0
        x1_int, y1_int = img_w, img_h
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)
    N = masks.shape[0]
    img_y = torch.arange(y0_int, y1_int, dtype=torch.float32) + 0.5
    img_x = torch.arange(x0_int, x1_int, dtype=torch.float32) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    if torch.isinf(img_x).any():
        img_x[torch.where(torch.isinf(img_x))] = 0
    if torch.isinf(img_y).any():
        img_y[torch.where(torch.isinf(img_y))] = 0
    gx = img_x[:, None, :].expand(N, img_y.size(1), img_x.size(1))
    gy = img_y[:, :, None].expand(N, img_y.size(1), img_x.size(1))
    grid = torch.stack([gx, gy], dim=3)
    img_masks = F.grid_sample(masks.to(dtype=torch.float32), grid, align_corners=False)
    if skip_empty:
        return img_masks[:, 0], (slice(y0_int, y1_int), slice(x0_int, x1_int))
    return img_masks[:, 0], ()


def paste(mask, bx, img_h, img_w, skip_empty):
    """get_seg_masks for one mask: probabilities over the whole image (0 outside the CPU region)."""
    im = torch.zeros(img_h, img_w)
    b = torch.tensor(bx)
    if skip_empty and (max(b[0].floor() - 1, 0) > min(b[2].ceil() + 1, img_w)
                       or max(b[1].floor() - 1, 0) > min(b[3].ceil() + 1, img_h)):
        # torch.arange raises on the inverted range (a box more than about a pixel outside the
        # image, or inverted), which clipped detections never produce; pvt-det-ops pastes nothing.
        return im
    m, sl = do_paste_mask(mask[None, None], torch.tensor([bx], dtype=torch.float32), img_h, img_w, skip_empty)
    im[sl] = m[0]
    return im


masks = [
    torch.sigmoid(torch.randn(28, 28, generator=g) * 4),
    torch.sigmoid(torch.randn(28, 28, generator=g) * 2),
    torch.sigmoid(torch.randn(7, 7, generator=g) * 3),
    torch.sigmoid(torch.randn(5, 5, generator=g) * 3),
    # exact values around the threshold: 0.5 itself, its float neighbours, 0 and 1
    torch.tensor(np.array([0.5, np.nextafter(np.float32(0.5), np.float32(0)), np.nextafter(np.float32(0.5), np.float32(1)), 0.0, 1.0] * 10, dtype=np.float32)[:49].reshape(7, 7)),
    torch.sigmoid(torch.randn(28, 28, generator=g) * 4),
]
emit("/// (mh, mw, probabilities row-major)\n")
emit("pub const PASTE_MASKS: &[(usize, usize, &[f32])] = &[\n" + "".join(f"    ({m.shape[0]}, {m.shape[1]}, {arr(m)}),\n" for m in masks) + "];\n")
SH, SW = 19, 27
paste_cases = [
    (0, [3.3, 2.7, 20.1, 15.2], (SH, SW)),     # inside, fractional
    (1, [-6.2, -3.1, 10.4, 9.9], (SH, SW)),    # partly outside left / top
    (2, [15.5, 10.2, 35.7, 26.3], (SH, SW)),   # partly outside right / bottom
    (3, [30.0, 2.0, 40.0, 10.0], (SH, SW)),    # fully outside on the right: empty region
    (2, [-20.0, 3.0, -4.0, 12.0], (SH, SW)),   # fully outside on the left: empty region
    (0, [8.2, 8.4, 8.5, 8.6], (SH, SW)),       # tiny
    (1, [-40.0, -30.0, 70.0, 55.0], (SH, SW)), # huge
    (2, [10.0, 3.0, 10.0, 12.0], (SH, SW)),    # zero width: inf -> 0
    (3, [10.5, 3.0, 10.5, 12.0], (SH, SW)),    # zero width at a pixel centre: 0/0 = NaN there
    (2, [18.0, 14.0, 4.0, 3.0], (SH, SW)),     # inverted
    (4, [2.0, 2.0, 9.0, 9.0], (SH, SW)),       # integer box, 7 px for 7 cells: exact cell values
    (4, [2.0, 3.0, 16.0, 17.0], (SH, SW)),     # 2 px per cell: cell values and midpoints
    (3, [0.25, 0.75, 26.5, 18.25], (SH, SW)),  # nearly the whole image
    (5, [23.7, 40.2, 131.9, 101.4], (120, 160)),  # a realistic size (bits only)
    (0, [-0.4, 60.3, 159.6, 119.8], (120, 160)),  # touching three borders (bits only)
]
rows = []
n_amb = 0
max_outside = 0.0
for mi, bx, (ih, iw) in paste_cases:
    mask = masks[mi]
    p = paste(mask, bx, ih, iw, True)
    full = paste(mask, bx, ih, iw, False)
    if bx[2] > bx[0] and bx[3] > bx[1]:
        assert torch.equal(p >= 0.5, full >= 0.5), ("GPU path differs after thresholding", bx)
        region_only = (p == 0) & (full != 0)
        if region_only.any():
            max_outside = max(max_outside, float(full[region_only].max()))
    else:
        # zero width: every column's (x + 0.5 - x0) / 0 is +-inf, replaced by 0 (the mask centre),
        # so the GPU path paints a band across the whole image; the CPU path only its region.
        # Inverted: the CPU path raises (see paste()), the GPU path pastes the mask flipped.
        d = int(((p >= 0.5) != (full >= 0.5)).sum())
        print(f"paste: zero-size or inverted box {bx}: CPU and whole-image paths differ at {d} pixels", file=sys.stderr)
    n_amb += int(((p - 0.5).abs() <= 1e-6).sum())
    flat = (p >= 0.5).reshape(-1).tolist()
    flat += [False] * (-len(flat) % 4)
    bits = "".join("%x" % (8 * a + 4 * b + 2 * c + d) for a, b, c, d in zip(*[iter(flat)] * 4))
    probs = arr(p) if ih * iw <= 1000 else "&[]"
    rows.append(f"    ({mi}, {box(bx)}, ({ih}, {iw}), \"{bits}\", {probs}),\n")
emit("/// (mask index, box in original-image pixels, (H, W), thresholded mask row-major as hex digits,\n"
     "/// 4 pixels each, most significant bit first, zero-padded at the end;\n"
     "/// probabilities row-major or empty)\n")
emit("pub const PASTE_CASES: &[(usize, [f32; 4], (usize, usize), &str, &[f32])] = &[\n" + "".join(rows) + "];\n")
print(f"paste: {len(paste_cases)} cases, {n_amb} pixels within 1e-6 of 0.5; whole-image (mmdet's GPU code path, "
      f"run here on the CPU) == CPU region path after thresholding for boxes of positive size; largest "
      f"whole-image probability outside the CPU region: {max_outside:.4f}", file=sys.stderr)

assert torch.backends.cpu.get_cpu_capability() == "DEFAULT", torch.backends.cpu.get_cpu_capability()
sys.stdout.write("// @generated by tests/reference/gen_roi_tables.py (torch " + torch.__version__.split("+")[0]
                 + ", torchvision " + torchvision.__version__.split("+")[0]
                 + ", ATen CPU capability default); do not edit.\n")
sys.stdout.write("#![allow(dead_code, clippy::type_complexity)]\n\n" + "".join(out))
