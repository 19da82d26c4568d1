// Ticks broadcast under k6: VUs subscribe to `ticks` and count and time what they receive.
//
// Every VU opens `/ws?topics=ticks`, checks the welcome, then for HOLD seconds reads every
// tick: counts it (`ticks_received`), checks that `seq` goes up by exactly one
// (`ticks_in_order`; the ticks topic has one sequence over all feeds), and records the
// tick's age on arrival, now minus its `ts` (µs since the epoch, the tick's due time), in
// `tick_latency`. That is the server's whole path, sequencing to socket, plus k6's own
// reading; k6's clock is whole milliseconds. At the end each VU checks it received at least
// MIN_SHARE of the ticks the server's pace (EXPECTED_RATE per second) promises over HOLD.
//
// Parameters (environment): TICKCAST_URL, VUS, HOLD (seconds), EXPECTED_RATE (ticks/s the
// server publishes: scripts/k6.sh starts it with --providers and --interval to match),
// MIN_SHARE (0-1), P99_MS.
import { check } from 'k6';
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Rate, Trend } from 'k6/metrics';
import { setTimeout } from 'k6/timers';

import { param } from './lib.js';

const URL = __ENV.TICKCAST_URL || 'ws://127.0.0.1:8080';
const VUS = param('VUS', 50);
const HOLD = param('HOLD', 20);
const EXPECTED_RATE = param('EXPECTED_RATE', 40);
const MIN_SHARE = param('MIN_SHARE', 0.9);
const P99_MS = param('P99_MS', 100);

const latency = new Trend('tick_latency', true);
const inOrder = new Rate('ticks_in_order');
const received = new Counter('ticks_received');

export const options = {
  scenarios: {
    ticks: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: `${HOLD + 30}s`,
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    tick_latency: [`p(99)<${P99_MS}`],
    ticks_in_order: ['rate==1'],
    ticks_received: ['count>0'],
  },
};

export default function () {
  const ws = new WebSocket(`${URL}/ws?topics=ticks`);
  const state = { first: true, count: 0, lastSeq: null, error: null };

  ws.onopen = () => {
    setTimeout(() => ws.close(), HOLD * 1000);
  };

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
      check(m, { 'welcome': (w) => w.type === 'welcome' });
      return;
    }
    if (m.topic !== 'ticks' || typeof m.seq !== 'number') return;
    state.count += 1;
    received.add(1);
    inOrder.add(state.lastSeq === null || m.seq === state.lastSeq + 1);
    state.lastSeq = m.seq;
    latency.add(Date.now() - m.ts / 1000);
  };

  ws.onerror = (e) => {
    state.error = `socket error: ${e.error}`;
  };

  ws.onclose = () => {
    const want = Math.floor(EXPECTED_RATE * HOLD * MIN_SHARE);
    check(state, {
      [`received at least ${MIN_SHARE * 100} % of the ticks promised`]: (s) => s.count >= want,
      'no error': (s) => s.error === null,
    });
    if (state.error !== null) console.error(`vu ${__VU}: ${state.error}`);
  };
}
