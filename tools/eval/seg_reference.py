"""mmsegmentation's IoUMetric rule in numpy, and a random label-map generator, for
`eval/tests/ade20k_parity.rs` (never used by the library).

    python seg_reference.py gen SEED DIR CLASSES REDUCE   -> DIR/gt/*.png, DIR/pred/*.png
    python seg_reference.py eval GTDIR PREDDIR CLASSES REDUCE
        prints {"aAcc", "mIoU", "mAcc": float32 values as Python floats,
                "IoU", "Acc": per-class rounded percents (null for NaN),
                "counts": per-class [intersect, union, pred, label]}

The rule (mmseg 1.x iou_metric.py / loading.py): reduce_zero_label in uint8 arithmetic, ignore
255, torch.histc over [0, K-1] (values outside dropped), per-image float32 histograms, dataset
totals as Python `sum` of float32 arrays, float32 division, np.round(np.nanmean(v) * 100, 2).
PNG files are written and read with a minimal 8-bit grayscale codec (no PIL here).
"""

import json
import os
import struct
import sys
import zlib

import numpy as np


def write_png(path, arr):
    h, w = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def read_png(path):
    """Reads only what write_png writes: 8-bit grayscale, filter 0."""
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, w + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].copy()


def gen(seed, outdir, k, reduce):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(outdir, "gt"), exist_ok=True)
    os.makedirs(os.path.join(outdir, "pred"), exist_ok=True)
    # GT uses a subset of classes; some classes are predicted only, some never appear.
    perm = rng.permutation(k)
    gt_classes = perm[: max(2, int(k * 0.6))]
    pred_pool = perm[: max(3, int(k * 0.8))]  # the last 20% never appear
    for i in range(int(rng.integers(12, 20))):
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        lab = np.zeros((h, w), dtype=np.int64)
        for _ in range(int(rng.integers(2, 8))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            lab[y0:y0 + int(rng.integers(3, h)), x0:x0 + int(rng.integers(3, w))] = rng.choice(gt_classes)
        pred = lab.copy()
        noise = rng.random((h, w)) < 0.3
        pred[noise] = rng.choice(pred_pool, noise.sum())
        if reduce:
            gt = lab + 1  # stored labels 1..K, 0 = background
            gt[rng.random((h, w)) < 0.08] = 0
            gt[rng.random((h, w)) < 0.03] = 255
            if k < 254:
                gt[rng.random((h, w)) < 0.01] = min(254, k + 5)  # out of range, not ignored
        else:
            gt = lab
            gt[rng.random((h, w)) < 0.05] = 255
        name = f"img_{seed}_{i:03d}.png"
        write_png(os.path.join(outdir, "gt", name), gt)
        write_png(os.path.join(outdir, "pred", name), pred)


def intersect_and_union(pred, label, k, ignore_index=255):
    mask = label != ignore_index
    pred, label = pred[mask], label[mask]
    inter = pred[pred == label]

    def histc(x):
        return np.histogram(x, bins=k, range=(0, k - 1))[0].astype(np.float32)

    ai, ap, al = histc(inter), histc(pred), histc(label)
    return ai, ap + al - ai, ap, al


def evaluate(gt_dir, pred_dir, k, reduce):
    results = []
    for name in sorted(os.listdir(gt_dir)):
        gt = read_png(os.path.join(gt_dir, name))
        pred = read_png(os.path.join(pred_dir, name)).astype(np.int64)
        if reduce:
            gt = gt.copy()
            gt[gt == 0] = 255
            gt = gt - 1
            gt[gt == 254] = 255
        results.append(intersect_and_union(pred, gt.astype(np.int64), k))
    ti, tu, tp, tl = (sum(r[j] for r in results) for j in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        a_acc = ti.sum() / tl.sum()
        iou = ti / tu
        acc = ti / tl
    out = {
        "aAcc": float(np.round(np.nanmean(a_acc) * 100, 2)),
        "mIoU": float(np.round(np.nanmean(iou) * 100, 2)),
        "mAcc": float(np.round(np.nanmean(acc) * 100, 2)),
        "IoU": [None if np.isnan(v) else float(v) for v in np.round(iou * 100, 2)],
        "Acc": [None if np.isnan(v) else float(v) for v in np.round(acc * 100, 2)],
        "counts": [[int(x) for x in c] for c in zip(ti, tu, tp, tl)],
    }
    print(json.dumps(out))


def main(argv):
    if len(argv) == 5 and argv[0] == "gen":
        gen(int(argv[1]), argv[2], int(argv[3]), argv[4] == "1")
    elif len(argv) == 5 and argv[0] == "eval":
        evaluate(argv[1], argv[2], int(argv[3]), argv[4] == "1")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
