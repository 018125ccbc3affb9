#!/usr/bin/env bash
# End-to-end Mask R-CNN-PVT benchmark, ours and PyTorch's (official PVT backbone + mmdetection
# FPN/RPNHead/RoI heads + mmdetection 2.13 test path, masks pasted and RLE-encoded) in one run, one
# fresh process per model, the two interleaved per model.
#   bash tools/bench_mask_rcnn.sh   # needs a Python env with torch + mmdet 3.x (see tools/bench_torch_mask_rcnn.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PVT_MMDET_PYTHON:-/tmp/mmdet-venv/bin/python}
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in tiny small; do
  ./target/release/pvt bench-detect --model "mask_rcnn_pvt_${m}_fpn_1x_coco" --json
  "$PY" tools/bench_torch_mask_rcnn.py --models "$m"
done
