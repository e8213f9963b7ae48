#!/usr/bin/env bash
# The GPU checks and benchmarks of semtts, for a CUDA machine that has torch, triton and numba (the lent
# H100/H200 image). The Python packages semtts needs beyond those travel as wheels in .whl/ (ignored by
# git; `bash bench/gpu_wheels.sh` makes it at this machine's .venv versions; carry it) and are installed here
# into /tmp/semtts_site, offline, when they do not import or HyperPyYAML cannot load a document with them.
#
#   bash bench/gpu_run.sh OUT_DIR                     # the default section, one device call: at most 9.5 min
#   SECTIONS=graphs_all GRAPHS_ALL_BATCHES=32 GRAPHS_ALL_POOL=12 bash bench/gpu_run.sh OUT_DIR2  # a second call
#   SECTIONS="tests mas infer" bash bench/gpu_run.sh OUT_DIR   # another call, only if budget is left: ~4 min
#
# In the device tool: carry [".whl"], timeout_s 600, command `bash bench/gpu_run.sh $OUT/gpu`; then copy
# the files into bench/results/gpu_<card>/ (the script prints the folder's name at the start).
#
# The H200 runs of 2026-11-27 measured infer and train_core (bench/results/gpu_h200/2026-11-27/), then every
# part as CUDA graphs at batch 32 (.../2026-11-27-graphs_all/) and 64 (.../2026-11-27-graphs_b64/): the
# graphs_all section. Compiling every part took 197-327 s with cold caches, recording a new shape 2-40 s.
# The default section (SECTIONS=graphs_check):
#   graphs_check  that the graphed parts train as eager does (tiny model, CUDA-only test: the fixed-length
#               parts, which passed on the H200, and every part of batches padded to few lengths, two shapes in
#               turn, which was still compiling at its 126 s limit; at most 480 s)
# By name: graphs_all, every part as CUDA graphs: batches padded to multiples of 32 frames and 16 tokens,
# GRAPHS_ALL_POOL (4) bucketed batches in turn, spread over the lengths (the steady state of a long training, its
# padded shapes all recorded; a pool of 12 shows the memory of more recorded paths), batch 64 then 32
# (GRAPHS_ALL_BATCHES), cudnn.benchmark on; at most 420 s. The same batches eager (the comparison, not
# profiled; at most 100 s) run after graphs_check.
# By name: graphs (new lengths every step, batch 32 and 64, eager, then with only the decoder and the
# discriminator compiled, as CUDA graphs: their launches, cuDNN's included, cost the host nothing).
# Every train-step record of these sections but graphs_all's eager one has gpu_busy_ms, the GPU's own time per
# step (profiling eager steps takes the host tens of seconds; eager at batch 32 it was 91.8 ms).
# Also by name only: profile (where a bf16 batch-32 step's time goes, and the GPU's busy time in it, eager and with
# the fixed-length parts as CUDA graphs; ~3-4 min), infer (eager and CUDA-graph synthesis at 100/200/400
# tokens, fp32/fp16/bf16 decoder; ~1 min),
# train_core (eager, batch 32 and 64, bf16 and fp32, then bf16 bucketed; ~2 min), compile_default (as compile,
# in torch.compile's default mode, then eager on the same batches), tests (CUDA-only tests), mas (Triton
# kernel check against the CPU and timing), train (train_core plus fp16, and bf16/fp16 with every 1-D
# convolution in NHWC), conv_shapes (every convolution call of a step timed alone per layout), compile_nhwc,
# campplus, whisper, experiments (cudnn.benchmark and NHWC period discriminators, measured slower or bigger on
# an H200 in bench/results/gpu_h200/), compile (batch 32, every part compiled, the variable-length ones without
# CUDA graphs: new lengths every step). Each section writes its own jsonl (profile a .txt), all of it is in
# OUT_DIR/log.txt; the default call leaves 1 file, "tests mas infer" 4 (the tool returns at most 8).
# Every step has a timeout, clamped to a deadline of DEADLINE_S seconds (default 570) after the start, so
# one hang cannot eat the call; the last line is a one-line JSON summary of the steps. Exit status: 0 all
# passed, 1 a step failed or was skipped, 2 no CUDA device (or an unknown section), 3 a package missing.
set -uo pipefail
out=${1:-bench/results/gpu}
sections=${SECTIONS-graphs_check}
deadline=$((SECONDS + ${DEADLINE_S:-570}))
site=${SEMTTS_SITE:-/tmp/semtts_site}
mkdir -p "$out" || exit 2
exec > >(tee -a "$out/log.txt") 2>&1
tee_pid=$!
ok=() failed=() skipped=() card=""
json_list() { local s="" x; for x in "$@"; do s+="${s:+, }\"$x\""; done; printf '[%s]' "$s"; }
finish() {  # finish STATUS [WHY]: the one-line summary, the log completed, exit STATUS
    local why=${2:-$( (($1)) && echo FAILED || echo ok)}
    echo "{\"gpu_run\": \"$why\", \"card\": \"$card\", \"seconds\": $SECONDS, \"ok\": $(json_list "${ok[@]}")," \
        "\"failed\": $(json_list "${failed[@]}"), \"skipped\": $(json_list "${skipped[@]}")}"
    exec >&- 2>&-
    wait "$tee_pid" 2>/dev/null
    exit "$1"
}
echo "=== gpu_run: sections \"$sections\", out $out, deadline ${DEADLINE_S:-570} s ($(date +%H:%M:%S))"
known=" graphs graphs_all graphs_check compile profile infer train_core train compile_default compile_nhwc conv_shapes"
known+=" tests mas campplus whisper experiments "
for s in $sections; do
    [[ $known == *" $s "* ]] || { echo "gpu_run: unknown section '$s' (known:$known)"; finish 2 unknown_section; }
done

# a CUDA device first: nothing else is worth doing without one
if ! gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1) || [[ -z $gpu ]]; then
    echo "gpu_run: no CUDA device visible (nvidia-smi: ${gpu:-no output}); nothing run"
    finish 2 no_cuda
fi
echo "$gpu"
card=$(head -n1 <<<"$gpu" | grep -oiE '\b[A-Z]{1,2}[0-9]{2,4}[A-Z]?\b' | head -n1 | tr '[:upper:]' '[:lower:]')
echo "gpu_run: afterwards copy $out/* to bench/results/gpu_${card:-CARD}/"

# the packages beyond torch/triton/numba: offline, from .whl/, into $site (no compiling, no dependencies)
export PYTHONPATH=$PWD:$site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip_install() {  # --upgrade: an earlier call's install in $site is replaced, not kept
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$site" "$@"
}
# ready: HyperPyYAML loads a document (ruamel.yaml 0.19 imports but cannot load), and the packages import
export GPU_RUN_READY="from hyperpyyaml import load_hyperpyyaml; load_hyperpyyaml('a: 1\nb: !ref <a>')
import speechbrain, soundfile"
if ! python3 -c "$GPU_RUN_READY" 2>/dev/null && [[ -d .whl ]]; then
    echo "=== installing .whl/*.whl into $site ($(date +%H:%M:%S); bench/gpu_wheels.sh makes .whl/)"
    if ! pip_install .whl/*.whl; then  # one wheel that does not fit: the others one by one
        for w in .whl/*.whl; do pip_install "$w" || echo "gpu_run: could not install $w"; done
    fi
fi
# fail fast, in one line, if anything the benchmarks import is still missing (whisper: its own section)
if ! python3 - <<'EOF'; then finish 3 missing_packages; fi
import importlib, os, sys
missing = []
for name in ("torch", "triton", "numba", "speechbrain", "hyperpyyaml", "soundfile", "semtts.brain"):
    try:
        importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - a broken install is as missing as an absent one
        missing.append(f"{name} ({type(err).__name__}: {err})")
if not missing:
    try:
        exec(os.environ["GPU_RUN_READY"])  # the check that decided the install above
    except Exception as err:  # noqa: BLE001 - e.g. a ruamel.yaml that hyperpyyaml cannot use
        import ruamel.yaml
        missing.append(f"a working hyperpyyaml ({type(err).__name__}: {err}; ruamel.yaml {ruamel.yaml.__version__})")
if missing:
    sys.exit("gpu_run: missing Python packages: " + "; ".join(missing) + " (carry .whl/ from bench/gpu_wheels.sh)")
import torch, triton
print("torch", torch.__version__, "triton", triton.__version__, "python", sys.version.split()[0])
EOF
if ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_run: torch sees no CUDA device (torch.cuda.is_available() is False); nothing run"
    finish 2 no_cuda
fi

step() {  # step NAME TIMEOUT_S COMMAND...: run it with a timeout clamped to the deadline
    local name=$1 limit=$2 rc=0 t0=$SECONDS left
    shift 2
    left=$((deadline - SECONDS - 10))
    if ((left < 30)); then
        echo "=== SKIPPED $name: ${left} s left before the deadline" >&2
        skipped+=("$name")
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (timeout $limit s, $(date +%H:%M:%S)): $*" >&2
    timeout -k 15 "$limit" "$@" || rc=$?
    echo "=== $name: rc $rc, $((SECONDS - t0)) s$( ((rc == 124 || rc == 137)) && echo ', TIMED OUT')" >&2
    if ((rc)); then failed+=("$name"); else ok+=("$name"); fi
}
want() { [[ " $sections " == *" $1 "* ]]; }
train=(python3 bench/train_step.py --device cuda --config hparams/model/vits_base.yaml)

# a new batch (new lengths) every step, so compiled_graphs shows whether anything compiled again
vary=(--precisions bf16 --steps 8 --vary_batches --bucketed --gpu_busy)
if want graphs_all; then
    # every part as CUDA graphs, one per padded shape, after the same batches eager; gpu_busy_ms: what the GPU
    # itself needs of such a step; cuDNN's benchmarked algorithms (shapes recur). The pool's batches spread
    # evenly over the 2-10 s lengths (H200: 96.5 ms at batch 32, 122.1 ms at batch 64).
    pool=(--batch_sizes ${GRAPHS_ALL_BATCHES:-64 32} --precisions bf16 --steps 8 --bucketed
          --pad_frames_to 32 --pad_tokens_to 16 --batch_pool "${GRAPHS_ALL_POOL:-4}" --cudnn_benchmark)
    step graphs_all 420 "${train[@]}" "${pool[@]}" --gpu_busy --compile --compile_mode reduce-overhead \
        --out "$out/train_step_graphs_all.jsonl"
fi
if want graphs_check; then
    # that the graphed parts train as eager does (tiny model: none declined, same losses and grad norms); its
    # second case compiles every part with cold caches (the first passed on the H200 in under 126 s)
    step graphs_check 480 python3 -m pytest -q -p no:cacheprovider tests/test_compiled_parts.py -k train_as_eager
fi
if want graphs_all; then
    # the same batches eager, last: the comparison, not a target (not profiled: that takes the host tens of
    # seconds), in what is left before the deadline
    step graphs_all_eager 100 "${train[@]}" "${pool[@]}" --out "$out/train_step_pool_eager.jsonl"
fi
if want graphs; then
    # eager on the batches the graphs section times, for the comparison on the same machine
    step graphs_eager 90 "${train[@]}" --batch_sizes 32 64 "${vary[@]}" --out "$out/train_step_vary_eager.jsonl"
fi
if want compile; then
    # every part --compile takes (semtts.compiled_parts), batch 32 only (at batch 32 and 64 it did not finish
    # compiling in 330 s on the H200); before the graphs section, which then finds its parts in inductor's cache
    step compile 300 "${train[@]}" --batch_sizes 32 "${vary[@]}" --compile --compile_mode reduce-overhead \
        --out "$out/train_step_compile.jsonl"
fi
if want graphs; then
    # the fixed-length parts as CUDA graphs (forward and backward; cudagraph_skips counts the parts inductor
    # declined to graph)
    step graphs 240 "${train[@]}" --batch_sizes 32 64 "${vary[@]}" --compile --compile_mode reduce-overhead \
        --compile_module_keys decoder discriminator --out "$out/train_step_graphs.jsonl"
fi
if want profile; then
    step profile 150 python3 bench/profile_train_step.py --batch_size 32 --precision bf16 \
        > "$out/profile_b32_bf16.txt"
    # the same with the decoder and the discriminator as CUDA graphs: what is left of the step's time
    step profile_graphs 240 python3 bench/profile_train_step.py --batch_size 32 --precision bf16 \
        --compile_mode reduce-overhead --compile_module_keys decoder discriminator \
        > "$out/profile_b32_bf16_graphs.txt"
fi
if want compile_default; then
    step compile_default 420 "${train[@]}" --batch_sizes 32 "${vary[@]}" --compile \
        --out "$out/train_step_compile_default.jsonl"
    step compile_eager 60 "${train[@]}" --batch_sizes 32 "${vary[@]}" --out "$out/train_step_vary_eager.jsonl"
fi
if want infer; then
    step infer 150 python3 bench/infer.py --device cuda --iters 20 --precisions fp32 fp16 bf16 --out "$out/infer.jsonl"
fi
if want train_core || want train; then
    step train_core 240 "${train[@]}" --batch_sizes 32 64 --precisions bf16 fp32 --steps 8 \
        --out "$out/train_step.jsonl"
    # batches of similar lengths, as the original VITS's bucket sampler makes them (its reference step)
    step train_core_bucketed 120 "${train[@]}" --batch_sizes 32 64 --precisions bf16 --steps 8 --bucketed \
        --out "$out/train_step.jsonl"
fi
if want tests; then
    # the compiled parts' inductor case on CUDA only (its CPU case runs in CI)
    step tests 240 python3 -m pytest -q -p no:cacheprovider tests/test_graphed_inference.py \
        tests/test_update_gate.py tests/test_audio_features.py tests/test_vits_generator.py \
        tests/test_compiled_parts.py -k "not (dynamic_shape_parts and cpu)"
    step tests_nonfinite 120 python3 -m pytest -q -p no:cacheprovider tests/test_brain.py -k nonfinite
fi
if want mas; then
    step mas_check 150 python3 bench/gpu_check_mas.py --skip-bench --out "$out/mas_check.jsonl"
    step mas 120 python3 bench/mas.py --device cuda --backends triton --out "$out/mas.jsonl"
fi
if want conv_shapes; then
    step conv_shapes 180 python3 bench/conv_shapes.py --device cuda --config hparams/model/vits_base.yaml \
        --batch_size 32 --precision bf16 --out "$out/conv_shapes_b32_bf16.jsonl"
fi
if want train; then
    step train_fp16 120 "${train[@]}" --batch_sizes 32 64 --precisions fp16 --steps 8 --out "$out/train_step.jsonl"
    step train_nhwc 180 "${train[@]}" --channels_last_conv1d --batch_sizes 32 64 --precisions bf16 fp16 \
        --steps 8 --out "$out/train_step_channels_last_conv1d.jsonl"
fi
if want compile_nhwc; then
    # --compile with the decoder's and the discriminator's 1-D convolutions as channels-last 2-D ones
    # (semtts.conv_layout); batch 32 only (after compile on the same machine: inductor's cache helps)
    step compile_nhwc 300 "${train[@]}" --batch_sizes 32 --precisions bf16 --steps 8 --compile \
        --channels_last_conv1d --vary_batches --out "$out/train_step_compile_nhwc.jsonl"
fi
if want campplus; then
    step campplus 120 python3 bench/campplus.py --devices cuda --out "$out/campplus.jsonl"
fi
if want whisper; then
    if ! python3 -c "import whisper" 2>/dev/null && compgen -G ".whl/openai_whisper-*.tar.gz" >/dev/null; then
        echo "=== installing .whl/openai_whisper-*.tar.gz into $site"
        pip_install .whl/openai_whisper-*.tar.gz || echo "gpu_run: could not install openai-whisper"
    fi
    if python3 -c "import whisper"; then
        step whisper 240 python3 bench/whisper_features.py --out "$out/whisper_features.jsonl"
    else
        echo "gpu_run: whisper does not import; whisper section not run"
        failed+=("whisper")
    fi
fi
if want experiments; then
    step cudnn_benchmark 240 "${train[@]}" --cudnn_benchmark --batch_sizes 32 64 --precisions bf16 fp16 fp32 \
        --steps 8 --out "$out/train_step_cudnn_benchmark.jsonl"
    step channels_last_disc 240 "${train[@]}" --channels_last_disc --batch_sizes 32 64 --precisions bf16 fp32 \
        --steps 8 --out "$out/train_step_channels_last_disc.jsonl"
fi

status=0
((${#failed[@]} + ${#skipped[@]})) && status=1
finish $status
