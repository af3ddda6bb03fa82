#!/usr/bin/env bash
# Stops the ActiveMQ started by scripts/bench/peers.sh, by the PID it recorded
# (never by name): SIGTERM, wait up to 30 s, then SIGKILL.
set -euo pipefail
. "$(dirname "$0")/common.sh"
if [ ! -f "$ACTIVEMQ_PIDFILE" ]; then
  echo "activemq: not running (no $ACTIVEMQ_PIDFILE)" >&2
  exit 0
fi
PID=$(cat "$ACTIVEMQ_PIDFILE")
if pid_alive "$PID"; then
  kill -TERM "$PID"
  for ((i = 0; i < 120; i++)); do
    pid_alive "$PID" || break
    sleep 0.25
  done
  if pid_alive "$PID"; then
    echo "activemq: pid $PID ignored SIGTERM for 30 s, sending SIGKILL" >&2
    kill -KILL "$PID" || true
  fi
fi
rm -f "$ACTIVEMQ_PIDFILE"
echo "activemq stopped (pid $PID)" >&2
