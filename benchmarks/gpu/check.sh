#!/usr/bin/env bash
# The GPU checks of issues 3 and 4, in one call of the device tool (which runs this from the
# repository root on the GPU machine, with $OUT for the files to bring back):
#   1. the CUDA tests, and the model and predictor tests with a GPU present (auto is CUDA there);
#   2. the models' forward speed on the GPU (benchmarks.model_speed --device cuda);
#   3. benchmark figure 9 at the --quick size (2048^2 x 4 bands), then at the full size:
#      a 10980^2 x 4-band synthetic scene x4 -> COG on the GPU, and the share of the GPU's
#      bf16 conv peak the whole run reaches, its COG build timed apart, and the same job
#      in half the lanes, and into Zarr, with nvidia-smi sampling the GPU meanwhile and
#      benchmarks/gpu/sample_host.py the host (CPU busy and I/O wait, disk writes, dirty pages:
#      $OUT/host.csv); the figure splits the run's time by stage (stage_busy_seconds).
# Each step has its own time limit, so that one that hangs leaves the others' results.
# TESTS=0, MODEL_SPEED=0 or QUICK=0 leave out steps 1, 2 or 3's quick size (for a second call
# in a session, when what they check has not changed).
# Prepare here: benchmarks/gpu/fetch_wheels.sh (the packages the GPU image lacks, .whl/site.tar.xz).
# Then call the device tool with carry [".whl"], command "bash benchmarks/gpu/check.sh",
# timeout_s 560.
set -uo pipefail
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT" /tmp/site
log="$OUT/gpu.log"
step() { echo "=== [$(date +%T)] $*" | tee -a "$log"; }
step "unpack"
python3 -c "import tarfile; tarfile.open('.whl/site.tar.xz').extractall('/tmp/site', filter='data')" || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$log"
# The kernel's dirty-page limits (when writers are throttled) and the file system of /tmp.
grep . /proc/sys/vm/dirty_ratio /proc/sys/vm/dirty_background_ratio /proc/sys/vm/dirty_expire_centisecs \
  2>&1 | tee -a "$log"
findmnt -n -o FSTYPE,OPTIONS --target /tmp 2>&1 | tee -a "$log"
python3 -c "import torch, geosr, rasterio; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  'bf16', torch.cuda.is_bf16_supported(), 'geosr', geosr.__version__, 'gdal', rasterio.__gdal_version__)" \
  2>&1 | tee -a "$log"
if [ "${TESTS:-1}" = 1 ]; then
  step "tests"
  timeout 90 python3 -m pytest -q -p no:cacheprovider -n 8 -k "cuda or gpu or device or precision" \
    tests/test_predictor.py tests/test_models_cnnrnn.py \
    tests/test_models_registry.py 2>&1 | tail -40 | tee -a "$log"
fi
if [ "${MODEL_SPEED:-1}" = 1 ]; then
  step "model speed"
  timeout 60 python3 -m benchmarks.model_speed --device cuda --batch 32 --tile 256 --rounds 5 2>&1 | tee -a "$log"
  cp benchmarks/model_speed_cuda.json "$OUT/" 2>/dev/null
fi
if [ "${QUICK:-1}" = 1 ]; then
  step "figure 9, quick"
  timeout 90 python3 -m benchmarks.run --only gpu --quick --output-dir /tmp/quick 2>&1 | tee -a "$log"
  cp /tmp/quick/results.json "$OUT/quick_results.json" 2>/dev/null
fi
step "figure 9, full"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -lms 1000 \
  > "$OUT/smi.csv" 2>&1 &
smi=$!
python3 benchmarks/gpu/sample_host.py > "$OUT/host.csv" 2>&1 &
host=$!
timeout 420 python3 -m benchmarks.run --only gpu --runs 1 --workdir /tmp/bench 2>&1 | tee -a "$log"
kill "$smi" "$host" 2>/dev/null
cp benchmarks/RESULTS.md benchmarks/results.json "$OUT/"
df -h /tmp | tee -a "$log"
step "done"
