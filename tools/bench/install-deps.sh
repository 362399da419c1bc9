#!/usr/bin/env bash
# Installs the Debian packages `npm run bench` needs (idempotent; `apt-get update` only when something is missing).
set -euo pipefail

packages=(
  # proxy benchmark: load generator, the proxy, the fast upstream (built offline with Debian's Go), test certificate
  wrk nginx golang-go openssl util-linux procps
  # time to HTTPS on a test host (same as the host tests): containers, SSH, the stand-in release, pebble
  debootstrap systemd-container openssh-client iproute2 e2fsprogs curl golang-github-lib-pq-dev pebble
)

exec bash "$(dirname "$0")/../install-missing-packages.sh" "${packages[@]}"
