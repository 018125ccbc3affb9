#!/usr/bin/env python3
"""Expected outputs of OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)` on uint8
images, for the Rust kernel `pvt_nn::cv_resize` (tests: crates/nn/tests/cv_resize.rs).

Reference side only: CI never runs this; the Rust tests read the committed files.

Usage (from the repository root; any venv outside the repository will do):

    python3 -m venv /tmp/cvenv && /tmp/cvenv/bin/pip install opencv-python-headless==5.0.0.93 numpy
    /tmp/cvenv/bin/python tools/make_cv_resize_fixtures.py            # (re)write the fixtures
    /tmp/cvenv/bin/python tools/make_cv_resize_fixtures.py --check    # compare this cv2 with them

`--check` writes nothing: it recomputes every case with the installed cv2 and reports, per case,
the number of differing bytes and the largest difference against the committed files. Run it
under another OpenCV (e.g. opencv-python-headless==4.5.5.64 with numpy<2) to see whether that
version computes the same bytes.

Writes assets/fixtures/cv_resize/:
  manifest.json  OpenCV / numpy versions, the input formula, and per case: input size and
                 channels, seed, output size, file name, and which OpenCV path the case takes.
  <case>.png     the expected output, stored as an 8-bit grayscale PNG of out_h rows and
                 out_w * channels columns (the interleaved bytes, whatever the channel count).

Inputs:
  * synthetic cases: `hash_image(w, h, channels, seed)` below, an integer hash of (x, y, c, seed)
    that the Rust test reproduces exactly, so only outputs are stored;
  * assets/images/chelsea.png (451x300): as mmdet's test pipeline resizes it
    (Resize(img_scale=(1333, 800), keep_ratio=True) -> 1203x800), as PVT-seg's AlignResize does
    (imrescale to (2048, 512) -> 770x512, then a second bilinear stretch to 800x512), and one
    non-integer downscale.

Images are handled in RGB channel order throughout (the PNG is read with cv2 and its BGR channels
reversed); the filter is per channel, so the order does not change any byte.
"""

import argparse
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "assets", "fixtures", "cv_resize")
CHELSEA = os.path.join(ROOT, "assets", "images", "chelsea.png")

M32 = np.uint32(0xFFFFFFFF)


def hash_image(w, h, channels, seed):
    """uint8 array (h, w, channels): byte = top 8 bits of a 32-bit mix of (x, y, c, seed).

    v = x*0x9E3779B1 + y*0x85EBCA77 + c*0xC2B2AE3D + seed*0x27D4EB2F   (all mod 2^32)
    v ^= v >> 15; v *= 0x2C1B3C6D; v ^= v >> 12; v *= 0x297A2D39; v ^= v >> 15
    byte = v >> 24
    """
    y, x, c = np.meshgrid(
        np.arange(h, dtype=np.uint32),
        np.arange(w, dtype=np.uint32),
        np.arange(channels, dtype=np.uint32),
        indexing="ij",
    )
    with np.errstate(over="ignore"):
        v = (
            x * np.uint32(0x9E3779B1)
            + y * np.uint32(0x85EBCA77)
            + c * np.uint32(0xC2B2AE3D)
            + np.uint32(seed) * np.uint32(0x27D4EB2F)
        )
        v ^= v >> np.uint32(15)
        v *= np.uint32(0x2C1B3C6D)
        v ^= v >> np.uint32(12)
        v *= np.uint32(0x297A2D39)
        v ^= v >> np.uint32(15)
    return (v >> np.uint32(24)).astype(np.uint8)


# (name, in_w, in_h, channels, out_w, out_h); seeds are the case's index.
SYNTHETIC = [
    ("up_nonint", 53, 37, 3, 119, 81),
    ("down_nonint", 131, 97, 3, 60, 41),
    ("up_2x", 31, 23, 3, 62, 46),
    ("down_2x", 66, 48, 3, 33, 24),
    ("down_2x_odd_out", 34, 50, 3, 17, 25),
    ("down_2x_width_only", 30, 40, 3, 15, 45),
    ("up_2x_height_only", 20, 16, 3, 41, 32),
    ("down_3x", 45, 63, 3, 15, 21),
    ("up_3x", 11, 9, 3, 33, 27),
    ("one_pixel_up", 1, 1, 3, 7, 5),
    ("one_row", 9, 1, 3, 3, 4),
    ("one_column", 1, 9, 3, 4, 3),
    ("to_one_pixel", 13, 17, 3, 1, 1),
    ("two_by_two_to_one", 2, 2, 3, 1, 1),
    ("to_one_row", 6, 5, 3, 13, 1),
    ("identity", 12, 10, 3, 12, 10),
    ("same_width", 30, 20, 3, 30, 47),
    ("same_height", 30, 20, 3, 71, 20),
    ("wide", 200, 3, 3, 61, 7),
    ("big_up", 5, 4, 3, 113, 97),
    ("big_down", 199, 211, 3, 9, 7),
    ("near_identity", 100, 100, 3, 99, 101),
    ("det_ratio", 64, 48, 3, 107, 80),
    ("seg_stretch", 77, 51, 3, 96, 64),
    ("large_up", 160, 120, 3, 267, 200),
    ("gray_up", 17, 13, 1, 8, 29),
    ("gray_down_2x", 18, 12, 1, 9, 6),
    ("two_channel_down_2x", 18, 12, 2, 9, 6),
    ("two_channel_up", 7, 11, 2, 30, 23),
    ("rgba_down_2x", 18, 12, 4, 9, 6),
    ("rgba_up", 10, 9, 4, 17, 20),
]


def opencv_path(in_w, in_h, out_w, out_h):
    """Which branch of cv::hal::resize a uint8 INTER_LINEAR call takes."""
    if (in_w, in_h) == (out_w, out_h):
        return "copy"
    sx, sy = 1.0 / (out_w / in_w), 1.0 / (out_h / in_h)
    eps = np.finfo(np.float64).eps
    if abs(sx - round(sx)) < eps and abs(sy - round(sy)) < eps and round(sx) == 2 and round(sy) == 2:
        return "area_fast_2x"
    return "generic_linear"


def mmcv_rescale_size(w, h, scale):
    """mmcv.rescale_size((w, h), scale) with a tuple scale."""
    s = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * float(s) + 0.5), int(h * float(s) + 0.5)


def resize(img, w, h):
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def cases():
    """Yield (entry, expected uint8 array (h, w, c))."""
    for seed, (name, in_w, in_h, cn, out_w, out_h) in enumerate(SYNTHETIC):
        img = hash_image(in_w, in_h, cn, seed)
        out = resize(img, out_w, out_h).reshape(out_h, out_w, cn)
        entry = dict(
            name=name, input="hash", seed=seed, in_w=in_w, in_h=in_h, channels=cn,
            out_w=out_w, out_h=out_h, opencv_path=opencv_path(in_w, in_h, out_w, out_h),
        )
        yield entry, out

    bgr = cv2.imread(CHELSEA, cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read {CHELSEA}")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    h, w = rgb.shape[:2]

    # mmdet Resize(img_scale=(1333, 800), keep_ratio=True): mmcv.imrescale
    dw, dh = mmcv_rescale_size(w, h, (1333, 800))
    det = resize(rgb, dw, dh)
    yield dict(
        name="chelsea_mmdet", input="assets/images/chelsea.png", in_w=w, in_h=h, channels=3,
        out_w=dw, out_h=dh, pipeline="mmdet Resize(img_scale=(1333, 800), keep_ratio=True)",
        opencv_path=opencv_path(w, h, dw, dh),
    ), det

    # PVT-seg AlignResize(img_scale=(2048, 512), keep_ratio=True, size_divisor=32)
    rw, rh = mmcv_rescale_size(w, h, (2048, 512))
    aw, ah = int(np.ceil(rw / 32)) * 32, int(np.ceil(rh / 32)) * 32
    seg = resize(resize(rgb, rw, rh), aw, ah)
    yield dict(
        name="chelsea_align_resize", input="assets/images/chelsea.png", in_w=w, in_h=h,
        channels=3, rescaled_w=rw, rescaled_h=rh, out_w=aw, out_h=ah,
        pipeline="PVT-seg AlignResize(img_scale=(2048, 512), keep_ratio=True, size_divisor=32)",
        opencv_path=opencv_path(w, h, rw, rh) + "+" + opencv_path(rw, rh, aw, ah),
    ), seg

    down = resize(rgb, 200, 133)
    yield dict(
        name="chelsea_down", input="assets/images/chelsea.png", in_w=w, in_h=h, channels=3,
        out_w=200, out_h=133, opencv_path=opencv_path(w, h, 200, 133),
    ), down


def as_png_array(out):
    h, w, c = out.shape
    return np.ascontiguousarray(out.reshape(h, w * c))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed fixtures")
    args = ap.parse_args()

    entries = []
    worst = 0
    for entry, out in cases():
        entry["file"] = entry["name"] + ".png"
        path = os.path.join(OUT_DIR, entry["file"])
        if args.check:
            ref = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if ref is None:
                sys.exit(f"missing {path}")
            mine = as_png_array(out)
            if ref.shape != mine.shape:
                print(f"{entry['name']:24s} shape {mine.shape} vs committed {ref.shape}")
                worst = max(worst, 256)
                continue
            d = np.abs(ref.astype(np.int32) - mine.astype(np.int32))
            print(f"{entry['name']:24s} differing bytes {int((d > 0).sum()):7d}  max |diff| {int(d.max())}")
            worst = max(worst, int(d.max()))
        else:
            os.makedirs(OUT_DIR, exist_ok=True)
            ok = cv2.imwrite(path, as_png_array(out), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            assert ok, path
        entries.append(entry)

    if args.check:
        print(f"cv2 {cv2.__version__}: {'identical' if worst == 0 else 'DIFFERENT'}")
        sys.exit(0 if worst == 0 else 1)

    manifest = dict(
        description="Expected cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR) "
        "outputs on uint8 images; see tools/make_cv_resize_fixtures.py.",
        opencv_version=cv2.__version__,
        opencv_python_package="opencv-python-headless",
        numpy_version=np.__version__,
        storage="8-bit grayscale PNG, out_h rows x (out_w * channels) columns of interleaved bytes",
        input_hash="byte(x, y, c) = top 8 bits of v, v = x*0x9E3779B1 + y*0x85EBCA77 + "
        "c*0xC2B2AE3D + seed*0x27D4EB2F (mod 2^32); v ^= v >> 15; v *= 0x2C1B3C6D; "
        "v ^= v >> 12; v *= 0x297A2D39; v ^= v >> 15",
        channel_order="RGB (chelsea.png as decoded; the filter is per channel)",
        cases=entries,
    )
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT_DIR, e["file"])) for e in entries)
    print(f"wrote {len(entries)} cases to {OUT_DIR} ({total / 1e6:.2f} MB of PNG), cv2 {cv2.__version__}")


if __name__ == "__main__":
    main()
