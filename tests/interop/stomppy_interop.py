#!/usr/bin/env python3
"""stomp.py (the most used Python STOMP client) against our broker.

Usage: stomppy_interop.py HOST PORT VERSION   (VERSION: 1.0, 1.1 or 1.2)

The CONNECT host header is "localhost" ($STOMP_VHOST overrides it, e.g. "/"
to run the same scenarios against RabbitMQ).

Runs every scenario for that protocol version with stomp.py's own
connection class (Connection10/11/12), prints one line per scenario and a
closing "stomp.py VERSION: N passed, M failed" line, and exits non-zero if
any scenario failed. A watchdog ends the process if the broker hangs it.
Run by tests/tests/interop.rs with the project's venv (scripts/deps/python.sh).
"""

import os
import queue
import sys
import threading
import time
import traceback
import uuid

import stomp

WATCHDOG_SECONDS = 60
WAIT = 5.0
QUIET = 0.4


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Collector(stomp.ConnectionListener):
    """Sorts what a connection receives: messages, receipts, errors."""

    def __init__(self):
        self.messages = queue.Queue()
        self.receipts = set()
        self.errors = []
        self.cond = threading.Condition()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_heartbeat_timeout(self):
        with self.cond:
            self.errors.append("heart-beat timeout")
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def wait_receipt(self, rid):
        with self.cond:
            ok = self.cond.wait_for(lambda: rid in self.receipts, WAIT)
        check(ok, "no RECEIPT for %r (errors: %r)" % (rid, [e.headers for e in self.errors]))

    def next(self):
        try:
            return self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise Failure("no MESSAGE within %ss" % WAIT)

    def take(self, n):
        return [self.next() for _ in range(n)]

    def none(self):
        try:
            f = self.messages.get(timeout=QUIET)
        except queue.Empty:
            return
        raise Failure("unexpected MESSAGE %r %r" % (f.headers, f.body))


class Client:
    """One stomp.py connection of the version under test."""

    def __init__(self, host, port, version, heartbeats=(0, 0)):
        self.version = version
        cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
        kwargs = {} if version == "1.0" else {
            "vhost": os.environ.get("STOMP_VHOST", "localhost"),
            "heartbeats": heartbeats,
        }
        self.conn = cls([(host, port)], reconnect_attempts_max=1, **kwargs)
        self.listener = Collector()
        self.conn.set_listener("collector", self.listener)
        self.conn.connect(wait=True)
        check(self.conn.is_connected(), "not connected")
        self.n = 0

    def rid(self):
        self.n += 1
        return "r-%d-%s" % (self.n, uuid.uuid4().hex[:6])

    def send(self, dest, body, **headers):
        rid = self.rid()
        self.conn.send(dest, body, headers=dict(headers, receipt=rid))
        self.listener.wait_receipt(rid)

    def send_in_tx(self, dest, body, tx, **headers):
        # No receipt on the SEND itself (some brokers defer a transactional
        # SEND's receipt until COMMIT); a barrier shows it was processed.
        self.conn.send(dest, body, headers=dict(headers, transaction=tx))
        self.barrier()

    def barrier(self):
        self.n += 1
        self.subscribe("/topic/stomppy-barrier", "barrier-%d" % self.n)

    def subscribe(self, dest, sub_id, ack="auto", **headers):
        rid = self.rid()
        self.conn.subscribe(dest, sub_id, ack=ack, headers=dict(headers, receipt=rid))
        self.listener.wait_receipt(rid)

    def ack(self, msg, transaction=None):
        rid = self.rid()
        h = msg.headers
        if self.version == "1.2":
            self.conn.ack(h["ack"], transaction=transaction, receipt=rid)
        elif self.version == "1.1":
            self.conn.ack(h["message-id"], h["subscription"], transaction=transaction, receipt=rid)
        else:
            self.conn.ack(h["message-id"], transaction=transaction, receipt=rid)
        self.listener.wait_receipt(rid)

    def nack(self, msg):
        rid = self.rid()
        h = msg.headers
        if self.version == "1.2":
            self.conn.nack(h["ack"], receipt=rid)
        else:
            self.conn.nack(h["message-id"], h["subscription"], receipt=rid)
        self.listener.wait_receipt(rid)

    def begin(self):
        rid = self.rid()
        tx = self.conn.begin(headers={"receipt": rid})
        self.listener.wait_receipt(rid)
        return tx

    def commit(self, tx):
        rid = self.rid()
        self.conn.commit(tx, headers={"receipt": rid})
        self.listener.wait_receipt(rid)

    def abort(self, tx):
        rid = self.rid()
        self.conn.abort(tx, headers={"receipt": rid})
        self.listener.wait_receipt(rid)

    def close(self):
        rid = "bye-" + uuid.uuid4().hex[:6]
        # stomp.py waits for the DISCONNECT receipt and the broker's close.
        self.conn.disconnect(receipt=rid)
        check(not self.conn.is_connected(), "still connected after DISCONNECT")
        check(not self.listener.errors, "errors: %r" % [getattr(e, "headers", e) for e in self.listener.errors])


def body(m):
    return m.body.decode() if isinstance(m.body, bytes) else m.body


def seqs(msgs):
    return [int(m.headers["seq"]) for m in msgs]


def scenario_send_receive(host, port, v, q):
    c = Client(host, port, v)
    c.subscribe(q, "s1")
    for i in range(1, 4):
        c.send(q, "hello %d" % i, seq=str(i), **{"content-type": "text/plain", "x-custom": "v%d" % i})
    ms = c.listener.take(3)
    check(seqs(ms) == [1, 2, 3], "order %r" % seqs(ms))
    for i, m in enumerate(ms, 1):
        h = m.headers
        check(body(m) == "hello %d" % i, "body %r" % m.body)
        check(h.get("destination") == q, "destination %r" % h)
        check(h.get("message-id"), "message-id missing %r" % h)
        check(h.get("subscription") == "s1", "subscription %r" % h)
        check(h.get("content-type") == "text/plain", "content-type %r" % h)
        check(h.get("x-custom") == "v%d" % i, "user header %r" % h)
    c.listener.none()
    c.close()


def scenario_header_escaping(host, port, v, q):
    if v == "1.0":
        return "skipped: 1.0 has no header escaping"
    c = Client(host, port, v)
    c.subscribe(q, "s1")
    value = "a:b\nc\\d"
    c.send(q, "esc", **{"x-weird": value})
    m = c.listener.next()
    check(m.headers.get("x-weird") == value, "escaped header came back as %r" % m.headers.get("x-weird"))
    c.close()


def scenario_client_individual(host, port, v, q):
    mode = "client" if v == "1.0" else "client-individual"
    p = Client(host, port, v)
    for i in range(1, 4):
        p.send(q, "m%d" % i, seq=str(i))
    c = Client(host, port, v)
    c.subscribe(q, "s1", ack=mode)
    ms = c.listener.take(3)
    check(seqs(ms) == [1, 2, 3], "order %r" % seqs(ms))
    check(all(m.headers.get("ack") for m in ms) or v != "1.2", "1.2 MESSAGE needs ack header")
    if v == "1.0":
        c.ack(ms[0])  # cumulative: only the first
        expect = [2, 3]
    else:
        c.ack(ms[1])  # individual: only the second
        expect = [1, 3]
    c.close()
    d = Client(host, port, v)
    d.subscribe(q, "s2", ack="auto")
    again = d.listener.take(2)
    check(sorted(seqs(again)) == expect, "redelivered %r, expected %r" % (seqs(again), expect))
    for m in again:
        check(m.headers.get("redelivered") == "true", "no redelivered:true on %r" % m.headers)
    d.listener.none()
    d.close()
    p.close()


def scenario_client_cumulative(host, port, v, q):
    p = Client(host, port, v)
    for i in range(1, 5):
        p.send(q, "m%d" % i, seq=str(i))
    c = Client(host, port, v)
    c.subscribe(q, "s1", ack="client")
    ms = c.listener.take(4)
    c.ack(ms[2])  # acknowledges 1, 2 and 3
    c.close()
    d = Client(host, port, v)
    d.subscribe(q, "s2", ack="auto")
    again = d.listener.take(1)
    check(seqs(again) == [4], "after cumulative ACK of 3 got %r" % seqs(again))
    d.listener.none()
    d.close()
    p.close()


def scenario_nack(host, port, v, q):
    if v == "1.0":
        return "skipped: NACK is 1.1+"
    c = Client(host, port, v)
    c.subscribe(q, "s1", ack="client-individual")
    c.send(q, "retry", seq="1")
    m = c.listener.next()
    c.nack(m)
    again = c.listener.next()
    check(body(again) == "retry", "body %r" % again.body)
    check(again.headers.get("redelivered") == "true", "no redelivered:true on %r" % again.headers)
    c.ack(again)
    c.listener.none()
    c.close()


def scenario_transactions(host, port, v, q):
    c = Client(host, port, v)
    c.subscribe(q, "s1")
    tx = c.begin()
    c.send_in_tx(q, "in tx", tx, seq="1")
    c.listener.none()
    c.commit(tx)
    m = c.listener.next()
    check(body(m) == "in tx", "body %r" % m.body)
    tx = c.begin()
    c.send_in_tx(q, "aborted", tx, seq="2")
    c.abort(tx)
    c.listener.none()
    c.close()


def scenario_transactional_ack(host, port, v, q):
    mode = "client" if v == "1.0" else "client-individual"
    p = Client(host, port, v)
    p.send(q, "one", seq="1")
    c = Client(host, port, v)
    c.subscribe(q, "s1", ack=mode)
    m = c.listener.next()
    tx = c.begin()
    c.ack(m, transaction=tx)
    c.abort(tx)
    c.close()
    d = Client(host, port, v)
    d.subscribe(q, "s2", ack=mode)
    again = d.listener.next()
    check(seqs([again]) == [1], "aborted ACK: message should come back")
    tx = d.begin()
    d.ack(again, transaction=tx)
    d.commit(tx)
    d.close()
    e = Client(host, port, v)
    e.subscribe(q, "s3")
    e.listener.none()
    e.close()
    p.close()


def scenario_heartbeats(host, port, v, q):
    if v == "1.0":
        return "skipped: heart-beats are 1.1+"
    c = Client(host, port, v, heartbeats=(250, 250))
    c.subscribe(q, "s1")
    time.sleep(2.0)  # idle: only heart-beats flow, both ways
    check(c.conn.is_connected(), "dropped while idle with heart-beats on")
    check(not c.listener.errors, "errors while idle: %r" % c.listener.errors)
    c.send(q, "after idle")
    check(body(c.listener.next()) == "after idle", "no message after idle")
    c.close()


SCENARIOS = [
    scenario_heartbeats,
    scenario_send_receive,
    scenario_header_escaping,
    scenario_client_individual,
    scenario_client_cumulative,
    scenario_nack,
    scenario_transactions,
    scenario_transactional_ack,
]


def main():
    host, port, v = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    timer = threading.Timer(WATCHDOG_SECONDS, lambda: (print("watchdog: hung, giving up", flush=True), os._exit(3)))
    timer.daemon = True
    timer.start()
    passed = failed = 0
    for sc in SCENARIOS:
        name = sc.__name__[len("scenario_"):]
        q = "/queue/py-%s-%s-%s" % (v, name, uuid.uuid4().hex[:6])
        start = time.monotonic()
        try:
            note = sc(host, port, v, q)
            passed += 1
            print("ok   %s %s (%.2fs)%s" % (v, name, time.monotonic() - start, " " + note if note else ""), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed += 1
            print("FAIL %s %s: %s" % (v, name, e), flush=True)
            if not isinstance(e, Failure):
                traceback.print_exc(file=sys.stdout)
    print("stomp.py %s (%s): %d passed, %d failed" % (v, stomp.__version__, passed, failed), flush=True)
    os._exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
