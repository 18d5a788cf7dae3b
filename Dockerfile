# syntax=docker/dockerfile:1
# MAP-style image of the nstage MONAI Deploy app (app.py), laid out as `monai-deploy package` lays a
# MAP out: app in /opt/holoscan/app, models in /opt/holoscan/models, I/O under /var/holoscan.
#
#   make image                      # scripts/build-image.sh: docker, else podman; tags nstage-app:latest
#   docker run --rm --gpus all --ulimit stack=33554432 --user "$(id -u):$(id -g)" \
#       -v "$PWD/study:/var/holoscan/input:ro" -v "$PWD/results:/var/holoscan/output" nstage-app:latest
# (docs/app.md: running it, on a GPU host, podman, `monai-deploy package`).
#
# Base: any Debian bookworm image (it ships Python 3.11, which pyproject.toml asks for). The default
# is the public one; scripts/build-image.sh passes a locally bootstrapped bookworm where the public
# registry cannot be reached. No CUDA base is needed for the GPU: PyTorch's and Holoscan's wheels
# bring their CUDA runtime libraries (Holoscan's libcudart.so.13: the nvidia-cuda-runtime wheel of the
# lock, on LD_LIBRARY_PATH below) and the host's driver is mounted by --gpus / CDI.
# The install steps are those of `make setup` (Makefile): keep the two in step.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/holoscan/app

# make setup, step 1: the virtual environment from the pinned lock (its own layer: it changes rarely,
# so a code change does not reinstall it). Where pip finds its packages is the build's business:
# PIP_* build arguments (a wheel folder, an index mirror, a CA bundle) apply to this step only.
# With PyPI alone, `torch==2.13.0` is PyPI's CUDA build (the GPU image); a local CPU wheel given in
# PIP_FIND_LINKS (2.13.0+cpu) wins over it, as in `make setup` on a machine that has one.
ARG PIP_FIND_LINKS=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_CERT=
COPY requirements.lock ./
RUN python3 -m venv .venv \
    && .venv/bin/python -m pip install --quiet --upgrade pip==26.3 \
    && .venv/bin/python -m pip install --quiet -r requirements.lock

# make setup, step 2: nstage itself, without dependencies; then the app, its config and the atlas.
COPY pyproject.toml README.md ./
COPY nstage/ nstage/
RUN .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
COPY config/ config/
COPY atlas/ atlas/
COPY operators/ operators/
COPY app.py app.yaml ./
COPY app.yaml /var/holoscan/app.config
COPY models/ /opt/holoscan/models/

ENV HOLOSCAN_APPLICATION=/opt/holoscan/app \
    HOLOSCAN_INPUT_PATH=/var/holoscan/input \
    HOLOSCAN_OUTPUT_PATH=/var/holoscan/output \
    HOLOSCAN_MODEL_PATH=/opt/holoscan/models \
    HOLOSCAN_WORKDIR=/var/holoscan \
    HOLOSCAN_CONFIG_PATH=/var/holoscan/app.config \
    PATH=/opt/holoscan/app/.venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/holoscan/app/.venv/lib/python3.11/site-packages/nvidia/cu13/lib \
    HOME=/tmp

# HOME=/tmp: a --user with no entry in the image has no home, and CuPy keeps its kernel cache there.
# Any user may write results (run with --user "$(id -u):$(id -g)" so that files on a bind mount
# belong to you). The outputs are staged inside a mounted output folder and moved into place at
# the end, so every move is a rename on one file system (nstage/atomic_output.py).
RUN mkdir -p /var/holoscan/input /var/holoscan/output && chmod -R a+rwX /var/holoscan

ENTRYPOINT ["/opt/holoscan/app/.venv/bin/python", "/opt/holoscan/app/app.py"]
