#!/usr/bin/env bash
# Step: install or upgrade Mattermost. Downloads the release tarball, verifies its SHA-256 (refusing a mismatch
# before anything is touched), unpacks it under /opt/mattermost keeping config, plugins and data, writes the
# config patch, the systemd unit and the root-only secrets file. The capability and (re)start are the next step.
# Variables: MM_VERSION, MM_URL, MM_SHA256, DATA_MOUNT, CONFIG_PATCH (JSON), UNIT_FILE; secret: DATASOURCE.
source "$(dirname "$0")/lib.sh"
load_vars
require_vars MM_VERSION MM_URL MM_SHA256 DATA_MOUNT CONFIG_PATCH UNIT_FILE DATASOURCE
mountpoint -q "$DATA_MOUNT" || die "$DATA_MOUNT is not mounted; the volume step must run first"

install_dir=/opt/mattermost
version_file="$install_dir/.deployed-version"
apt_install curl ca-certificates python3 libcap2-bin

ensure_system_user mattermost "$install_dir"

version_lt() { [[ "$1" != "$2" && "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" == "$1" ]]; }

installed=$(cat "$version_file" 2>/dev/null || true)
if [[ -n "$installed" ]] && version_lt "$MM_VERSION" "$installed"; then
  die "refusing to downgrade Mattermost from $installed to $MM_VERSION: database migrations only go forward. Restore a snapshot from before the upgrade instead, or set mattermost:mattermostVersion back to $installed."
fi

if [[ "$installed" != "$MM_VERSION" ]]; then
  cache=/var/cache/mattermost-deploy
  mkdir -p "$cache"
  tarball="$cache/$(basename "$MM_URL")"
  curl -fsSL --retry 3 --max-time 600 -o "$tarball.part" "$MM_URL" || die "download of $MM_URL failed"
  actual=$(sha256sum "$tarball.part" | cut -d' ' -f1)
  if [[ "$actual" != "$MM_SHA256" ]]; then
    rm -f "$tarball.part"
    die "SHA-256 mismatch for $MM_URL: expected $MM_SHA256 (mattermost:mattermostSha256), got $actual. Nothing was installed${installed:+; Mattermost $installed keeps running}."
  fi
  mv -f "$tarball.part" "$tarball"

  staging=$(mktemp -d /opt/.mattermost-new.XXXXXX)
  tar -xzf "$tarball" -C "$staging"
  [[ -x "$staging/mattermost/bin/mattermost" ]] || die "$tarball has no mattermost/bin/mattermost"

  if [[ -d "$install_dir" ]]; then
    systemctl stop mattermost 2>/dev/null || true
    # Keep what belongs to this installation, not to the release: config, plugins, logs.
    for keep in config/config.json plugins client/plugins logs; do
      if [[ -e "$install_dir/$keep" ]]; then
        rm -rf "${staging:?}/mattermost/$keep"
        mkdir -p "$(dirname "$staging/mattermost/$keep")"
        cp -a "$install_dir/$keep" "$staging/mattermost/$keep"
      fi
    done
    rm -rf "$install_dir.previous"
    mv "$install_dir" "$install_dir.previous"
  fi
  mv "$staging/mattermost" "$install_dir"
  rmdir "$staging"
  printf '%s\n' "$MM_VERSION" >"$version_file"
  chown -R mattermost:mattermost "$install_dir"
  mark_restart_needed
  changed "Mattermost ${installed:+$installed -> }$MM_VERSION in $install_dir"
fi

# Data on the volume.
for dir in "$DATA_MOUNT/mattermost" "$DATA_MOUNT/mattermost/data"; do
  if [[ ! -d "$dir" ]]; then
    install -d -o mattermost -g mattermost -m 0750 "$dir"
    changed "$dir"
  fi
done
if [[ "$(stat -c %U "$DATA_MOUNT/mattermost/data")" != mattermost ]]; then
  # A volume re-attached to a new instance can carry another uid.
  chown -R mattermost:mattermost "$DATA_MOUNT/mattermost"
  changed "ownership of $DATA_MOUNT/mattermost"
fi

config="$install_dir/config/config.json"
[[ -f "$config" ]] || die "$config is missing from the release"
if [[ "$(printf '%s' "$CONFIG_PATCH" | python3 "$(dirname "$0")/merge-config.py" "$config")" == changed ]]; then
  changed "$config"
  mark_restart_needed
fi
if [[ "$(stat -c '%U %a' "$config")" != "mattermost 600" ]]; then
  chown mattermost:mattermost "$config"
  chmod 600 "$config"
fi

export SECRETS_ENV="MM_SQLSETTINGS_DATASOURCE=$DATASOURCE"$'\n'
if install_content SECRETS_ENV /etc/mattermost/secrets.env 0600 root:root; then mark_restart_needed; fi
chmod 0755 /etc/mattermost
if install_content UNIT_FILE /etc/systemd/system/mattermost.service 0644 root:root; then
  systemctl daemon-reload
  mark_restart_needed
fi
systemctl enable --quiet mattermost
