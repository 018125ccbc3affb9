#!/usr/bin/env python3
"""Golden fixtures for the OpenCV-exact bilinear resize (cv2.resize, INTER_LINEAR, uint8) used by mmcv's
`imresize` / `imrescale` in the mmdet test pipeline.

Usage (from the repository root; needs opencv-python-headless, numpy, pillow, safetensors in tools/.venv):

    tools/.venv/bin/python tools/make_resize_fixtures.py            # writes assets/fixtures/resize/*
    <python with another OpenCV> tools/make_resize_fixtures.py --check   # re-checks the stored fixtures

Writes assets/fixtures/resize/{resize_cases.safetensors, chelsea_800x1203.png, chelsea_213x320.png,
coffee_crop_124x320.png, manifest.json} and assets/images/coffee_crop_233x599.png (a crop of scikit-image's
coffee.png, CC0; --skimage-data points at the wheel's skimage/data folder). Every case is also checked against tools/cv_resize_ref.py (a numpy re-implementation of
OpenCV's fixed-point kernel, the algorithm the Rust side implements).
"""

import argparse
import hashlib
import json
import os
import sys
from collections import OrderedDict

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cv_resize_ref  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "assets", "fixtures", "resize")
IMG_DIR = os.path.join(ROOT, "assets", "images")
SEED = 20240302

# name -> (src_h, src_w, dst_h, dst_w, why)
SYNTHETIC = OrderedDict([
    ("up_37x53_to_61x80", (37, 53, 61, 80, "upscale by non-integer factors (1.649 y, 1.509 x)")),
    ("down_61x80_to_37x53", (61, 80, 37, 53, "downscale by non-integer factors, no antialias")),
    ("mixed_57x71_to_30x110", (57, 71, 30, 110, "down in y (0.526), up in x (1.549)")),
    ("up_30x45_to_80x120", (30, 45, 80, 120, "x2.667 like chelsea 300x451 -> 800x1203 (that one is stored as "
                                             "a photo; as noise it would take 2.9 MB)")),
    ("half_64x96_to_32x48", (64, 96, 32, 48, "exactly 1/2 in both axes: OpenCV switches INTER_LINEAR to the "
                             "INTER_AREA fast path, dst = (a+b+c+d+2)>>2")),
    ("half_x_only_64x96_to_40x48", (64, 96, 40, 48, "exactly 1/2 in x only: stays bilinear")),
    ("double_33x47_to_66x94", (33, 47, 66, 94, "exactly x2 up")),
    ("third_90x60_to_30x20", (90, 60, 30, 20, "exactly 1/3: bilinear (not area), samples at 1.0, 4.0, ...")),
    ("extreme_up_5x7_to_23x200", (5, 7, 23, 200, "heavy upscale, many edge-clamped columns/rows")),
    ("extreme_down_200x23_to_7x5", (200, 23, 7, 5, "heavy downscale, bilinear skips most source pixels")),
    ("near_identity_50x50_to_51x49", (50, 50, 51, 49, "factors close to 1")),
    ("one_row_1x9_to_3x17", (1, 9, 3, 17, "single source row")),
])
# the real photos, as the mmdet test pipelines resize them (scale = (1333, 800) and the small test scale (320, 256))
# name -> (image in assets/images, dst_h, dst_w, store the PNG?, why)
PHOTO = OrderedDict([
    ("chelsea_800x1203", ("chelsea.png", 800, 1203, True,
                          "mmdet Resize(scale=(1333, 800), keep_ratio=True) of 300x451: s = min(1333/451, 800/300) = "
                          "2.6667 (short side limits) -> (int(451*s+0.5), int(300*s+0.5)) = 1203x800 (WxH)")),
    ("chelsea_213x320", ("chelsea.png", 213, 320, True,
                         "mmdet Resize(scale=(320, 256), keep_ratio=True) of 300x451: s = min(320/451, 256/300) = "
                         "0.70953 (long side limits) -> 320x213 (WxH)")),
    ("coffee_crop_519x1333", ("coffee_crop_233x599.png", 519, 1333, False,
                              "mmdet Resize(scale=(1333, 800), keep_ratio=True) of 233x599: s = min(1333/599, "
                              "800/233) = 2.22538 (long side limits) -> 1333x519 (WxH); only its SHA-256 is stored")),
    ("coffee_crop_124x320", ("coffee_crop_233x599.png", 124, 320, True,
                             "mmdet Resize(scale=(320, 256), keep_ratio=True) of 233x599: s = min(320/599, 256/233) "
                             "= 0.53422 -> 320x124 (WxH)")),
])
COFFEE_CROP = dict(file="coffee_crop_233x599.png", box_xyxy=(0, 100, 599, 333),
                   source="scikit-image 0.26.0 wheel skimage/data/coffee.png (600x400 RGB)")


def make_coffee_crop(skdata):
    from PIL import Image
    dst = os.path.join(ROOT, "assets", "images", COFFEE_CROP["file"])
    src = os.path.join(skdata, "coffee.png")
    if os.path.exists(src):
        im = Image.open(src).convert("RGB")
        assert im.size == (600, 400)
        crop = im.crop(COFFEE_CROP["box_xyxy"])
        if not (os.path.exists(dst) and np.array_equal(np.asarray(Image.open(dst).convert("RGB")), np.asarray(crop))):
            crop.save(dst, format="PNG", optimize=True)
    assert os.path.exists(dst), f"{dst} missing and {src} not found (pass --skimage-data)"
    return dst


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def cv_resize(src, dh, dw):
    out = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def alt_roundings(src, dh, dw):
    """Pixels where OpenCV's result differs from (a) exact float64 bilinear (same sample positions, unquantised
    weights) rounded half up and (b) the quantised 11-bit weights with one exact rounding at the end."""
    sh, sw, _ = src.shape
    def axis(n_src, n_dst, clamp):
        scale = 1.0 / (n_dst / n_src)
        f = (np.arange(n_dst) + 0.5) * scale - 0.5
        s = np.floor(f).astype(np.int64)
        fr = f - s
        if clamp:
            fr = np.where(s < 0, 0.0, fr)
            s = np.where(s < 0, 0, s)
            fr = np.where(s >= n_src - 1, 0.0, fr)
            s = np.where(s >= n_src - 1, n_src - 1, s)
        return s, fr
    sy, fy = axis(sh, dh, False)
    sx, fx = axis(sw, dw, True)
    x0, x1 = sx, np.minimum(sx + 1, sw - 1)
    y0, y1 = np.clip(sy, 0, sh - 1), np.clip(sy + 1, 0, sh - 1)
    s = src.astype(np.float64)
    h = s[:, x0] * (1 - fx)[None, :, None] + s[:, x1] * fx[None, :, None]
    v = h[y0] * (1 - fy)[:, None, None] + h[y1] * fy[:, None, None]
    exact = np.floor(v + 0.5).astype(np.int64)
    return exact


def quantised_exact(src, dh, dw):
    sh, sw, _ = src.shape
    sx, a0, a1, has_right = cv_resize_ref._coeffs(sw, dw, clamp=True)
    sy, b0, b1, _ = cv_resize_ref._coeffs(sh, dh, clamp=False)
    s = src.astype(np.int64)
    H = s[:, sx] * a0[None, :, None] + s[:, np.minimum(sx + 1, sw - 1)] * a1[None, :, None]
    H = np.where(has_right[None, :, None], H, s[:, sx] * 2048)
    r0, r1 = np.clip(sy, 0, sh - 1), np.clip(sy + 1, 0, sh - 1)
    return (b0[:, None, None] * H[r0] + b1[:, None, None] * H[r1] + (1 << 21)) >> 22


def case_stats(src, dst):
    dh, dw = dst.shape[:2]
    if abs(1.0 / (dw / src.shape[1]) - 2) < 1e-12 and abs(1.0 / (dh / src.shape[0]) - 2) < 1e-12:
        return {"path": "INTER_AREA fast 2x2 box average"}
    d = dst.astype(np.int64)
    ex = alt_roundings(src, dh, dw)
    qe = quantised_exact(src, dh, dw)
    return {
        "path": "generic fixed-point bilinear",
        "pixels": int(d.size),
        "differ_from_float_bilinear_rounded": int((ex != d).sum()),
        "max_abs_diff_from_float_bilinear": int(np.abs(ex - d).max()),
        "differ_from_quantised_weights_exact_rounding": int((qe != d).sum()),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="only verify the stored fixtures with this cv2")
    ap.add_argument("--skimage-data", default="/tmp/skimg/skimage/data",
                    help="folder holding coffee.png from the scikit-image wheel (for assets/images/coffee_crop_*)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    from safetensors.numpy import load_file, save_file
    from PIL import Image

    if args.check:
        t = load_file(os.path.join(OUT, "resize_cases.safetensors"))
        bad = []
        for name in SYNTHETIC:
            src, dst = t[name + "_src"], t[name + "_dst"]
            if not np.array_equal(cv_resize(src, *dst.shape[:2]), dst):
                bad.append(name)
        with open(os.path.join(OUT, "manifest.json")) as f:
            man = json.load(f)
        for name, (img, dh, dw, store, _) in PHOTO.items():
            bgr = cv2.imread(os.path.join(IMG_DIR, img), cv2.IMREAD_COLOR)
            out = cv_resize(bgr, dh, dw)
            if store:
                ref = np.asarray(Image.open(os.path.join(OUT, name + ".png")).convert("RGB"))
                ok = np.array_equal(out[:, :, ::-1], ref)
            else:
                ok = sha256_bytes(out.tobytes()) == man["photo_cases"][name]["sha256_of_hwc_bgr_bytes"]
            if not ok:
                bad.append(name)
        print(f"cv2 {cv2.__version__}: {len(SYNTHETIC) + len(PHOTO) - len(bad)} cases equal, mismatches: {bad}")
        sys.exit(1 if bad else 0)

    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    tensors = OrderedDict()
    cases = OrderedDict()
    for name, (sh, sw, dh, dw, why) in SYNTHETIC.items():
        src = rng.integers(0, 256, size=(sh, sw, 3), dtype=np.uint8)
        dst = cv_resize(src, dh, dw)
        ref = cv_resize_ref.resize_linear_u8(src, dw, dh)
        assert np.array_equal(dst, ref), name
        tensors[name + "_src"] = src
        tensors[name + "_dst"] = dst
        cases[name] = dict(src_hwc=[sh, sw, 3], dst_hwc=[dh, dw, 3], why=why,
                           inv_scale_x=dw / sw, inv_scale_y=dh / sh, **case_stats(src, dst))
        print(name, cases[name])
    p = os.path.join(OUT, "resize_cases.safetensors")
    save_file(dict(tensors), p, metadata={"producer": "tools/make_resize_fixtures.py"})

    make_coffee_crop(args.skimage_data)
    photos = OrderedDict()
    for name, (img, dh, dw, store, why) in PHOTO.items():
        bgr = cv2.imread(os.path.join(IMG_DIR, img), cv2.IMREAD_COLOR)
        dst = cv_resize(bgr, dh, dw)
        assert np.array_equal(dst, cv_resize_ref.resize_linear_u8(bgr, dw, dh)), name
        rgb = np.ascontiguousarray(dst[:, :, ::-1])
        entry = OrderedDict(
            src=f"assets/images/{img} ({bgr.shape[0]}x{bgr.shape[1]}, read with cv2.imread(IMREAD_COLOR) = BGR; "
                "an ICC profile is ignored, the pixels equal PIL's .convert('RGB') reversed)",
            dst_hwc=[dh, dw, 3], why=why)
        if store:
            fp = os.path.join(OUT, name + ".png")
            Image.fromarray(rgb).save(fp, format="PNG", optimize=True)
            back = np.asarray(Image.open(fp).convert("RGB"))
            assert np.array_equal(back, rgb)
            entry["stored_as"] = (f"{name}.png: 8-bit RGB PNG (the BGR result of cv2.resize with channels reversed; "
                                  "the resize is per channel, so resizing RGB directly gives the same bytes)")
        else:
            entry["stored_as"] = "not stored (size); compare the SHA-256 of the HWC bytes"
        entry["sha256_of_hwc_bgr_bytes"] = sha256_bytes(dst.tobytes())
        entry["sha256_of_hwc_rgb_bytes"] = sha256_bytes(rgb.tobytes())
        entry.update(case_stats(bgr, dst))
        photos[name] = entry
        print(name, dict(entry))

    files = OrderedDict()
    for fn in sorted(os.listdir(OUT)):
        if fn == "manifest.json":
            continue
        with open(os.path.join(OUT, fn), "rb") as f:
            b = f.read()
        files[fn] = dict(bytes=len(b), sha256=sha256_bytes(b))

    import PIL
    import safetensors
    manifest = OrderedDict(
        description="Golden outputs of OpenCV cv2.resize(src, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR) on "
                    "uint8 3-channel images: the kernel mmcv.imresize / mmcv.imrescale (backend 'cv2', "
                    "interpolation 'bilinear') runs in mmdet's test pipeline. The Rust kernel must match bit for bit.",
        producer="tools/make_resize_fixtures.py",
        versions=dict(opencv=cv2.__version__, opencv_python_headless_wheel="5.0.0.93" if cv2.__version__ == "5.0.0"
                      else "?", numpy=np.__version__, pillow=PIL.__version__, safetensors=safetensors.__version__,
                      python=sys.version.split()[0]),
        cross_checked=[
            "tools/cv_resize_ref.py (numpy re-implementation of the fixed-point kernel) reproduces every case bit "
            "for bit",
            "opencv-python-headless 4.5.5.64 (OpenCV 4.5.5, numpy 1.26.4) reproduces every case bit for bit "
            "(`tools/make_resize_fixtures.py --check`); so did 210 further random cases (sizes 1..200, 1/3/4 "
            "channels) against both OpenCV versions during development",
        ],
        algorithm=cv_resize_ref.__doc__.split("Algorithm", 1)[1].strip(),
        surprises=[
            "the result is NOT round(exact bilinear): weights are quantised to 11 bits (rint((1-f)*2048), "
            "rint(f*2048), round half to even, computed from the float32 fraction f), the horizontal pass keeps "
            "int32 sums, and the vertical pass truncates twice ((b*(h>>4))>>16 per row) before adding 2 and "
            "shifting by 2; see the per-case counts of pixels that differ from float bilinear",
            "sample positions use scale = 1/(dst/src) computed in float64, then f = float32((d+0.5)*scale-0.5)",
            "x and y borders differ: in x, positions left of 0 / right of w-1 are clamped (weight 0 on the missing "
            "neighbour); in y the UNclamped fraction is kept and the row index is clamped, which gives the same "
            "value only because both taps read the same row",
            "an exact 2x downscale in BOTH axes is dispatched to INTER_AREA's fast path (a+b+c+d+2)>>2; the "
            "fixed-point bilinear formula gives the same values there (weights 1024/1024: ((1024*((a+b)*1024>>4))"
            ">>16) = a+b exactly), so an implementation may ignore the special case",
            "dst size == src size: plain copy",
        ],
        tensors_file=dict(
            file="resize_cases.safetensors", dtype="uint8", layout="HWC, 3 channels (random uniform 0..255, seed "
            f"{SEED}, numpy default_rng)", names="<case>_src, <case>_dst"),
        synthetic_cases=cases,
        photo_cases=photos,
        coffee_crop=dict(COFFEE_CROP, note="assets/images/coffee_crop_233x599.png = coffee.png.crop(box) with PIL, "
                                           "saved as PNG; odd height and width, aspect 2.57 (long side limits)"),
        files=files,
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(v["bytes"] for v in files.values())
    print(f"wrote {OUT}: {total / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
