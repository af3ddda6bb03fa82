#!/usr/bin/env bash
# Side-by-side benchmark: the same `stomp bench` scenarios against our broker,
# RabbitMQ and ActiveMQ, in one run on this machine, printed as a markdown
# table with ratios (ours / the better peer).
#
#   scripts/bench/compare.sh               # everything (about 8 minutes)
#   BROKERS="ours activemq" scripts/bench/compare.sh
#
# It builds the release binary, starts our broker (release, --memory) on
# 127.0.0.1:61613, and the peers with scripts/bench/peers.sh (RabbitMQ on
# 61713, ActiveMQ on 61723). Raw JSON results go to $OUT (default
# target/bench/<date>/), the table to stdout and $OUT/table.md.
#
# Latency is measured last, after a pause, in interleaved slices: this is a
# 2-vCPU VM whose loopback round trip moves by up to 2x from one minute to
# the next (and stays slow for a while after a burst of load), so a floor
# measured once at the start and a broker measured minutes later are not
# comparable. Each of LAT_ROUNDS rounds runs, per rate, the TCP echo and
# then every broker for LAT_SLICE seconds; the table gives, per broker,
# the median over the rounds of each slice's p50 and p99.
#
# Our broker runs with --memory unless OURS_STORE=journal: then it runs on
# its real default, the journal (fsync on, every queue message stored), in
# $OUT/ours-data.
#
# Knobs (environment): OURS_STORE (memory), OURS_COUNT (200000), PEER_COUNT (50000),
# OURS_TOPIC_COUNT (100000), PEER_TOPIC_COUNT (20000), LAT_ROUNDS (5),
# LAT_SLICE (3 s), LAT_SETTLE (20 s), IDLE_CONNECTIONS (10000), IDLE_HOLD (5).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/common.sh

BROKERS=${BROKERS:-"ours rabbitmq activemq"}
OURS_STORE=${OURS_STORE:-memory}
OURS_COUNT=${OURS_COUNT:-200000}
PEER_COUNT=${PEER_COUNT:-50000}
OURS_TOPIC_COUNT=${OURS_TOPIC_COUNT:-100000}
PEER_TOPIC_COUNT=${PEER_TOPIC_COUNT:-20000}
LAT_ROUNDS=${LAT_ROUNDS:-5}
LAT_SLICE=${LAT_SLICE:-3}
LAT_SETTLE=${LAT_SETTLE:-20}
export LAT_ROUNDS LAT_SLICE OURS_STORE
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
OUT=${OUT:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
OURS_PORT=61613
mkdir -p "$OUT"

echo "building the release binary..." >&2
cargo build --release -q -p stomp-cli
STOMP=target/release/stomp


if want rabbitmq || want activemq; then
  bash scripts/bench/peers.sh
fi

trap stop_ours EXIT
if want ours; then
  if port_open "$OURS_PORT"; then
    echo "error: 127.0.0.1:$OURS_PORT is taken; stop what listens there first" >&2
    exit 1
  fi
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  # Defaults but the store (unless OURS_STORE=journal): topic producers are
  # flow-controlled by their slowest subscriber, so the 8-subscriber burst
  # needs no bigger backlog.
  case "$OURS_STORE" in
    memory) store=(--memory) ;;
    journal) store=(--data-dir "$OUT/ours-data") ;;
    *) echo "error: OURS_STORE is memory or journal, not '$OURS_STORE'" >&2; exit 2 ;;
  esac
  "$STOMP" broker --listen 127.0.0.1:$OURS_PORT "${store[@]}" --log-level warn \
    >"$OUT/ours.out" 2>"$OUT/ours.err" &
  OURS_PID=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "listening on" "$OUT/ours.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "listening on" "$OUT/ours.out" || { echo "error: our broker did not start" >&2; cat "$OUT/ours.err" >&2; exit 1; }
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

url_of() {
  case "$1" in
    ours) echo "stomp://127.0.0.1:$OURS_PORT" ;;
    rabbitmq) echo "stomp://guest:guest@127.0.0.1:61713/%2F" ;;
    activemq) echo "stomp://127.0.0.1:$ACTIVEMQ_STOMP_PORT" ;;
  esac
}
pid_of() {
  case "$1" in
    ours) echo "$OURS_PID" ;;
    rabbitmq) cat "$BENCH_RUN_DIR/rabbitmq.pid" 2>/dev/null || ss -ltnpH 'sport = :61713' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1 ;;
    activemq) cat "$ACTIVEMQ_PIDFILE" 2>/dev/null || ss -ltnpH "sport = :$ACTIVEMQ_STOMP_PORT" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1 ;;
  esac
}

bench() {  # bench NAME BROKER ARGS... -> $OUT/NAME.BROKER.json
  local name=$1 broker=$2
  shift 2
  echo "  $name: $broker $*" >&2
  if ! "$STOMP" bench --url "$(url_of "$broker")" --label "$broker" --json \
      --connect-timeout 60 "$@" \
      >"$OUT/$name.$broker.json" 2>"$OUT/$name.$broker.err"; then
    echo "    (exit $?; $(tail -1 "$OUT/$name.$broker.err"))" >&2
  fi
}

for b in $BROKERS; do
  echo "$b:" >&2
  if [ "$b" = ours ]; then n=$OURS_COUNT; t=$OURS_TOPIC_COUNT; else n=$PEER_COUNT; t=$PEER_TOPIC_COUNT; fi
  # Idle connections first, so the broker's RSS before them is not inflated
  # by the messages of the load runs (ours is freshly started).
  bench idle "$b" --idle-connections "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD" \
    --heart-beat 10000,10000 --broker-pid "$(pid_of "$b")"
  # Let the broker close the idle connections: wait until it answers again.
  port=$(url_of "$b" | sed 's/.*:\([0-9]*\).*/\1/')
  vhost=localhost; [ "$b" = rabbitmq ] && vhost=/
  for ((i = 0; i < 180; i++)); do speaks_stomp "$port" "$vhost" && break; sleep 1; done
  sleep 2
  bench queue "$b" --count "$n"
  bench topic "$b" --topic --consumers 8 --count "$t"
done

echo "latency: a ${LAT_SETTLE} s pause, then $LAT_ROUNDS rounds of ${LAT_SLICE} s slices..." >&2
sleep "$LAT_SETTLE"
for ((r = 1; r <= LAT_ROUNDS; r++)); do
  for k in 1 10; do
    "$STOMP" bench --tcp-echo --rate "${k}000" --duration "$LAT_SLICE" --json >"$OUT/echo${k}k.r$r.json"
    for b in $BROKERS; do
      bench "lat${k}k.r$r" "$b" --rate "${k}000" --duration "$LAT_SLICE"
    done
  done
done
# Per broker and rate: the median over the rounds of p50 and of p99, in
# $OUT/lat1k.BROKER.json (and echo1k.json) for the table below.
python3 - "$OUT" "$BROKERS" "$LAT_ROUNDS" <<'EOF'
import json, os, statistics, sys
out, brokers, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def load(p):
    try:
        with open(p) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None
for k in ("1k", "10k"):
    for who in ["echo", *brokers]:
        key = "rtt_us" if who == "echo" else "latency_us"
        stem = f"echo{k}" if who == "echo" else f"lat{k}"
        runs = [load(os.path.join(out, f"{stem}.r{r}" + ("" if who == "echo" else f".{who}") + ".json"))
                for r in range(1, rounds + 1)]
        lat = [x[key] for x in runs if x and key in x]
        if not lat:
            continue
        merged = {
            key: {q: statistics.median(l[q] for l in lat) for q in ("p50", "p99")},
            "rounds": [{q: l[q] for q in ("p50", "p99")} for l in lat],
            "lost": sum(x.get("lost", 0) or 0 for x in runs if x),
        }
        name = stem if who == "echo" else f"{stem}.{who}"
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(merged, f)
EOF

MACHINE="$(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -sr)"
python3 - "$OUT" "$BROKERS" "$MACHINE" <<'EOF' | tee "$OUT/table.md"
import json, os, sys
out, brokers, machine = sys.argv[1], sys.argv[2].split(), sys.argv[3]
names = {"ours": "stomp-rs", "rabbitmq": "RabbitMQ", "activemq": "ActiveMQ"}

def load(name, b):
    p = os.path.join(out, f"{name}.{b}.json")
    try:
        with open(p) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None

def get(name, b, *path):
    r = load(name, b)
    for k in path:
        if r is None:
            return None
        r = r.get(k)
    return r

echo = {}
for k in ("echo1k", "echo10k"):
    with open(os.path.join(out, f"{k}.json")) as f:
        e = json.load(f)
        echo[k], echo[k + "_rounds"] = e["rtt_us"], e.get("rounds", [])

rows = [
    # label, scenario file, path, higher is better, format
    ("queue throughput, msgs/s (128b_1a_1queue_1)", "queue", ("msgs_per_s",), True, "{:,.0f}"),
    ("topic deliveries, msgs/s (128b_1a_1topic_8)", "topic", ("msgs_per_s",), True, "{:,.0f}"),
    ("latency p50 at 1,000 msgs/s, µs", "lat1k", ("latency_us", "p50"), False, "{:,.0f}"),
    ("latency p99 at 1,000 msgs/s, µs", "lat1k", ("latency_us", "p99"), False, "{:,.0f}"),
    ("latency p50 at 10,000 msgs/s, µs", "lat10k", ("latency_us", "p50"), False, "{:,.0f}"),
    ("latency p99 at 10,000 msgs/s, µs", "lat10k", ("latency_us", "p99"), False, "{:,.0f}"),
    ("10,000 idle connections: time to accept all, s", "idle", ("accept_s",), False, "{:,.2f}"),
    ("10,000 idle connections: broker RSS per connection, KiB", "idle", ("rss_per_conn_kib",), False, "{:,.1f}"),
]
peers = [b for b in brokers if b != "ours"]
head = ["", *[names[b] for b in brokers]]
if "ours" in brokers and peers:
    head.append("ours / better peer")
print(f"Machine: {machine}. Ours on {os.environ.get('OURS_STORE', 'memory')}. Each broker alone on loopback, same `stomp bench` client. Latency rows: median over {os.environ.get('LAT_ROUNDS', '5')} interleaved rounds of {os.environ.get('LAT_SLICE', '3')} s slices (echo first in each).")
print()
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for label, name, path, higher, fmt in rows:
    vals = {b: get(name, b, *path) for b in brokers}
    cells = [label]
    for b in brokers:
        v = vals[b]
        cell = fmt.format(v) if isinstance(v, (int, float)) else "n/a"
        lost = get(name, b, "lost")
        if lost:
            cell += f" ({lost} lost)"
        opened = get(name, b, "opened")
        if name == "idle" and opened is not None and opened < get(name, b, "connections"):
            cell += f" ({opened} accepted)"
        cells.append(cell)
    if "ours" in brokers and peers:
        pv = [vals[b] for b in peers if isinstance(vals[b], (int, float)) and vals[b] > 0]
        o = vals.get("ours")
        if pv and isinstance(o, (int, float)):
            best = max(pv) if higher else min(pv)
            cells.append(f"{o / best:.2f}x")
        else:
            cells.append("n/a")
    print("| " + " | ".join(cells) + " |")
print(f"| loopback TCP echo round trip p50 / p99 at 1,000 msgs/s, µs | {echo['echo1k']['p50']:.0f} / {echo['echo1k']['p99']:.0f} |" + " |" * (len(head) - 2))
print(f"| loopback TCP echo round trip p50 / p99 at 10,000 msgs/s, µs | {echo['echo10k']['p50']:.0f} / {echo['echo10k']['p99']:.0f} |" + " |" * (len(head) - 2))

if "ours" in brokers and peers:
    print()
    print("Targets:")
    def peer_best(name, path, higher):
        pv = [get(name, b, *path) for b in peers]
        pv = [v for v in pv if isinstance(v, (int, float)) and v > 0]
        return (max(pv) if higher else min(pv)) if pv else None
    def check(ok):
        return "met" if ok else "NOT met"
    for name, what in (("queue", "queue"), ("topic", "topic")):
        o, p = get(name, "ours", "msgs_per_s"), peer_best(name, ("msgs_per_s",), True)
        if o and p:
            print(f"- {what} throughput >= 5x the faster peer: {o / p:.1f}x, {check(o >= 5 * p)}")
    for name, e in (("lat1k", "echo1k"), ("lat10k", "echo10k")):
        o = get(name, "ours", "latency_us", "p50")
        if o:
            per_round = [f"{x['p50'] / y['p50']:.1f}x" for x, y in zip(get(name, "ours", "rounds") or [], echo[e + "_rounds"])]
            print(f"- p50 within 2x of a loopback TCP round trip ({name}): {o:.0f} vs {echo[e]['p50']:.0f} µs, {o / echo[e]['p50']:.1f}x, {check(o <= 2 * echo[e]['p50'])} (round by round: {', '.join(per_round)})")
        o99 = get(name, "ours", "latency_us", "p99")
        pv = [get(name, b, "latency_us", "p99") for b in peers]
        pv = [v for v in pv if v]
        if o99 and pv:
            print(f"- p99 below both peers ({name}): {o99:.0f} vs {', '.join(f'{v:.0f}' for v in pv)} µs, {check(o99 < min(pv))}")
    a, m = get("idle", "ours", "accept_s"), get("idle", "ours", "rss_per_conn_kib")
    opened = get("idle", "ours", "opened")
    if a is not None:
        print(f"- {opened:,} connections accepted within 5 s: {a:.2f} s, {check(a <= 5 and opened == get('idle', 'ours', 'connections'))}")
    if m is not None:
        print(f"- under 8 KiB of broker memory per connection: {m:.1f} KiB, {check(m < 8)}")
EOF
echo "results: $OUT" >&2
