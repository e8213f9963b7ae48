#!/usr/bin/env bash
# Set up semtts on a fresh Debian/Ubuntu machine: a virtualenv in .venv with
# semtts installed in editable mode (with the test extras), and espeak-ng.
# Idempotent: a second run checks and skips what is already there.
#
#   bash tools/setup.sh            # then: bash recipes/mini/run.sh | bash tools/test.sh
#
# Environment: SEMTTS_VENV (default: <repo>/.venv), PYTHON (default: python3).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SEMTTS_VENV:-$root/.venv}
python=${PYTHON:-python3}
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (setup) $*"; }

# 1. espeak-ng: the phonemizer backend and the mini corpus voice.
if ! command -v espeak-ng >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing espeak-ng with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
    else
        echo "error: espeak-ng is missing; install it as root: sudo apt-get install -y espeak-ng" >&2
        exit 1
    fi
else
    log "espeak-ng found: $(command -v espeak-ng) (skipped)"
fi

# 2. The virtualenv and the package. The stamp records what was installed.
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "error: semtts needs Python >= 3.10 ($python is $("$python" --version 2>&1))" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    log "creating the virtualenv $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.semtts-installed"
want=$(cat "$root/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c 'import semtts' 2>/dev/null; then
    log "semtts already installed in $venv (skipped)"
else
    log "installing semtts and its dependencies into $venv (a few minutes the first time)"
    "$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
    "$venv/bin/python" -m pip install -q -e "$root[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
    echo "$want" > "$stamp"
fi
log "ready: $venv"
