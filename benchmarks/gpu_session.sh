#!/usr/bin/env bash
# The GPU checks of a session with a CUDA machine, as one prepared script (its output is the note's
# numbers): the evaluator's agreement and search on CUDA, the evaluator benchmark on CUDA, training
# steps in fp32 / bf16 / fp16, and the quick-start recipe trained end to end in bf16.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR [STAGE ...]]
#
# Stages (default: evaluator checks train): evaluator, checks, profile (where one evaluation's time
# goes, benchmarks/evaluator_profile.py), train.
#
# Installs the core and the plugins without their dependencies (the machine's python3 is expected to
# hold torch, timm, transformers and the rest; missing wheels can sit in .whl/, installed first).
set -uo pipefail
out="${1:-${OUT:-/tmp/gpu-session}}"
shift || true
stages=" ${*:-evaluator checks train} "
want() { [[ "$stages" == *" $1 "* ]]; }
mkdir -p "$out"
export PYTHONUNBUFFERED=1
site=/tmp/xmodalzoo-site
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl || exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$site" \
  . plugins/vse plugins/pcme plugins/pvse plugins/dive plugins/hrem > "$out/install.log" 2>&1 || { tail -20 "$out/install.log"; exit 1; }
export PYTHONPATH="$site"
export PATH="$site/bin:$PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, xmodalzoo; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

step() { echo; echo "== $1 ($(date +%T))"; }
if want profile; then
  step "where the evaluator's time goes on CUDA"
  for case in cosine smooth_chamfer_k4; do
    timeout 60 python3 benchmarks/evaluator_profile.py --device cuda --case $case --size 5000x25000 --top 30 2>&1 \
      | grep -v -E "^(USDT|ERROR|WARNING):" | cut -c1-160
  done | tee "$out/profile.txt"
fi
if want evaluator; then
  step "evaluator on CUDA"
  timeout 200 python3 benchmarks/evaluator_speed.py --device cuda --gpu-variants 2>&1 | tee "$out/evaluator_cuda.txt"
fi
if want checks; then
  step "agreement and search on CUDA"
  timeout 100 python3 benchmarks/gpu_checks.py 2>&1 | tee "$out/gpu_checks.txt"
fi
want train || { step done; exit 0; }
step "training steps on CUDA"
for run in vse_shapes:fp32 vse_shapes:bf16 vse_shapes:fp16 dive_shapes:fp32 dive_shapes:bf16; do
  recipe="recipes/${run%%:*}.yaml" precision="${run##*:}"
  {
    echo "-- $recipe $precision"
    timeout 35 python3 benchmarks/train_throughput.py "$recipe" --device cuda --set "train.precision=$precision" \
      --steps 20 2>&1 | tail -4
  }
done 2>&1 | tee "$out/train_steps.txt"
step "quick start trained on CUDA in bf16"
timeout 120 zoo train recipes/vse_shapes.yaml --run-dir /tmp/vse_shapes_bf16 --quiet \
  --set train.device=cuda --set train.precision=bf16 2>&1 | tail -30 | tee "$out/train_bf16.txt"
cp /tmp/vse_shapes_bf16/*.json "$out/" 2>/dev/null; ls /tmp/vse_shapes_bf16
step "done"
