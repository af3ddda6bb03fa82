#!/usr/bin/env bash
# Command-line tools the tests run: script(1) from util-linux, which gives
# `stomp passwd` a terminal in stomp-cli/tests/passwd.rs. Debian ships it in
# bsdutils (an essential package); installed with apt when missing.
set -euo pipefail

cd "$(dirname "$0")/../.."
. scripts/deps/lib/apt.sh

if ! command -v script >/dev/null 2>&1; then
  apt_install tools.sh bsdutils
fi
