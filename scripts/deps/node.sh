#!/usr/bin/env bash
# Installs what the stompjs interop tests use (tests/tests/interop.rs):
# Node.js (with apt when missing) and the npm packages pinned in
# tests/interop/stompjs/package-lock.json, into that folder's node_modules.
# Idempotent: quiet and quick when they are already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=tests/interop/stompjs
. scripts/deps/lib/apt.sh

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install node.sh nodejs npm
fi

# The lock file's copy inside node_modules says what was installed last.
if [ -d "$DIR/node_modules/@stomp/stompjs" ] && cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.installed"; then
  exit 0
fi
echo "node.sh: npm ci in $DIR" >&2
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
cp "$DIR/package-lock.json" "$DIR/node_modules/.package-lock.json.installed"
