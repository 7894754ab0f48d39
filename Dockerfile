# syntax=docker/dockerfile:1
#
# resnet-serve on an NVIDIA GPU, falling back to the CPU when the container sees none.
#   docker build -t resnet-serve:0.1.0 .
#   docker run --gpus all --read-only --tmpfs /tmp -p 127.0.0.1:8000:8000 resnet-serve:0.1.0
# Host: NVIDIA driver >= 580 (CUDA 13) and the NVIDIA Container Toolkit; see docs/deploy.md.
#
# Why the CUDA "base" flavour: the torch wheels in the lock file carry their own CUDA 13 user-space
# libraries (the nvidia-* packages: cuBLAS, cuDNN, ...), so "runtime" or "cudnn" would only add a
# second, unused copy of them. "base" brings cudart and the NVIDIA_* variables that the container
# toolkit reads: which GPUs and driver capabilities to mount, and NVIDIA_REQUIRE_CUDA=cuda>=13.0,
# which has the toolkit check the host driver at start. 13.0 rather than 13.2 (the wheels' version)
# because CUDA minor-version compatibility runs the 13.2 wheels on any 13.x driver (>= 580).
#
# Hosts stuck on an older driver: build another CUDA flavour of torch from its own lock file, e.g.
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#   --build-arg RUNTIME_LOCK=requirements/runtime-cu128.lock
# (docs/deploy.md says how to compile that lock).
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

# ---- build: a virtual environment from the hash-locked runtime requirements -------------------
FROM ${CUDA_IMAGE} AS build

ARG RUNTIME_LOCK=requirements/runtime.lock

# The base tag pins Ubuntu 24.04 and with it Python 3.12; apt packages are left unpinned on purpose
# so that every build picks up the release's security fixes. Every Python package is hash-pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The same lock that `make lock` writes next to requirements/dev.lock (which `make venv` installs).
# --only-binary: every package is a wheel, so no compiler is needed here or anywhere.
COPY ${RUNTIME_LOCK} /tmp/runtime.lock
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --only-binary=:all: -r /tmp/runtime.lock

# The app itself, non-editable; --no-build-isolation builds it with the locked setuptools.
COPY pyproject.toml README.md /tmp/src/
COPY app /tmp/src/app
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-deps --no-build-isolation /tmp/src

# The demo bundle, readable by any uid whatever modes the build context gave it (a bundle written
# by a tool that creates its files 0600 would otherwise be unreadable for the runtime user).
COPY models/demo /opt/resnet-serve/models/demo
RUN chmod -R a+rX,go-w /opt/resnet-serve

# ---- runtime: Python, the venv and the demo bundle; no pip cache, no compilers, no sources ----
FROM ${CUDA_IMAGE} AS runtime

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 resnet \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin resnet

COPY --from=build /opt/venv /opt/venv
# The demo bundle, baked in. Serve another one without rebuilding: mount its folder read-only
# under /models and point RESNET_SERVE_MODEL_DIR at it.
COPY --from=build /opt/resnet-serve /opt/resnet-serve

# Everything the server writes goes under /tmp (HOME too: matplotlib, CUDA and torch caches), so
# the root filesystem can be read-only. Files are root-owned and world-readable, so any uid can
# run the image (OpenShift assigns an arbitrary one); 10001 is the default.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RESNET_SERVE_HOST=0.0.0.0 \
    RESNET_SERVE_PORT=8000 \
    RESNET_SERVE_GRPC_PORT=8001 \
    RESNET_SERVE_MODEL_DIR=/opt/resnet-serve/models/demo \
    RESNET_SERVE_DEVICE=auto \
    RESNET_SERVE_DRAIN_TIMEOUT_S=20 \
    RESNET_SERVE_LOG_FORMAT=json

WORKDIR /opt/resnet-serve
USER 10001:10001
EXPOSE 8000 8001
STOPSIGNAL SIGTERM

# Ready means loaded and warmed up; the start period covers both on a cold GPU, with a short start
# interval so the container turns healthy soon after it is ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --start-interval=2s --retries=3 \
    CMD ["resnet-serve", "healthcheck"]

# The same entry point as `make serve`; every setting comes from RESNET_SERVE_* variables.
CMD ["resnet-serve", "serve"]
