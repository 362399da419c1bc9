#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (idempotent; `apt-get update` only when
# something is missing). Used by test/install-deps.sh and tools/bench/install-deps.sh.
set -euo pipefail

missing=()
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "packages already installed: $*"
fi
