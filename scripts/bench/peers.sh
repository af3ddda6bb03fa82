#!/usr/bin/env bash
# Installs and starts the peer brokers the benchmark runs beside ours, on
# loopback only. Idempotent: installs what is missing, leaves running ones be.
#   RabbitMQ 3.x (scripts/deps/rabbitmq.sh): STOMP 127.0.0.1:61713, guest/guest, vhost /
#   ActiveMQ 5.17 (Debian package `activemq`): STOMP 127.0.0.1:61723, no login
# Stop ActiveMQ with scripts/bench/stop-activemq.sh, RabbitMQ with
# scripts/rabbitmq/stop.sh (both by recorded PID, never by name).
# Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/common.sh

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- RabbitMQ: the project's own script installs and starts it.
bash scripts/deps/rabbitmq.sh

# --- ActiveMQ
if ! installed activemq; then
  export DEBIAN_FRONTEND=noninteractive
  # Keep the maintainer scripts from starting the daemon (every interface,
  # every protocol): we start it below, STOMP on loopback only.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if [ -z "$(ls -A /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then
    apt-get update -q
  fi
  apt-get install -y -q --no-install-recommends activemq || {
    apt-get update -q
    apt-get install -y -q --no-install-recommends activemq
  }
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  echo "activemq $(dpkg-query -W -f='${Version}' activemq) installed" >&2
fi

PORT=$ACTIVEMQ_STOMP_PORT
if port_open "$PORT"; then
  if speaks_stomp "$PORT"; then
    echo "activemq: STOMP already answering on 127.0.0.1:$PORT" >&2
    exit 0
  fi
  if ! { [ -f "$ACTIVEMQ_PIDFILE" ] && pid_alive "$(cat "$ACTIVEMQ_PIDFILE")"; }; then
    echo "error: 127.0.0.1:$PORT is taken by a process that does not speak STOMP; free the port" >&2
    exit 1
  fi
fi

AMQ_HOME=/usr/share/activemq
AMQ_BASE=$BENCH_DATA_DIR/activemq
AMQ_CONF=$BENCH_DIR/activemq
AMQ_DATA=$AMQ_BASE/data
mkdir -p "$BENCH_RUN_DIR" "$AMQ_DATA" "$AMQ_BASE/tmp" "$BENCH_LOG_DIR"
# 10,000-connection runs need many file descriptors; the JVM inherits this.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if ! { [ -f "$ACTIVEMQ_PIDFILE" ] && pid_alive "$(cat "$ACTIVEMQ_PIDFILE")"; }; then
  rm -f "$ACTIVEMQ_PIDFILE"
  JAVA=${JAVA:-}
  if [ -z "$JAVA" ]; then
    for j in /usr/lib/jvm/default-java/bin/java /usr/lib/jvm/java-17-openjdk-amd64/bin/java; do
      if [ -x "$j" ]; then JAVA=$j; break; fi
    done
    [ -n "$JAVA" ] || JAVA=$(readlink -f "$(command -v java)")
  fi
  # Debian's default options (/usr/share/activemq/activemq-options).
  OPTS=${ACTIVEMQ_OPTS:--Xms512M -Xmx512M -Dorg.apache.activemq.UseDedicatedTaskRunner=true}
  # shellcheck disable=SC2086
  setsid "$JAVA" $OPTS \
    --add-reads=java.xml=java.logging \
    --add-opens java.base/java.security=ALL-UNNAMED \
    --add-opens java.base/java.net=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.naming/javax.naming.spi=ALL-UNNAMED \
    --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
    -Djava.io.tmpdir="$AMQ_BASE/tmp" \
    -Dactivemq.classpath="$AMQ_CONF" \
    -Dactivemq.home="$AMQ_HOME" \
    -Dactivemq.base="$AMQ_BASE" \
    -Dactivemq.conf="$AMQ_CONF" \
    -Dactivemq.data="$AMQ_DATA" \
    -jar "$AMQ_HOME/bin/activemq.jar" start "xbean:file:$AMQ_CONF/activemq.xml" \
    >"$BENCH_LOG_DIR/activemq.out" 2>&1 </dev/null &
  echo $! >"$ACTIVEMQ_PIDFILE"
fi

PID=$(cat "$ACTIVEMQ_PIDFILE")
for ((i = 0; i < 480; i++)); do
  if port_open "$PORT" && speaks_stomp "$PORT"; then
    echo "activemq started: pid $PID, STOMP on 127.0.0.1:$PORT (logs: $BENCH_LOG_DIR/activemq.out)" >&2
    exit 0
  fi
  if ! pid_alive "$PID"; then
    echo "error: activemq (pid $PID) exited during startup; see $BENCH_LOG_DIR/activemq.out" >&2
    tail -20 "$BENCH_LOG_DIR/activemq.out" >&2 || true
    rm -f "$ACTIVEMQ_PIDFILE"
    exit 1
  fi
  sleep 0.25
done
echo "error: activemq (pid $PID) did not answer STOMP on 127.0.0.1:$PORT within 120 s" >&2
exit 1
