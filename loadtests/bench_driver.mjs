// Closed-loop SDK load driver for `make bench` (Node + the official socket.io-client v4).
// Each client: a sender socket and an observer socket (the same user's second device) in its
// own conversation; it sends, waits for the ack, sends again. Prints one JSON object.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.SIO_CLIENT || "../static/node_modules/socket.io-client");

const cfg = JSON.parse(process.argv[2]);
const { urls, apiKey, clients, warmupS, durationS, runId } = cfg;
const ackLat = [], delLat = [];
let acked = 0, errors = 0, measuring = false, stopping = false;
const sentAt = new Map();   // client_id -> send time (ms)
const deliveredIds = new Map(); // client_id -> deliveries seen by the observer
const ackedIds = new Set();
const conversations = [];

function connect(url, userId) {
  return new Promise((resolve, reject) => {
    const s = io(url + "/client", { path: "/v1/socket.io", transports: ["websocket"], reconnection: false,
      auth: { api_key: apiKey, user_id: userId }, timeout: 20000 });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(e));
  });
}
const call = (s, ev, data) => new Promise((resolve) => s.timeout(15000).emit(ev, data, (err, res) => resolve(err ? { ok: false, error: String(err) } : res)));

async function client(i) {
  const url = urls[i % urls.length];
  const userId = `bench-${runId}-${i}`;
  const sender = await connect(url, userId);
  const observer = await connect(urls[(i + 1) % urls.length], userId);
  const created = await call(sender, "conversation:create", {});
  if (!created || !created.ok) throw new Error("create failed: " + JSON.stringify(created));
  const convId = created.conversation.id;
  conversations.push(convId);
  observer.on("message:new", (m) => {
    if (m.conversation_id !== convId) return;
    const t0 = sentAt.get(m.client_id);
    deliveredIds.set(m.client_id, (deliveredIds.get(m.client_id) || 0) + 1);
    if (t0 !== undefined && measuring && deliveredIds.get(m.client_id) === 1) delLat.push(performance.now() - t0);
  });
  return { sender, observer, convId };
}

async function loop(c, i) {
  let n = 0;
  while (!stopping) {
    const clientId = `${runId}-${i}-${n++}`;
    const t0 = performance.now();
    sentAt.set(clientId, t0);
    const res = await call(c.sender, "message:send", { conversation_id: c.convId, client_id: clientId, body: "x".repeat(100) });
    if (res && res.ok) {
      ackedIds.add(clientId);
      if (measuring) { acked++; ackLat.push(performance.now() - t0); }
    } else if (measuring) errors++;
  }
}

const pct = (a, p) => { if (!a.length) return null; const s = Float64Array.from(a).sort(); return +s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))].toFixed(2); };

const t0 = performance.now();
const conns = [];
for (let i = 0; i < clients; i += 50) {  // connect in waves so setup does not look like a storm
  conns.push(...await Promise.all(Array.from({ length: Math.min(50, clients - i) }, (_, k) => client(i + k))));
}
const setupS = (performance.now() - t0) / 1000;
const loops = conns.map((c, i) => loop(c, i));
await new Promise((r) => setTimeout(r, warmupS * 1000));
measuring = true;
const m0 = performance.now();
await new Promise((r) => setTimeout(r, durationS * 1000));
measuring = false;
const elapsed = (performance.now() - m0) / 1000;
stopping = true;
await Promise.all(loops);
await new Promise((r) => setTimeout(r, 1500));  // let the last deliveries land
let lost = 0, duplicated = 0;
for (const id of ackedIds) { const d = deliveredIds.get(id) || 0; if (d === 0) lost++; if (d > 1) duplicated += d - 1; }
for (const c of conns) { c.sender.close(); c.observer.close(); }
console.log(JSON.stringify({ msgs_per_s: +(acked / elapsed).toFixed(1), acked_total: ackedIds.size,
  ack_p50_ms: pct(ackLat, 50), ack_p95_ms: pct(ackLat, 95), ack_p99_ms: pct(ackLat, 99),
  delivery_p50_ms: pct(delLat, 50), delivery_p95_ms: pct(delLat, 95), delivery_p99_ms: pct(delLat, 99),
  errors, lost, duplicated, setup_s: +setupS.toFixed(2), conversations }));
process.exit(0);
