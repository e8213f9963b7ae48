#!/usr/bin/env bash
# mini: the built-in synthetic corpus (espeak-ng voices), CPU-sized end to end.
#   bash recipes/mini/run.sh [--stage N] [--stop_stage M] [--force] [--key value ...]
# Hardware and time: any CPU, 2 cores; stages 0-2 in about a minute.
set -uo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hparams=recipes/mini/hparams/corpus.yaml
. "$recipe_dir/../stages.sh"
run_stages "$@"
