#!/usr/bin/env bash
# LJSpeech-1.1, one English speaker, 13,100 utterances (24 h), 22.05 kHz
#   bash recipes/ljspeech/run.sh --data_folder /path/to/corpus [--stage N] [--stop_stage M] [--key value ...]
set -uo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hparams=recipes/ljspeech/hparams/corpus.yaml
. "$recipe_dir/../stages.sh"
run_stages "$@"
