#!/usr/bin/env bash
# End-to-end RetinaNet-PVT benchmark, ours and PyTorch's (official PVT backbone + mmdetection
# FPN/RetinaHead + mmdetection 2.13 post-processing) in one run, one fresh process per model.
#   bash tools/bench_detect.sh   # needs a Python env with torch + mmdet 3.x (see the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PVT_MMDET_PYTHON:-/tmp/mmdet-venv/bin/python}
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in tiny small; do
  ./target/release/pvt bench-detect --model "retinanet_pvt_${m}_fpn_1x_coco" --json
  "$PY" tools/bench_torch_retinanet.py --models "$m"
done
