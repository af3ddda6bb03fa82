#!/usr/bin/env bash
# Installs RabbitMQ (Debian package rabbitmq-server) and starts it with the
# STOMP plugin on 127.0.0.1:61713 (guest/guest, vhost /), loopback only, for
# stomp-client/tests/rabbitmq.rs. Idempotent: installs only what is missing and
# leaves a running instance alone. Run as root on Debian (scripts/test.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/../.."

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if ! installed rabbitmq-server; then
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package's maintainer scripts from starting the daemon (it would
  # listen on every interface): scripts/rabbitmq/start.sh runs it on loopback.
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
  apt-get install -y -q --no-install-recommends rabbitmq-server || {
    apt-get update -q
    apt-get install -y -q --no-install-recommends rabbitmq-server
  }
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  echo "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server) installed" >&2
fi

bash scripts/rabbitmq/start.sh
