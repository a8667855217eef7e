#!/usr/bin/env bash
# One device session (a lent CUDA machine with its own torch): the GPU measurements in one go,
# about 6 minutes on an H200 (render 4 knees ~20 s; segment_gpu ~2 min per model; memory_gpu
# <= 130 s). Wheels of packages the device image lacks (monai, pydantic, ...) are carried in
# .whl/ (see /work/.library/device/README.md); a 3D model file, if given, must travel too.
# Usage (on the device machine, from the repo root):
#   bash benchmarks/gpu_session.sh OUTDIR [MODEL_3D.pt]
# OUTDIR gets segment_gpu.json (+ .log): volumes/s per GPU for the shipped 2D model (and the
# 3D model) in bf16, one by one vs pipelined (benchmarks/segment_gpu.py), and memory_gpu.json.
set -u
out="${1:-/tmp/gpu-out}"
model3d="${2:-}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD/src"
else
    export PYTHONPATH="$PWD/src"
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
models=(--model src/kneescope/pretrained/knee-seg-2d.pt)
if [ -n "$model3d" ]; then models+=(--model "$model3d"); fi
timeout 330 python3 benchmarks/segment_gpu.py --device cuda --precision bf16 --knees 4 \
    --rounds 2 --repeats 3 --finish-workers 1 4 "${models[@]}" --json "$out/segment_gpu.json" \
    2>&1 | tee "$out/segment_gpu.log"
timeout 130 python3 benchmarks/memory_gpu.py "$out/memory_gpu.json" 2>&1 | tee "$out/memory_gpu.log"
