#!/usr/bin/env bash
# PVT v2 dense-backbone benchmark, ours and timm's in one run, each case in a fresh process.
#   bash tools/bench_backbone_v2.sh      # needs tools/.venv (tools/requirements-fixtures.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in b0 b2; do
  for size in 224x224 800x1216; do
    ./target/release/pvt bench --arch "pvt_v2_$m" --size "$size" --json
    tools/.venv/bin/python tools/bench_torch_backbone_v2.py --models "$m" --sizes "$size" --threads 2
  done
done
