#!/usr/bin/env bash
# Set up semtts on a fresh Debian/Ubuntu machine: a virtualenv in .venv with
# semtts installed in editable mode (with the test extras), espeak-ng and
# (for the tests) g++.
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

# 1. System tools: espeak-ng (the phonemizer backend and the mini corpus voice;
#    required) and a C++ compiler (torch.compile's CPU backend, which only the
#    tests run; without root a missing one is a warning with the apt command).
need() {  # need COMMAND DEBIAN_PACKAGE WHY [optional]
    if command -v "$1" >/dev/null 2>&1; then
        log "$1 found: $(command -v "$1") (skipped)"
    elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing $2 with apt-get ($3)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    elif [ "${4:-}" = optional ]; then
        echo "warning: $1 is missing ($3); install it as root: sudo apt-get install -y $2" >&2
    else
        echo "error: $1 is missing ($3); install it as root: sudo apt-get install -y $2" >&2
        exit 1
    fi
}
need espeak-ng espeak-ng "the phonemizer backend and the mini corpus voice"
need g++ g++ "torch.compile's CPU backend, which the tests run; the recipes do not need it" optional

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
