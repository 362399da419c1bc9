#!/usr/bin/env bash
# Installed as /usr/local/sbin/mattermost-db-dump and run by mattermost-db-dump.service before the daily snapshot:
# a consistent pg_dump of the Mattermost database onto the data volume, so every snapshot holds a dump that restores
# with `pg_restore` even if the live data directory in the snapshot needed crash recovery. Keeps the newest KEEP.
# Environment (from the unit): DUMP_DIR, DB_NAME, KEEP.
set -euo pipefail
: "${DUMP_DIR:?}" "${DB_NAME:?}" "${KEEP:=3}"
[[ "$KEEP" =~ ^[1-9][0-9]*$ ]] || { echo "KEEP must be a positive number" >&2; exit 1; }

install -d -m 0700 -o postgres -g postgres "$DUMP_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$DUMP_DIR/mattermost-$stamp.dump"
partial="$DUMP_DIR/.mattermost-$stamp.dump.partial"
trap 'rm -f "$partial"' EXIT
runuser -u postgres -- pg_dump --format=custom --file="$partial" "$DB_NAME"
chmod 0600 "$partial"
mv "$partial" "$final"
# Oldest first beyond the newest KEEP; names sort by their UTC timestamp.
mapfile -t old < <(find "$DUMP_DIR" -maxdepth 1 -name 'mattermost-*.dump' -printf '%f\n' | sort -r | tail -n +$((KEEP + 1)))
for f in "${old[@]}"; do rm -f -- "$DUMP_DIR/$f"; done
sync -f "$final"
echo "dumped $DB_NAME to $final ($(stat -c %s "$final") bytes)"
