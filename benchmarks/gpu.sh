#!/usr/bin/env bash
# One short GPU benchmark of the book's U-Net (fp32 vs bf16 autocast vs bf16 + channels_last, training and inference
# slices/s, GPU memory, fraction of the bf16 peak). About 3-5 minutes on an H100/H200 with the defaults.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine (results in $OUT or benchmarks/gpu_results/)
#   bash benchmarks/gpu.sh --tiny          # CPU path at a toy size (what the tests run here)
#   bash benchmarks/gpu.sh --fastai --compile   # also fastai Learner.fit and torch.compile rows
#
# On a lent machine nothing can be downloaded: fastai and its pure-Python dependencies travel as wheels in .whl/
# (see ../shared/GPU.md for the one `pip download` line that fills it; carry ".whl" with the run). Without them the
# classic U-Net rows still run (they need only torch, numpy, pandas, pyyaml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "import fastai" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
OUT_DIR=${OUT:-benchmarks/gpu_results}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
exec "$PY" -m benchmarks.gpu_bench --out "$OUT_DIR" "$@"
