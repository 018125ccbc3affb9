#!/usr/bin/env bash
# Reproduces the demo models shipped in assets/demo/ (`pvt demo`, `pvt demo --segment`):
#   1. a synthetic shapes dataset (2000 images 128x160, seed 0; 1800 train / 200 val),
#   2. RetinaNet-PVT trained on it from scratch (assets/configs/retinanet_pvt_synth_demo.json,
#      18 epochs), then fine-tuned from those weights (`--load-from`,
#      retinanet_pvt_synth_demo_ft.json, 4 epochs at a lower rate); Semantic FPN-PVT with its
#      backbone initialised from the fine-tuned detector's (`--init`, fpn_pvt_synth_demo.json,
#      40 epochs), then fine-tuned from those weights at 1.5x the image scale, which it is also
#      tested at (`--load-from`, fpn_pvt_synth_demo_ft.json, 16 epochs), and once more from
#      those weights with the same settings for longer (fpn_pvt_synth_demo_ft2.json, 48 epochs,
#      the learning rate warmed up and decayed again). Every run resumes when interrupted.
#   3. the weights exported as f16 safetensors with their run configs into assets/demo/,
#   4. the shipped (f16) models scored on an independent held-out set (500 images, seed 1):
#      COCO box AP with `pvt infer --eval`, mIoU with `pvt infer-seg --gt-dir`.
#
# Usage: bash tools/train_demo.sh [WORK_DIR]   (default runs/demo; CPU only, hours on 2 cores)
# Set SKIP_TRAIN=1 to only export and evaluate existing runs.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/demo}
cargo build --release -p pvt-cli
PVT=target/release/pvt
SYNTH=(--size 128x160 --object-sides 20..72 --min-objects 1 --max-objects 5 --min-area 64)

mkdir -p "$WORK"
[ -f "$WORK/data/synth.json" ] ||
  $PVT synth --out "$WORK/data" --images 2000 --seed 0 --val-fraction 0.1 "${SYNTH[@]}"
[ -f "$WORK/test/synth.json" ] ||
  $PVT synth --out "$WORK/test" --images 500 --seed 1 --val-fraction 1.0 "${SYNTH[@]}"

train() { # NAME CONFIG [pvt train options...]
  local name=$1 cfg=$2
  shift 2
  /usr/bin/time -v $PVT train --config "assets/configs/$cfg" --data "$WORK/data" \
    --out "$WORK/$name" "$@" 2> >(tee -a "$WORK/$name.log" >&2)
}
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  train retinanet retinanet_pvt_synth_demo.json
  train retinanet_ft retinanet_pvt_synth_demo_ft.json --load-from "$WORK/retinanet/model.safetensors"
  train fpn fpn_pvt_synth_demo.json --init "$WORK/retinanet_ft/model.safetensors"
  train fpn_ft fpn_pvt_synth_demo_ft.json --load-from "$WORK/fpn/model.safetensors"
  train fpn_ft2 fpn_pvt_synth_demo_ft2.json --load-from "$WORK/fpn_ft/model.safetensors"
fi

mkdir -p assets/demo
$PVT convert "$WORK/retinanet_ft/model.safetensors" assets/demo/retinanet_pvt_synth.safetensors --dtype f16
cp "$WORK/retinanet_ft/config.json" assets/demo/retinanet_pvt_synth.json
$PVT convert "$WORK/fpn_ft2/model.safetensors" assets/demo/fpn_pvt_synth.safetensors --dtype f16
cp "$WORK/fpn_ft2/config.json" assets/demo/fpn_pvt_synth.json

rm -rf "$WORK/test_dets.json" "$WORK/test_dets.json.partial.jsonl" "$WORK/test_seg"
$PVT infer --config assets/demo/retinanet_pvt_synth.json \
  --weights assets/demo/retinanet_pvt_synth.safetensors \
  --images "$WORK/test/images/val" --ann "$WORK/test/annotations/instances_val.json" \
  --out "$WORK/test_dets.json" --eval | tee "$WORK/test_bbox_eval.txt"
$PVT infer-seg --config assets/demo/fpn_pvt_synth.json \
  --weights assets/demo/fpn_pvt_synth.safetensors \
  --images "$WORK/test/images/val" --out-dir "$WORK/test_seg" \
  --gt-dir "$WORK/test/labels/val" --per-class | tee "$WORK/test_miou.txt"
