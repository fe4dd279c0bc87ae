#!/usr/bin/env bash
# Issue 6's accelerator runs, side by side on one GPU, each capped in wall
# time; the curves (metrics.jsonl, TensorBoard events) and logs come back as
# $OUT/results.tar.gz. Meant for the device tool's GPU image (JAX, no
# TensorFlow, no clu: the trainer's TF-free writers take over):
#
#   bash benchmarks/gpu_results.sh DATA_DIR BUDGET_SECONDS [RUN ...]
#
# DATA_DIR holds ptb/, wikitext-2/ and tiny_shakespeare/ as in ../shared/data;
# RUN names which of ptb_medium, wikitext2_medium, awd_ptb, char_shakespeare
# to run (default: those four), or PTB-medium variants: ptb_medium_f32 (float32
# matrix products instead of the GPU's default TF32), ptb_medium_seed1,
# ptb_medium_f32_seed1, ptb_medium_lua_decay (the learning rate decays one
# epoch later, from epoch 8, as Zaremba's Lua code does), or char-LM dropout
# variants: char_shakespeare_d20, char_shakespeare_d35 (dropout 0.2 / 0.35
# instead of the config's 0.5).
# Each run may take 15% of the GPU's memory: name at most six at once.
set -u
DATA=${1:?data dir}
BUDGET=${2:-480}
ONLY=" ${*:3} "
OUT=${OUT:-/tmp/gpu_results}
RUNS=/tmp/runs
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_MEM_FRACTION=0.15
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RUNS/gpu.txt"
python3 -c 'import jax, flax; print(jax.__version__, flax.__version__, jax.devices())' | tee -a "$RUNS/gpu.txt"
python3 tools/split_text.py --input="$DATA/tiny_shakespeare/input.txt" \
    --output_dir=/tmp/tiny_shakespeare
# MPS lets the four small-kernel runs share the GPU concurrently instead of
# time-slicing it; without a working MPS they run time-sliced.
if command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p /tmp/mps_pipe /tmp/mps_log
  if nvidia-cuda-mps-control -d && timeout 60 python3 -c \
      'import jax.numpy as jnp; print("MPS check", float(jnp.ones(3).sum()))'; then
    echo "MPS on" | tee -a "$RUNS/gpu.txt"
  else
    echo quit | nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "MPS failed; time-sliced" | tee -a "$RUNS/gpu.txt"
  fi
fi
COMMON=(--config.data.prefetch=0 --config.progress_every_secs=30)
CAP=$((BUDGET - 45))  # Leaves time for SIGTERM's save and the tarball.

run() {  # name, seconds, config, train.py flags...  (env: RUN_ENV=VAR=value)
  local name=$1 secs=$2 config=$3; shift 3
  [[ "$ONLY" == "  " && "$name" != *_f32* && "$name" != *_seed* \
     && "$name" != *_d[0-9]* && "$name" != *_lua_* ]] \
      || [[ "$ONLY" == *" $name "* ]] || return 0
  ( /usr/bin/time -v env ${RUN_ENV:-} timeout -s TERM -k 30 "$secs" python3 train.py \
      --config="$config" --workdir="$RUNS/$name" "${COMMON[@]}" "$@" \
      > "$RUNS/$name.log" 2>&1
    echo "exit $? after ${SECONDS}s" >> "$RUNS/$name.log" ) &
}
run ptb_medium "$CAP" configs/ptb.py:medium \
    --config.data.data_dir="$DATA/ptb"
F32=JAX_DEFAULT_MATMUL_PRECISION=highest
RUN_ENV=$F32 run ptb_medium_f32 "$CAP" configs/ptb.py:medium \
    --config.data.data_dir="$DATA/ptb"
run ptb_medium_seed1 "$CAP" configs/ptb.py:medium \
    --config.data.data_dir="$DATA/ptb" --config.seed=1
RUN_ENV=$F32 run ptb_medium_f32_seed1 "$CAP" configs/ptb.py:medium \
    --config.data.data_dir="$DATA/ptb" --config.seed=1
run ptb_medium_lua_decay "$CAP" configs/ptb.py:medium \
    --config.data.data_dir="$DATA/ptb" --config.optimizer.decay_after_epochs=7
run wikitext2_medium "$CAP" configs/wikitext2.py:medium \
    --config.data.data_dir="$DATA/wikitext-2"
run awd_ptb "$CAP" configs/awd_lstm.py:ptb \
    --config.data.data_dir="$DATA/ptb"
run char_shakespeare "$CAP" configs/char_lm.py:local \
    --config.data.data_dir=/tmp/tiny_shakespeare
for rate in 20 35; do
  run char_shakespeare_d$rate "$CAP" configs/char_lm.py:local \
      --config.data.data_dir=/tmp/tiny_shakespeare \
      --config.model.dropout_rate=0.$rate \
      --config.model.output_dropout_rate=0.$rate
done
wait
grep -h -B2 "^exit" "$RUNS"/*.log
(cd "$RUNS" && tar czf "$OUT/results.tar.gz" gpu.txt ./*.log \
    ./*/metrics.jsonl ./*/events.out.tfevents.*)
ls -la "$OUT"
