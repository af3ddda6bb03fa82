# Shared by start.sh / stop.sh (sourced, not executed).
RABBIT_CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RABBIT_RUN_DIR=${STOMP_RS_RUN:-/tmp/stomp-rs}              # pid file
RABBIT_DATA_DIR=${STOMP_RS_DATA:-/var/lib/stomp-rs}/rabbitmq
RABBIT_LOG_DIR=${STOMP_RS_LOG:-/var/log/stomp-rs}/rabbitmq
RABBIT_PIDFILE=$RABBIT_RUN_DIR/rabbitmq.pid
RABBIT_STOMP_PORT=61713

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# port_open PORT -> 0 if 127.0.0.1:PORT accepts a TCP connection
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# speaks_stomp PORT -> 0 if a STOMP CONNECT as guest/guest to vhost / is answered
# by CONNECTED (so whatever holds the port is usable by the tests).
speaks_stomp() {
  timeout 5 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$1"'
    printf "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0" >&3
    IFS= read -r -t 4 line <&3 && [ "$line" = CONNECTED ]
  ' 2>/dev/null
}
