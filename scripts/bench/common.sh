# Shared by the benchmark scripts (sourced, not executed).
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_RUN_DIR=${STOMP_RS_RUN:-/tmp/stomp-rs}                 # pid files
BENCH_DATA_DIR=${STOMP_RS_DATA:-/var/lib/stomp-rs}
BENCH_LOG_DIR=${STOMP_RS_LOG:-/var/log/stomp-rs}
ACTIVEMQ_STOMP_PORT=61723
ACTIVEMQ_PIDFILE=$BENCH_RUN_DIR/activemq.pid

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# port_open PORT -> 0 if 127.0.0.1:PORT accepts a TCP connection
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# speaks_stomp PORT [VHOST] -> 0 if a STOMP CONNECT is answered by CONNECTED
speaks_stomp() {
  timeout 5 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$1"'
    printf "CONNECT\naccept-version:1.2\nhost:'"${2:-localhost}"'\nlogin:guest\npasscode:guest\n\n\0" >&3
    IFS= read -r -t 4 line <&3 && [ "$line" = CONNECTED ]
  ' 2>/dev/null
}

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null; }

# Whether $BROKERS names $1 (ours, rabbitmq, activemq).
want() { [[ " $BROKERS " == *" $1 "* ]]; }

# Our broker, started by a bench script (which sets OURS_PID and runs
# `trap stop_ours EXIT`), stopped on exit by its PID.
OURS_PID=
stop_ours() {
  if [ -n "$OURS_PID" ] && pid_alive "$OURS_PID"; then
    kill -TERM "$OURS_PID" 2>/dev/null || true
    wait "$OURS_PID" 2>/dev/null || true
  fi
}
