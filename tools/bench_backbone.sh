#!/usr/bin/env bash
# Dense-backbone benchmark, ours and PyTorch's (official whai362/PVT code) in one run, each case
# in a fresh process so that peak memory is the case's own.
#   bash tools/bench_backbone.sh            # needs tools/.venv (tools/requirements-fixtures.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for arch in pvt_tiny pvt_small; do
  for size in 224x224 800x1216; do
    ./target/release/pvt bench --arch "$arch" --size "$size" --json
  done
done
tools/.venv/bin/python tools/bench_torch_backbone.py --models tiny,small --sizes 224x224,800x1216
