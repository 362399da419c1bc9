#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (idempotent; `apt-get update` only when something is missing).
set -euo pipefail

packages=(
  # unit tests and lint
  openssl shellcheck
  # test hosts: systemd-nspawn containers from a debootstrap rootfs, reached over SSH
  debootstrap systemd-container openssh-client iproute2 util-linux e2fsprogs curl jq
  # the Mattermost stand-in (Go, built offline from Debian's packages) and its own tests
  golang-go golang-github-lib-pq-dev postgresql libcap2-bin
  # proxy tests
  nginx certbot pebble testssl.sh
  # the proxy seen from a browser: headless Chromium, and certutil for its own NSS trust store
  chromium libnss3-tools
  # the endpoint check's diagnosis: a firewall between this machine and a test host
  nftables
)

exec bash "$(dirname "$0")/../tools/install-missing-packages.sh" "${packages[@]}"
