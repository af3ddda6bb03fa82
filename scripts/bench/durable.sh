#!/usr/bin/env bash
# Durable messaging benchmark: persistent SENDs with receipts per second,
# 1, 8 and 64 producers, our broker on its journal (fsync on) beside
# ActiveMQ (persistent:true, KahaDB) and RabbitMQ (durable /queue/ queue,
# persistent:true), in one run on this machine. Prints a markdown table with
# ratios (ours / the faster peer) and the targets.
#
#   scripts/bench/durable.sh                   # about 4 minutes
#   SECONDS_PER_RUN=5 ROUNDS=5 scripts/bench/durable.sh
#
# Two scenarios, each producer waiting for the RECEIPT of every message
# before sending the next (window 1), 128-byte bodies:
#   producers only  stomp-broker/examples/persistent_producers.rs: nothing
#                   consumes, so every message must be on disk before its
#                   RECEIPT (the group-commit path); all producers are
#                   driven by one thread on an event loop, so that on a
#                   small machine the load generator leaves the CPUs to the
#                   broker (PP_ARGS=--threads: one blocking thread each);
#   with a consumer `stomp bench --persistent --window 1` (one auto-ack
#                   consumer on the same queue; a broker may confirm a
#                   message that was consumed before it reached the disk).
# Our broker: the release binary on 127.0.0.1:61633 with a fresh data dir
# under $OUT (same disk as the peers' data); the peers: scripts/bench/peers.sh.
# Raw results in $OUT (default target/bench/durable-<date>/).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/common.sh

SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
ROUNDS=${ROUNDS:-3}
PRODUCERS=${PRODUCERS:-"1 8 64"}
BROKERS=${BROKERS:-"ours rabbitmq activemq"}
OUT=${OUT:-target/bench/durable-$(date -u +%Y%m%dT%H%M%SZ)}
OURS_PORT=61633
mkdir -p "$OUT"

echo "building the release binaries..." >&2
cargo build --release -q -p stomp-broker -p stomp-cli --bins --example persistent_producers
STOMP=target/release/stomp
PP=target/release/examples/persistent_producers

if want rabbitmq || want activemq; then
  bash scripts/bench/peers.sh
fi

trap stop_ours EXIT
if want ours; then
  if port_open "$OURS_PORT"; then
    echo "error: 127.0.0.1:$OURS_PORT is taken; stop what listens there first" >&2
    exit 1
  fi
  rm -rf "$OUT/data"
  target/release/stomp-broker --listen 127.0.0.1:$OURS_PORT --data-dir "$OUT/data" \
    --log-level info >"$OUT/ours.out" 2>"$OUT/ours.err" &
  OURS_PID=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "listening on" "$OUT/ours.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$OUT/ours.out" || { echo "error: our broker did not start" >&2; cat "$OUT/ours.err" >&2; exit 1; }
  grep "store:" "$OUT/ours.err" >&2 || true
fi

pp_args() {
  case "$1" in
    ours) echo "--addr 127.0.0.1:$OURS_PORT" ;;
    rabbitmq) echo "--addr 127.0.0.1:61713 --login guest --passcode guest --vhost /" ;;
    activemq) echo "--addr 127.0.0.1:$ACTIVEMQ_STOMP_PORT" ;;
  esac
}
url_of() {
  case "$1" in
    ours) echo "stomp://127.0.0.1:$OURS_PORT" ;;
    rabbitmq) echo "stomp://guest:guest@127.0.0.1:61713/%2F" ;;
    activemq) echo "stomp://127.0.0.1:$ACTIVEMQ_STOMP_PORT" ;;
  esac
}

# Rounds: this VM's fsync and CPU speed drift from one minute to the next,
# so every configuration runs once per round, interleaved, and the table
# gives the median over the rounds.
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r of $ROUNDS" >&2
  for p in $PRODUCERS; do
    for b in $BROKERS; do
      echo "  producers only: $b, $p producers" >&2
      # shellcheck disable=SC2046,SC2086
      if ! "$PP" $(pp_args "$b") ${PP_ARGS:-} --producers "$p" --seconds "$SECONDS_PER_RUN" \
          --dest "/queue/durable-$p-$$-$r" >"$OUT/only.$p.$b.r$r.json" 2>"$OUT/only.$p.$b.r$r.err"; then
        echo "    (failed: $(tail -1 "$OUT/only.$p.$b.r$r.err"))" >&2
      fi
      echo "  with a consumer: $b, $p producers" >&2
      if ! "$STOMP" bench --url "$(url_of "$b")" --label "$b" --json --connect-timeout 60 \
          --persistent --window 1 --producers "$p" --duration "$SECONDS_PER_RUN" \
          >"$OUT/cons.$p.$b.r$r.json" 2>"$OUT/cons.$p.$b.r$r.err"; then
        echo "    (failed: $(tail -1 "$OUT/cons.$p.$b.r$r.err"))" >&2
      fi
    done
  done
done

MACHINE="$(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -sr), $(df -h --output=source,fstype "$OUT" | tail -1 | tr -s ' ')"
python3 - "$OUT" "$BROKERS" "$PRODUCERS" "$MACHINE" "$SECONDS_PER_RUN" "$ROUNDS" <<'EOF' | tee "$OUT/table.md"
import json, os, statistics, sys
out, brokers, producers, machine, secs, rounds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], sys.argv[5], int(sys.argv[6])
names = {"ours": "stomp-rs (journal, fsync)", "rabbitmq": "RabbitMQ", "activemq": "ActiveMQ"}
peers = [b for b in brokers if b != "ours"]

def round_rates(kind, p, b):
    """The rate of each round (None for a failed run or one that lost messages)."""
    rates = []
    for r in range(1, rounds + 1):
        try:
            with open(os.path.join(out, f"{kind}.{p}.{b}.r{r}.json")) as f:
                x = json.loads(f.read().strip().splitlines()[-1])
            rates.append(None if x.get("lost") else x["msgs_per_s"])
        except Exception:
            rates.append(None)
    return rates

def rate(kind, p, b):
    """The median over the rounds, or None if any round failed."""
    rates = round_rates(kind, p, b)
    return None if None in rates else statistics.median(rates)

print(f"Machine: {machine}. Median of {rounds} interleaved rounds of {secs} s runs, 128-byte persistent messages, each producer waits for every RECEIPT.")
results = {}
for kind, title in (("only", "producers only (every message to disk)"), ("cons", "with one auto-ack consumer (`stomp bench --persistent --window 1`)")):
    print()
    print(f"**{title}**, messages/s")
    print()
    head = ["producers", *[names[b] for b in brokers]]
    if "ours" in brokers and peers:
        head.append("ours / faster peer")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for p in producers:
        vals = {b: rate(kind, p, b) for b in brokers}
        results[(kind, p)] = vals
        cells = [p] + [f"{vals[b]:,.0f}" if vals[b] else "n/a" for b in brokers]
        if "ours" in brokers and peers:
            pv = [vals[b] for b in peers if vals[b]]
            cells.append(f"{vals['ours'] / max(pv):.2f}x" if pv and vals["ours"] else "n/a")
        print("| " + " | ".join(cells) + " |")

if "ours" in brokers:
    print()
    print("Targets (producers only):")
    def ok(c):
        return "met" if c else "NOT met"
    for p in ("8", "64"):
        v = results.get(("only", p), {})
        pv = [v.get(b) for b in peers if v.get(b)]
        if v.get("ours") and pv:
            r = v["ours"] / max(pv)
            print(f"- {p} producers >= 2x the faster peer: {r:.2f}x, {ok(r >= 2)}")
    one, eight = results.get(("only", "1"), {}).get("ours"), results.get(("only", "8"), {}).get("ours")
    if one and eight:
        per_round = [f"{e / o:.1f}x" for o, e in zip(round_rates("only", "1", "ours"), round_rates("only", "8", "ours"))]
        print(f"- 8 producers >= 6x 1 producer: {eight / one:.2f}x, {ok(eight / one >= 6)} (round by round: {', '.join(per_round)})")
EOF
