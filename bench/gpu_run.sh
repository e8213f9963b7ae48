#!/usr/bin/env bash
# Every GPU check and benchmark of semtts in one command, for a CUDA machine
# that has torch, triton and numba (the Python packages semtts needs beyond
# those can travel as wheels in .whl/, see the README's development section).
#
#   bash bench/gpu_run.sh [OUT_DIR]                 # default OUT_DIR: bench/results/gpu
#   SECTIONS="tests infer train" bash bench/gpu_run.sh OUT_DIR   # a subset
#
# Sections, in order: tests (CUDA-only tests: graphs, MAS kernel, features),
# mas (Triton kernel check and timing), infer (eager and CUDA-graph
# synthesis), train (train step, eager: fp32/bf16/fp16 x batch 32/64, and
# bf16/fp16 with every 1-D convolution in NHWC),
# profile (where a bf16 step's time goes, batch 32: host and GPU time per part
# of the step, calls that waited for the GPU, operators, and every convolution
# call timed alone in NCHW, NHWC and folded layouts), compile (train step with
# --compile, bf16, new lengths every step, against eager on the same batches), compile_nhwc (the same with
# the decoder's and discriminator's convolutions in NHWC, batch 32), campplus, whisper;
# not by default: experiments
# (cudnn.benchmark and NHWC period discriminators, both measured slower or
# bigger on an H200 in bench/results/gpu_h200/).
# Writes JSON lines per benchmark and a log. All the default sections take
# more than one 10-minute device call: "tests compile" (about 9 minutes, most
# of it compiling), then "compile_nhwc" (2-3 minutes on the same machine),
# then "train profile infer mas" (about 5).
set -uo pipefail
out=${1:-bench/results/gpu}
sections=${SECTIONS:-tests mas infer train profile compile compile_nhwc campplus whisper}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
status=0
step() {
    echo "=== $* ($(date +%H:%M:%S))"
    "$@" || { echo "=== FAILED: $*"; status=1; }
}
want() { [[ " $sections " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if want tests; then
    # the compiled parts' inductor case on CUDA only (its CPU case runs in CI): a minute less
    step python3 -m pytest -q -p no:cacheprovider tests/test_graphed_inference.py tests/test_update_gate.py \
        tests/test_audio_features.py tests/test_vits_generator.py tests/test_compiled_parts.py \
        -k "not (dynamic_shape_parts and cpu)"
    step python3 -m pytest -q -p no:cacheprovider tests/test_brain.py -k nonfinite
fi
if want mas; then
    step python3 bench/gpu_check_mas.py --skip-bench --out "$out/mas_check.jsonl"
    step python3 bench/mas.py --device cuda --backends triton --out "$out/mas.jsonl"
fi
if want infer; then
    step python3 bench/infer.py --device cuda --iters 20 --out "$out/infer.jsonl"
fi
if want train; then
    step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \
        --batch_sizes 32 64 --precisions bf16 fp16 fp32 --steps 12 --out "$out/train_step.jsonl"
    step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml --channels_last_conv1d \
        --batch_sizes 32 64 --precisions bf16 fp16 --steps 12 --out "$out/train_step_channels_last_conv1d.jsonl"
fi
if want profile; then
    step python3 bench/profile_train_step.py --batch_size 32 --precision bf16 > "$out/profile_b32_bf16.txt"
    step python3 bench/conv_shapes.py --device cuda --config hparams/model/vits_base.yaml --batch_size 32 \
        --precision bf16 --out "$out/conv_shapes_b32_bf16.jsonl"
fi
if want experiments; then
    step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml --cudnn_benchmark \
        --batch_sizes 32 64 --precisions bf16 fp16 fp32 --steps 12 --out "$out/train_step_cudnn_benchmark.jsonl"
    step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml --channels_last_disc \
        --batch_sizes 32 64 --precisions bf16 fp32 --steps 12 --out "$out/train_step_channels_last_disc.jsonl"
fi
if want compile; then
    # every part --compile takes (semtts.compiled_parts): the fixed-shape discriminator and decoder, and the
    # variable-length posterior encoder, flow and duration loss with dynamic shapes; a new batch (new lengths)
    # every step, so compiled_graphs shows whether anything compiled again
    step timeout 390 python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \
        --batch_sizes 32 64 --precisions bf16 --steps 8 --compile --vary_batches --out "$out/train_step_compile.jsonl"
    # the same batches eager, for the comparison on the same machine
    step python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \
        --batch_sizes 32 64 --precisions bf16 --steps 8 --vary_batches --out "$out/train_step_vary_eager.jsonl"
fi
if want compile_nhwc; then
    # --compile with the decoder's and the discriminator's 1-D convolutions as channels-last 2-D ones
    # (semtts.conv_layout): no cuDNN layout conversions around their bf16 kernels; batch 32 only (after the
    # compile section, on the same machine, the variable-length parts come from inductor's cache)
    step timeout 300 python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml \
        --batch_sizes 32 --precisions bf16 --steps 8 --compile --channels_last_conv1d --vary_batches \
        --out "$out/train_step_compile_nhwc.jsonl"
fi
if want campplus; then
    step python3 bench/campplus.py --devices cuda --out "$out/campplus.jsonl"
fi
if want whisper; then
    step timeout 240 python3 bench/whisper_features.py --out "$out/whisper_features.jsonl"
fi
exit $status
