#!/usr/bin/env bash
# The one-shot GPU check: everything the GPU work has to show, from one call of at most 8 minutes.
#
#     bash benchmarks/gpu/check.sh OUT_DIR [--quick]
#
# GPU time comes in short loans of a bare machine (15 minutes in all, a cold start of a few of them
# included; one command at most 10), so this installs what it needs (environment.sh, from the
# wheels that wheels.sh puts in .whl/), records the machine, and runs every step under its own time
# limit, inside one overall budget, each step's output in OUT_DIR/<step>.log:
#
#   imports      every module of the project and of benchmarks/gpu imports (a missing wheel shows
#                here, in one line)
#   tests        pytest tests/gpu (needs CUDA: on a CPU it only collects, and says so)
#   sweep        model-only images/s: ResNet-18/50 224 px, fp32/bf16, eager/graphs, batch 1..256
#                (model_sweep.py -> model_sweep.json, rewritten after each model and precision)
#   bundle       a random-weight ResNet-50 224 px bundle for the HTTP step (bundles.py)
#   http         python -m benchmarks: the service, one variant per GPU setting (nvJPEG, nvJPEG
#                with 4 replicas, no graphs, one batch in flight) and the null-model ingress
#                ceiling, at 1 and 256 clients (http/results.json, rewritten after each system)
#   correctness  the demo bundle served under 8 clients, GPU_DECODE off and on, graphs off, every
#                top-1 against the CPU path's (correctness.py -> correctness.json, per variant)
#   precision    fp32/fp16/bf16 on the GPU against fp32 on the CPU, top-1 and abstain agreement
#                (precision_check.py -> precision.json, rewritten after each model)
#
# The machine's own torch is measured (carrying torch's CUDA wheels is not possible: 64 MiB may be
# carried in all), and versions.json says which torch, torchvision, CUDA and cuDNN that was and how
# they differ from the lock's. A failing or timed-out step is recorded and the next one runs, and
# each step leaves its file as it goes, so a step stopped by its limit loses only its own unfinished
# part. The full profile's step limits add up to 400 s of its 450 s budget: the other 50 s are for
# a cold start (installing .whl/, torch's first import from a cold disk). Last, summary.py merges
# everything into OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md and prints the Markdown; it can
# be rerun on the folder alone (python -m benchmarks.gpu.summary OUT_DIR) if the whole call was
# cut short. The exit status is 0 only if every step passed or was skipped for want of CUDA.
# --quick: tiny sizes and sub-second points, to try the whole script on a CPU (under a minute on two
# cores; tests/benchmarks runs it as part of `make test`).
set -euo pipefail

[[ $# -ge 1 && ${1:0:1} != - ]] || { echo "usage: $0 OUT_DIR [--quick]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
PROFILE=full
[[ ${2:-} == --quick ]] && PROFILE=quick
cd "$(dirname "$0")/../.."

declare -A LIMITS
if [[ $PROFILE == quick ]]; then
    BUDGET_S=150
    LIMITS=([imports]=15 [tests]=15 [sweep]=15 [bundle]=10 [http]=35 [correctness]=30
        [precision]=15)
    SWEEP_ARGS=(--archs resnet18 --size 64 --batches 1,2 --seconds 0.05)
    PRECISION_ARGS=(--demo-images 8 --arch resnet18 --size 64 --photos 4 --batch 8)
    CORRECTNESS_ARGS=(--images 8 --repeats 1 --max-batch-size 8)
    HTTP_BUNDLE=(--arch resnet18 --input-size 64)
    HTTP_ARGS=(--concurrency 4 --warmup 0.5 --duration 1 --client-processes 1
        --service-env MAX_BATCH_SIZE=4)
else
    BUDGET_S=450
    LIMITS=([imports]=20 [tests]=75 [sweep]=70 [bundle]=15 [http]=130 [correctness]=55
        [precision]=35)
    SWEEP_ARGS=()
    PRECISION_ARGS=()
    CORRECTNESS_ARGS=()
    HTTP_BUNDLE=(--arch resnet50 --input-size 224)
    # Batches up to 128 so 256 clients can fill two in flight; decoding threads for the CPU path.
    HTTP_ARGS=(--concurrency 1,256 --warmup 1.5 --duration 4 --client-processes 8
        --service-env MAX_BATCH_SIZE=128,DECODE_WORKERS=8)
fi
DEADLINE=$((SECONDS + BUDGET_S))
export PYTHONUNBUFFERED=1

# Results of an earlier run in the same folder must not pass for this run's.
rm -rf "$OUT"/{http,correctness} "$OUT"/{steps.tsv,tests.xml,versions.json,nvidia-smi.txt} \
    "$OUT"/{model_sweep,precision,correctness,gpu_check}.json "$OUT/gpu_check.md" "$OUT"/*.log

# run_step [--needs-cuda] NAME COMMAND...: COMMAND under min(its limit, what is left of the
# budget), its output shown and kept in NAME.log; one line per step in steps.tsv (name, exit
# status, seconds, limit). A step that needs CUDA still runs without it, to check its plumbing, and
# is recorded as no-cuda ("skipped: no CUDA") when it passes.
run_step() {
    local needs_cuda=0
    [[ $1 == --needs-cuda ]] && { needs_cuda=1; shift; }
    local name=$1 limit=${LIMITS[$1]} rc=0 started=$SECONDS
    shift
    ((limit <= DEADLINE - SECONDS)) || limit=$((DEADLINE - SECONDS))
    if ((limit < 5)); then
        printf '%s\tskip\t0\t0\n' "$name" >>"$OUT/steps.tsv"
        echo "== $name: skipped, the ${BUDGET_S} s budget is spent"
        return
    fi
    echo "== $name (at most $limit s)"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
    local status=$rc
    ((rc == 0 && needs_cuda && !HAS_CUDA)) && status=no-cuda
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - started))" "$limit" >>"$OUT/steps.tsv"
    echo "== $name: $status after $((SECONDS - started)) s"
}

# shellcheck source=benchmarks/gpu/environment.sh
source benchmarks/gpu/environment.sh
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi here" >"$OUT/nvidia-smi.txt"
python3 -m benchmarks.gpu.versions | tee "$OUT/versions.json"
HAS_CUDA=$(python3 -c 'import json, sys; print(int(json.load(sys.stdin)["cuda_available"]))' \
    <"$OUT/versions.json")
if ((HAS_CUDA)); then
    # The settings that may carry the targets first, then each setting's effect on its own: a step
    # stopped by its limit loses the last systems, and results.json keeps the others.
    HTTP_ARGS+=(--systems service,gpu-decode,gpu-decode-x4,null,no-graphs,one-in-flight
        --variant gpu-decode:GPU_DECODE=true --variant gpu-decode-x4:GPU_DECODE=true,WORKERS=4
        --variant no-graphs:CUDA_GRAPHS=false --variant one-in-flight:BATCHES_IN_FLIGHT=1)
else
    HTTP_ARGS+=(--systems service,null)
fi
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

run_step imports python3 -c 'import importlib, pkgutil
import app.edge.application, app.cli.main, benchmarks.cli, benchmarks.loadgen, benchmarks.gpu, tests.conftest
for module in pkgutil.iter_modules(benchmarks.gpu.__path__, "benchmarks.gpu."):
    importlib.import_module(module.name)'
# Plugins named, not discovered: the machine's own pytest plugins may not suit the carried pytest.
run_step --needs-cuda tests env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest tests/gpu -q \
    -p pytest_timeout -p no:cacheprovider --junitxml "$OUT/tests.xml"
run_step sweep python3 -m benchmarks.gpu.model_sweep "${SWEEP_ARGS[@]}" \
    --out "$OUT/model_sweep.json"
run_step bundle python3 -m benchmarks.gpu.bundles "$SCRATCH/bundle" "${HTTP_BUNDLE[@]}"
run_step http python3 -m benchmarks --model-dir "$SCRATCH/bundle" "${HTTP_ARGS[@]}" \
    --out "$OUT/http"
run_step correctness python3 -m benchmarks.gpu.correctness "${CORRECTNESS_ARGS[@]}" \
    --out "$OUT/correctness.json"
run_step precision python3 -m benchmarks.gpu.precision_check "${PRECISION_ARGS[@]}" \
    --out "$OUT/precision.json"

echo "== summary after $SECONDS s"
python3 -m benchmarks.gpu.summary "$OUT" --profile "$PROFILE"
awk -F'\t' '$2 != "0" && $2 != "no-cuda" { failed = 1 } END { exit failed }' "$OUT/steps.tsv"
