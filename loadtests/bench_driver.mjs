// Load driver for `make bench` (Node + the official socket.io-client v4). Prints one JSON object.
//   mode "messages": each client has a sender socket and an observer socket (the same user's second
//     device) in its own conversation; it sends, waits for the ack, sends again (closed loop).
//     Retryable errors (503, timeouts) are retried with the same client_id, like the SDKs do.
//     With `rate` (messages per second in all), each client also keeps to its share of it: it sends
//     when its next turn is due, never earlier, and a client that fell behind does not burst to
//     catch up (so the offered load is at most `rate`; acks that take long lower it).
//   mode "storm": opens `clients` sockets at once, reports how long until all connected, then holds
//     them idle for `holdS` seconds (the runner measures server memory meanwhile).
//   mode "soak": `clients` sockets, one user at a time each, send one message to every conversation
//     of the plan the runner seeded (`planFile`), reporting progress every `progressEvery` on
//     stderr (the runner samples server memory then).
//   mode "listen": `clients` sockets of the users `${userPrefix}0` ... (in waves), then reports
//     phase "connected" and counts `broadcast:message` per socket until none came for `quietS`
//     seconds after the first (or `holdS` passed): who got one, repeats, first/last arrival times.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.SIO_CLIENT || "../static/node_modules/socket.io-client");

const cfg = JSON.parse(process.argv[2]);
const { mode = "messages", urls, apiKey, clients, warmupS = 0, durationS = 0, holdS = 0, runId, rate = 0 } = cfg;
const pct = (a, p) => { if (!a.length) return null; const s = Float64Array.from(a).sort(); return +s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))].toFixed(2); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connect(url, userId, timeout = 20000) {
  return new Promise((resolve, reject) => {
    const s = io(url + "/client", { path: "/v1/socket.io", transports: ["websocket"], reconnection: true,
      reconnectionDelay: 200, reconnectionDelayMax: 1000, auth: { api_key: apiKey, user_id: userId }, timeout });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => { s.close(); reject(e); });
  });
}
const call = (s, ev, data, ms = 15000) => new Promise((resolve) => s.timeout(ms).emit(ev, data, (err, res) => resolve(err ? { ok: false, status: 408, error: String(err) } : res)));

async function storm() {
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: clients }, (_, i) => connect(urls[i % urls.length], `storm-${runId}-${i}`, 60000)));
  const connectedS = (performance.now() - t0) / 1000;
  const ok = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  console.error(JSON.stringify({ phase: "connected", connected: ok.length }));
  await sleep(holdS * 1000);
  for (const s of ok) s.close();
  return { connect_storm_s: +connectedS.toFixed(2), connected: ok.length, failed_connects: clients - ok.length };
}

async function messages() {
  const ackLat = [], delLat = [], ackAt = [];
  let acked = 0, errors = 0, retries = 0, measuring = false, stopping = false;
  const sentAt = new Map(), ackedSeq = new Map(), deliveredIds = new Map(), ackedIds = new Set(), conversations = [];
  async function client(i) {
    const userId = `bench-${runId}-${i}`;
    const sender = await connect(urls[i % urls.length], userId);
    const observer = await connect(urls[(i + 1) % urls.length], userId);
    const created = await call(sender, "conversation:create", {});
    if (!created || !created.ok) throw new Error("create failed: " + JSON.stringify(created));
    const convId = created.conversation.id;
    conversations.push(convId);
    observer.on("message:new", (m) => {
      if (m.conversation_id !== convId) return;
      // Like an SDK: a message is identified by its seq; a redelivery of the same seq (a resend
      // fans the original out again) is dropped, two seqs for one client_id is a duplicate.
      let seqs = deliveredIds.get(m.client_id);
      if (seqs === undefined) deliveredIds.set(m.client_id, seqs = new Set());
      const first = seqs.size === 0;
      seqs.add(m.seq);
      const t0 = sentAt.get(m.client_id);
      if (t0 !== undefined && measuring && first) delLat.push(performance.now() - t0);
    });
    return { sender, observer, convId };
  }
  async function loop(c, i) {
    let n = 0;
    const every = rate > 0 ? clients / rate * 1000 : 0;  // ms between this client's sends
    let due = performance.now() + Math.random() * every;  // spread the clients' turns
    while (!stopping) {
      if (every) {
        const now = performance.now();
        if (due > now) await sleep(due - now);
        due = Math.max(due, performance.now() - every) + every;
      }
      const clientId = `${runId}-${i}-${n++}`;
      const t0 = performance.now();
      sentAt.set(clientId, t0);
      for (let attempt = 0; ; attempt++) {
        const res = await call(c.sender, "message:send", { conversation_id: c.convId, client_id: clientId, body: "x".repeat(100) });
        if (res && res.ok) {
          ackedIds.add(clientId);
          ackedSeq.set(clientId, `${res.message.seq}@${attempt}`);
          const now = performance.now();
          if (measuring) { acked++; ackLat.push(now - t0); ackAt.push(now); }
          break;
        }
        const retryable = res && [408, 429, 500, 502, 503, 504].includes(res.status);
        if (!retryable || attempt >= 20 || stopping) { if (measuring) errors++; break; }
        retries++;
        await sleep(Math.min(100 * 2 ** attempt, 1000));
      }
    }
  }
  const t0 = performance.now();
  const conns = [];
  for (let i = 0; i < clients; i += 50) {  // connect in waves so setup does not look like a storm
    conns.push(...await Promise.all(Array.from({ length: Math.min(50, clients - i) }, (_, k) => client(i + k))));
  }
  const setupS = (performance.now() - t0) / 1000;
  const loops = conns.map((c, i) => loop(c, i));
  await sleep(warmupS * 1000);
  measuring = true;
  console.error(JSON.stringify({ phase: "measuring" }));
  const m0 = performance.now();
  await sleep(durationS * 1000);
  measuring = false;
  const elapsed = (performance.now() - m0) / 1000;
  stopping = true;
  await Promise.all(loops);
  await sleep(1500);  // let the last deliveries land
  let lost = 0, duplicated = 0;
  const lostSample = [];
  for (const id of ackedIds) {
    const d = deliveredIds.get(id)?.size || 0;
    if (d === 0) { lost++; if (lostSample.length < 5) lostSample.push(`${id} seq ${ackedSeq.get(id)}`); }
    if (d > 1) duplicated += d - 1;
  }
  for (const c of conns) { c.sender.close(); c.observer.close(); }
  // The longest stretch with no ack at all: how long serving stopped (failover).
  ackAt.sort((a, b) => a - b);
  let maxGap = 0;
  for (let k = 1; k < ackAt.length; k++) maxGap = Math.max(maxGap, ackAt[k] - ackAt[k - 1]);
  return { msgs_per_s: +(acked / elapsed).toFixed(1), acked_total: ackedIds.size,
    ack_p50_ms: pct(ackLat, 50), ack_p95_ms: pct(ackLat, 95), ack_p99_ms: pct(ackLat, 99), ack_max_ms: pct(ackLat, 100),
    delivery_p50_ms: pct(delLat, 50), delivery_p95_ms: pct(delLat, 95), delivery_p99_ms: pct(delLat, 99),
    max_ack_gap_ms: +maxGap.toFixed(1), errors, retries, lost, lost_sample: lostSample, duplicated, setup_s: +setupS.toFixed(2), conversations };
}

async function soak() {
  // The plan (a file: too big for argv) lists users and their conversations, seeded by the runner.
  const { planFile, progressEvery = 10000 } = cfg;
  const plan = JSON.parse(readFileSync(planFile, "utf8"));
  let nextUser = 0, finished = 0, sent = 0, errors = 0;
  const errorSample = [];
  async function worker(w) {
    for (let u = nextUser++; u < plan.length; u = nextUser++) {
      const { user_id: userId, conversations } = plan[u];
      const sock = await connect(urls[w % urls.length], userId);
      for (const conversationId of conversations) {
        const res = await call(sock, "message:send", { conversation_id: conversationId, client_id: "soak", body: "hello" });
        if (res && res.ok && res.message.seq === 1) sent++;
        else { errors++; if (errorSample.length < 5) errorSample.push(res); }
        if (++finished % progressEvery === 0) console.error(JSON.stringify({ phase: "progress", done: finished }));
      }
      sock.close();
    }
  }
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  const elapsed = (performance.now() - t0) / 1000;
  return { conversations: sent, errors, error_sample: errorSample, users: plan.length, soak_s: +elapsed.toFixed(1),
    conversations_per_s: +(sent / elapsed).toFixed(1) };
}

async function listen() {
  const { userPrefix, quietS = 5 } = cfg;
  const got = new Map();  // socket index -> delivery ids seen
  let repeats = 0, first = null, last = null;
  const socks = [];
  for (let i = 0; i < clients; i += 250) {
    socks.push(...await Promise.all(Array.from({ length: Math.min(250, clients - i) }, async (_, k) => {
      const n = i + k;
      const s = await connect(urls[n % urls.length], `${userPrefix}${n}`, 60000);
      s.on("broadcast:message", (m) => {
        const now = Date.now();
        first ??= now; last = now;
        let seen = got.get(n);
        if (seen === undefined) got.set(n, seen = new Set());
        if (seen.has(m.delivery_id)) repeats++;
        seen.add(m.delivery_id);
      });
      return s;
    })));
  }
  console.error(JSON.stringify({ phase: "connected", connected: socks.length }));
  const t0 = Date.now();
  while (Date.now() - t0 < holdS * 1000) {
    await sleep(250);
    if (last !== null && Date.now() - last > quietS * 1000 && got.size >= clients) break;
  }
  for (const s of socks) s.close();
  return { connected: socks.length, received: got.size, repeats, first_at: first, last_at: last };
}

const result = mode === "storm" ? await storm() : mode === "soak" ? await soak() : mode === "listen" ? await listen() : await messages();
console.log(JSON.stringify(result));
process.exit(0);
