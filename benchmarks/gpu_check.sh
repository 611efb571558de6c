#!/usr/bin/env bash
# GPU check, in one go from a fresh checkout (< 8 min on a GPU machine with a fast package mirror):
#   1. a venv with Migrator and TensorFlow's CUDA wheels (pip install -e '.[gpu,dev,opencv]'),
#   2. the GPU-relevant tests (TF32 off, batched comparison on the GPU, input sets),
#   3. open-nsfw and an AlexNet-size model compared on a batch of 32 with Keras on the GPU and on
#      the CPU: verdicts, the GPU-vs-CPU output difference and the speed-ups.
#
#   benchmarks/gpu_check.sh              # on a GPU machine (without a visible GPU: the CPU half, exit 3)
#   benchmarks/gpu_check.sh --cpu-only   # the CPU path only (no CUDA wheels), e.g. to test the script
#   benchmarks/gpu_check.sh --cpu-only --quick   # small stand-in models (a minute or two)
# Environment: PY (python to create the venv, default python3.11 or python3), GPU_VENV (venv path,
# default .venv-gpu; an existing one is reused), BATCH (default 32), GPU_CHECK_NO_SETUP=1 (use the
# venv as it is, no pip).
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CPU_ONLY=0
QUICK=""
for a in "$@"; do
  case "$a" in
    --cpu-only) CPU_ONLY=1 ;;
    --quick) QUICK="--quick" ;;
    *) echo "usage: $0 [--cpu-only] [--quick]" >&2; exit 2 ;;
  esac
done
PY=${PY:-$(command -v python3.11 || command -v python3)}
VENV=${GPU_VENV:-.venv-gpu}
EXTRAS="gpu,dev,opencv"
[ "$CPU_ONLY" = 1 ] && EXTRAS="dev,opencv"
stamp="$VENV/.gpu-check-$EXTRAS"
if [ "${GPU_CHECK_NO_SETUP:-0}" != 1 ] && { [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; }; then
  echo "== setting up $VENV (extras: $EXTRAS)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
  touch "$stamp"
fi
VPY="$VENV/bin/python"
export TF_CPP_MIN_LOG_LEVEL=3 QT_QPA_PLATFORM=offscreen
echo "== devices"
"$VPY" - <<'PY'
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "GPUs:", [g.name for g in gpus] or "none")
PY
NO_GPU=0
if [ "$CPU_ONLY" = 0 ] && ! "$VPY" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 3)"; then
  echo "no GPU visible to TensorFlow (no device, or driver/CUDA wheels?): running the CPU half only"
  NO_GPU=1
  CPU_ONLY=1
fi
echo "== GPU-relevant tests ($(( $(date +%s) - T0 )) s so far)"
TESTS="tests/core/test_verdict_gpu.py tests/core/test_inputs_sets.py tests/core/test_isolation.py"
"$VPY" -m pytest -q -x -p no:cacheprovider -m "not slow" $TESTS
echo "== open-nsfw and AlexNet-size, batch ${BATCH:-32}: GPU vs CPU ($(( $(date +%s) - T0 )) s so far)"
ARGS="--batch ${BATCH:-32} $QUICK"
[ "$CPU_ONLY" = 1 ] && ARGS="$ARGS --cpu-only"
"$VPY" -m benchmarks.gpu_compare $ARGS
echo "== done in $(( $(date +%s) - T0 )) s"
if [ "$NO_GPU" = 1 ]; then
  echo "GPU CHECK NOT DONE: no GPU visible (CPU figures above only)"
  exit 3
fi
