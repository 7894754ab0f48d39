#!/usr/bin/env bash
# Fill .whl/ with the wheels that benchmarks/gpu/check.sh installs on a bare GPU machine.
#
# That machine has python3.12 with torch, torchvision, numpy, pillow, matplotlib and no
# network (.library KINDS.md lists its packages). It gets the service's, the tests' and the HTTP
# harness's other packages from here, at the versions pinned in requirements/*.lock, so it runs
# what CI runs. Some (pytest, aiohttp, uvloop...) are there already at other versions: the carried
# pin wins, because check.sh puts these wheels ahead of the machine's own packages.
#
#     bash benchmarks/gpu/wheels.sh      # or: make gpu-wheels; needs pip and a package index
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGES=(
    # the service: FastAPI on uvicorn with httptools and uvloop, as uvicorn[standard] runs it
    fastapi starlette annotated-doc opentelemetry-api
    uvicorn httptools uvloop h11 click python-dotenv
    pydantic pydantic-core pydantic-settings typing-inspection annotated-types typing-extensions
    python-multipart safetensors prometheus-client tqdm anyio idna
    # the tests
    pytest pytest-timeout iniconfig pluggy packaging pygments httpx httpcore certifi
    # the HTTP harness's load generator
    aiohttp aiohappyeyeballs aiosignal attrs frozenlist multidict propcache yarl
    # NVML (pynvml): the correctness step's per-process GPU memory of the server
    nvidia-ml-py
)
LOCKS=(requirements/dev.lock requirements/bench.lock)

pins=()
for name in "${PACKAGES[@]}"; do
    pin=$(grep -h -m1 "^${name}==" "${LOCKS[@]}" | head -n1 | cut -d' ' -f1)
    [[ -n $pin ]] || { echo "error: $name is pinned in none of ${LOCKS[*]}" >&2; exit 1; }
    pins+=("$pin")
done

rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .whl \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 --platform any \
    "${pins[@]}"

count=$(find .whl -type f -name '*.whl' | wc -l)
if ((count != ${#pins[@]})); then
    echo "error: ${#pins[@]} packages asked for, $count wheels in .whl/" >&2
    exit 1
fi
echo "$count wheels, $(du -sh .whl | cut -f1) in .whl/: git-ignored, so name it in the run's carry"
