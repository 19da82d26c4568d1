// Rooms chat under k6: what one chat client experiences while many chat at once.
//
// Every virtual user (VU) joins one room (`/ws?room=<room>&client_id=k6-<vu>`), waits for
// its presence snapshot, then publishes `{"op":"publish","topic":<room>,"data":{...}}` at
// RATE per second for HOLD seconds, stops, waits GRACE seconds for its last publishes to
// come back, and leaves. It checks what it reads against the protocol (docs/protocol.md;
// tests/rooms.rs): the welcome names its client id; the snapshot comes first; every data
// message of its room carries `from`, and `seq` goes up by exactly one; every publish of its
// own comes back to it (the server echoes publishes to the sender too); and it counts the
// join and leave deltas of the other members.
//
// Publish-to-receive latency: each publish carries the sender's Date.now(); every member
// that receives it (the sender included) records now minus that, in `chat_latency`. All VUs
// share one process and one clock. k6 has no sub-millisecond clock in scripts, so values
// are whole milliseconds: a loopback delivery under 1 ms reads 0 or 1.
//
// Parameters (environment, `scripts/k6.sh rooms -e ROOMS=20`): TICKCAST_URL, ROOMS,
// MEMBERS (per room), RATE (publishes/s per member), HOLD, GRACE (seconds), P99_MS.
import { check } from 'k6';
import exec from 'k6/execution';
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Rate, Trend } from 'k6/metrics';
import { clearInterval, setInterval, setTimeout } from 'k6/timers';

import { param } from './lib.js';

const URL = __ENV.TICKCAST_URL || 'ws://127.0.0.1:8080';
const ROOMS = param('ROOMS', 10);
const MEMBERS = param('MEMBERS', 5);
const RATE = param('RATE', 5);
const HOLD = param('HOLD', 20);
const GRACE = param('GRACE', 3);
const P99_MS = param('P99_MS', 100);

const latency = new Trend('chat_latency', true);
const inOrder = new Rate('chat_in_order');
const published = new Counter('chat_published');
const received = new Counter('chat_received');
const presence = new Counter('chat_presence_events');

export const options = {
  scenarios: {
    chat: {
      executor: 'per-vu-iterations',
      vus: ROOMS * MEMBERS,
      iterations: 1,
      // A VU that never hears back still ends: k6 stops it here and its checks fail.
      maxDuration: `${HOLD + GRACE + 30}s`,
    },
  },
  thresholds: {
    // Every protocol check of every VU (welcome, snapshot, from, own publishes back, no
    // error): one failure in a hundred fails the run.
    checks: ['rate>0.99'],
    // Publish to receive, over every delivery to every member.
    chat_latency: [`p(99)<${P99_MS}`],
    // No room's seq skipped or repeated a number on any member.
    chat_in_order: ['rate==1'],
    // Something was delivered at all (a run that delivered nothing has no latency to judge).
    chat_received: ['count>0'],
  },
};

export default function () {
  const vu = exec.vu.idInTest;
  const me = `k6-${vu}`;
  const room = `room.k6-${(vu - 1) % ROOMS}`;
  const ws = new WebSocket(`${URL}/ws?room=${room}&client_id=${me}`);
  const state = { first: true, snapshot: false, sent: 0, back: 0, lastSeq: null, error: null };
  let publisher = null;

  ws.onmessage = (event) => {
    let m;
    try {
      m = JSON.parse(event.data);
    } catch (e) {
      state.error = `not JSON: ${event.data}`;
      return;
    }
    if (state.first) {
      state.first = false;
      check(m, { 'welcome names this client': (w) => w.type === 'welcome' && w.client_id === me });
      return;
    }
    if (m.type === 'presence') {
      if (m.event === 'snapshot' && !state.snapshot) {
        state.snapshot = true;
        check(m, { 'snapshot counts this member': (s) => s.count >= 1 });
        publisher = setInterval(() => {
          const data = { vu: vu, n: state.sent, t: Date.now() };
          ws.send(JSON.stringify({ op: 'publish', topic: room, data: data }));
          state.sent += 1;
          published.add(1);
        }, 1000 / RATE);
        setTimeout(() => {
          clearInterval(publisher);
          setTimeout(() => ws.close(), GRACE * 1000);
        }, HOLD * 1000);
      } else if (m.event === 'join' || m.event === 'leave') {
        presence.add(1);
      }
      return;
    }
    if (m.type === 'error') {
      state.error = `server error: ${event.data}`;
      return;
    }
    if (m.topic === room && typeof m.seq === 'number') {
      received.add(1);
      inOrder.add(state.lastSeq === null || m.seq === state.lastSeq + 1);
      state.lastSeq = m.seq;
      if (m.data && typeof m.data.t === 'number') latency.add(Date.now() - m.data.t);
      if (m.from === me) state.back += 1;
      check(m, { 'data names its publisher': (d) => typeof d.from === 'string' });
    }
  };

  ws.onerror = (e) => {
    state.error = `socket error: ${e.error}`;
  };

  ws.onclose = () => {
    if (publisher !== null) clearInterval(publisher);
    check(state, {
      'got the presence snapshot': (s) => s.snapshot,
      'published something': (s) => s.sent > 0,
      'every own publish came back': (s) => s.sent > 0 && s.back === s.sent,
      'no error': (s) => s.error === null,
    });
    if (state.error !== null) console.error(`${me}: ${state.error}`);
  };
}
