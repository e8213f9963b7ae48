#!/usr/bin/env bash
# AISHELL-3, 218 Mandarin speakers (85 h) at 44.1 kHz resampled to 22.05 kHz; its test/ speakers as test_unseen; pinyin transcripts
#   bash recipes/aishell3/run.sh --data_folder /path/to/corpus [--stage N] [--stop_stage M] [--key value ...]
set -uo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hparams=recipes/aishell3/hparams/corpus.yaml
. "$recipe_dir/../stages.sh"
run_stages "$@"
