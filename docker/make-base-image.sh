#!/usr/bin/env bash
# Build a minimal Debian bookworm base image from Debian's package mirror, for hosts that cannot reach
# Docker Hub: debootstrap (minbase + Python 3.11, venv and CA certificates) -> `docker import`.
# The Dockerfile's default base is the CUDA runtime image; smoke.sh passes this one as BASE_IMAGE.
#
# usage: docker/make-base-image.sh [--force] [TAG]   (TAG default local/debian:bookworm; needs root)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
tag="${1:-local/debian:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

if [ "$force" -eq 0 ] && "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists (--force rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install -y debootstrap" >&2; exit 1; }

rootfs="$(mktemp -d /var/tmp/csbsr-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
# The image needs neither package lists nor downloaded .debs: it never runs apt at build or run time.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag"
"$docker" image ls "$tag"
