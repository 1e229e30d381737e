// One broadcast's analytics: the funnel, sent/delivered/read per minute, its runs, its recipients
// (filter, pages, CSV) and a live progress bar fed by the /admin socket's `broadcast:progress`.
import { adminSocket } from "../admin-socket.js";
import { api, getSession, refreshSession } from "../api.js";
import { formatDate, h, notice } from "../dom.js";
import { userLabel } from "../format.js";
import { percent, progressBar, scheduleText, statusBadge } from "./common.js";

const FUNNEL = ["targeted", "sent", "delivered", "read", "clicked", "replied"];
const STATES = ["queued", "sent", "delivered", "read", "failed"];
const SERIES = [["sent", "Sent", "#3b5bdb"], ["delivered", "Delivered", "#2b8a3e"], ["read", "Read", "#f08c00"]];
const REFRESH_MS = 3000;

export async function mountAnalytics(main) {
  const id = new URLSearchParams(location.search).get("id");
  if (!id) {
    main.append(h("section", { class: "card" }, h("p", {}, "No broadcast chosen. "),
      h("a", { href: "/broadcasts.html" }, "Pick one from the list.")));
    return;
  }
  const status = h("div", { "aria-live": "polite" });
  const title = h("h2", {});
  const badge = h("span", {});
  const sub = h("p", { class: "muted", "data-testid": "broadcast-schedule" });
  const bar = progressBar("live-progress");
  const runError = h("div", { class: "notice error", role: "alert", "data-testid": "run-error", hidden: true });
  const funnel = h("div", { class: "funnel", "data-testid": "funnel" });
  const canvas = h("canvas", { "data-testid": "stats-chart", "aria-label": "Sent, delivered and read per minute" });
  const runsBody = h("tbody", { "data-testid": "runs-table" });
  const runsCard = h("section", { class: "card", hidden: true }, h("h2", {}, "Runs"),
    h("table", { class: "table" }, h("thead", {}, h("tr", {},
      ["Scheduled for", "Status", "Targeted", "Sent", "Delivered", "Read", "Clicked", "Replied"].map((t) => h("th", {}, t)))),
    runsBody));
  const runFilter = h("select", { name: "run", "aria-label": "Run" }, h("option", { value: "" }, "Latest run"));
  const stateFilter = h("select", { name: "state", "aria-label": "Recipient state" },
    h("option", { value: "" }, "All states"), STATES.map((s) => h("option", { value: s }, s)));
  const recipientsBody = h("tbody", { "data-testid": "recipients-table" });
  const prev = h("button", { class: "btn small", type: "button", disabled: true }, "Previous");
  const next = h("button", { class: "btn small", type: "button", disabled: true }, "Next");
  const csv = h("a", { class: "btn small", href: `/admin/api/broadcasts/${id}/recipients.csv`,
    download: `broadcast-${id}-recipients.csv`, "data-testid": "csv-link" }, "Download CSV");

  main.append(
    h("section", { class: "card" },
      h("div", { class: "page-head" }, h("div", {}, title, sub), badge), status, runError,
      h("div", { "data-testid": "live" }, h("strong", {}, "Latest run "), bar.el),
      funnel),
    h("section", { class: "card" }, h("h2", {}, "Over time (per minute)"), h("div", { class: "chart-box" }, canvas)),
    runsCard,
    h("section", { class: "card" },
      h("div", { class: "page-head" }, h("h2", {}, "Recipients"),
        h("div", { class: "filters" }, runFilter, stateFilter, prev, next, csv)),
      h("table", { class: "table" }, h("thead", {}, h("tr", {},
        ["#", "User", "State", "Sent", "Delivered", "Read", "Clicked", "Replied"].map((t) => h("th", {}, t)))),
      recipientsBody)));

  let chart = null;
  let broadcast = null;

  function drawFunnel(t) {
    funnel.replaceChildren(...FUNNEL.map((k, i) => h("div", { class: "step", "data-testid": `funnel-${k}` },
      h("div", { class: "label" }, k),
      h("div", { class: "value", "data-testid": `funnel-${k}-value` }, String(t[k] || 0)),
      h("div", { class: "sub" }, i === 0 ? (t.failed ? `${t.failed} failed` : "\u00a0")
        : `${percent(t[k] || 0, k === "sent" ? t.targeted : t.sent)} of ${k === "sent" ? "targeted" : "sent"}`))));
  }

  function drawChart(buckets) {
    if (!window.Chart) return; // vendor library missing: the funnel's numbers still show
    const data = {
      labels: buckets.map((b) => new Date(b.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
      datasets: SERIES.map(([key, label, color]) => ({ label, data: buckets.map((b) => b[key] || 0),
        backgroundColor: color })),
    };
    if (chart) {
      chart.data = data;
      chart.update();
      return;
    }
    chart = new window.Chart(canvas, { type: "bar", data,
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
  }

  async function refresh() {
    const [b, stats, runs] = await Promise.all([
      api(`/admin/api/broadcasts/${id}`),
      api(`/admin/api/broadcasts/${id}/stats`),
      api(`/admin/api/broadcasts/${id}/runs`),
    ]);
    broadcast = b;
    title.textContent = b.name;
    sub.textContent = `${scheduleText(b.schedule)}${b.next_run_at ? ` · next run ${formatDate(b.next_run_at)}` : ""}`;
    badge.replaceChildren(statusBadge(b.status));
    runError.textContent = b.current_run?.error ? `The run stopped: ${b.current_run.error}` : "";
    runError.hidden = !b.current_run?.error;
    const totals = stats.totals;
    drawFunnel(totals);
    drawChart(stats.minutes);
    const list = runs.runs;
    runsCard.hidden = b.schedule?.kind !== "recurring" && list.length < 2;
    runFilter.hidden = list.length < 2;
    const runIds = list.map((r) => r.id).join();
    if (runIds !== runFilter.dataset.runs) { // redrawn only when a run came: an open select stays open
      const picked = runFilter.value;
      runFilter.dataset.runs = runIds;
      runFilter.replaceChildren(h("option", { value: "" }, "Latest run"),
        ...list.map((r) => h("option", { value: r.id, selected: r.id === picked }, `Run of ${formatDate(r.scheduled_for)}`)));
    }
    runsBody.replaceChildren(...list.map((r) => {
      const s = r.stats;
      return h("tr", { "data-testid": "run-row" }, h("td", {}, formatDate(r.scheduled_for)), h("td", {}, statusBadge(r.status)),
        ...["targeted", "sent", "delivered", "read", "clicked", "replied"].map((k) => h("td", { "data-testid": `run-${k}` },
          String(s[k] || 0))));
    }));
    if (!live) {
      // No socket event yet: start the bar from the current (or last) run.
      const run = b.current_run || list[0] || null;
      if (run) bar.update({ targeted: run.targeted ?? run.stats.targeted, sent: run.sent ?? run.stats.sent, status: run.status });
      else bar.update({ idle: b.status === "draft" ? "not sent yet" : "no run yet" });
    }
  }

  // Recipient pages: a stack of cursors so Previous goes back.
  const cursors = [null];
  async function loadRecipients() {
    const q = new URLSearchParams();
    if (stateFilter.value) q.set("state", stateFilter.value);
    if (runFilter.value) q.set("run_id", runFilter.value);
    // The CSV holds the same selection (every run when none is picked), all pages of it.
    csv.href = `/admin/api/broadcasts/${id}/recipients.csv${q.toString() ? `?${q}` : ""}`;
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/admin/api/broadcasts/${id}/recipients?${q}`);
    const items = page.recipients;
    recipientsBody.replaceChildren(...(items.length ? items.map((r) => h("tr", { "data-testid": "recipient-row",
      dataset: { state: r.state } },
    h("td", {}, String(r.ord ?? "")),
    h("td", {}, userLabel({ name: r.name, email: r.email, user_id: r.external_id || "anonymous user" })),
    h("td", {}, r.state, r.failed_reason ? h("div", { class: "muted" }, r.failed_reason) : null),
    ...["sent_at", "delivered_at", "read_at", "clicked_at", "replied_at"].map((k) => h("td", {}, r[k] ? formatDate(r[k]) : "—"))))
      : [h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No recipients in this state."))]));
    next.dataset.cursor = page.next_cursor || "";
    next.disabled = !page.next_cursor;
    prev.disabled = cursors.length < 2;
  }
  for (const filter of [stateFilter, runFilter]) {
    filter.addEventListener("change", () => {
      cursors.length = 1;
      loadRecipients().catch((e) => notice(status, e.message));
    });
  }
  next.addEventListener("click", () => {
    cursors.push(next.dataset.cursor);
    loadRecipients().catch((e) => notice(status, e.message));
  });
  prev.addEventListener("click", () => {
    cursors.pop();
    loadRecipients().catch((e) => notice(status, e.message));
  });
  // The CSV needs the admin's bearer token, which a plain link cannot carry: fetch it and save it.
  csv.addEventListener("click", async (event) => {
    event.preventDefault();
    const get = () => fetch(csv.href, { headers: { authorization: `Bearer ${getSession()?.access_token}` } });
    let res = await get();
    if (res.status === 401) {
      await refreshSession().catch(() => null); // an access token expired while the page was open
      res = await get();
    }
    if (!res.ok) {
      notice(status, `CSV download failed (${res.status})`);
      return;
    }
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: csv.getAttribute("download") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });

  let live = false;
  if (window.io) {
    const socket = adminSocket();
    socket.on("broadcast:progress", (e) => {
      if (e.broadcast_id !== id) return;
      live = true;
      bar.update(e);
      if (broadcast && e.status && e.status !== broadcast.status) refresh().catch(() => null);
    });
  }

  try {
    await refresh();
    await loadRecipients();
  } catch (err) {
    notice(status, err.status === 404 ? "This broadcast does not exist (or belongs to another workspace)." : err.message);
    return;
  }
  // Receipts, clicks and replies arrive through the stats consumer, not the socket: poll while open.
  setInterval(() => {
    if (document.hidden) return;
    refresh().catch(() => null);
    if (cursors.length === 1) loadRecipients().catch(() => null);
  }, REFRESH_MS);
}
