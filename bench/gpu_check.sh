#!/usr/bin/env bash
# The GPU checks of cellseg in one run (under 10 minutes on one H100-class GPU), for a machine with
# CUDA torch and Lightning but no package index: the GPU tests, bench/train.py, bench/models.py,
# bench/inference.py and bench/augment.py on CUDA, then experiment=isbi_fast for 4 minutes of training
# (the issue's 10 minutes do not fit one device call next to the rest; run it alone for the full budget).
# Logs and tables go to $OUT (the device tool's folder that comes back), else outputs/gpu_check/.
#
#     bash bench/gpu_wheels.sh                       # here: the wheels that machine lacks, into .whl/
#     bash bench/gpu_check.sh                        # there (device tool: carry .whl and .gpu_data)
#
# Each step has its own time limit and a failing step does not stop the others; summary.txt lists each
# step's exit status and seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"  # the GPU machine's python3 holds CUDA torch
if [ -d .whl ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src:$PWD"
else
  export PYTHONPATH="$PWD/src:$PWD"
fi
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONWARNINGS=ignore
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
: > "$out/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run it with a limit, keep its log, record its status and time
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most $limit s)"
  local start
  start=$(date +%s)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local status=$?
  tail -n 25 "$out/$name.log"
  echo "$name: exit $status, $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"
}

step environment 60 "$PYTHON" -c "import torch, pytorch_lightning as pl, cellseg, albumentations, segmentation_models_pytorch as smp; \
print(torch.__version__, pl.__version__, cellseg.__version__, torch.cuda.get_device_name(), torch.cuda.is_bf16_supported())"
step gpu_tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_flows.py tests/test_batch_augment.py
step train 150 "$PYTHON" bench/train.py --devices cuda --rounds 3 --steps 30 --warmup 5
step models 150 "$PYTHON" bench/models.py --devices cuda --models unet unet_classic unetplusplus deeplabv3plus segformer --iters 10 --warmup 3
step inference 120 "$PYTHON" bench/inference.py --device cuda --sizes 1024 4096 8192
step augment 90 "$PYTHON" bench/augment.py --devices cpu cuda --size 512 --batch 8 --rounds 3
if [ -f .gpu_data/isbi2012/train-volume.tif ]; then
  export CELLSEG_OUTPUT_ROOT="$out/runs"
  step isbi_fast 330 "$PYTHON" -m cellseg.train experiment=isbi_fast \
    data.root=.gpu_data/isbi2012 trainer=gpu +trainer.max_time=00:00:04:00
fi
cat "$out/summary.txt"
