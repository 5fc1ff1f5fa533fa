#!/usr/bin/env bash
# The GPU check, on a bare CUDA machine with PyTorch, in under 8 minutes:
#   1. installs what such a machine lacks from benchmarks/wheels/ (benchmarks/fetch_wheels.sh fills it
#      elsewhere), without dependency resolution and without network, then this project;
#   2. the CUDA tests: SwitchBack's int8 products (torch._int_mm layouts) and bf16 autocast on the GPU,
#      and training in 16-mixed (pytest -m cuda);
#   3. the step-limited bench on synthetic_ml20m (mode/bench_shape.yaml's steps mode): RePlay with CE
#      and with CE_restricted in bf16, ours with CE, CCE, the SwitchBack head and the best combination;
#      step time, tokens/s, CUDA memory and MFU against the bf16 probe, in $OUT.
# Usage: bash benchmarks/gpu_check.sh [--dry-run]
#   --dry-run: on a CPU, tiny synthetic data and 3 steps, to check the script itself (the CUDA tests skip).
# Environment: OUT (results folder, default docs/benchmarks/gpu_ml20m_shape), STEPS (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=false
[ "${1:-}" = "--dry-run" ] && DRY_RUN=true
OUT=${OUT:-docs/benchmarks/gpu_ml20m_shape}
STEPS=${STEPS:-200}
started=$(date +%s)

echo "== 1. install what is missing (no network, no dependency resolution)"
# Only the wheels whose distribution is not installed: what the machine has (its torch, numpy) stays.
mapfile -t MISSING < <(python - <<'PYTHON'
import glob
from importlib import metadata

for path in sorted(glob.glob("benchmarks/wheels/*.whl")):
    try:
        metadata.version(path.split("/")[-1].split("-")[0])
    except metadata.PackageNotFoundError:
        print(path)
PYTHON
)
if [ "${#MISSING[@]}" -gt 0 ]; then
    pip install --quiet --no-deps --no-index "${MISSING[@]}"
fi
pip install --quiet --no-deps --no-build-isolation -e .
python -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available() and
           f'{torch.cuda.get_device_name()} (compute capability {torch.cuda.get_device_capability()})')"

echo "== 2. CUDA tests"
status=0
python -m pytest -q -m cuda tests/test_switchback.py tests/test_learning.py || status=$?
if [ "$status" != 0 ] && [ "$status" != 5 ]; then  # 5: nothing selected (no GPU: every CUDA case skipped)
    echo "CUDA tests failed (status $status)"; exit "$status"
fi

echo "== 3. step-limited bench"
ROWS="[replay_CE_best_precision,replay_best,CE_fp32,CCE,swichback_head,fastest]"
if $DRY_RUN; then
    DATA=(dataset=synthetic dataset.generator.n_users=600 model=bert4rec_synthetic
          model.params.model_params.max_seq_len=32 model.params.model_params.hidden_size=32
          model.params.training_params.embedding_dim=32 model.params.training_params.num_workers=0)
    STEPS=3
else
    DATA=(dataset=synthetic_ml20m model=bert4rec_synthetic_ml20m)
fi
REPLAY_ACCELERATED_HOME=${REPLAY_ACCELERATED_HOME:-$PWD/.gpu_check} replay-accelerated bench_shape "${DATA[@]}" \
    mode.bench.name=gpu_check mode.bench.steps="$STEPS" mode.bench.warmup_steps=$(( STEPS < 20 ? 1 : 20 )) \
    "mode.bench.only=$ROWS" trainer.progress_bar=false
mkdir -p "$OUT"
cp "${REPLAY_ACCELERATED_HOME:-$PWD/.gpu_check}"/results/bench/gpu_check/{results.csv,summary.csv,results.md} "$OUT"/
echo "== done in $(( $(date +%s) - started )) s; results in $OUT"
