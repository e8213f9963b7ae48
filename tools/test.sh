#!/usr/bin/env bash
# Run the semtts test suite (unit tests and doctests) on the CPU, in two processes (pytest-xdist, a test
# file per process at a time: a file's module fixtures are built once). Extra arguments go to pytest:
#   bash tools/test.sh -k mas -x          bash tools/test.sh -n 0   (one process)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SEMTTS_VENV:-$root/.venv}
cd "$root"
"$venv/bin/python" -m pytest -q tests semtts --doctest-modules -p no:cacheprovider -n 2 --dist loadfile "$@"
status=$?
if [ $status -eq 5 ]; then
    echo "error: pytest collected no tests: the suite is broken" >&2
    exit 1
fi
exit $status
