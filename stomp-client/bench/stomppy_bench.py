#!/usr/bin/env python3
"""The stomp.py side of stomp-client/examples/bench_vs_stomppy.rs.

Does the same work as the Rust side against the same broker and prints one
JSON object of rates (messages per second):
  publish           N sends, then one send with a receipt (all processed)
  publish_receipts  M sends, each waiting for its RECEIPT
  consume           N messages already queued, received with ack:auto
"""
import argparse
import json
import sys
import threading
import time

import stomp


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.cond = threading.Condition()
        self.receipts = set()
        self.messages = 0
        self.errors = []

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_message(self, frame):
        with self.cond:
            self.messages += 1
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame.body)
            self.cond.notify_all()

    def wait_receipt(self, rid, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.receipts:
                left = deadline - time.monotonic()
                if left <= 0 or self.errors:
                    raise RuntimeError(f"no receipt {rid}: {self.errors}")
                self.cond.wait(left)
            self.receipts.discard(rid)

    def wait_messages(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.messages < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"got {self.messages} of {n} messages")
                self.cond.wait(left)


def connect(host, port):
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0), auto_content_length=True)
    listener = Listener()
    conn.set_listener("bench", listener)
    conn.connect(wait=True)
    return conn, listener


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=61613)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--receipt-count", type=int, default=2000)
    ap.add_argument("--body-size", type=int, default=128)
    ap.add_argument("--tag", default=str(int(time.time() * 1000)))
    a = ap.parse_args()
    body = b"x" * a.body_size
    out = {}

    conn, lis = connect(a.host, a.port)
    q = f"/queue/bench-py-pub-{a.tag}"
    t0 = time.perf_counter()
    for _ in range(a.count):
        conn.send(q, body)
    conn.send(q, body, receipt="fence")
    lis.wait_receipt("fence")
    out["publish"] = (a.count + 1) / (time.perf_counter() - t0)

    q2 = f"/queue/bench-py-rcpt-{a.tag}"
    t0 = time.perf_counter()
    for i in range(a.receipt_count):
        rid = f"r{i}"
        conn.send(q2, body, receipt=rid)
        lis.wait_receipt(rid)
    out["publish_receipts"] = a.receipt_count / (time.perf_counter() - t0)

    # Consume what the publish step queued (count + 1 messages).
    t0 = time.perf_counter()
    conn.subscribe(q, id="1", ack="auto")
    lis.wait_messages(a.count + 1)
    out["consume"] = (a.count + 1) / (time.perf_counter() - t0)
    conn.disconnect()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
