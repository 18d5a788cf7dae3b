#!/usr/bin/env bash
# The GPU device check of the torch registration backend, in one call of the device machine
# (it has PyTorch only). Prepared on the CPU side by `make device-prep` (data/device/inputs and
# data/device/wheels); the device tool runs, from the repository root:
#     bash bench/stationmap/device/run.sh            with carry: data/device/inputs, data/device/wheels
# and its $OUT comes back; then, on the CPU side: python -m bench.stationmap.device.finish data/device OUT.
# Usage: bench/stationmap/device/run.sh [INPUTS [OUT_DIR [WHEELS]]]   (PYTHON: the interpreter, default python3)
set -euo pipefail
INPUTS=${1:-data/device/inputs}
OUT_DIR=${2:-${OUT:?give OUT_DIR or set OUT}}
WHEELS=${3:-data/device/wheels}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
{
  echo "python: $($PY -V 2>&1)"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" || true
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: absent"
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"
if ! $PY -c "import deepali" 2>/dev/null; then
  SITE=$(mktemp -d)
  $PY -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY -c "import numpy, torch, deepali" || { echo "error: numpy, torch or deepali cannot be imported on this machine" >&2; exit 2; }
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" $PY -m bench.stationmap.device.gpu_registration "$INPUTS" "$OUT_DIR"
