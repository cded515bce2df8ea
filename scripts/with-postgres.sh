#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster: initdb into a temp dir, start it on
# 127.0.0.1 at a free port, create database `tessera`, run the command with the variables
# below exported, then stop the cluster and delete the temp dir when the command ends (also
# when it fails, and on Ctrl-C, SIGTERM or SIGHUP of this script). Exits with the command's
# status. Usage: scripts/with-postgres.sh <command> [args...]
#
# Exported to the command:
#   TESSERA_PG_DSN        host=127.0.0.1 port=N user=tessera dbname=tessera (libpq key=value)
#   TESSERA_PG_ADMIN_DSN  the same with dbname=postgres (for CREATE DATABASE and the like)
#   TESSERA_PG_BIN        the PostgreSQL bin dir (initdb, pg_ctl, psql, pg_isready)
#   TESSERA_PG_DATA       the data directory
#   TESSERA_PG_PORT       the TCP port
#   TESSERA_PG_LOG        the server log file
#   TESSERA_PG_CTL        absolute path of scripts/pg-ctl.sh: pause, resume, restart, stop,
#                         start, status (see there)
#
# If TESSERA_PG_DSN is already set, the command just runs (it reuses the caller's cluster).
# A caller may set TESSERA_PG_BIN to choose the PostgreSQL installation.
# If PostgreSQL is missing or does not start: with CI=true this fails (exit 1, with the server
# log); otherwise it prints one line and runs the command without TESSERA_PG_DSN, so cluster
# tests skip. As root, the cluster runs as the `postgres` user (initdb refuses root), or as a
# system user `tessera-pg` created on the spot when there is no `postgres` user.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi
if [ -n "${TESSERA_PG_DSN:-}" ]; then
  exec "$@"
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ctl="$here/pg-ctl.sh"
tmp=""
pg_user=""
bin=""
started=0
child=""
show_logs=()  # printed when the cluster does not come up under CI=true

# The PostgreSQL bin dir: $TESSERA_PG_BIN if the caller set it, else pg_config's, else
# initdb's on PATH, else the newest Debian one.
find_bindir() {
  local d
  if [ -n "${TESSERA_PG_BIN:-}" ]; then
    d=$TESSERA_PG_BIN
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    return 1
  fi
  if d=$(pg_config --bindir 2>/dev/null) && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"; return 0
  fi
  if d=$(command -v initdb 2>/dev/null); then
    # Resolve symlinks such as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb, so
    # the dir also has psql and pg_isready.
    d=$(dirname "$(readlink -f "$d")")
    if [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"; return 0
  fi
  return 1
}

# Runs a command as the cluster's owner, from the temp dir (root's cwd may be unreadable to it).
as_pg() {
  if [ -z "$pg_user" ]; then
    (cd "$tmp" && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd "$tmp" && runuser -u "$pg_user" -- "$@")
  else
    (cd "$tmp" && su -s /bin/bash "$pg_user" -c "$(printf '%q ' "$@")")
  fi
}

# The processes of this cluster: the postmaster from postmaster.pid and its descendants.
cluster_pids() {
  local pid line rest f p
  [ -n "$tmp" ] && [ -f "$tmp/data/postmaster.pid" ] || return 0
  read -r pid 2>/dev/null < "$tmp/data/postmaster.pid" || return 0
  case "$pid" in ''|*[!0-9]*) return 0 ;; esac
  [ -d "/proc/$pid" ] || return 0
  echo "$pid"
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$f" || continue
    rest=${line##*) }  # after "pid (comm) ": "state ppid ..."
    p=${rest#* }
    p=${p%% *}
    kids[$p]+=" ${f//[!0-9]/}"
  done
  local queue=("$pid")
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for pid in ${kids[$p]:-}; do echo "$pid"; queue+=("$pid"); done
  done
}

# Stops the cluster (resuming it first if it was paused) and deletes the temp dir.
cleanup() {
  local status=$? pids p i
  trap - EXIT INT TERM HUP
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    if [ "$started" = 1 ] || [ -f "$tmp/data/postmaster.pid" ]; then
      pids=$(cluster_pids)
      # shellcheck disable=SC2086
      [ -z "$pids" ] || kill -CONT $pids 2>/dev/null || true
      as_pg "$bin/pg_ctl" stop -D "$tmp/data" -m immediate -w -t 20 >/dev/null 2>&1 || true
      # Anything left (a postmaster that never wrote its pid file, or a stop that timed out):
      # every postgres process whose cwd is this data dir.
      for i in 1 2 3; do
        pids=""
        for p in /proc/[0-9]*; do
          if [ "$p/cwd" -ef "$tmp/data" ] && [ "$p/exe" -ef "$bin/postgres" ]; then
            pids+=" ${p#/proc/}"
          fi
        done 2>/dev/null
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
      done
    fi
    rm -rf "$tmp"
  fi
  exit "$status"
}

# Ctrl-C, SIGTERM, SIGHUP: pass the signal on to the command, wait for it, then clean up.
on_signal() {
  local sig=$1 num=$2
  trap - INT TERM HUP
  if [ -n "$child" ]; then
    kill -s "$sig" "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit $((128 + num))
}

# PostgreSQL is missing or did not start: fail under CI, else run the command without it.
unavailable() {
  local why=$1
  shift
  if [ "${CI:-}" = true ]; then
    echo "with-postgres.sh: $why (CI=true, so this is an error)" >&2
    local f
    for f in "${show_logs[@]}"; do
      if [ -s "$f" ]; then
        echo "---- $f" >&2
        cat "$f" >&2
      fi
    done
    exit 1
  fi
  echo "with-postgres.sh: $why; PostgreSQL cluster tests will be skipped" >&2
  (cleanup) || true
  tmp=""
  unset TESSERA_PG_DSN TESSERA_PG_ADMIN_DSN TESSERA_PG_BIN TESSERA_PG_DATA TESSERA_PG_PORT \
    TESSERA_PG_LOG TESSERA_PG_CTL
  trap - EXIT INT TERM HUP
  exec "$@"
}

trap cleanup EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

if ! bin=$(find_bindir); then
  where="\$TESSERA_PG_BIN, via pg_config, on PATH or in /usr/lib/postgresql/*/bin"
  unavailable "no PostgreSQL found (no initdb in $where)" "$@"
fi

if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then
    pg_user=postgres
  else
    pg_user=tessera-pg
    if ! id "$pg_user" >/dev/null 2>&1; then
      # A concurrent run may create it first: only the final check counts.
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$pg_user" >/dev/null 2>&1 ||
        adduser --system --no-create-home --group "$pg_user" >/dev/null 2>&1 || true
      id "$pg_user" >/dev/null 2>&1 || unavailable "could not create system user $pg_user" "$@"
    fi
  fi
fi

# A temp dir the cluster's owner can reach ($TMPDIR may be under root's home).
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-pg.XXXXXX")
[ -z "$pg_user" ] || chown "$pg_user:" "$tmp"
if ! as_pg test -w "$tmp" 2>/dev/null; then
  rm -rf "$tmp"
  tmp=$(mktemp -d /tmp/tessera-pg.XXXXXX)
  [ -z "$pg_user" ] || chown "$pg_user:" "$tmp"
fi
data="$tmp/data"
log="$tmp/postgres.log"
as_pg mkdir "$tmp/sock"
show_logs=("$tmp/initdb.log")

# initdb --no-sync only skips flushing initdb's own files (this cluster is thrown away if the
# machine crashes); the server itself runs with fsync on.
if ! as_pg "$bin/initdb" -D "$data" --auth=trust -U tessera --encoding=UTF8 --no-locale \
  --no-sync > "$tmp/initdb.log" 2>&1; then
  unavailable "initdb failed" "$@"
fi
show_logs=("$tmp/pg_ctl.log" "$log")
cat >> "$data/postgresql.conf" <<EOF

# scripts/with-postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp/sock'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
log_line_prefix = '%m [%p] %q%u@%d %a: '
include 'tessera-port.conf'
EOF

# A free port: a random one in 20000-60000, below the kernel's ephemeral range when that
# leaves room (an outgoing connection could take the port while `restart` has the server
# down), skipping ports where something listens, until the server starts (another process may
# bind the port in between).
lo=20000 hi=60000
if read -r eph_lo _ 2>/dev/null < /proc/sys/net/ipv4/ip_local_port_range &&
  [ "$eph_lo" -gt $((lo + 1000)) ] && [ "$eph_lo" -le "$hi" ]; then
  hi=$((eph_lo - 1))
fi
port=""
for _ in $(seq 1 20); do
  p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
  if (: <> "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
  echo "port = $p" > "$data/tessera-port.conf"
  [ -z "$pg_user" ] || chown "$pg_user:" "$data/tessera-port.conf"
  started=1
  if as_pg "$bin/pg_ctl" start -D "$data" -l "$log" -w -t 60 >> "$tmp/pg_ctl.log" 2>&1; then
    port=$p
    break
  fi
  started=0
  as_pg "$bin/pg_ctl" stop -D "$data" -m immediate -w -t 10 >/dev/null 2>&1 || true
  # Only a port clash is worth another try.
  grep -q "could not bind\|could not create any TCP/IP sockets\|Address already in use" \
    "$log" 2>/dev/null || break
  : > "$log"
done
if [ -z "$port" ]; then
  unavailable "the PostgreSQL server did not start" "$@"
fi

export TESSERA_PG_BIN="$bin"
export TESSERA_PG_DATA="$data"
export TESSERA_PG_PORT="$port"
export TESSERA_PG_LOG="$log"
export TESSERA_PG_CTL="$ctl"
export TESSERA_PG_ADMIN_DSN="host=127.0.0.1 port=$port user=tessera dbname=postgres"
if ! "$bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$TESSERA_PG_ADMIN_DSN" \
  -c "CREATE DATABASE tessera" >> "$tmp/pg_ctl.log" 2>&1; then
  unavailable "CREATE DATABASE tessera failed" "$@"
fi
export TESSERA_PG_DSN="host=127.0.0.1 port=$port user=tessera dbname=tessera"

# The command runs in the background so that a signal to this script runs its trap at once
# (bash defers traps until a foreground command ends); it keeps this script's stdin and does
# not ignore SIGINT/SIGQUIT as background commands otherwise would.
exec 3<&0
(trap - INT QUIT; exec "$@" <&3 3<&-) &
child=$!
exec 3<&-
status=0
wait "$child" || status=$?
child=""
exit "$status"
