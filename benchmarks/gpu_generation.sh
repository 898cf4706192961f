#!/usr/bin/env bash
# The sampler's GPU figures in one call (issue 15, ~7 minutes): the fused step's greedy sweep (attention's key
# splits, the layer norm's pass, the products' blocks), then both samplers compared per level and batch with
# the sweep's best and the logit check, on random jukebox-1b-lyrics weights in bfloat16.
#   OUT=results-dir bash benchmarks/gpu_generation.sh
# Where the machine's Python lacks transformers 4.57.6 (and its huggingface-hub/tokenizers pins), put their
# wheels in .whl/: they are installed to /tmp/site first.
set -uo pipefail
OUT=${OUT:-var/bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)"
timeout 250 python3 benchmarks/generation_step_profile.py --kernels triton --batch 1 --sweep --batches 1,16 \
  --budget-s 150 --best-out "$OUT/blocks.json" 2>&1 | tee "$OUT/step-profile.jsonl"
blocks=(); if [ -s "$OUT/blocks.json" ]; then
  blocks=(--matmul-blocks "$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['matmul']))" "$OUT/blocks.json")"
          --attend-blocks "$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['attend']))" "$OUT/blocks.json")")
fi
timeout 280 python3 benchmarks/generation.py --random-1b --device cuda --dtype bfloat16 --logit-check --compare \
  --kernels triton --batches 1,16 --levels 0,1,2 --tokens 256 --rounds 1 "${blocks[@]}" 2>&1 \
  | tee "$OUT/compare.jsonl"
