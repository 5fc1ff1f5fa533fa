#!/usr/bin/env bash
# Fill benchmarks/wheels/ with what a bare CUDA machine with PyTorch (torch, numpy, typing-extensions,
# fsspec, PyYAML, packaging, filelock, jinja2) lacks to run benchmarks/gpu_check.sh. Run it where PyPI is
# reachable; the folder then travels with the checkout. Such a machine may have no network, and its numpy
# may be newer than replay-rec's pin, so gpu_check.sh installs these without dependency resolution.
# PYTHON_VERSION (e.g. 312) picks the target machine's Python; default: this one's.
# Usage: bash benchmarks/fetch_wheels.sh [NAME...]: only these distributions (default: all of NEEDED), for a
# machine that has the rest (a CUDA image with pandas, scipy, lightning...) and a small transfer.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
PYTHON_VERSION=${PYTHON_VERSION:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')}
# What a bare PyTorch machine lacks, at the exact versions of the environment this runs in (one known to
# work together: run it in this project's own environment).
NEEDED=(
    replay-rec scikit-learn scipy threadpoolctl joblib tqdm narwhals                 # the baseline and its needs
    lightning pytorch-lightning lightning-utilities torchmetrics hydra-core omegaconf
    pandas pytz tzdata python-dateutil six polars polars-runtime-32 pyarrow tabulate
    optuna alembic sqlalchemy greenlet mako colorlog
    tensorboard tensorboard-data-server protobuf grpcio absl-py markdown werkzeug markupsafe   # training's logger
    matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing                           # the bench's plot
    pytest pluggy iniconfig
)
[ "$#" -gt 0 ] && NEEDED=("$@")
mapfile -t PINS < <(python3 -m pip freeze | grep -i -E "^($(IFS='|'; echo "${NEEDED[*]}"))==")
pip download --dest wheels --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "${PINS[@]}"
# hydra's parser runtime is published as source only; it is pure Python, so one wheel serves every machine.
pip wheel --quiet --no-deps --wheel-dir wheels "antlr4-python3-runtime==4.9.3"
# pandas' own test suite is a third of its wheel and never imported: drop it (and its RECORD lines).
python3 - <<'PYTHON'
import glob
import os
import zipfile

for path in glob.glob("wheels/pandas-*.whl"):
    with zipfile.ZipFile(path) as wheel, zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as trimmed:
        for item in wheel.infolist():
            if item.filename.startswith("pandas/tests/"):
                continue
            data = wheel.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"pandas/tests/"))
            trimmed.writestr(item, data)
    os.replace(path + ".tmp", path)
PYTHON
du -sh wheels
