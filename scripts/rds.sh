#!/usr/bin/env bash
# Step (database: rds): the RDS certificate bundle for verified TLS, a check that the database answers over it, and
# the one-time migration of a local database left on the data volume by the `local` shape (migrate-database.sh).
# Variables: DATA_MOUNT, DB_NAME, DB_USER, DB_PORT, DB_HOST, CA_URL, CA_FILE, SSLMODE; secret: DB_PASSWORD.
source "$(dirname "$0")/lib.sh"
load_vars
require_vars DATA_MOUNT DB_NAME DB_USER DB_PORT DB_HOST CA_URL CA_FILE SSLMODE DB_PASSWORD
[[ "$DB_USER" =~ ^[a-z_][a-z0-9_]*$ && "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB_USER and DB_NAME must be simple identifiers"
[[ "$DB_PORT" =~ ^[0-9]+$ ]] || die "DB_PORT must be a number"
mountpoint -q "$DATA_MOUNT" || die "$DATA_MOUNT is not mounted; the volume step must run first"

apt_install curl ca-certificates openssl
# The client tools come with a local PostgreSQL server (the shape being migrated from); otherwise install them.
if ! command -v pg_restore >/dev/null || ! command -v psql >/dev/null; then apt_install postgresql-client; fi

# The CA bundle, downloaded here (public material); replaced only when its content changes.
bundle=$(mktemp)
passfile=$(mktemp)
trap 'rm -f "$bundle" "$passfile"' EXIT
curl -fsSL --retry 3 --max-time 120 -o "$bundle" "$CA_URL" || die "download of the RDS certificate bundle $CA_URL failed"
openssl x509 -in "$bundle" -noout 2>/dev/null || die "$CA_URL is not a PEM certificate bundle"
if ! cmp -s "$bundle" "$CA_FILE"; then
  install -D -m 0644 -o root -g root "$bundle" "$CA_FILE"
  changed "$CA_FILE from $CA_URL"
  mark_restart_needed
fi

# libpq reads the password from a root-only file (never a command line or the environment).
chmod 600 "$passfile"
printf '%s:%s:*:%s:%s\n' "$DB_HOST" "$DB_PORT" "$DB_USER" "$DB_PASSWORD" >"$passfile"
# shellcheck disable=SC2153 # SSLMODE is one of the step variables load_vars set
export PGPASSFILE="$passfile" PGSSLMODE="$SSLMODE" PGSSLROOTCERT="$CA_FILE" PGCONNECT_TIMEOUT=10
target_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" "$@"; }

answered=0
for _ in $(seq 1 60); do
  if target_psql -tAc "SELECT 1" >/dev/null 2>&1; then
    answered=1
    break
  fi
  sleep 5
done
((answered)) || die "the database at $DB_HOST:$DB_PORT does not answer with sslmode=$SSLMODE: $(target_psql -tAc 'SELECT 1' 2>&1 | tail -3)"

# The one-time migration: a local database from the `local` shape, not migrated yet.
marker="$DATA_MOUNT/.mattermost-database-migrated"
local_data=$(find "$DATA_MOUNT/postgresql" -mindepth 3 -maxdepth 3 -name PG_VERSION -path '*/main/PG_VERSION' 2>/dev/null | head -1)
if [[ -n "$local_data" && ! -f "$marker" ]]; then
  tables=$(target_psql -tAc "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
  if [[ "$tables" != 0 ]]; then
    die "the RDS database $DB_NAME already has $tables tables, but a local database on $DATA_MOUNT was never migrated (no $marker): refusing to guess which one is Mattermost's. If RDS already holds the data (e.g. restored from a snapshot), record that with \`sudo touch $marker\`; if an earlier migration failed, empty the RDS database (DROP SCHEMA public CASCADE; CREATE SCHEMA public;) and run \`pulumi up\` again."
  fi
  SOURCE_DB="$DB_NAME" TARGET_HOST="$DB_HOST" TARGET_PORT="$DB_PORT" TARGET_DB="$DB_NAME" TARGET_USER="$DB_USER" \
    DUMP_DIR="$DATA_MOUNT/backups" MARKER="$marker" bash "$(dirname "$0")/migrate-database.sh"
  mark_restart_needed
fi

# The daily dump of the local database has nothing left to dump.
if systemctl is-enabled --quiet mattermost-db-dump.timer 2>/dev/null; then
  systemctl disable --now --quiet mattermost-db-dump.timer
  changed "disabled the local database dump timer (RDS keeps automated backups)"
fi
