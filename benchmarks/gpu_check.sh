#!/usr/bin/env bash
# The GPU check, on a bare CUDA machine with PyTorch, in under 8 minutes:
#   1. installs what such a machine lacks from benchmarks/wheels/ (benchmarks/fetch_wheels.sh fills it
#      elsewhere), without dependency resolution and without network; the project runs from src/ (PYTHONPATH);
#   2. the CUDA tests: SwitchBack's int8 products (torch._int_mm layouts) and bf16 autocast on the GPU,
#      training in 16-mixed, and no training step of any model x loss x head synchronising with the host
#      (CUDA's sync debug mode) (pytest -m cuda); with LEARNING_TESTS=1 also every loss, bf16 and the SwitchBack head
#      learning on the GPU (test_learning.py; about a minute more);
#   3. the step-limited bench on synthetic_ml20m (experiment/bench_shape.yaml's steps mode): RePlay's best
#      (CE_restricted in bf16), ours with CE, CCE, the SwitchBack head, the compiled step in bf16 and the best
#      combination; step time, tokens/s, CUDA memory and MFU against the bf16 probe, in $OUT; then RePlay's best
#      and ours at hidden size 1024, where the matrices are large enough to load the GPU (in $OUT/hidden1024).
# A failed step is reported and the next one runs: one pass yields everything it can; the exit status is the
# first failure's.
# Usage: bash benchmarks/gpu_check.sh [--dry-run]
#   --dry-run: on a CPU, tiny synthetic data and 3 steps, to check the script itself (the CUDA tests skip);
#   its tables go to .gpu_check/dry_run unless OUT is set.
# Environment: OUT (results folder, default docs/benchmarks/gpu_ml20m_shape), STEPS (default 200),
#   PYTHON (default python3), LEARNING_TESTS (1: the learning tests on the GPU too).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=false
[ "${1:-}" = "--dry-run" ] && DRY_RUN=true
OUT_DEFAULT=docs/benchmarks/gpu_ml20m_shape
$DRY_RUN && OUT_DEFAULT=.gpu_check/dry_run  # a dry run never overwrites the committed GPU tables
OUT=${OUT:-$OUT_DEFAULT}
STEPS=${STEPS:-200}
PYTHON=${PYTHON:-python3}
export REPLAY_ACCELERATED_HOME=${REPLAY_ACCELERATED_HOME:-$PWD/.gpu_check}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)
status=0
step() { echo; echo "== $1 ($(( $(date +%s) - started )) s)"; }
failed() { echo "FAILED: $1 (status $2)"; [ "$status" != 0 ] || status=$2; }

step "1. install what is missing (no network, no dependency resolution)"
# A wheel is installed where its distribution is missing or at another major version (replay-rec needs
# pandas 2, and an image may hold pandas 3); what else the machine has (its torch, numpy) stays.
mapfile -t MISSING < <("$PYTHON" - <<'PYTHON'
import glob
from importlib import metadata

for path in sorted(glob.glob("benchmarks/wheels/*.whl")):
    name, version = path.split("/")[-1].split("-")[:2]
    try:
        if metadata.version(name).split(".")[0] == version.split(".")[0]:
            continue
    except metadata.PackageNotFoundError:
        pass
    print(path)
PYTHON
)
if [ "${#MISSING[@]}" -gt 0 ]; then
    "$PYTHON" -m pip install --quiet --no-deps --no-index --no-compile "${MISSING[@]}" || failed install $?
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available() and
              f'{torch.cuda.get_device_name()} (compute capability {torch.cuda.get_device_capability()})')"
"$PYTHON" -c "import replay_accelerated.cli, replay.nn" || { failed "import" $?; exit "$status"; }

step "2. CUDA tests"
"$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests/test_switchback.py tests/test_learning.py \
    tests/test_compiled_step.py
code=$?
[ "$code" = 0 ] || [ "$code" = 5 ] || failed "CUDA tests" "$code"  # 5: nothing selected (no GPU: all skipped)
if [ "${LEARNING_TESTS:-0}" = 1 ] && ! $DRY_RUN; then  # on the GPU: every loss, bf16 and the SwitchBack head learn
    PARALLEL=(); "$PYTHON" -c "import xdist" 2>/dev/null && PARALLEL=(-n 8)  # pytest-xdist, where installed
    "$PYTHON" -m pytest -q -p no:cacheprovider -m "" "${PARALLEL[@]}" tests/test_learning.py \
        -k "every_loss or bf16 or switchback" || failed "learning tests on the GPU" $?
fi

step "3. step-limited bench"
if $DRY_RUN; then
    DATA=(dataset=synthetic dataset.generator.n_users=600 model=bert4rec_synthetic
          model.params.model_params.max_seq_len=32 model.params.model_params.hidden_size=32
          model.params.training_params.embedding_dim=32 model.params.training_params.num_workers=0)
    STEPS=3
else
    DATA=(dataset=synthetic_ml20m model=bert4rec_synthetic_ml20m)
fi
WARMUP=$(( STEPS < 20 ? 1 : 20 ))
bench() {  # bench NAME ROWS TARGET [OVERRIDES...]: the bench, then its tables copied to the folder TARGET
    local name=$1 rows=$2 target=$3; shift 3
    "$PYTHON" -m replay_accelerated bench_shape "${DATA[@]}" "$@" mode.bench.name="$name" \
        mode.bench.steps="$STEPS" mode.bench.warmup_steps="$WARMUP" "mode.bench.only=$rows" \
        trainer.progress_bar=false || failed "bench $name" $?
    mkdir -p "$target"
    cp "$REPLAY_ACCELERATED_HOME/results/bench/$name"/{results.csv,summary.csv,results.md} "$target"/ \
        || failed "copy of bench $name" $?
}
bench gpu_check "[replay_best,CE_fp32,CCE,switchback_head,compiled_best,fastest]" "$OUT"

step "4. hidden size 1024"
bench gpu_check_hidden1024 "[replay_best,compiled_best,fastest]" "$OUT/hidden1024" \
    model.params.model_params.hidden_size=1024 model.params.training_params.embedding_dim=1024

step "5. Lightning's share of a step"
LOOP=(hidden=256 batch=32 max_seq_len=128 items=18345 steps=200 repeats=3)
$DRY_RUN && LOOP=(hidden=32 batch=8 max_seq_len=16 items=200 steps=3 warmup=1 repeats=1)
"$PYTHON" -m replay_accelerated.benchmarks.loop "${LOOP[@]}" out="$OUT/loop" || failed "loop eager" $?
"$PYTHON" -m replay_accelerated.benchmarks.loop "${LOOP[@]}" repeats=1 compiled=true out="$OUT/loop_compiled" \
    || failed "loop compiled" $?

step "done; results in $OUT"
exit "$status"
