#!/usr/bin/env bash
# Step: the data volume. Finds the attached EBS volume, creates a filesystem only when it has none (never
# reformats), and mounts it by UUID through /etc/fstab.
# Variables: DATA_VOLUME_ID (vol-...), DATA_DEVICE (attachment device name), DATA_MOUNT (mount point).
source "$(dirname "$0")/lib.sh"
load_vars
require_vars DATA_DEVICE DATA_MOUNT

# On Nitro instances the volume is an NVMe device whose serial is the volume id (without the dash).
find_device() {
  local candidates=()
  if [[ -n "${DATA_VOLUME_ID:-}" ]]; then
    candidates+=("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${DATA_VOLUME_ID/-/}")
  fi
  candidates+=("$DATA_DEVICE" "${DATA_DEVICE/\/dev\/sd//dev/xvd}")
  local c
  for c in "${candidates[@]}"; do
    if [[ -b "$c" ]]; then
      readlink -f "$c"
      return 0
    fi
  done
  return 1
}

device=""
for _ in $(seq 1 60); do
  device=$(find_device) && break
  sleep 2
done
[[ -n "$device" ]] || die "data volume ${DATA_VOLUME_ID:-} not found as ${DATA_DEVICE} (nor its NVMe or xvd name) after 120 s"

fstype=$(blkid -p -o value -s TYPE "$device" 2>/dev/null || true)
if [[ -z "$fstype" ]]; then
  # Refuse anything that looks used: partitions or any signature wipefs can see.
  if [[ -n "$(lsblk -nro NAME "$device" | tail -n +2)" ]] || [[ -n "$(wipefs -n "$device" 2>/dev/null | tail -n +2)" ]]; then
    die "$device has partitions or signatures but no filesystem; refusing to format it (inspect it by hand)"
  fi
  mkfs.ext4 -q -L mattermost-data "$device"
  changed "created an ext4 filesystem on $device"
  fstype=ext4
elif [[ "$fstype" != ext4 && "$fstype" != xfs ]]; then
  die "$device holds a $fstype filesystem; expected ext4 or xfs. Not touching it."
else
  log "$device already holds $fstype; not formatting"
fi

uuid=$(blkid -p -o value -s UUID "$device")
[[ -n "$uuid" ]] || die "no filesystem UUID on $device"
entry="UUID=$uuid $DATA_MOUNT $fstype defaults,nofail,x-systemd.device-timeout=30s 0 2"
if ! grep -qxF "$entry" /etc/fstab; then
  tmp=$(mktemp)
  awk -v mp="$DATA_MOUNT" '$2 != mp' /etc/fstab >"$tmp"
  printf '%s\n' "$entry" >>"$tmp"
  cat "$tmp" >/etc/fstab
  rm -f "$tmp"
  changed "/etc/fstab: $DATA_MOUNT by UUID $uuid"
  systemctl daemon-reload 2>/dev/null || true
fi

mkdir -p "$DATA_MOUNT"
if ! mountpoint -q "$DATA_MOUNT"; then
  mount "$DATA_MOUNT"
  changed "mounted $device at $DATA_MOUNT"
fi
mounted_uuid=$(findmnt -no UUID "$DATA_MOUNT" 2>/dev/null || blkid -p -o value -s UUID "$(findmnt -no SOURCE "$DATA_MOUNT")")
[[ "$mounted_uuid" == "$uuid" ]] || die "$DATA_MOUNT is mounted from another filesystem ($mounted_uuid), expected $uuid"
