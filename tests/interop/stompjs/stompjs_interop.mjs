// stompjs (@stomp/stompjs, the most used JavaScript STOMP client) against
// our broker, over TCP with @stomp/tcp-wrapper.
//
// Usage: node stompjs_interop.mjs HOST PORT VERSION   (VERSION: 1.0, 1.1, 1.2)
//
// Runs every scenario with stompjs limited to that protocol version, prints
// one line per scenario and a closing "stompjs VERSION: N passed, M failed"
// line, and exits non-zero if any scenario failed. A watchdog ends the
// process if the broker hangs it. Run by tests/tests/interop.rs; the
// packages (package.json here) come from scripts/deps/node.sh.

import { Client, Versions } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';

const [host, portText, version] = process.argv.slice(2);
const port = Number(portText);
if (!host || !port || !['1.0', '1.1', '1.2'].includes(version)) {
  console.error('usage: stompjs_interop.mjs HOST PORT 1.0|1.1|1.2');
  process.exit(2);
}
const WAIT = 5000;
const QUIET = 400;
const watchdog = setTimeout(() => {
  console.log(`stompjs ${version}: watchdog: still running after 60 s`);
  process.exit(3);
}, 60000);

let serial = 0;
const unique = (what) => `/queue/stompjs-${what}-${process.pid}-${++serial}`;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** A connected client (its CONNECTED seen), with what it received sorted. */
async function connect() {
  const errors = [];
  const client = new Client({
    webSocketFactory: () => new TCPWrapper(host, port),
    connectHeaders: { host: 'localhost' },
    stompVersions: new Versions([version]),
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    reconnectDelay: 0,
    debug: () => {},
  });
  client.onStompError = (frame) => errors.push(frame.headers.message || frame.body);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no CONNECTED within 5 s')), WAIT);
    client.onConnect = () => {
      clearTimeout(t);
      resolve();
    };
    client.onWebSocketClose = () => {
      clearTimeout(t);
      reject(new Error('connection closed before CONNECTED'));
    };
    client.activate();
  });
  client.onWebSocketClose = () => {};
  client.errors = errors;
  return client;
}

/** Messages of one subscription, in arrival order. */
function inbox(client, destination, headers = {}) {
  const got = [];
  const waiters = [];
  const sub = client.subscribe(
    destination,
    (m) => {
      got.push(m);
      for (const w of waiters.splice(0)) w();
    },
    headers,
  );
  return {
    sub,
    got,
    /** Waits until `n` messages have come (or fails after WAIT ms). */
    async atLeast(n) {
      const until = Date.now() + WAIT;
      while (got.length < n) {
        const left = until - Date.now();
        if (left <= 0) throw new Error(`${got.length} of ${n} messages on ${destination}`);
        await new Promise((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return got;
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Sends and waits for the broker's RECEIPT. */
async function sendConfirmed(client, frame) {
  const receipt = `r-${process.pid}-${++serial}`;
  const confirmed = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no RECEIPT ${receipt}`)), WAIT);
    client.watchForReceipt(receipt, () => {
      clearTimeout(t);
      resolve();
    });
  });
  client.publish({ ...frame, headers: { ...(frame.headers || {}), receipt } });
  await confirmed;
}

/**
 * Closes `client` (leaving `box` unsubscribed), subscribes again on a new
 * connection and checks that exactly one message, with `body`, comes back.
 */
async function comesBackAlone(client, box, destination, ack, body) {
  box.sub.unsubscribe();
  await client.deactivate();
  const d = await connect();
  const again = inbox(d, destination, { ack });
  const [back] = await again.atLeast(1);
  check(back.body === body, `came back: ${back.body}`);
  back.ack();
  await sleep(QUIET);
  check(again.got.length === 1, `${again.got.length} messages came back, not only ${body}`);
  await d.deactivate();
}

const scenarios = {
  async 'connect negotiates the version'() {
    const c = await connect();
    check(c.connectedVersion === version, `connected with ${c.connectedVersion}`);
    await c.deactivate();
  },

  async 'send with a receipt, subscribe, receive'() {
    const c = await connect();
    const q = unique('basic');
    const box = inbox(c, q);
    await sendConfirmed(c, { destination: q, body: 'hello from stompjs', headers: { 'x-note': 'n1' } });
    const [m] = await box.atLeast(1);
    check(m.body === 'hello from stompjs', `body ${JSON.stringify(m.body)}`);
    check(m.headers['x-note'] === 'n1', 'custom header lost');
    check(m.headers.destination === q, `destination ${m.headers.destination}`);
    check(m.headers['message-id'], 'no message-id');
    await c.deactivate();
  },

  async 'binary body with NUL bytes'() {
    const c = await connect();
    const q = unique('binary');
    const box = inbox(c, q);
    const bytes = new Uint8Array([0, 1, 2, 0, 255, 10, 0]);
    await sendConfirmed(c, { destination: q, binaryBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
    const [m] = await box.atLeast(1);
    const got = m.binaryBody;
    check(got.length === bytes.length && got.every((b, i) => b === bytes[i]), `bytes ${Array.from(got)}`);
    await c.deactivate();
  },

  async 'client-individual ack: what is not acked comes back'() {
    if (version === '1.0') return; // client-individual is 1.1+
    const c = await connect();
    const q = unique('ack');
    const box = inbox(c, q, { ack: 'client-individual' });
    await sendConfirmed(c, { destination: q, body: 'one' });
    await sendConfirmed(c, { destination: q, body: 'two' });
    const [one, two] = await box.atLeast(2);
    check(one.body === 'one' && two.body === 'two', 'order');
    one.ack();
    await comesBackAlone(c, box, q, 'client-individual', 'two');
  },

  async 'client ack: one ack covers the messages before it'() {
    const c = await connect();
    const q = unique('cumulative');
    const box = inbox(c, q, { ack: 'client' });
    for (const b of ['a', 'b', 'c']) await sendConfirmed(c, { destination: q, body: b });
    const got = await box.atLeast(3);
    got[1].ack();
    await comesBackAlone(c, box, q, 'client', 'c');
  },

  async 'nack hands the message back'() {
    if (version === '1.0') return; // NACK is 1.1+
    const c = await connect();
    const q = unique('nack');
    const box = inbox(c, q, { ack: 'client-individual' });
    await sendConfirmed(c, { destination: q, body: 'again' });
    const [first] = await box.atLeast(1);
    first.nack();
    const got = await box.atLeast(2);
    check(got[1].body === 'again', `redelivered ${got[1].body}`);
    got[1].ack();
    await c.deactivate();
  },

  async 'transaction: commit delivers, abort drops'() {
    const c = await connect();
    const q = unique('tx');
    const box = inbox(c, q);
    const tx = c.begin();
    c.publish({ destination: q, body: 'in tx 1', headers: { transaction: tx.id } });
    c.publish({ destination: q, body: 'in tx 2', headers: { transaction: tx.id } });
    await sleep(QUIET);
    check(box.got.length === 0, 'delivered before COMMIT');
    tx.commit();
    const got = await box.atLeast(2);
    check(got[0].body === 'in tx 1' && got[1].body === 'in tx 2', 'commit order');
    const dropped = c.begin();
    c.publish({ destination: q, body: 'aborted', headers: { transaction: dropped.id } });
    dropped.abort();
    await sendConfirmed(c, { destination: q, body: 'after' });
    const after = await box.atLeast(3);
    check(after[2].body === 'after', `after abort: ${after[2].body}`);
    await sleep(QUIET);
    check(box.got.length === 3, 'an aborted message was delivered');
    await c.deactivate();
  },

  async 'header values with colons, newlines and backslashes'() {
    // stompjs escapes header values only in 1.2 (in 1.1 it sends them raw,
    // and the broker rightly refuses a frame broken by a raw newline).
    if (version !== '1.2') return;
    const c = await connect();
    const q = unique('escape');
    const box = inbox(c, q);
    const value = 'a:b\nc\\d';
    await sendConfirmed(c, { destination: q, body: 'x', headers: { 'x-odd': value } });
    const [m] = await box.atLeast(1);
    check(m.headers['x-odd'] === value, `header ${JSON.stringify(m.headers['x-odd'])}`);
    await c.deactivate();
  },

  async 'topic: every subscriber gets every message'() {
    const a = await connect();
    const b = await connect();
    const t = `/topic/stompjs-${process.pid}-${++serial}`;
    const inA = inbox(a, t);
    const inB = inbox(b, t);
    // A receipted SUBSCRIBE: both subscriptions are in place before sending.
    await sendConfirmed(a, { destination: '/queue/stompjs-barrier', body: '' });
    await sendConfirmed(b, { destination: '/queue/stompjs-barrier', body: '' });
    for (const body of ['t1', 't2']) await sendConfirmed(a, { destination: t, body });
    for (const box of [inA, inB]) {
      const got = await box.atLeast(2);
      check(got.map((m) => m.body).join() === 't1,t2', `got ${got.map((m) => m.body)}`);
    }
    await a.deactivate();
    await b.deactivate();
  },

  async 'an error frame for a bad destination'() {
    const c = await connect();
    const closed = new Promise((resolve) => {
      c.onWebSocketClose = resolve;
    });
    c.publish({ destination: '/nowhere/at-all', body: 'x' });
    await Promise.race([closed, sleep(WAIT)]);
    check(c.errors.length === 1, `ERROR frames: ${JSON.stringify(c.errors)}`);
    await c.deactivate();
  },
};

let passed = 0;
let failed = 0;
for (const [name, run] of Object.entries(scenarios)) {
  try {
    await run();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
console.log(`stompjs ${version}: ${passed} passed, ${failed} failed`);
clearTimeout(watchdog);
process.exit(failed ? 1 : 0);
