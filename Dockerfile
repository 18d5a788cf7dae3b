# syntax=docker/dockerfile:1
# MAP-style image of the nstage MONAI Deploy app (app.py), laid out as `monai-deploy package` lays a
# MAP out: app in /opt/holoscan/app, models in /opt/holoscan/models, I/O under /var/holoscan.
#
#   docker build -t nstage-app:0.1.0 .
#   docker run --rm --gpus all --ulimit stack=33554432 --user "$(id -u):$(id -g)" \
#       -v "$PWD/study:/var/holoscan/input:ro" -v "$PWD/results:/var/holoscan/output" nstage-app:0.1.0
# (outputs are staged inside a mounted output folder, so the final renames stay on one file system)
#
# Stack size: Holoscan wants 32 MB (`--ulimit stack=33554432`). app.py raises the soft limit
# itself when the container's hard limit allows it, but say it on the command line anyway.
# Without --gpus the app runs on the CPU (the classifier falls back; Holoscan logs a CUDA warning).
# The install steps are those of `make setup` (Makefile): keep the two in step.

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# Python 3.11 (pyproject: >=3.11,<3.12); Ubuntu 24.04 ships 3.12, deadsnakes has 3.11.
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y software-properties-common gpg-agent && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/holoscan/app

# make setup, step 1: the virtual environment from the pinned lock (its own layer: changes rarely).
# On this image `torch==2.13.0` resolves to the CUDA build from PyPI (the Makefile's note on the CPU
# build applies to machines with a local CPU wheel only).
COPY requirements.lock ./
RUN python3.11 -m venv .venv \
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
    PATH=/opt/holoscan/app/.venv/bin:$PATH

# Any user may write results (run with --user "$(id -u):$(id -g)" so that files on a bind mount
# belong to you). The outputs are staged in a folder made next to the output folder and moved in
# at the end: mount the output folder's parent, not the output folder itself (docs/app.md).
RUN mkdir -p /var/holoscan/input /var/holoscan/output && chmod -R a+rwX /var/holoscan

ENTRYPOINT ["/opt/holoscan/app/.venv/bin/python", "/opt/holoscan/app/app.py"]
