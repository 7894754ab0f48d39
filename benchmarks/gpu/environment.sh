# Sourced by check.sh from the repository root: make `python3` on PATH one that has everything the
# service, its tests and the HTTP harness need.
#
# Where the project's .venv exists (a development machine) that is the one. On a bare GPU machine
# (python3 with torch and torchvision, no network) the wheels of .whl/ (benchmarks/gpu/wheels.sh) go
# into a throwaway virtual environment whose path continues with that python3's own packages, so
# torch comes from the machine and the carried pins win over the machine's other versions. A virtual
# environment rather than PYTHONPATH, because the tests and the HTTP harness start the server as
# `resnet-serve` beside sys.executable, where the console script of an installed project would be:
# this puts one there without writing into the machine's own Python.

GPU_CHECK_ENV=/tmp/resnet-serve-gpu-env

project_python_ready() {
    python3 - <<'PY' 2>/dev/null
import importlib.util
import sys
from pathlib import Path

needed = ("fastapi", "uvicorn", "pydantic_settings", "multipart", "aiohttp", "pytest_timeout")
installed = all(map(importlib.util.find_spec, needed))
sys.exit(0 if installed and Path(sys.executable).with_name("resnet-serve").exists() else 1)
PY
}

layer_wheels_over_python3() {
    local base_paths site
    base_paths=$(python3 -c 'import sys
print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')
    rm -rf "$GPU_CHECK_ENV"
    python3 -m venv --without-pip "$GPU_CHECK_ENV"
    site=$("$GPU_CHECK_ENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl
    # .pth lines join sys.path after the environment's own site-packages: the machine's torch, then
    # this checkout (the project is used from here, as an editable install would be).
    printf '%s\n' "$base_paths" "$PWD" >"$site/gpu-check-base.pth"
    printf '#!%s\nimport sys\n\nfrom app.cli.main import main\n\nsys.exit(main())\n' \
        "$GPU_CHECK_ENV/bin/python3" >"$GPU_CHECK_ENV/bin/resnet-serve"
    chmod +x "$GPU_CHECK_ENV/bin/resnet-serve"
    export PATH="$GPU_CHECK_ENV/bin:$PATH"
}

if [[ -x .venv/bin/python3 ]]; then
    export PATH="$PWD/.venv/bin:$PATH"
fi
if project_python_ready; then
    echo "python: $(command -v python3), as it is"
elif [[ -d .whl ]]; then
    started=$SECONDS
    base_python=$(command -v python3)
    layer_wheels_over_python3
    if ! project_python_ready; then
        echo "error: the wheels of .whl/ do not complete $base_python" >&2
        exit 1
    fi
    echo "python: $(command -v python3): .whl/ over $base_python, in $((SECONDS - started)) s"
else
    echo "error: $(command -v python3) lacks the project's packages and there is no .whl/ to" \
        "install them from: run bash benchmarks/gpu/wheels.sh and carry .whl" >&2
    exit 1
fi
