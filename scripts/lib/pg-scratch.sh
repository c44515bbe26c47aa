# A throwaway PostgreSQL for the scripts (scripts/crash-test and scripts/bench-load with
# --store postgres): Debian's server binaries, `initdb` into a temporary directory, `pg_ctl` on
# a free port of 127.0.0.1 (its socket in that directory), fsync and synchronous_commit on,
# one database. Run as root, the cluster belongs to the unprivileged `postgres` user (the server
# refuses root) and every server command runs as that user. Source it, then:
#
#   pg_scratch_start          create and start a cluster in a temporary directory of its own
#                             (the postgres user must reach it: not under a caller's 0700
#                             directory); sets PG_URL (no TLS, trust authentication) and PG_PORT
#   pg_scratch_stop_immediate stop it as a crash would (pg_ctl stop -m immediate)
#   pg_scratch_restart        start it again on the same port (it recovers from its WAL)
#   pg_scratch_cleanup        stop it (-m immediate) if running and remove its directory; call
#                             it from the EXIT trap
#   pg_scratch_sql SQL        run SQL in the database, print the rows unaligned
#
# Needs PostgreSQL's server (Debian: `apt-get install postgresql`; ./scripts/setup --test).

PG_SCRATCH_DIR=""
PG_PORT=""
PG_URL=""
PG_DB=sealform

pg_scratch_bin() {
  local b
  for b in "$(command -v pg_ctl 2>/dev/null)" /usr/lib/postgresql/*/bin/pg_ctl; do
    [ -x "$b" ] && { dirname "$(readlink -f "$b")"; return 0; }
  done
  echo "pg-scratch: PostgreSQL's server is missing: apt-get install postgresql (or ./scripts/setup --test)" >&2
  return 1
}

# Runs a server command as the cluster's owner: `postgres` when we are root, else ourselves.
pg_scratch_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_scratch_free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    # Nothing answers there (bash's /dev/tcp connects; a refusal means free).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "pg-scratch: no free port found" >&2
  return 1
}

pg_scratch_start() {
  local bin
  bin="$(pg_scratch_bin)" || return 1
  PG_SCRATCH_BIN="$bin"
  PG_SCRATCH_DIR="$(mktemp -d -t sealform-pg.XXXXXX)" || return 1
  if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || {
      echo "pg-scratch: running as root needs the unprivileged postgres user (Debian's postgresql package makes it)" >&2
      return 1
    }
    chown postgres: "$PG_SCRATCH_DIR"
  fi
  PG_PORT="$(pg_scratch_free_port)" || return 1
  pg_scratch_as_owner "$bin/initdb" -D "$PG_SCRATCH_DIR/data" -U "$PG_DB" --auth=trust -E UTF8 \
    --no-sync >"$PG_SCRATCH_DIR/initdb.log" 2>&1 || {
    cat "$PG_SCRATCH_DIR/initdb.log" >&2
    return 1
  }
  pg_scratch_restart || return 1
  pg_scratch_as_owner "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_DB" "$PG_DB" || return 1
  PG_URL="postgresql://$PG_DB@127.0.0.1:$PG_PORT/$PG_DB"
}

pg_scratch_restart() {
  pg_scratch_as_owner "$PG_SCRATCH_BIN/pg_ctl" start -D "$PG_SCRATCH_DIR/data" \
    -l "$PG_SCRATCH_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_SCRATCH_DIR -c fsync=on -c synchronous_commit=on -c track_commit_timestamp=off -c log_statement=none -c max_connections=200" \
    >/dev/null || {
    tail -n 20 "$PG_SCRATCH_DIR/server.log" >&2
    return 1
  }
}

pg_scratch_stop_immediate() {
  pg_scratch_as_owner "$PG_SCRATCH_BIN/pg_ctl" stop -D "$PG_SCRATCH_DIR/data" -m immediate -w >/dev/null
}

pg_scratch_cleanup() {
  [ -n "$PG_SCRATCH_DIR" ] && [ -f "$PG_SCRATCH_DIR/data/postmaster.pid" ] &&
    pg_scratch_stop_immediate 2>/dev/null
  [ -n "$PG_SCRATCH_DIR" ] && rm -rf "$PG_SCRATCH_DIR"
  return 0
}

pg_scratch_sql() {
  pg_scratch_as_owner psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_DB" \
    -d "$PG_DB" -c "$1"
}
