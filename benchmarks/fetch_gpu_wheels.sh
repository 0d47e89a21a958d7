#!/bin/sh
# Download the wheels the GPU machine lacks (PyAV; Python 3.12, x86-64 manylinux) into .whl/, which
# git ignores and the device tool carries: run(..., carry=[".whl"]). Run here, where pip can reach
# the package index; the device machine cannot. run_gpu.sh installs whatever .whl/ holds.
# Usage: benchmarks/fetch_gpu_wheels.sh [PYTHON_VERSION]   (default 3.12, the device's python3)
set -eu
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
AV=$(python3 -c 'import av; print(av.__version__)' 2>/dev/null || echo 18.1.0)   # the version tested here
mkdir -p .whl
rm -f .whl/av-*.whl
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "av==$AV"
ls -l .whl
