#!/usr/bin/env bash
# Starts the project's RabbitMQ (installed by scripts/deps/rabbitmq.sh) in the
# background with the STOMP plugin on 127.0.0.1:61713 (guest/guest, vhost /),
# everything else on loopback too, and waits until STOMP answers a CONNECT.
# Idempotent: when it already runs (or anything on 61713 answers STOMP as
# guest/guest), it only says so. Stop it with scripts/rabbitmq/stop.sh.
set -euo pipefail
. "$(dirname "$0")/common.sh"
PORT=$RABBIT_STOMP_PORT

if port_open "$PORT"; then
  if speaks_stomp "$PORT"; then
    echo "rabbitmq: STOMP already answering on 127.0.0.1:$PORT" >&2
    exit 0
  fi
  if ! { [ -f "$RABBIT_PIDFILE" ] && pid_alive "$(cat "$RABBIT_PIDFILE")"; }; then
    echo "error: 127.0.0.1:$PORT is taken by a process that does not speak STOMP as guest/guest; free the port" >&2
    exit 1
  fi
  # Ours, still starting: fall through to the wait below.
fi

if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  echo "error: RabbitMQ is not installed; run scripts/deps/rabbitmq.sh" >&2
  exit 1
fi

mkdir -p "$RABBIT_RUN_DIR" "$RABBIT_DATA_DIR" "$RABBIT_LOG_DIR"
if ! { [ -f "$RABBIT_PIDFILE" ] && pid_alive "$(cat "$RABBIT_PIDFILE")"; }; then
  rm -f "$RABBIT_PIDFILE"
  # Run with rabbitmq's HOME so the Erlang cookie is the package's one.
  export HOME=/var/lib/rabbitmq
  export RABBITMQ_NODENAME=rabbit@localhost
  export RABBITMQ_CONFIG_FILE=$RABBIT_CONF_DIR/rabbitmq.conf
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_CONF_DIR/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$RABBIT_DATA_DIR/mnesia
  export RABBITMQ_LOG_BASE=$RABBIT_LOG_DIR
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=5672
  export RABBITMQ_DIST_PORT=25672
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  # Makes the start script exec the VM, so $! is the VM itself.
  export RUNNING_UNDER_SYSTEMD=true
  setsid /usr/lib/rabbitmq/bin/rabbitmq-server \
    >"$RABBIT_LOG_DIR/rabbitmq.out" 2>&1 </dev/null &
  echo $! >"$RABBIT_PIDFILE"
fi

PID=$(cat "$RABBIT_PIDFILE")
for ((i = 0; i < 480; i++)); do
  if port_open "$PORT" && speaks_stomp "$PORT"; then
    echo "rabbitmq started: pid $PID, STOMP on 127.0.0.1:$PORT (logs: $RABBIT_LOG_DIR)" >&2
    exit 0
  fi
  if ! pid_alive "$PID"; then
    echo "error: rabbitmq (pid $PID) exited during startup; see $RABBIT_LOG_DIR/rabbitmq.out" >&2
    tail -20 "$RABBIT_LOG_DIR/rabbitmq.out" >&2 || true
    rm -f "$RABBIT_PIDFILE"
    exit 1
  fi
  sleep 0.25
done
echo "error: rabbitmq (pid $PID) did not answer STOMP on 127.0.0.1:$PORT within 120 s" >&2
exit 1
