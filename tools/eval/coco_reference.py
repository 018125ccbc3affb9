"""Reference runner and random-data generator for the pvt-eval parity tests.

Used by `eval/tests/coco_parity.rs` (never by the library itself):

    python coco_reference.py gen SEED OUTDIR [--images N]
        writes OUTDIR/gt.json, dt_bbox.json (boxes only), dt_segm.json (masks and boxes),
        dt_segm_nobox.json (masks only), all random, reproducible from SEED.
    python coco_reference.py eval GT DT bbox|segm
        runs pycocotools' COCOeval and prints one JSON object on stdout:
        {"stats": [12 floats], "summary": "<the text summarize() printed>",
         "precision_shape": [...], "per_class": {cat_id: AP or null}}

The generated data covers what pycocotools treats specially
out: crowd regions, polygon / uncompressed-RLE / compressed-RLE GT masks, images without
annotations, categories without GT, more than 100 detections in an image, tied scores, boxes
partly outside the image, GT areas exactly at 32^2 and 96^2, and sometimes a GT annotation with
id 0 (which pycocotools can never match).
"""

import contextlib
import io
import json
import os
import sys

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _polygon_around(rng, cx, cy, rx, ry, n):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.6, 1.0, n)
    xs = cx + rx * rad * np.cos(ang)
    ys = cy + ry * rad * np.sin(ang)
    out = []
    for x, y in zip(xs, ys):
        out += [round(float(x), 2), round(float(y), 2)]
    return out


def _mask_from_polys(polys, h, w):
    rles = mask_utils.frPyObjects(polys, h, w)
    return mask_utils.decode(mask_utils.merge(rles))


def _uncompressed(mask):
    """Column-major runs starting with a background run, as COCO crowd annotations store them."""
    flat = np.asfortranarray(mask).reshape(-1, order="F")
    counts = []
    cur, run = 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return counts


def gen(seed, outdir, n_images):
    rng = np.random.default_rng(seed)
    # Non-contiguous category ids; the last two never get GT.
    cat_ids = sorted(rng.choice(np.arange(1, 40), size=7, replace=False).tolist())
    cats = [{"id": int(c), "name": f"cat{c}", "supercategory": "thing"} for c in cat_ids]
    gt_cats = cat_ids[:5]
    images, anns, dets = [], [], []
    ann_id = 0 if seed % 2 == 0 else 1  # even seeds: a GT annotation with id 0
    for idx, img_id in enumerate(rng.choice(np.arange(1, 10 * n_images), size=n_images, replace=False)):
        img_id = int(img_id)
        h, w = int(rng.integers(60, 260)), int(rng.integers(60, 260))
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{img_id}.jpg"})
        n_obj = 0 if rng.random() < 0.15 or idx == n_images - 1 else int(rng.integers(1, 9))
        gts = []
        for _ in range(n_obj):
            cat = int(rng.choice(gt_cats))
            rx, ry = rng.uniform(3, w / 2.2), rng.uniform(3, h / 2.2)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            polys = [_polygon_around(rng, cx, cy, rx, ry, int(rng.integers(3, 10)))]
            if rng.random() < 0.2:
                polys.append(_polygon_around(rng, rng.uniform(0, w), rng.uniform(0, h), rx / 2, ry / 2, 5))
            mask = _mask_from_polys(polys, h, w)
            area = float(mask.sum())
            if area == 0:
                continue
            crowd = int(rng.random() < 0.08)
            form = rng.choice(["poly", "rle", "crle"]) if not crowd else rng.choice(["rle", "crle"])
            if form == "poly":
                seg = polys
            elif form == "rle":
                seg = {"size": [h, w], "counts": _uncompressed(mask)}
            else:
                r = mask_utils.encode(np.asfortranarray(mask))
                seg = {"size": [h, w], "counts": r["counts"].decode("ascii")}
            bbox = [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask)))]
            u = rng.random()
            if u < 0.05:
                area = 1024.0
            elif u < 0.1:
                area = 9216.0
            elif u < 0.3:
                area = area + float(rng.uniform(-0.5, 0.5))
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "segmentation": seg,
                         "area": area, "bbox": bbox, "iscrowd": crowd})
            gts.append((cat, bbox, mask))
            ann_id += 1
        # Detections: jittered copies of GT, plus clutter; sometimes > 100 in one image.
        # Usually a little clutter; sometimes 110-150 detections of one category in one image,
        # past pycocotools' cap of 100 per image and category.
        heavy = rng.random() < 0.08 or idx == 0
        n_clutter = int(rng.integers(110, 150)) if heavy else int(rng.integers(0, 8))
        heavy_cat = int(rng.choice(gt_cats))
        cand = []
        for cat, bbox, mask in gts:
            for _ in range(int(rng.integers(0, 3))):
                x, y, bw, bh = bbox
                j = rng.normal(0, 0.12, 4) * np.array([bw, bh, bw, bh])
                db = [x + j[0], y + j[1], max(0.5, bw + j[2]), max(0.5, bh + j[3])]
                dcat = cat if rng.random() > 0.1 else int(rng.choice(cat_ids))
                cand.append((dcat, db, np.roll(mask, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))))
        for _ in range(n_clutter):
            bw, bh = rng.uniform(2, w * 0.8), rng.uniform(2, h * 0.8)
            x, y = rng.uniform(-bw / 3, w - bw * 2 / 3), rng.uniform(-bh / 3, h - bh * 2 / 3)
            m = np.zeros((h, w), dtype=np.uint8)
            m[max(0, int(y)):max(0, int(y + bh)), max(0, int(x)):max(0, int(x + bw))] = 1
            cand.append((heavy_cat if heavy else int(rng.choice(cat_ids)), [x, y, bw, bh], m))
        for dcat, db, m in cand:
            score = float(rng.choice([0.5, 0.25, 0.75])) if rng.random() < 0.3 else float(rng.random())
            r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            dets.append({"image_id": img_id, "category_id": dcat,
                         "bbox": [round(float(v), 3) for v in db], "score": round(score, 4),
                         "segmentation": {"size": [h, w], "counts": r["counts"].decode("ascii")}})
    # A few detections on an unknown category (pycocotools drops them).
    for d in dets[:3]:
        dets.append(dict(d, category_id=999))
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    gt = {"images": images, "annotations": anns, "categories": cats}
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "gt.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(outdir, "dt_bbox.json"), "w") as f:
        json.dump([{k: v for k, v in d.items() if k != "segmentation"} for d in dets], f)
    with open(os.path.join(outdir, "dt_segm.json"), "w") as f:
        json.dump(dets, f)
    with open(os.path.join(outdir, "dt_segm_nobox.json"), "w") as f:
        json.dump([{k: v for k, v in d.items() if k != "bbox"} for d in dets], f)


def evaluate(gt_path, dt_path, iou_type):
    with contextlib.redirect_stdout(sys.stderr):
        gt = COCO(gt_path)
        dt = gt.loadRes(dt_path)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.summarize()
    prec = ev.eval["precision"]
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[str(cat)] = float(np.mean(p)) if p.size else None
    out = {"stats": [float(s) for s in ev.stats], "summary": buf.getvalue(), "per_class": per_class}
    print(json.dumps(out))


def main(argv):
    if len(argv) >= 3 and argv[0] == "gen":
        n = 60
        if "--images" in argv:
            n = int(argv[argv.index("--images") + 1])
        gen(int(argv[1]), argv[2], n)
    elif len(argv) == 4 and argv[0] == "eval":
        evaluate(argv[1], argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
