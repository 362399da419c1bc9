# shellcheck shell=bash
# Shared helpers for the server steps. Each step script sources this file, then calls `load_vars`, which reads
# the step's named variables from standard input: one `NAME=<base64 of the value>` line each. Values never pass
# through a command line, so secrets stay out of `ps`, logs and shell history, and no text is spliced into shell.

set -euo pipefail
umask 022

STATE_DIR=/var/lib/mattermost-deploy

log() { printf '%s\n' "$*"; }
changed() { printf 'changed: %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Names load_vars set, in order, so a step can hand the same input on (save_vars).
LOADED_VARS=()

load_vars() {
  local line name value
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "$line" ]] && continue
    name=${line%%=*}
    value=${line#*=}
    [[ "$name" =~ ^[A-Z][A-Z0-9_]*$ ]] || die "bad variable name on standard input: ${name:0:40}"
    value=$(printf '%s' "$value" | base64 -d) || die "variable $name is not valid base64"
    printf -v "$name" '%s' "$value"
    # shellcheck disable=SC2163 # exporting the variable whose name is in $name
    export "$name"
    LOADED_VARS+=("$name")
  done
}

# save_vars FILE: write the variables load_vars read back in its input format, root-only, to run the step again later.
save_vars() {
  local file=$1 name
  install -d -m 0700 "$(dirname "$file")"
  (
    umask 077
    for name in "${LOADED_VARS[@]}"; do
      printf '%s=%s\n' "$name" "$(printf '%s' "${!name}" | base64 -w0)"
    done >"$file"
  )
}

require_vars() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "variable $name is required but was not given"
  done
}

# install_content VAR PATH MODE OWNER: write the value of VAR to PATH unless identical; returns 0 when it
# changed the file and 1 when it was already up to date.
install_content() {
  local var=$1 path=$2 mode=$3 owner=$4 tmp
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "$(dirname "$path")/.install.XXXXXX")
  chmod 600 "$tmp"
  printf '%s' "${!var}" >"$tmp"
  if [[ -f "$path" ]] && cmp -s "$tmp" "$path" &&
    [[ "$(stat -c '%a %U:%G' "$path")" == "${mode#0} $owner" ]]; then
    rm -f "$tmp"
    return 1
  fi
  chown "$owner" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
  changed "$path"
  return 0
}

# apt_install PKG...: install missing packages; `apt-get update` only when something is missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  changed "installed ${missing[*]}"
}

# ensure_system_user NAME HOME: a system user with its own group and no login shell.
ensure_system_user() {
  id "$1" >/dev/null 2>&1 && return 0
  useradd --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
  changed "system user $1"
}

mark_restart_needed() {
  mkdir -p "$STATE_DIR"
  touch "$STATE_DIR/restart-mattermost"
}
