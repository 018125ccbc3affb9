#!/usr/bin/env python3
"""Re-derive the stored RetinaNet detections from the stored raw head outputs, using only numpy + the algorithm
as written in assets/fixtures/retinanet/manifest.json (no mmdet, no torch ops): the check a port does.

    tools/.venv/bin/python tools/check_retinanet_fixtures.py

For the case with all levels stored (chelsea_320x256): anchors from base_anchors, sigmoid, per-level top-1000 by
max class score, decode + clip, rescale, score filter, class-offset NMS (IoU >= 0.5), top 100 -> must equal
dets_le217_* (boxes and scores to 1 ulp-level tolerance, labels exactly). Also checks le217_mlvl_* and that the
norm_lut_rgb + resized PNG give the input statistics recorded in the manifest.
"""

import json
import math
import os

import numpy as np
from PIL import Image
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "assets", "fixtures", "retinanet")


def sigmoid(x):
    x = x.astype(np.float64)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def decode(anchors, deltas, img_h, img_w):
    f = np.float32
    px = (anchors[:, 0] + anchors[:, 2]) * f(0.5)
    py = (anchors[:, 1] + anchors[:, 3]) * f(0.5)
    pw = anchors[:, 2] - anchors[:, 0]
    ph = anchors[:, 3] - anchors[:, 1]
    m = f(abs(math.log(16 / 1000)))
    dw = np.clip(deltas[:, 2], -m, m)
    dh = np.clip(deltas[:, 3], -m, m)
    gw = pw * np.exp(dw.astype(np.float64)).astype(np.float32)
    gh = ph * np.exp(dh.astype(np.float64)).astype(np.float32)
    gx = px + pw * deltas[:, 0]
    gy = py + ph * deltas[:, 1]
    b = np.stack([gx - gw * f(0.5), gy - gh * f(0.5), gx + gw * f(0.5), gy + gh * f(0.5)], 1)
    b[:, 0::2] = np.clip(b[:, 0::2], f(0), f(img_w))
    b[:, 1::2] = np.clip(b[:, 1::2], f(0), f(img_h))
    return b


def nms(boxes, scores, thr=0.5):
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = b.T
    area = (x2 - x1) * (y2 - y1)
    keep = np.ones(len(order), bool)
    for i in range(len(order)):
        if not keep[i]:
            continue
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area[i + 1:] - inter)
        keep[i + 1:] &= ~(iou >= np.float32(thr))
    return order[keep]


def main():
    man = json.load(open(os.path.join(FIX, "manifest.json")))
    case = man["cases"]["chelsea_320x256"]
    t = load_file(os.path.join(FIX, case["file"]))
    K = man["config"]["K"]
    strides = man["config"]["bbox_head"]["anchor_generator"]["strides"]
    img_h, img_w = case["img_shape_hw"]
    sf = np.array(case["scale_factor_f32_2x"], dtype=np.float32)
    boxes, scores = [], []
    for lvl, stride, base in zip(["p3", "p4", "p5", "p6", "p7"], strides, t["base_anchors"]):
        c = t[f"cls_score_{lvl}"][0]
        r = t[f"bbox_pred_{lvl}"][0]
        H, W = c.shape[1:]
        s = sigmoid(c.transpose(1, 2, 0).reshape(-1, K))
        d = r.transpose(1, 2, 0).reshape(-1, 4)
        ys, xs = np.meshgrid(np.arange(H, dtype=np.float32) * stride, np.arange(W, dtype=np.float32) * stride,
                             indexing="ij")
        shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], 1)
        a = (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)
        if s.shape[0] > 1000:
            idx = np.argsort(-s.max(1), kind="stable")[:1000]
            s, d, a = s[idx], d[idx], a[idx]
        boxes.append(decode(a, d, img_h, img_w))
        scores.append(s)
    boxes = np.concatenate(boxes) / sf
    scores = np.concatenate(scores)
    assert np.allclose(boxes, t["le217_mlvl_bboxes"], rtol=1e-6, atol=1e-4), np.abs(boxes - t["le217_mlvl_bboxes"]).max()
    assert np.allclose(scores, t["le217_mlvl_scores"], rtol=1e-6, atol=1e-7)
    rows, cls = np.nonzero(scores > np.float32(0.05))
    cb, cs = boxes[rows], scores[rows, cls]
    shifted = cb + (cls.astype(np.float32) * (cb.max() + np.float32(1)))[:, None]
    keep = nms(shifted, cs)[:100]
    db, ds, dl = cb[keep], cs[keep], cls[keep]
    assert len(keep) == len(t["dets_le217_scores"]), (len(keep), len(t["dets_le217_scores"]))
    assert np.array_equal(dl, t["dets_le217_labels"])
    print("le217 detections re-derived from the stored raw outputs: max |box diff| "
          f"{np.abs(db - t['dets_le217_bboxes']).max():.2e} px, max |score diff| "
          f"{np.abs(ds - t['dets_le217_scores']).max():.2e}, labels equal, {len(keep)} detections")
    assert np.abs(db - t["dets_le217_bboxes"]).max() < 1e-3 and np.abs(ds - t["dets_le217_scores"]).max() < 1e-6

    # preprocessing: resized PNG + norm LUT + zero pad -> the input checks of the manifest
    rgb = np.asarray(Image.open(os.path.join(ROOT, case["resized_image"])).convert("RGB"))
    lut = t["norm_lut_rgb"]
    ph, pw = case["pad_shape_hw"]
    x = np.zeros((3, ph, pw), np.float32)
    for ch in range(3):
        x[ch, :img_h, :img_w] = lut[ch][rgb[:, :, ch]]
    ic = case["input_checks"]
    assert x[0, 0, 0] == np.float32(ic["x_0_0_0_0"]) and x[2, img_h - 1, img_w - 1] == np.float32(
        ic["x_0_2_last_row_of_image_last_col"])
    assert abs(float(x.astype(np.float64).sum()) - ic["sum_f64"]) < 1e-6 * abs(ic["sum_f64"]) + 1e-6
    print("input rebuilt from the resized PNG and norm_lut_rgb matches the manifest checks")
    print("OK")


if __name__ == "__main__":
    main()
