#!/usr/bin/env bash
# Controls the throwaway cluster of scripts/with-postgres.sh (exported to the command as
# TESSERA_PG_CTL), from the variables it exports: TESSERA_PG_DATA, TESSERA_PG_BIN,
# TESSERA_PG_LOG and TESSERA_PG_PORT. Usage: pg-ctl.sh ACTION
#   pause    SIGSTOP the postmaster and all its children: connections and queries hang, as in
#            a network partition (TCP connects still complete: the kernel accepts them)
#   resume   SIGCONT them
#   restart  pg_ctl restart -m fast, then wait until the server accepts connections
#   stop     pg_ctl stop -m fast
#   start    pg_ctl start, then wait until the server accepts connections
#   status   prints running, paused or stopped (exit 0, 0, 3)
# restart and stop resume a paused server first; start and stop do nothing when the server
# already is in that state. pg_ctl runs as the data directory's owner (via runuser when root).
set -euo pipefail

usage() {
  echo "usage: $0 pause|resume|restart|stop|start|status" >&2
  exit 2
}
[ $# -eq 1 ] || usage
action=$1

data=${TESSERA_PG_DATA:?"TESSERA_PG_DATA is not set (run under scripts/with-postgres.sh)"}
bin=${TESSERA_PG_BIN:-}
if [ -z "$bin" ]; then
  bin=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
fi
log=${TESSERA_PG_LOG:-$(dirname "$data")/postgres.log}
port=${TESSERA_PG_PORT:-}

# Runs a command as the data directory's owner, from a directory it can read.
as_owner() {
  local owner
  owner=$(stat -c %U "$data")
  if [ "$(id -u)" != 0 ] || [ "$owner" = root ]; then
    (cd "$data/.." && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd "$data/.." && runuser -u "$owner" -- "$@")
  else
    (cd "$data/.." && su -s /bin/bash "$owner" -c "$(printf '%q ' "$@")")
  fi
}

# The postmaster's pid, from postmaster.pid, if that process exists.
postmaster_pid() {
  local pid
  read -r pid 2>/dev/null < "$data/postmaster.pid" || return 1
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  [ -d "/proc/$pid" ] || return 1
  echo "$pid"
}

# The descendants of a process (children first), read from /proc: no procps needed.
descendants() {
  local f line rest p pid
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$f" || continue
    rest=${line##*) }  # after "pid (comm) ": "state ppid ..."
    p=${rest#* }
    p=${p%% *}
    kids[$p]+=" ${f//[!0-9]/}"
  done
  local queue=("$1")
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    for pid in ${kids[$p]:-}; do
      echo "$pid"
      queue+=("$pid")
    done
  done
}

# The state letter of a process (T when stopped).
proc_state() {
  local line rest
  read -r line 2>/dev/null < "/proc/$1/stat" || return 1
  rest=${line##*) }
  echo "${rest%% *}"
}

pause() {
  local pid kids
  pid=$(postmaster_pid) || { echo "pg-ctl.sh: server is not running" >&2; exit 1; }
  # The postmaster first, so that it forks no backend after the children are listed.
  kill -STOP "$pid"
  kids=$(descendants "$pid")
  # shellcheck disable=SC2086
  [ -z "$kids" ] || kill -STOP $kids 2>/dev/null || true
}

resume() {
  local pid kids
  pid=$(postmaster_pid) || return 0
  kids=$(descendants "$pid")
  # shellcheck disable=SC2086
  [ -z "$kids" ] || kill -CONT $kids 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
}

# Waits until the server accepts connections on its TCP port (pg_ctl -w waits on the pid
# file; this also checks the port the tests use).
wait_ready() {
  local i
  [ -n "$port" ] || return 0
  for i in $(seq 1 300); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U tessera -d postgres -t 2; then return 0; fi
    sleep 0.1
  done
  echo "pg-ctl.sh: server not accepting connections on port $port after 30 s; log $log:" >&2
  tail -n 50 "$log" >&2 || true
  exit 1
}

running() {
  as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1
}

case "$action" in
  pause) pause ;;
  resume) resume ;;
  restart)
    resume
    as_owner "$bin/pg_ctl" restart -D "$data" -m fast -w -t 60 -l "$log" >/dev/null
    wait_ready
    ;;
  stop)
    resume
    if running; then as_owner "$bin/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null; fi
    ;;
  start)
    if ! running; then as_owner "$bin/pg_ctl" start -D "$data" -w -t 60 -l "$log" >/dev/null; fi
    wait_ready
    ;;
  status)
    if pid=$(postmaster_pid) && running; then
      if [ "$(proc_state "$pid")" = T ]; then
        echo "paused (pid $pid)"
      else
        echo "running (pid $pid)"
      fi
    else
      echo "stopped"
      exit 3
    fi
    ;;
  *) usage ;;
esac
