#!/usr/bin/env bash
# End-to-end Semantic FPN-PVT benchmark, ours and PyTorch's (official PVT-seg backbone +
# mmsegmentation FPN/FPNHead, mmseg 0.13's whole-image test path) in one run, interleaved per
# case, one fresh process per case.
#   bash tools/bench_segment.sh   # needs a Python env with torch + mmseg (see the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PVT_MMSEG_PYTHON:-/tmp/mmseg-venv/bin/python}
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in t s; do
  for size in 512x512 512x683; do
    ./target/release/pvt bench-segment --model "fpn_pvt_${m}_ade20k_40k" --size "$size" --json
    "$PY" tools/bench_torch_semantic_fpn.py --models "$([ $m = t ] && echo tiny || echo small)" --sizes "$size" --threads 2
  done
done
