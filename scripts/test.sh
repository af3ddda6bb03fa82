#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# This is the test command named in the README; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test dependencies (Python venv with stomp.py, peer brokers, ...): installed
# by the project's own scripts, idempotently.
for s in scripts/deps/*.sh; do
  [ -e "$s" ] && bash "$s"
done

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace --all-targets
# The end-to-end suite again on the broker's default storage, the journal
# (RECEIPTs wait for fsync there, and timing differs).
STOMP_TESTS_DURABLE=1 cargo test -p stomp-tests
cargo test --workspace --doc
