#!/usr/bin/env bash
# One-time move of Mattermost's database from the local PostgreSQL cluster (the `local` shape, data on the volume) to
# another PostgreSQL server (RDS): stop Mattermost, pg_dump the local database, pg_restore it into the empty target in
# one transaction, then compare every table's row count on both sides. Only then is the migration recorded (MARKER),
# the local cluster stopped and disabled; its data stays on the volume until the operator removes it.
# Run by rds.sh; also usable by hand. Environment: SOURCE_DB, TARGET_HOST, TARGET_PORT, TARGET_DB, TARGET_USER,
# DUMP_DIR, MARKER, and libpq's PGPASSFILE / PGSSLMODE / PGSSLROOTCERT for the target.
source "$(dirname "$0")/lib.sh"
: "${SOURCE_DB:?}" "${TARGET_HOST:?}" "${TARGET_PORT:?}" "${TARGET_DB:?}" "${TARGET_USER:?}" "${DUMP_DIR:?}" "${MARKER:?}"

# The local cluster as the postgres step set it up (its configuration points at the data on the volume).
version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
[[ -n "$version" && -f "/etc/postgresql/$version/main/postgresql.conf" ]] ||
  die "a local database is on the volume but no local PostgreSQL cluster is set up to read it (a new instance?): deploy once with \`pulumi config set mattermost:database local\` and \`pulumi up\`, then switch to rds again."
unit="postgresql@$version-main"
if ! systemctl is-active --quiet "$unit"; then
  systemctl start "$unit"
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 && break
    sleep 1
  done
fi
source_psql() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$SOURCE_DB" "$@"; }
target_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$TARGET_HOST" -p "$TARGET_PORT" -U "$TARGET_USER" -d "$TARGET_DB" "$@"; }

# Nothing may write while the dump runs.
if systemctl is-active --quiet mattermost 2>/dev/null; then
  systemctl stop mattermost
  changed "stopped Mattermost for the database migration"
fi

install -d -m 0700 -o postgres -g postgres "$DUMP_DIR"
dump="$DUMP_DIR/migration-$(date -u +%Y%m%dT%H%M%SZ).dump"
runuser -u postgres -- pg_dump --format=custom --no-owner --no-privileges --file="$dump" "$SOURCE_DB"
chmod 0600 "$dump"
log "dumped $SOURCE_DB to $dump ($(stat -c %s "$dump") bytes)"
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction \
  -h "$TARGET_HOST" -p "$TARGET_PORT" -U "$TARGET_USER" -d "$TARGET_DB" "$dump" ||
  die "pg_restore into $TARGET_HOST/$TARGET_DB failed (nothing was committed there); the local database is untouched and still in use"

# Every table, and its exact row count, on both sides.
list_tables="SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
mapfile -t source_tables < <(source_psql -tAc "$list_tables")
mapfile -t target_tables < <(target_psql -tAc "$list_tables")
[[ "${source_tables[*]}" == "${target_tables[*]}" ]] ||
  die "migration check failed: the tables differ (local: ${source_tables[*]}; target: ${target_tables[*]}); Mattermost stays on the local database"
report=""
for table in "${source_tables[@]}"; do
  source_rows=$(source_psql -tAc "SELECT count(*) FROM $table")
  target_rows=$(target_psql -tAc "SELECT count(*) FROM $table")
  [[ "$source_rows" == "$target_rows" ]] ||
    die "migration check failed: $table has $source_rows rows locally and $target_rows in the target; Mattermost stays on the local database"
  report+="$table $source_rows"$'\n'
done
log "verified ${#source_tables[@]} tables, same row counts on both sides"

{
  printf 'migrated %s to %s:%s/%s at %s from %s\n' "$SOURCE_DB" "$TARGET_HOST" "$TARGET_PORT" "$TARGET_DB" "$(date -u +%FT%TZ)" "$dump"
  printf '%s' "$report"
} >"$MARKER"
chmod 0600 "$MARKER"
systemctl disable --now --quiet "$unit" postgresql.service
changed "migrated database $SOURCE_DB to $TARGET_HOST (${#source_tables[@]} tables verified); the local cluster is stopped, its data stays on the volume"
