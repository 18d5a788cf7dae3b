#!/usr/bin/env bash
# Build the MAP of the app (Dockerfile) and tag it nstage-app:latest (a contract).
#
# Engine: Docker when its daemon answers (podman-docker's `docker` counts as podman), else podman (set up by scripts/setup-podman.sh).
# Base:   $BASE_IMAGE when given; else Debian bookworm from the public registry when it can be
#         pulled; else a minimal bookworm bootstrapped here with debootstrap, imported once as
#         localhost/nstage-base:bookworm.
# pip:    with podman, the host's wheel folder and local package indexes (PIP_FIND_LINKS, pip's
#         extra-index-url under /opt) and its CA bundle are mounted into the build where they exist,
#         so the image installs the same lock from the same files as `make setup`; with docker the
#         build uses PyPI.
# Labels: two passes. The `map` stage (everything but the labels) is built first; holoscan-cli's
#         packager code in it read app.yaml and the installed SDKs for the manifests and the label
#         values (deploy/map/manifests.py: /opt/holoscan/packager/labels.env), and the final stage
#         gets those values as build arguments (the second pass reuses every cached layer of the
#         first). The stage stays tagged (localhost/nstage-app-stage:map, the image's own layers):
#         removing it would remove the build cache with it.
# Prints the image size and the build time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${IMAGE_TAG:-nstage-app:latest}
PUBLIC_BASE=docker.io/library/debian:bookworm-slim
LOCAL_BASE=localhost/nstage-base:bookworm
start=$(date +%s)

if command -v docker >/dev/null 2>&1 && ! docker --version 2>&1 | grep -qi podman && docker info >/dev/null 2>&1; then
  engine=docker
else
  bash scripts/setup-podman.sh
  engine=podman
fi

have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }

base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if have_image "$PUBLIC_BASE" || timeout 60 "$engine" pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
    base=$PUBLIC_BASE
  else
    if ! have_image "$LOCAL_BASE"; then
      echo "the public base $PUBLIC_BASE cannot be pulled: bootstrapping Debian bookworm (debootstrap --variant=minbase)"
      root=$(mktemp -d /tmp/nstage-base.XXXXXX)
      trap 'rm -rf "$root"' EXIT
      debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
      tar -C "$root" -c . | "$engine" import - "$LOCAL_BASE" >/dev/null
    fi
    base=$LOCAL_BASE
  fi
fi

args=(--build-arg "BASE_IMAGE=$base" -f Dockerfile)
if [ "$engine" = podman ]; then
  links=() ; indexes=()
  for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
    [[ -d "$dir" && " ${links[*]} " != *" $dir "* ]] && links+=("$dir") && args+=(-v "$dir:$dir:ro")
  done
  for url in $(python3 -m pip config get global.extra-index-url 2>/dev/null || true); do
    dir=${url#file://}; dir=${dir%/simple}
    [ "$url" != "$dir" ] && [ -d "$dir" ] && indexes+=("$url") && args+=(-v "$dir:$dir:ro")
  done
  [ ${#links[@]} -gt 0 ] && args+=(--build-arg "PIP_FIND_LINKS=${links[*]}")
  [ ${#indexes[@]} -gt 0 ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=${indexes[*]}")
  ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  [ -f "$ca" ] && args+=(-v "$ca:/etc/ssl/host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/host-ca.crt)
  args+=(--layers)
fi

echo "building $TAG with $engine on $base"
stage=localhost/nstage-app-stage:map
"$engine" build "${args[@]}" --target map -t "$stage" .
build_args=()
while IFS= read -r line; do
  build_args+=(--build-arg "$line")
done < <("$engine" run --rm --entrypoint cat "$stage" /opt/holoscan/packager/labels.env)
[ ${#build_args[@]} -eq 8 ] || { echo "error: the packager gave no label values (see above)" >&2; exit 1; }
"$engine" build "${args[@]}" "${build_args[@]}" --build-arg "MAP_BASE=$base" --build-arg "MAP_TAG=$TAG" -t "$TAG" .
size=$("$engine" image inspect "$TAG" --format '{{.Size}}')
echo "built $TAG with $engine: $((size / 1000000)) MB, $(( $(date +%s) - start )) s"
