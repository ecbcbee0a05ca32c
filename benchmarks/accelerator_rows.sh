#!/usr/bin/env bash
# The accelerator rows in one call: each benchmark under its own time limit, logs and the
# results JSON copied to $OUT (or ./accelerator_out) after every step, so a step that runs
# out of time or fails loses nothing measured before it.
#
#     bash benchmarks/accelerator_rows.sh                 # every step, default limits
#     STEPS="scaling vs_pytorch" bash benchmarks/accelerator_rows.sh
#
# Steps (seconds each, at most; LIMIT_<step>=N overrides):
#   env         versions and the device, a 4096x4096 bf16 matmul as a smoke check
#   scaling     jem_cifar10's whole train step (WRN-28-10, bf16, SGLD 20) on one device: MFU
#   vs_pytorch  SGLD of WRN-28-10 (bf16), the 32x32 conv and the MLP against torch eager
#   whole_step  JEM's whole train step against torch eager (benchmarks/vs_pytorch_train_step.py)
#   samplers    SGLD/MALA/HMC throughput, every architecture
#   samplers_big  the same for the big convs and WRN-28-10 only
#   scaling_256 the WRN-28-10 train step at batch 256
#   profile     where the WRN-28-10 step's device time goes (benchmarks/profile_step.py)
#   train_step  the main presets' jitted train steps
# Needs no install: the checkout on PYTHONPATH, the machine's jax/flax/optax/torch.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/accelerator_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# torch shares the GPU with JAX in vs_pytorch: leave it room.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}"
STEPS="${STEPS:-env scaling vs_pytorch whole_step samplers_big train_step}"
PY="${PYTHON:-python3}"

save() { cp benchmarks/results/*-"$(date +%F)".json "$OUT/" 2>/dev/null; true; }

step() {  # step NAME DEFAULT_LIMIT command...
  local name=$1 limit=$2; shift 2
  local var="LIMIT_$name"; limit="${!var:-$limit}"
  echo "=== $name (limit ${limit}s) $(date +%T)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
  save
}

for s in $STEPS; do
  case $s in
    env) step env 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv; nproc; $PY -c '
import jax, flax, optax, chex, numpy, time, jax.numpy as jnp
print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__, \"chex\", chex.__version__, \"numpy\", numpy.__version__)
print(jax.devices())
try:
    import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())
except Exception as e: print(\"torch:\", e)
try:
    import orbax.checkpoint as o; print(\"orbax ok\")
except Exception as e: print(\"orbax:\", e)
import ebm_jax; print(\"ebm_jax ok\")
a = jax.random.normal(jax.random.key(0), (8192, 8192), jnp.bfloat16)
f = jax.jit(lambda a: a @ a); f(a).block_until_ready()
t = time.perf_counter(); [f(a) for _ in range(20)][-1].block_until_ready(); dt = (time.perf_counter() - t) / 20
print(f\"bf16 8192 matmul: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s\")
'" ;;
    scaling) step scaling 180 "$PY" benchmarks/scaling.py --devices 1 --steps 10 ;;
    vs_pytorch) step vs_pytorch 180 "$PY" benchmarks/vs_pytorch.py --arch wrn28_10 jem32 mlp2d \
        --variants toolkit plain_scan --no-compile --repeats 3 --max-wait 0 --min-seconds 0.3 ;;
    whole_step) step whole_step 200 "$PY" benchmarks/vs_pytorch_train_step.py \
        --arch wrn28_10 jem32 conv_digits mlp_digits --repeats 3 ;;
    samplers) step samplers 150 "$PY" benchmarks/samplers.py --repeats 2 ;;
    samplers_big) step samplers_big 120 "$PY" benchmarks/samplers.py --arch wrn28_10 jem32 jem28 \
        --repeats 2 ;;
    scaling_256) step scaling_256 90 "$PY" benchmarks/scaling.py --devices 1 --steps 10 \
        --set data.batch_size=256 ;;
    train_step) step train_step 90 "$PY" benchmarks/train_step.py --steps 200 ;;
    profile) step profile 100 bash -c "$PY benchmarks/profile_step.py --steps 3 --out /tmp/prof_step && cp /tmp/prof_step/profile_summary.json $OUT/profile_step.json; $PY benchmarks/profile_step.py --steps 3 --sgld-only --out /tmp/prof_sgld && cp /tmp/prof_sgld/profile_summary.json $OUT/profile_sgld.json" ;;
    *) echo "unknown step $s" ;;
  esac
done
echo "=== tails"
for f in "$OUT"/*.log; do echo "--- $f"; tail -n 25 "$f" | cut -c1-400; done
