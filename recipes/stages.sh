#!/usr/bin/env bash
# The shared stage driver of every semtts recipe. A recipe's run.sh sets
# `hparams` (its corpus.yaml) and sources this file, then calls `run_stages "$@"`.
#
# Options: --stage N (default 0), --stop_stage M (default: the last stage this
# version of semtts provides; not before --stage), --force (redo finished
# stages), --ngpu N (train stages 5-7 in N processes under torchrun: DDP),
# --help; --key=value works as --key value. Any other --key value is a
# HyperPyYAML override or a SpeechBrain run option, passed to every Python
# stage; an unknown key, or a value of another type than the key's value in the
# hparams files (a list is written [a, b], a mapping {key: value}), fails before
# anything runs (semtts/stages/flags.py).
#
# Every stage is `python -m semtts.stages.<module> <hparams> [overrides]`, run
# from the repository root; it skips work it has already done and says so.
# Stages 1-10 keep a `done` marker in their output folder: a rerun with the
# same settings skips, other settings stop and ask for --force, and --force
# redoes the stage. Stage 0 keeps none: it checks the corpus every time; for
# the mini corpus it reuses a complete one generated with the same settings
# (its .complete marker; also with --force), and replaces one generated with
# other settings only with --force.
#
# Paths: the stages run from the repository root, so relative paths in the
# hparams files are read from there. A relative path typed on the command line
# for a path flag (PATH_FLAGS below; --whisper_model and --eval_asr_model only
# when the value is a local .pt file or has a '/') is read from the directory
# run.sh is called from, as any command-line path is.

SEMTTS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Stage numbers are the same for every corpus.
STAGE_NAMES=(
    "corpus check"                    # 0
    "data preparation"                # 1
    "text frontend and token list"    # 2
    "CAM++ speaker embeddings"        # 3
    "Whisper teacher features"        # 4
    "train stage A"                   # 5
    "train stage B"                   # 6
    "train stage C"                   # 7
    "synthesize the test sets"        # 8
    "evaluate"                        # 9
    "pack the model"                  # 10
)
# The Python module of each stage; empty where this version has none yet.
STAGE_MODULES=(check_corpus prepare frontend speaker_embeddings teacher_features
               train_a train_b train_c synthesize evaluate pack)

log() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$(dirname "$0")")) $*"
}

last_stage() {
    local i last=0
    for i in "${!STAGE_MODULES[@]}"; do
        [ -n "${STAGE_MODULES[$i]}" ] && last=$i
    done
    echo "$last"
}

stage_help() {
    cat <<HELP
Usage: bash $0 [--stage N] [--stop_stage M] [--force] [--ngpu N] [--key value ...]

Stages:
HELP
    local i
    for i in "${!STAGE_NAMES[@]}"; do
        if [ -n "${STAGE_MODULES[$i]}" ]; then
            printf "  %2d  %-32s python -m semtts.stages.%s\n" "$i" "${STAGE_NAMES[$i]}" "${STAGE_MODULES[$i]}"
        else
            printf "  %2d  %-32s (not in this version of semtts yet)\n" "$i" "${STAGE_NAMES[$i]}"
        fi
    done
    cat <<HELP

Options:
  --stage N        first stage to run (default 0)
  --stop_stage M   last stage to run (default $(last_stage))
  --force          redo stages even if they are done
  --ngpu N         train stages 5-7 in N processes, one per GPU (torchrun, SpeechBrain's
                   DDP; batch_size is per process; processes 1.. write to
                   <output folder>/ddp_logs/stage_N); the other stages run in one process
  --help           this text
  --key value      override any key of $hparams (e.g. --tag run2 --nj 4),
                   or set a SpeechBrain run option (--device cuda:0, --precision bf16);
                   --key=value works too. A value must have the type of the key's
                   value in the hparams files: a list is written [spk4] or [spk4, spk5]
                   (a bare spk4 is an error), a mapping {speakers: [spk7]} (with a
                   space after each ':')
  --noprogressbar, --compile, ...
                   SpeechBrain's on/off run options take no value

Paths: relative paths in the hparams files are read from the repository root
($SEMTTS_ROOT), where every stage runs. A relative path given on the command
line to --data_folder, --exp_root, --output_folder, --pretrained_dir,
--campplus_cache_dir, --whisper_cache_dir, --campplus_ckpt, or a local .pt to
--whisper_model / --eval_asr_model, is read from the directory you run this from.
The mini corpus (--data_folder) is shared by every --tag: stage 0 replaces one
generated with other settings (--seed, --mini_speakers, ...) only with --force;
give each such variant its own --data_folder (e.g. data/mini_seed7).
HELP
}

# The Python to run the stages with: $SEMTTS_PYTHON if set; else the virtualenv
# $SEMTTS_VENV (as tools/setup.sh and tools/test.sh use it); else an active
# virtualenv's python3; else <repo>/.venv; else python3.
semtts_python() {
    if [ -n "${SEMTTS_PYTHON:-}" ]; then echo "$SEMTTS_PYTHON"
    elif [ -n "${SEMTTS_VENV:-}" ]; then
        if [ -x "$SEMTTS_VENV/bin/python" ]; then echo "$SEMTTS_VENV/bin/python"
        else echo "error: SEMTTS_VENV=$SEMTTS_VENV has no bin/python (make it with: bash tools/setup.sh)" >&2; return 2
        fi
    elif [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$SEMTTS_ROOT/.venv/bin/python" ]; then echo "$SEMTTS_ROOT/.venv/bin/python"
    else echo python3
    fi
}

# Flags whose relative values are read from the caller's directory (see the top of this file).
PATH_FLAGS=" data_folder exp_root output_folder pretrained_dir campplus_cache_dir whisper_cache_dir campplus_ckpt
 whisper_model eval_asr_model "

# caller_path KEY VALUE: VALUE, or $PWD/VALUE for a relative path of a path flag
# typed outside the repository root (nothing changes when run from the root).
caller_path() {
    local key=${1#--} value=$2
    if [[ "$PATH_FLAGS" != *[[:space:]]"$key"[[:space:]]* ]] || [ "$(pwd -P)" = "$(cd "$SEMTTS_ROOT" && pwd -P)" ]; then
        echo "$value"; return
    fi
    case "$value" in
        ""|/*|"~"*|*://*|null|Null|NULL|None|none) echo "$value"; return ;;
    esac
    if [[ "$key" == whisper_model || "$key" == eval_asr_model ]] && [[ "$value" != *.pt && "$value" != */* ]]; then
        echo "$value"; return  # a model name (tiny, large-v3, ...)
    fi
    local resolved="$PWD/${value#./}"
    if [ -e "$SEMTTS_ROOT/${value#./}" ] && [ ! -e "$resolved" ]; then  # the reading of earlier versions exists
        echo "note: --$key $value is read from this directory ($resolved), not from the repository root" \
             "($SEMTTS_ROOT/${value#./} exists); give an absolute path to use that one" >&2
    fi
    echo "$resolved"
}

# SpeechBrain's on/off run options: flags without a value (--noprogressbar, --compile, ...).
RUN_SWITCHES=" test_only debug debug_persistently data_parallel_backend distributed_launch find_unused_parameters
 jit compile compile_using_fullgraph compile_using_dynamic_shape_tracing auto_mix_prec bfloat16_mix_prec
 skip_nonfinite_grads noprogressbar tqdm_colored_bar remove_vector_weight_decay profile_training "

run_stages() {
    local stage=0 stop_stage force="" ngpu=1 overrides=()
    stop_stage=$(last_stage)
    while [ $# -gt 0 ]; do
        case "$1" in
            --help|-h) stage_help; return 0 ;;
            --stage) [ $# -ge 2 ] || { echo "error: --stage needs a value" >&2; return 2; }; stage=$2; shift 2 ;;
            --stage=*) stage=${1#*=}; shift ;;
            --stop_stage) [ $# -ge 2 ] || { echo "error: --stop_stage needs a value" >&2; return 2; }
                          stop_stage=$2; shift 2 ;;
            --stop_stage=*) stop_stage=${1#*=}; shift ;;
            --force) force=--force; shift ;;
            --ngpu) [ $# -ge 2 ] || { echo "error: --ngpu needs a value" >&2; return 2; }; ngpu=$2; shift 2 ;;
            --ngpu=*) ngpu=${1#*=}; shift ;;
            --*=*) overrides+=("${1%%=*}" "$(caller_path "${1%%=*}" "${1#*=}")"); shift ;;
            --*) if [[ "$RUN_SWITCHES" == *" ${1#--} "* ]]; then overrides+=("$1"); shift; continue; fi
                 [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; return 2; }
                 overrides+=("$1" "$(caller_path "$1" "$2")"); shift 2 ;;
            *) echo "error: unexpected argument '$1' (flags are --key value; see --help)" >&2; return 2 ;;
        esac
    done
    for value in "$stage" "$stop_stage"; do
        [[ "$value" =~ ^([0-9]|10)$ ]] || {
            echo "error: --stage and --stop_stage take a stage number from 0 to 10, got '$value'" >&2; return 2; }
    done
    [[ "$ngpu" =~ ^[1-9][0-9]{0,2}$ ]] || {
        echo "error: --ngpu takes a number of processes (GPUs) from 1 to 999, got '$ngpu'" >&2; return 2; }
    if [ "$stage" -gt "$stop_stage" ]; then
        echo "error: --stage $stage is after --stop_stage $stop_stage: nothing to run" \
             "(--stop_stage must be >= --stage)" >&2
        return 2
    fi
    local python
    python=$(semtts_python) || return 2
    cd "$SEMTTS_ROOT" || return 2
    # Unknown flags and values of the wrong type fail here, before any stage runs.
    if [ ${#overrides[@]} -gt 0 ]; then
        "$python" -m semtts.stages.flags "$hparams" --check "${overrides[@]}" || return 2
    fi
    log "stages $stage to $stop_stage with $hparams ${overrides[*]}$([ "$ngpu" -gt 1 ] && echo " (training on $ngpu GPUs)")"
    local s out=""
    for ((s = stage; s <= stop_stage; s++)); do
        if [ -z "${STAGE_MODULES[$s]}" ]; then
            log "stage $s (${STAGE_NAMES[$s]}): not in this version of semtts yet (skipped)"
            continue
        fi
        local launch=("$python" -m)
        if [ "$ngpu" -gt 1 ] && [[ "${STAGE_MODULES[$s]}" == train_* ]]; then
            # one process per GPU (SpeechBrain's DDP) under torchrun; process 0 writes to the console,
            # the others to files; the other stages run in one process
            [ -n "$out" ] || out=$("$python" -m semtts.stages.flags "$hparams" --output-folder "${overrides[@]}") \
                || return 2
            launch=("$python" -m semtts.stages.launch --nproc "$ngpu" --log_dir "$out/ddp_logs/stage_$s")
            local others="processes 1-$((ngpu - 1)) write"
            [ "$ngpu" -eq 2 ] && others="process 1 writes"
            log "stage $s: ${STAGE_NAMES[$s]} ($ngpu processes; $others to $out/ddp_logs/stage_$s)"
        else
            log "stage $s: ${STAGE_NAMES[$s]}"
        fi
        if ! "${launch[@]}" "semtts.stages.${STAGE_MODULES[$s]}" "$hparams" $force "${overrides[@]}"; then
            log "stage $s (${STAGE_NAMES[$s]}) failed; fix the error above and rerun with --stage $s"
            return 1
        fi
    done
    out=$("$python" -m semtts.stages.flags "$hparams" --output-folder "${overrides[@]}")
    log "done: stages $stage to $stop_stage; outputs under $out"
    for report in "$out"/data/report.json "$out"/tokens/report.json "$out"/spk_emb/report.json \
                  "$out"/teacher/report.json "$out"/synth/*/*/report.json; do
        [ -f "$report" ] && log "  report: $report"
    done
    for wavs in "$out"/synth/*/*/; do
        [ -d "$wavs" ] && log "  synthesized wavs: $wavs"
    done
    [ -d "$out/packed" ] && log "  packed model: $out/packed (semtts info $out/packed)"
    if [ "$stop_stage" -ge 9 ] && [ -f "$out/eval/results.md" ]; then
        log "the stages side by side ($out/eval/results.md):"
        cat "$out/eval/results.md"
    fi
    return 0
}
