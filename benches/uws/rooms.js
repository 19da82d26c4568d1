// The many-rooms workload on uWebSockets, through Bun (its WebSocket server is uWebSockets),
// speaking the part of tickcast's protocol `tickcast load --rooms` uses, so the same load
// generator measures both servers in one run (scripts/bench.sh --rooms --uws):
//
// - `GET /ws?room=NAME` upgrades and joins room NAME (comma-separated names allowed);
// - a text message `{"op":"publish","topic":T,"data":D}` to a joined room is stamped like
//   tickcast's (`{"topic","seq","ts","from","data"}`, seq per topic, ts in µs) and sent to
//   every member, the publisher included, as tickcast does;
// - anything else gets an error frame, like tickcast's.
//
// Usage: bun benches/uws/rooms.js PORT
const port = Number(process.argv[2] || 18300);
const seqs = new Map();
let nextId = 0;
const origin = BigInt(Date.now()) * 1000n - process.hrtime.bigint() / 1000n;
const nowUs = () => (origin + process.hrtime.bigint() / 1000n).toString();

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  fetch(req, srv) {
    const url = new URL(req.url);
    if (url.pathname !== "/ws") return new Response("no such path\n", { status: 404 });
    const rooms = (url.searchParams.get("room") || "").split(",").filter((r) => r.length > 0);
    const id = "c-" + (nextId++).toString(16);
    if (srv.upgrade(req, { data: { rooms, id } })) return undefined;
    return new Response("expected a WebSocket upgrade\n", { status: 400 });
  },
  websocket: {
    // tickcast's defaults: 64 KiB messages, 1 MiB per-client outbox, no compression.
    maxPayloadLength: 64 * 1024,
    backpressureLimit: 1024 * 1024,
    perMessageDeflate: false,
    idleTimeout: 75,
    open(ws) {
      for (const room of ws.data.rooms) ws.subscribe(room);
    },
    message(ws, message) {
      let op;
      try {
        op = JSON.parse(message);
      } catch {
        ws.send('{"type":"error","code":"invalid_json","message":"not JSON"}');
        return;
      }
      if (op.op !== "publish" || typeof op.topic !== "string" || !ws.isSubscribed(op.topic)) {
        ws.send('{"type":"error","code":"not_in_room","message":"publish to a joined room"}');
        return;
      }
      const seq = (seqs.get(op.topic) || 0) + 1;
      seqs.set(op.topic, seq);
      const out =
        `{"topic":${JSON.stringify(op.topic)},"seq":${seq},"ts":${nowUs()},` +
        `"from":"${ws.data.id}","data":${JSON.stringify(op.data)}}`;
      // server.publish reaches every subscriber, the sender included (ws.publish would not).
      server.publish(op.topic, out);
    },
  },
});
console.error(`uws rooms server on 127.0.0.1:${port}`);
