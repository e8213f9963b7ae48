#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels that bench/gpu_run.sh installs offline on the lent GPU machine,
# which has torch, triton and numba but none of the packages below and no package index. Each is downloaded
# at the version this machine's .venv (tools/setup.sh) has installed, so the set is one that pip resolved
# together: hyperpyyaml 1.2.3, for one, needs ruamel.yaml < 0.19, which an unpinned download ignores.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION]    # the device's Python, default 3.12
#
# Then carry [".whl"] in the device call. Exit status: 0 done, 1 a download failed, 2 no .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
venv_python=.venv/bin/python
[[ -x $venv_python ]] || { echo "gpu_wheels: no $venv_python: run bash tools/setup.sh first" >&2; exit 2; }
packages=(speechbrain hyperpyyaml ruamel.yaml ruamel.yaml.clib soundfile cffi pycparser sentencepiece joblib
          huggingface_hub tqdm)
pins=()
for name in "${packages[@]}"; do
    version=$("$venv_python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") || {
        echo "gpu_wheels: $name is not installed in .venv" >&2; exit 1; }
    pins+=("$name==$version")
done
mkdir -p .whl && rm -f .whl/*.whl  # only the wheels: openai-whisper's sdist (whisper section) stays
echo "gpu_wheels: ${pins[*]} for Python $python_version"
"$venv_python" -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d .whl "${pins[@]}"
ls .whl
