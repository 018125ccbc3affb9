"""Synthetic COCO-like set for BENCHMARKS.md: N images (default 5000) of 480x640, about 7 GT
objects each (polygons, a few crowd RLEs), 30 detections per image (150,000 for 5,000 images)
with compressed-RLE masks and boxes.

    python bench_gen.py OUTDIR [--images N] [--seed S]
writes OUTDIR/gt.json, OUTDIR/dt_bbox.json (boxes only), OUTDIR/dt_segm.json (masks and boxes).
"""

import json
import os
import sys

import numpy as np
from pycocotools import mask as mask_utils


def polygon(rng, cx, cy, rx, ry):
    n = int(rng.integers(6, 16))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.7, 1.0, n)
    pts = np.stack([cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)], 1)
    return [round(float(v), 2) for v in pts.reshape(-1)]


def main(argv):
    outdir = argv[0]
    n_images = int(argv[argv.index("--images") + 1]) if "--images" in argv else 5000
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    cats = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 81)]
    images, anns, dets_b, dets_s = [], [], [], []
    ann_id = 1
    for img_id in range(1, n_images + 1):
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{img_id:012d}.jpg"})
        objs = []
        for _ in range(int(rng.integers(1, 14))):
            cat = int(rng.integers(1, 81))
            rx, ry = rng.uniform(4, 150), rng.uniform(4, 150)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            poly = polygon(rng, cx, cy, rx, ry)
            rle = mask_utils.frPyObjects([poly], h, w)[0]
            area = float(mask_utils.area(rle))
            if area == 0:
                continue
            bbox = [float(v) for v in mask_utils.toBbox(rle)]
            crowd = int(rng.random() < 0.01)
            seg = {"size": [h, w], "counts": rle["counts"].decode()} if crowd else [poly]
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "bbox": bbox,
                         "area": area, "iscrowd": crowd, "segmentation": seg})
            ann_id += 1
            objs.append((cat, cx, cy, rx, ry))
        for j in range(30):
            if objs and j < 2 * len(objs):
                cat, cx, cy, rx, ry = objs[j % len(objs)]
                cx, cy = cx + rng.normal(0, rx * 0.1), cy + rng.normal(0, ry * 0.1)
                rx, ry = rx * rng.uniform(0.8, 1.2), ry * rng.uniform(0.8, 1.2)
                if rng.random() < 0.1:
                    cat = int(rng.integers(1, 81))
            else:
                cat = int(rng.integers(1, 81))
                rx, ry = rng.uniform(4, 100), rng.uniform(4, 100)
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            rle = mask_utils.frPyObjects([polygon(rng, cx, cy, rx, ry)], h, w)[0]
            box = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
            score = round(float(rng.random()), 5)
            dets_b.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": score})
            dets_s.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": score,
                           "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}})
    os.makedirs(outdir, exist_ok=True)
    for name, obj in [("gt.json", {"images": images, "annotations": anns, "categories": cats}),
                      ("dt_bbox.json", dets_b), ("dt_segm.json", dets_s)]:
        with open(os.path.join(outdir, name), "w") as f:
            json.dump(obj, f)
    print(f"{len(images)} images, {len(anns)} GT, {len(dets_s)} detections", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
