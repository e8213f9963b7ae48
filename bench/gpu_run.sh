#!/usr/bin/env bash
# Every GPU check and benchmark of semtts in one command, for a CUDA machine
# that has torch, triton and numba (the Python packages semtts needs beyond
# those can travel as wheels in .whl/, see the README's development section).
#
#   bash bench/gpu_run.sh [OUT_DIR]       # default OUT_DIR: bench/results/gpu
#
# Writes JSON lines per benchmark and a log; expect about 5 minutes on an H100/H200.
set -uo pipefail
out=${1:-bench/results/gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
status=0
step() {
    echo "=== $* ($(date +%H:%M:%S))"
    "$@" || { echo "=== FAILED: $*"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
step python3 bench/gpu_check_mas.py --skip-bench --out "$out/mas_check.jsonl"
step python3 bench/mas.py --device cuda --backends triton --out "$out/mas.jsonl"
step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \
    --batch_sizes 32 64 --precisions fp32 bf16 fp16 --out "$out/train_step.jsonl"
step python3 bench/infer.py --device cuda --out "$out/infer.jsonl"
step python3 bench/campplus.py --devices cuda --out "$out/campplus.jsonl"
step timeout 240 python3 bench/whisper_features.py --out "$out/whisper_features.jsonl"
step python3 -m pytest -q -p no:cacheprovider tests/test_audio_features.py tests/test_campplus.py \
    tests/test_vits_generator.py
exit $status
