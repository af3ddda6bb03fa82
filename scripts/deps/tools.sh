#!/usr/bin/env bash
# Command-line tools the tests run: script(1) from util-linux, which gives
# `stomp passwd` a terminal in stomp-cli/tests/passwd.rs. Debian ships it in
# bsdutils (an essential package); installed with apt when missing.
set -euo pipefail

if ! command -v script >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "tools.sh: script (util-linux) is missing and there is no apt-get: install util-linux" >&2
    exit 1
  fi
  echo "tools.sh: installing bsdutils (script) with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq bsdutils >/dev/null
fi
