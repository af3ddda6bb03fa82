#!/usr/bin/env bash
# Stops the RabbitMQ started by scripts/rabbitmq/start.sh, by the PID it
# recorded (never by name): SIGTERM, wait up to 30 s, then SIGKILL.
# (Erlang's epmd stays on 127.0.0.1:4369; harmless.)
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ ! -f "$RABBIT_PIDFILE" ]; then
  echo "rabbitmq: not running (no $RABBIT_PIDFILE)" >&2
  exit 0
fi
PID=$(cat "$RABBIT_PIDFILE")
if pid_alive "$PID"; then
  kill -TERM "$PID"
  for ((i = 0; i < 120; i++)); do
    pid_alive "$PID" || break
    sleep 0.25
  done
  if pid_alive "$PID"; then
    echo "rabbitmq: pid $PID ignored SIGTERM for 30 s, sending SIGKILL" >&2
    kill -KILL "$PID" || true
  fi
fi
rm -f "$RABBIT_PIDFILE"
echo "rabbitmq stopped (pid $PID)" >&2
