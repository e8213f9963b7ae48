#!/usr/bin/env bash
# LibriTTS-R train-clean-100 + train-clean-360 (1,151 speakers, 245 h) at 24 kHz resampled to 22.05 kHz; test-clean speakers as test_unseen
#   bash recipes/libritts_r/run.sh --data_folder /path/to/corpus [--stage N] [--stop_stage M] [--key value ...]
set -uo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hparams=recipes/libritts_r/hparams/corpus.yaml
. "$recipe_dir/../stages.sh"
run_stages "$@"
