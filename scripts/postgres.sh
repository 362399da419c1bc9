#!/usr/bin/env bash
# Step: PostgreSQL from the OS packages, its data directory on the data volume, and the Mattermost role and
# database. Variables: DATA_MOUNT, DB_NAME, DB_USER; secret: DB_PASSWORD.
source "$(dirname "$0")/lib.sh"
load_vars
require_vars DATA_MOUNT DB_NAME DB_USER DB_PASSWORD
[[ "$DB_USER" =~ ^[a-z_][a-z0-9_]*$ && "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB_USER and DB_NAME must be simple identifiers"
mountpoint -q "$DATA_MOUNT" || die "$DATA_MOUNT is not mounted; the volume step must run first"

apt_install postgresql
version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
[[ -n "$version" ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
pgdata="$DATA_MOUNT/postgresql/$version/main"
conf="/etc/postgresql/$version/main/postgresql.conf"
unit="postgresql@$version-main"

current_datadir() {
  [[ -f "$conf" ]] || return 0
  sed -n "s/^data_directory = '\(.*\)'.*/\1/p" "$conf"
}

if [[ "$(current_datadir)" != "$pgdata" ]]; then
  systemctl stop "$unit" 2>/dev/null || true
  if [[ -f "$pgdata/PG_VERSION" ]]; then
    # The volume already holds the database (a re-attached volume on a new instance): keep it, point a
    # cluster configuration at it.
    [[ -f "$conf" ]] || pg_createcluster "$version" main >/dev/null
    packaged=$(current_datadir)
    sed -i "s|^data_directory = .*|data_directory = '$pgdata'|" "$conf"
    if [[ "$packaged" != "$pgdata" && "$packaged" == /var/lib/postgresql/* ]]; then
      rm -rf "$packaged"
    fi
    chown -R postgres:postgres "$DATA_MOUNT/postgresql"
    changed "PostgreSQL $version uses the existing data in $pgdata"
  else
    # Fresh volume: the packaged cluster on the root disk is empty; recreate it on the volume.
    if [[ -f "$conf" ]]; then
      pg_dropcluster --stop "$version" main
    fi
    install -d -o postgres -g postgres -m 0700 "$DATA_MOUNT/postgresql"
    pg_createcluster -d "$pgdata" "$version" main >/dev/null
    changed "created PostgreSQL $version cluster in $pgdata"
  fi
fi

systemctl enable --quiet postgresql "$unit" 2>/dev/null || systemctl enable --quiet postgresql
if ! systemctl is-active --quiet "$unit"; then
  systemctl start "$unit"
  changed "started $unit"
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 || die "PostgreSQL does not accept connections: $(journalctl -u "$unit" -n 20 --no-pager 2>&1)"

# Role and database. The password travels on psql's standard input, not its command line; psql quotes it.
psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
role_exists=$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")
password_stamp="$STATE_DIR/db-password.sha256"
password_hash=$(printf '%s' "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)
mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
if [[ "$role_exists" != 1 ]] || [[ "$(cat "$password_stamp" 2>/dev/null)" != "$password_hash" ]]; then
  {
    printf '\\set role_name %s\n' "$DB_USER"
    printf '\\set role_password %s\n' "$DB_PASSWORD"
    if [[ "$role_exists" == 1 ]]; then
      printf "SELECT format('ALTER ROLE %%I WITH LOGIN PASSWORD %%L', :'role_name', :'role_password') \\\\gexec\n"
    else
      printf "SELECT format('CREATE ROLE %%I WITH LOGIN PASSWORD %%L', :'role_name', :'role_password') \\\\gexec\n"
    fi
  } | psql_admin >/dev/null
  printf '%s\n' "$password_hash" >"$password_stamp"
  chmod 600 "$password_stamp"
  changed "role $DB_USER $([[ "$role_exists" == 1 ]] && echo "password updated" || echo created)"
fi
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
  runuser -u postgres -- createdb -O "$DB_USER" "$DB_NAME"
  changed "database $DB_NAME"
fi
