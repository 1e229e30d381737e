// Broadcasts list: status, next run, live progress of the current run, rates and row actions.
import { adminSocket } from "../admin-socket.js";
import { api } from "../api.js";
import { formatDate, h, notice } from "../dom.js";
import { can } from "../shell.js";
import { confirmDialog, currentProgress, progressBar, rates, scheduleText, statusBadge } from "./common.js";

const REFRESH_MS = 15000;

export function mountBroadcastList(main, me) {
  const writable = can(me, "broadcasts.write");
  const status = h("div", { "aria-live": "polite" });
  const body = h("tbody", { "data-testid": "broadcasts-table" });
  const table = h("table", { class: "table" },
    h("thead", {}, h("tr", {}, ["Name", "Status", "Next run", "Progress", "Rates", ""].map((t) => h("th", {}, t)))),
    body);
  const empty = h("div", { class: "empty-state", "data-testid": "broadcasts-empty", hidden: true },
    h("h2", {}, "No broadcasts yet"),
    h("p", { class: "muted" }, "Write one message and reach a whole audience: now, at a set time or on a schedule."),
    writable ? h("a", { class: "btn primary", href: "/broadcast-new.html" }, "New broadcast") : null);
  const more = h("button", { class: "btn", type: "button", hidden: true }, "Load more");
  const head = h("div", { class: "page-head" }, h("h2", {}, "Broadcasts"),
    writable ? h("a", { class: "btn primary", href: "/broadcast-new.html", "data-testid": "new-broadcast" },
      "New broadcast") : null);
  const card = h("section", { class: "card" }, head, status, table, more);
  main.append(card, empty);

  const bars = new Map(); // broadcast id -> progress bar of its row
  let cursor = null;
  let pages = 1; // pages shown: the periodic refresh only redraws the first

  function act(label, b, path, { method = "POST", ask = null, yes = label, danger = false } = {}) {
    return h("button", { class: `btn small${danger ? " danger" : ""}`, type: "button", onclick: async () => {
      if (ask && !(await confirmDialog(ask, yes, "Keep it"))) return;
      try {
        const out = await api(`/admin/api/broadcasts/${b.id}${path}`, { method });
        if (path === "/duplicate" && out?.id) {
          location.href = `/broadcast-new.html?id=${out.id}`;
          return;
        }
        await load(true);
      } catch (err) {
        notice(status, err.message);
      }
    } }, label);
  }

  function row(b) {
    const p = currentProgress(b);
    const bar = progressBar("row-progress");
    bars.set(b.id, { bar, row: null });
    if (p) bar.update(p);
    const actions = [];
    if (writable) {
      if (b.status === "draft") {
        actions.push(h("a", { class: "btn small", href: `/broadcast-new.html?id=${b.id}` }, "Edit"));
      }
      if (b.status === "sending" || b.status === "scheduled") actions.push(act("Pause", b, "/pause"));
      if (b.status === "paused") actions.push(act("Resume", b, "/resume"));
      if (["scheduled", "sending", "paused"].includes(b.status)) {
        actions.push(act("Cancel", b, "/cancel", { ask: `Cancel "${b.name}"? Nobody else will receive it.`,
          yes: "Cancel broadcast", danger: true }));
      }
      actions.push(act("Duplicate", b, "/duplicate"));
      if (b.status === "draft") {
        actions.push(act("Delete", b, "", { method: "DELETE", ask: `Delete the draft "${b.name}"?`, danger: true }));
      }
    }
    if (b.status !== "draft") {
      actions.push(h("a", { class: "btn small", href: `/broadcast-analytics.html?id=${b.id}` }, "Analytics"));
    }
    const tr = h("tr", { "data-testid": "broadcast-row", dataset: { id: b.id, status: b.status } },
      h("td", {}, h("strong", {}, b.name), h("div", { class: "muted" }, scheduleText(b.schedule || b.schedule_kind))),
      h("td", {}, statusBadge(b.status),
        b.current_run?.error ? h("div", { class: "muted" }, b.current_run.error) : null),
      h("td", { "data-testid": "next-run", "data-at": b.next_run_at || null }, b.next_run_at ? formatDate(b.next_run_at) : "—"),
      h("td", {}, p ? bar.el : h("span", { class: "muted" }, "—")),
      h("td", { class: "rates", "data-testid": "rates" }, b.status === "draft" ? "—" : rates(b.stats)),
      h("td", {}, h("div", { class: "row-actions" }, actions)));
    bars.get(b.id).row = tr;
    return tr;
  }

  async function load(reset) {
    if (reset) {
      cursor = null;
      pages = 1;
      bars.clear();
    }
    const q = new URLSearchParams({ limit: "50" });
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/admin/api/broadcasts?${q}`);
    const items = page.broadcasts;
    const rows = items.map(row);
    if (reset) body.replaceChildren(...rows);
    else body.append(...rows);
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
    const none = reset && !items.length;
    empty.hidden = !none;
    card.hidden = none;
    status.replaceChildren();
  }

  more.addEventListener("click", () => {
    pages += 1;
    load(false).catch((e) => notice(status, e.message));
  });
  load(true).catch((e) => notice(status, e.message));
  // Receipts and clicks move the rates without a socket event: refresh the first page now and then
  // (not once a person has paged further, which a reload would undo).
  setInterval(() => {
    if (!document.hidden && pages === 1) load(true).catch(() => null);
  }, REFRESH_MS);

  // Live: the actor's progress events move the bars; a finished run reloads the row's status and rates.
  if (window.io) {
    const socket = adminSocket();
    const seen = new Set();
    socket.on("broadcast:progress", (e) => {
      const known = bars.get(e.broadcast_id);
      if (!known) return;
      if (known.row.querySelector("[data-testid=row-progress]") === null) {
        known.row.children[3].replaceChildren(known.bar.el);
      }
      known.bar.update(e);
      // A run that starts or ends changes the row's status and rates: reload once per change.
      const key = `${e.run_id}:${e.status}`;
      if (e.status && e.status !== known.row.dataset.status && !seen.has(key)) {
        seen.add(key);
        load(true).catch(() => null);
      }
    });
  }
}
