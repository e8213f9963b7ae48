#!/usr/bin/env bash
# VCTK-Corpus-0.92, 109 English speakers (44 h), mic1 flac at 48 kHz resampled to 22.05 kHz; 8 speakers held out as test_unseen
#   bash recipes/vctk/run.sh --data_folder /path/to/corpus [--stage N] [--stop_stage M] [--key value ...]
set -uo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hparams=recipes/vctk/hparams/corpus.yaml
. "$recipe_dir/../stages.sh"
run_stages "$@"
