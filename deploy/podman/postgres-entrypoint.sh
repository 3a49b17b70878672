#!/bin/sh
# The official postgres image's contract, enough for deploy/compose/compose.yaml: on an empty
# PGDATA, a cluster whose superuser is POSTGRES_USER (password POSTGRES_PASSWORD, required),
# a database POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sql and *.sh, with the server on
# its socket only; then the server on every address, password sign-in (scram-sha-256).
set -eu
if [ "$(id -u)" = 0 ]; then
    # A named volume may arrive owned by root: hand it to postgres, then drop root.
    mkdir -p "$PGDATA" /run/postgresql
    chown -R postgres:postgres "$(dirname "$PGDATA")" /run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\""
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        case $file in
            *.sql) psql -v ON_ERROR_STOP=1 -U "$user" -d "$db" -f "$file" ;;
            *.sh) . "$file" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
