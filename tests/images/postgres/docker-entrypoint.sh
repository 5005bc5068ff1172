#!/usr/bin/env bash
# Entrypoint of the lab's postgres stand-in, after docker-library/postgres's docker-entrypoint.sh:
# same variables, same first-init steps and messages, cut to what the lab and the roles use.
set -Eeo pipefail

# VAR or VAR_FILE (Docker secrets), like the official image.
file_env() {
  local var=$1 file_var=${1}_FILE val=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  if [ -n "${!var:-}" ]; then val=${!var}; elif [ -n "${!file_var:-}" ]; then val=$(< "${!file_var}"); fi
  export "$var=$val"
  unset "$file_var"
}

# SQL as the superuser over the unix socket; same name as the official helper, which init scripts may call.
docker_process_sql() {
  local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  [ -z "$POSTGRES_DB" ] || runner+=(--dbname "$POSTGRES_DB")
  PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

first_init() {
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'EOE'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
EOE
    exit 1
  fi
  ls /docker-entrypoint-initdb.d/ >/dev/null   # an unreadable init folder fails here, not half-way through

  # The password reaches initdb through a pipe, never a command line ("\n": --pwfile refuses an empty file).
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"

  # Host connections: the server's password_encryption (scram-sha-256 on 15) unless told otherwise.
  : "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "$@")}"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

  # Temporary server on the unix socket only: nothing outside the container sees a half-made database
  # (so `pg_isready -h 127.0.0.1` answers only once the real server runs).
  export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
  NOTIFY_SOCKET='' PGUSER=${PGUSER:-$POSTGRES_USER} \
    pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@" -c listen_addresses='' -p "${PGPORT:-5432}")" -w start

  local db=$POSTGRES_DB f
  POSTGRES_DB='' docker_process_sql --dbname postgres --set db="$db" <<'EOSQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
EOSQL

  # Non-executable *.sh are sourced, as the official image does (SC1090: they are the user's).
  # shellcheck disable=SC1090
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) if [ -x "$f" ]; then echo "$0: running $f"; "$f"; else echo "$0: sourcing $f"; . "$f"; fi ;;
      *.sql) echo "$0: running $f"; docker_process_sql -f "$f" ;;
      *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | docker_process_sql ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done

  PGUSER=${PGUSER:-postgres} pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  printf '\nPostgreSQL init process complete; ready for start up.\n\n'
}

# Options that make postgres print something and exit: no init for those.
want_help() {
  local arg
  for arg; do case $arg in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac; done
  return 1
}

if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && ! want_help "$@"; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=}"

  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA" || :
  chmod 3775 /var/run/postgresql || :
  if [ "$(id -u)" = 0 ]; then
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    # gosu is not in Debian; setpriv drops to postgres the same way (exec, no PAM session, no extra process).
    HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi

  shift   # the rest are the server's options, for the temporary server and `postgres -C` too
  if [ -s "$PGDATA/PG_VERSION" ]; then
    printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
  else
    shopt -s nullglob
    first_init "$@"
    shopt -u nullglob
  fi
  set -- postgres "$@"
fi

exec "$@"
