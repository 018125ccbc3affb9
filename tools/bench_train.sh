#!/usr/bin/env bash
# Training-step throughput, ours (`pvt bench-train`) and PyTorch's (official PVT backbone +
# mmseg FPN/FPNHead or mmdet FPN/RetinaHead, torch.optim.AdamW, clip_grad_norm_) on the same
# training configs, batch, input size and batch values; one fresh process per side and case,
# ours first. See BENCHMARKS.md, "Training throughput".
#   bash tools/bench_train.sh   # needs the Python envs named below (see the two scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
SEG_PY=${PVT_MMSEG_PYTHON:-/tmp/mmseg-venv/bin/python}   # torch + mmsegmentation 1.2.2
DET_PY=${PVT_MMDET_PYTHON:-/tmp/mmdet-venv/bin/python}   # torch + mmdet 3.3
THREADS=${THREADS:-2}
cargo build --release -q -p pvt-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
SEG=assets/configs/fpn_pvt_synth_demo.json
DET=assets/configs/retinanet_pvt_synth_demo.json
# case: config, python, torch script, batch, size HxW, timed iterations, warm-up iterations
while read -r cfg py script batch size iters warmup; do
  ./target/release/pvt bench-train --config "$cfg" --batch "$batch" --size "$size" \
    --iters "$iters" --warmup "$warmup" --json
  "$py" "tools/$script" --config "$cfg" --batch "$batch" --size "$size" \
    --iters "$iters" --warmup "$warmup" --threads "$THREADS"
done <<CASES
$SEG $SEG_PY bench_torch_train_semantic_fpn.py 8 128x128 20 3
$SEG $SEG_PY bench_torch_train_semantic_fpn.py 8 256x256 10 2
$DET $DET_PY bench_torch_train_retinanet.py 8 128x160 20 3
$DET $DET_PY bench_torch_train_retinanet.py 8 256x320 10 2
CASES
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
