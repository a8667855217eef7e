#!/usr/bin/env bash
# One device session (a lent CUDA machine with its own torch): the GPU measurements of issues
# 4, 5 and 7 in one go. Wheels of packages the device image lacks are carried in .whl/.
# Usage (on the device machine, from the repo root): bash benchmarks/gpu_session.sh OUTDIR
set -u
out="${1:-/tmp/gpu-out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
timeout 110 python3 benchmarks/segment_gpu.py --seconds 25 --json "$out/segment_gpu.json" \
    2>&1 | tee "$out/segment_gpu.log"
timeout 130 python3 benchmarks/memory_gpu.py "$out/memory_gpu.json" 2>&1 | tee "$out/memory_gpu.log"
