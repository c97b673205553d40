#!/usr/bin/env bash
# One row of docs/CONVERT.md's Fashion-MNIST table: train, quantize (full int8), then float and
# int8 top-1 on the official test photos through the agent's engine.
#   bash tools/fashion_mnist_row.sh imagenet|scratch N [DATA] [OUT]
# DATA comes from `python tools/fashion_mnist.py DATA` (default /tmp/fm/data).
set -euo pipefail
start=$1 n=$2 data=${3:-/tmp/fm/data} out=${4:-/tmp/fm/out}
convert="${PYTHON:-python} -m edge_agent.convert"
res=${RESOLUTION:-96}
m=$out/$start$n
mkdir -p "$m"
if [ "$start" = imagenet ]; then
  $convert train "$data/train$n" --weights imagenet --resolution "$res" --epochs 8 --fine-tune-epochs 8 \
    --test-split 0 --out "$m/model.keras"
else
  $convert train "$data/train$n" --arch v2 --alpha 1.0 --resolution "$res" --epochs 16 \
    --test-split 0 --out "$m/model.keras"
fi
$convert quantize "$m/model.keras" --out "$m/model.tflite" --keep-float "$m/float.tflite" >/dev/null
int8=$($convert evaluate "$m/model.tflite" --data "$data/test" --threads 1 --json | ${PYTHON:-python} -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
float=$($convert evaluate "$m/float.tflite" --manifest "$m/model.json" --data "$data/test" --threads 1 --json | ${PYTHON:-python} -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
echo "ROW start=$start per_class=$n resolution=$res float=$float int8=$int8"
