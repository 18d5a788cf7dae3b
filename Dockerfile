# syntax=docker/dockerfile:1
# The MONAI Application Package (MAP) of the nstage app (app.py): the image that `monai-deploy run` /
# `holoscan run` (holoscan-cli 4.2.0) and MONAI Deploy Express's Docker task plugin start. Laid out as
# the packager's template (holoscan_cli/packager/templates/Dockerfile.jinja2) lays a MAP out:
#   /opt/holoscan/app      the app (app.py, operators, nstage, config, atlas)
#   /opt/holoscan/models   the models (station_cnn/ and the model card)
#   /opt/holoscan/docs     the documentation
#   /etc/holoscan/app.json, pkg.json   the manifests, made at build time from app.yaml by the packager's
#                          own code (deploy/map/manifests.py), never written by hand
#   /var/holoscan/app.yaml the application configuration; /var/holoscan/{input,output} the I/O
#   /var/holoscan/tools    the entrypoint: show | extract | env | help, anything else runs the app
#   user holoscan (1000:1000) by default; any --user UID:GID works as well
#
#   make image                      # scripts/build-image.sh: docker, else podman; tags nstage-app:latest
#   docker run --rm --ulimit stack=33554432 --user "$(id -u):$(id -g)" \
#       -v "$PWD/study:/var/holoscan/input:ro" -v "$PWD/results:/var/holoscan/output" nstage-app:latest
#   docker run --rm nstage-app:latest show
# (docs/app.md: running it with monai-deploy run, on a GPU host, with podman, in MONAI Deploy Express).
#
# Build it with scripts/build-image.sh: it builds the `map` stage, asks the packager's code in it for the
# label values (title, version, SDK versions) and passes them to the final stage as build arguments.
#
# Base: any Debian bookworm image (it ships Python 3.11, which pyproject.toml asks for). The default
# is the public one; scripts/build-image.sh passes a locally bootstrapped bookworm where the public
# registry cannot be reached. No CUDA base is needed for the GPU: PyTorch's and Holoscan's wheels
# bring their CUDA runtime libraries (Holoscan's libcudart.so.13: the nvidia-cuda-runtime wheel of the
# lock, on LD_LIBRARY_PATH below) and the host's driver is mounted by --gpus / CDI / --runtime nvidia.
# The install steps are those of `make setup` (Makefile): keep the two in step.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE} AS map

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# make setup, step 1: the virtual environment from the pinned lock (its own layer: it changes rarely,
# so a code change does not reinstall it). It sits beside the app, not in it, so that `extract` copies
# the app and not the 3 GB environment (the packager installs the packages in the user's ~/.local).
# Where pip finds its packages is the build's business: PIP_* build arguments (a wheel folder, an
# index mirror, a CA bundle) apply to this step only. With PyPI alone, `torch==2.13.0` is PyPI's CUDA
# build (the GPU image); a local CPU wheel given in PIP_FIND_LINKS (2.13.0+cpu) wins over it, as in
# `make setup` on a machine that has one.
ARG PIP_FIND_LINKS=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_CERT=
COPY requirements.lock /opt/holoscan/requirements.lock
RUN python3 -m venv /opt/holoscan/venv \
    && /opt/holoscan/venv/bin/python -m pip install --quiet --upgrade pip==26.3 \
    && /opt/holoscan/venv/bin/python -m pip install --quiet -r /opt/holoscan/requirements.lock

# Elastix's programs (Debian's elastix): the registration runs them instead of loading ITK's Python modules,
# which takes about 10 s in each fresh process (config/registration.json, elastix_runner). A layer of its own
# after the environment's, so adding it did not rebuild the 3.5 GB environment.
RUN apt-get update \
    && apt-get install -y --no-install-recommends elastix \
    && rm -rf /var/lib/apt/lists/*

# make setup, step 2: nstage itself, without dependencies; then the app, its config, the atlas, the
# models and the documentation.
WORKDIR /opt/holoscan/app
COPY pyproject.toml README.md ./
COPY nstage/ nstage/
RUN /opt/holoscan/venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
COPY config/ config/
COPY atlas/ atlas/
COPY operators/ operators/
COPY app.py app.yaml ./
COPY models/ /opt/holoscan/models/
COPY docs/ /opt/holoscan/docs/
COPY README.md /opt/holoscan/docs/README.md
COPY app.yaml /var/holoscan/app.yaml

# The packager's environment (its Dockerfile.jinja2), plus the app's own: the venv first on PATH (so
# app.json's `python3` is the venv's), Holoscan's CUDA runtime on LD_LIBRARY_PATH, HOME=/tmp (a --user
# with no entry in the image has no home, and CuPy keeps its kernel cache there). HOLOSCAN_VERSION
# comes with the labels in the last stage.
ENV HOLOSCAN_INPUT_PATH=/var/holoscan/input \
    HOLOSCAN_OUTPUT_PATH=/var/holoscan/output \
    HOLOSCAN_WORKDIR=/var/holoscan \
    HOLOSCAN_APPLICATION=/opt/holoscan/app \
    HOLOSCAN_TIMEOUT=0 \
    HOLOSCAN_MODEL_PATH=/opt/holoscan/models \
    HOLOSCAN_DOCS_PATH=/opt/holoscan/docs \
    HOLOSCAN_CONFIG_PATH=/var/holoscan/app.yaml \
    HOLOSCAN_APP_MANIFEST_PATH=/etc/holoscan/app.json \
    HOLOSCAN_PKG_MANIFEST_PATH=/etc/holoscan/pkg.json \
    HOLOSCAN_LOGS_PATH=/var/holoscan/logs \
    PATH=/opt/holoscan/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/holoscan/venv/lib/python3.11/site-packages/nvidia/cu13/lib \
    HOME=/tmp

# The manifests, by holoscan-cli 4.2.0's PackagingArguments from app.yaml, with a local artifact
# source that knows the lock's Holoscan (deploy/map/artifacts.json) and the models folder that holds
# the model (models/station_cnn: with models/ the model card README.md would become a model).
COPY deploy/map/manifests.py deploy/map/artifacts.json /opt/holoscan/packager/
RUN python3 /opt/holoscan/packager/manifests.py /etc/holoscan --labels /opt/holoscan/packager/labels.env \
        --app /opt/holoscan/app/app.py --config /var/holoscan/app.yaml \
        --models /opt/holoscan/models/station_cnn --docs /opt/holoscan/docs \
        --source /opt/holoscan/packager/artifacts.json

# The default user, as the packager's template makes it (holoscan, 1000:1000, group sudo), owning the
# working folder. Any other user may write there too (run with --user "$(id -u):$(id -g)" so that
# files on a bind mount belong to you; `monai-deploy run` does so). The outputs are staged inside a
# mounted output folder and moved into place at the end, so every move is a rename on one file
# system (nstage/atomic_output.py).
ARG UNAME=holoscan
ARG UID=1000
ARG GID=1000
RUN groupadd -f -g "$GID" "$UNAME" \
    && useradd -rm -d "/home/$UNAME" -s /bin/bash -g "$GID" -G sudo -u "$UID" "$UNAME" \
    && mkdir -p /var/holoscan/input /var/holoscan/output /var/holoscan/logs \
    && chown -R "$UNAME" /var/holoscan \
    && chmod a+rwx /var/holoscan /var/holoscan/input /var/holoscan/output /var/holoscan/logs

COPY --chmod=755 deploy/map/tools.py /var/holoscan/tools
WORKDIR /var/holoscan

# The packager's labels and HOLOSCAN_VERSION, from the packager's own reading of app.yaml and of the
# installed SDKs (written by manifests.py in the stage above; scripts/build-image.sh passes them on).
FROM map
ARG MAP_TITLE=
ARG MAP_VERSION=
ARG HOLOSCAN_SDK_VERSION=
ARG MONAI_DEPLOY_APP_SDK_VERSION=
ARG MAP_BASE=
ARG MAP_TAG=
RUN if [ -z "$MAP_TITLE" ] || [ -z "$MAP_VERSION" ] || [ -z "$HOLOSCAN_SDK_VERSION" ] || [ -z "$MONAI_DEPLOY_APP_SDK_VERSION" ]; then \
        echo "error: the label values are missing: build the image with scripts/build-image.sh (make image)" >&2; exit 1; fi
LABEL base="${MAP_BASE}" \
      tag="${MAP_TAG}" \
      org.opencontainers.image.title="${MAP_TITLE}" \
      org.opencontainers.image.version="${MAP_VERSION}" \
      org.nvidia.holoscan="${HOLOSCAN_SDK_VERSION}" \
      org.monai.deploy.app-sdk="${MONAI_DEPLOY_APP_SDK_VERSION}"
ENV HOLOSCAN_VERSION=${HOLOSCAN_SDK_VERSION}
USER holoscan
ENTRYPOINT ["/var/holoscan/tools"]
