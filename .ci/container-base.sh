#!/usr/bin/env bash
# Makes the base image examples/container/Dockerfile starts FROM
# (debian:bookworm-slim) in podman's local store: no image registry is
# reachable from CI, the Debian mirror apt uses is. A minimal debootstrap
# (about 30 s), imported with `podman import`; the tarball is kept in a
# cache directory so that a machine that keeps it builds the image in
# seconds the next time.
set -euo pipefail

image=docker.io/library/debian:bookworm-slim
if podman image exists "$image"; then
  exit 0
fi

cache_dir=${PMTR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pmtr}
tarball=$cache_dir/debian-bookworm-minbase.tar
if [ ! -s "$tarball" ]; then
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
    | awk '$2 == "bookworm" { print $1; exit }')
  mirror=${mirror:-http://deb.debian.org/debian/}
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  echo "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log"; exit 1; }
  mkdir -p "$cache_dir"
  tar -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
podman import --quiet "$tarball" "$image" >/dev/null
echo "made $image from $tarball"
