#!/usr/bin/env bash
# The one-shot GPU check: everything the GPU work has to show, from one call of at most 8 minutes.
#
#     bash benchmarks/gpu/check.sh OUT_DIR [--quick]
#
# GPU time comes in short loans of a bare machine, so this installs what it needs (environment.sh,
# from the wheels that wheels.sh puts in .whl/), records the machine, and runs every step under its
# own time limit, inside one overall budget, each step's output in OUT_DIR/<step>.log:
#
#   imports    the whole project imports (a missing wheel shows here, in one line)
#   tests      pytest tests/gpu
#   sweep      model-only images/s: ResNet-18/50 224 px, fp32/bf16, eager/graphs, batch 1..256
#              (model_sweep.py)
#   bundle     a random-weight ResNet-50 224 px bundle for the HTTP step (bundles.py)
#   http       python -m benchmarks: the service, one variant per GPU setting (no graphs, one batch
#              in flight, nvJPEG, nvJPEG with 4 replicas), and the
#              null-model ingress ceiling, at a few concurrencies
#   precision  fp32/fp16/bf16 on the GPU against fp32 on the CPU (precision_check.py)
#
# A failing or timed-out step is recorded and the next one runs; the steps that carry the targets
# come first, so an overrun squeezes the precision check rather than them. Last, summary.py merges
# everything into OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md and prints the Markdown. The exit
# status is 0 only if every step passed.
# --quick: tiny sizes and 1 s points, to try the whole script on a CPU (under 3 minutes).
set -euo pipefail

[[ $# -ge 1 && ${1:0:1} != - ]] || { echo "usage: $0 OUT_DIR [--quick]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
PROFILE=full
[[ ${2:-} == --quick ]] && PROFILE=quick
cd "$(dirname "$0")/../.."

declare -A LIMITS
if [[ $PROFILE == quick ]]; then
    BUDGET_S=170
    LIMITS=([tests]=60 [sweep]=40 [bundle]=20 [http]=70 [precision]=40)
    SWEEP_ARGS=(--archs resnet18 --size 64 --batches 1,2,4 --seconds 0.05)
    PRECISION_ARGS=(--demo-images 16 --arch resnet18 --size 64 --photos 8 --batch 8)
    HTTP_BUNDLE=(--arch resnet18 --input-size 64)
    HTTP_ARGS=(--concurrency 1,4 --warmup 1 --duration 1 --client-processes 1
        --service-env MAX_BATCH_SIZE=4)
else
    BUDGET_S=450
    LIMITS=([tests]=110 [sweep]=120 [bundle]=20 [http]=220 [precision]=60)
    SWEEP_ARGS=()
    PRECISION_ARGS=()
    HTTP_BUNDLE=(--arch resnet50 --input-size 224)
    # Batches up to 128 so 256 clients can fill two in flight; decoding threads for the CPU path.
    HTTP_ARGS=(--concurrency 1,256 --warmup 2 --duration 5 --client-processes 8
        --service-env MAX_BATCH_SIZE=128,DECODE_WORKERS=8)
fi
DEADLINE=$((SECONDS + BUDGET_S))
export PYTHONUNBUFFERED=1

# Results of an earlier run in the same folder must not pass for this run's.
rm -rf "$OUT/http" "$OUT"/{steps.tsv,tests.xml,model_sweep.json,precision.json,versions.json} \
    "$OUT"/{nvidia-smi.txt,gpu_check.json,gpu_check.md} "$OUT"/*.log

# run_step NAME COMMAND...: COMMAND under min(its limit, what is left of the budget), its output
# shown and kept in NAME.log; one line per step in steps.tsv (name, exit status, seconds, limit).
run_step() {
    local name=$1 limit=${LIMITS[$1]:-30} rc=0 started=$SECONDS
    shift
    ((limit <= DEADLINE - SECONDS)) || limit=$((DEADLINE - SECONDS))
    if ((limit < 5)); then
        printf '%s\tskip\t0\t0\n' "$name" >>"$OUT/steps.tsv"
        echo "== $name: skipped, the ${BUDGET_S} s budget is spent"
        return
    fi
    echo "== $name (at most $limit s)"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - started))" "$limit" >>"$OUT/steps.tsv"
    echo "== $name: exit $rc after $((SECONDS - started)) s"
}

# shellcheck source=benchmarks/gpu/environment.sh
source benchmarks/gpu/environment.sh
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi here" >"$OUT/nvidia-smi.txt"
python3 -c 'import json, torch
from benchmarks.machine import describe
cuda = {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
print(json.dumps(describe() | cuda))' | tee "$OUT/versions.json"
HAS_CUDA=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))')
if ((HAS_CUDA)); then
    # Each GPU setting's effect on its own, then nvJPEG with four replicas on the one GPU.
    HTTP_ARGS+=(--systems service,no-graphs,one-in-flight,gpu-decode,gpu-decode-x4,null
        --variant no-graphs:CUDA_GRAPHS=false --variant one-in-flight:BATCHES_IN_FLIGHT=1
        --variant gpu-decode:GPU_DECODE=true --variant gpu-decode-x4:GPU_DECODE=true,WORKERS=4)
else
    HTTP_ARGS+=(--systems service,null)
fi
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

run_step imports python3 -c 'import app.main, app.cli, benchmarks.cli, benchmarks.loadgen
import tests.conftest'
# Plugins named, not discovered: the machine's own pytest plugins may not suit the carried pytest.
run_step tests env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest tests/gpu -q \
    -p pytest_timeout -p no:cacheprovider --junitxml "$OUT/tests.xml"
run_step sweep python3 -m benchmarks.gpu.model_sweep "${SWEEP_ARGS[@]}" \
    --out "$OUT/model_sweep.json"
run_step bundle python3 -m benchmarks.gpu.bundles "$SCRATCH/bundle" "${HTTP_BUNDLE[@]}"
run_step http python3 -m benchmarks --model-dir "$SCRATCH/bundle" "${HTTP_ARGS[@]}" \
    --out "$OUT/http"
run_step precision python3 -m benchmarks.gpu.precision_check "${PRECISION_ARGS[@]}" \
    --out "$OUT/precision.json"

echo "== summary after $SECONDS s"
python3 -m benchmarks.gpu.summary "$OUT" --profile "$PROFILE"
awk -F'\t' '$2 != "0" { failed = 1 } END { exit failed }' "$OUT/steps.tsv"
