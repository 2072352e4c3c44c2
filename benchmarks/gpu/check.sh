#!/usr/bin/env bash
# The GPU checks of issue 4, in one call of the device tool (which runs this from the
# repository root on the GPU machine, with $OUT for the files to bring back):
#   1. the CUDA tests (bf16/fp16 autocast against fp32, the predictor on CUDA);
#   2. benchmark figure 9 once: a 10980^2 x 4-band synthetic scene x4 -> COG on the GPU,
#      and the share of the GPU's bf16 conv peak the whole run reaches.
# Prepare here: benchmarks/gpu/fetch_wheels.sh (the packages the GPU image lacks, into .whl/).
# Then call the device tool with carry [".whl"], command "bash benchmarks/gpu/check.sh",
# timeout_s 600 (budget: the scene takes about a minute to write, the run one to two).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_predictor.py tests/test_models_cnnrnn.py -k "cuda or gpu" \
  2>&1 | tee "$OUT/tests.log"
python3 -m benchmarks.run --only gpu --runs 1 2>&1 | tee "$OUT/bench.log"
cp benchmarks/RESULTS.md benchmarks/results.json "$OUT/"
