#!/usr/bin/env bash
# One prepared GPU check (run from the repository root on a CUDA machine that
# has jax, flax and torch): the lstm_flax tests on the GPU, then the speed
# benchmark. Output goes to $OUT (or ./gpu_out).
set -uo pipefail
out="${OUT:-gpu_out}"; mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)" | tee -a "$out/gpu.txt"
# Library tests on the GPU. float32 matmuls use TF32 by default on this GPU;
# the reference tolerances assume full float32, hence 'highest'.
JAX_DEFAULT_MATMUL_PRECISION=highest timeout 240 python3 -m pytest -q -p no:cacheprovider \
  tests/test_kernel.py tests/test_torch_reference.py tests/test_modules.py \
  -k "not import_does_not_load" 2>&1 | tail -15 | tee "$out/gpu_tests.txt"
timeout 300 python3 benchmarks/lstm_speed.py --rounds=7 --steps=10 2>&1 \
  | grep -v -i warning | tee "$out/gpu_bench.txt"
