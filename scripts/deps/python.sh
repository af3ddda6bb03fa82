#!/usr/bin/env bash
# Creates <repo>/.venv with the Python packages the interop tests use
# (stomp.py, the most used Python STOMP client). Idempotent: quiet and quick
# when the venv already has the pinned version. Works on a fresh Debian
# machine as root (installs python3 and python3-venv with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

STOMP_PY_VERSION="9.0.0"
VENV=".venv"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('stomp.py') != '$STOMP_PY_VERSION')" 2>/dev/null; then
  exit 0
fi

. scripts/deps/lib/apt.sh

if ! command -v python3 >/dev/null 2>&1; then
  apt_install python.sh python3 python3-venv
fi
# Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  apt_install python.sh python3-venv
fi

if [ ! -x "$PY" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Some images ship ensurepip but not the versioned venv package.
    rm -rf "$VENV"
    apt_install python.sh python3-venv "python3.$(python3 -c 'import sys; print(sys.version_info[1])')-venv"
    python3 -m venv "$VENV"
  fi
fi
"$PY" -m pip install --quiet --disable-pip-version-check "stomp.py==$STOMP_PY_VERSION"
echo "python.sh: $VENV ready with stomp.py $STOMP_PY_VERSION" >&2
