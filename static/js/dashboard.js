// Dashboard: stats cards, the last 14 days as a chart, and recently seen users with their devices.
import { api } from "./api.js";
import { h, notice } from "./dom.js";
import { ago, deviceBadges, duration, userLabel } from "./format.js";
import { can } from "./shell.js";

const REFRESH_MS = 30000;

function stat(label, value, sub, testid) {
  return h("div", { class: "stat", "data-testid": testid },
    h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

export function mountDashboard(container, me) {
  const cards = h("div", { class: "stats-grid" });
  const canvas = h("canvas", { "aria-label": "Conversations and replies, last 14 days" });
  const users = h("tbody", { "data-testid": "recent-users" });
  container.replaceChildren(
    h("h2", {}, "Today"), cards,
    h("h2", { style: "margin-top:1.25rem" }, "Last 14 days"), h("div", { class: "chart-box" }, canvas),
    h("h2", { style: "margin-top:1.25rem" }, "Recently seen users"),
    h("table", { class: "table" }, h("thead", {}, h("tr", {},
      ["User", "Device", "Last seen"].map((t) => h("th", {}, t)))), users));
  let chart = null;

  async function refresh() {
    if (can(me, "analytics.read")) {
      const s = await api("/admin/api/dashboard/stats");
      const w = s.waiting_longest;
      cards.replaceChildren(
        stat("Open", String(s.open), "conversations", "stat-open"),
        stat("Unassigned", String(s.unassigned), "not closed, nobody on it", "stat-unassigned"),
        stat("Waiting longest", w ? duration(w.age_seconds) : "—", w ? userLabel({ name: w.user_name }) : "nobody waiting", "stat-waiting"),
        stat("Replies today", String(s.replies_today), "by the team (UTC day)", "stat-replies"),
        stat("Median first response", duration(s.median_first_response_seconds), "last 30 days", "stat-first-response"),
        stat("Online users", String(s.online_users), "live SDK sessions", "stat-online"));
      drawChart(s.daily);
    }
    if (can(me, "users.read")) {
      const page = await api("/admin/api/users?limit=8");
      users.replaceChildren(...(page.users.length ? page.users.map((u) => h("tr", { "data-testid": "recent-user" },
        h("td", {}, h("span", { class: `dot${u.online ? " on" : ""}` }), h("a", { href: "/users.html" }, userLabel(u))),
        h("td", {}, deviceBadges(u.metadata?.device)),
        h("td", {}, ago(u.last_seen_at)))) : [h("tr", {}, h("td", { colspan: 3, class: "empty" }, "No users yet."))]));
    }
  }

  function drawChart(daily) {
    if (!window.Chart) return; // vendor library missing (npm ci not run): the numbers above still show
    const labels = daily.map((d) => d.day.slice(5));
    const data = {
      labels,
      datasets: [
        { label: "New conversations", data: daily.map((d) => d.conversations), backgroundColor: "#3b5bdb" },
        { label: "Replies", data: daily.map((d) => d.replies), backgroundColor: "#94a8f0" },
      ],
    };
    if (chart) {
      chart.data = data;
      chart.update();
      return;
    }
    chart = new window.Chart(canvas, { type: "bar", data,
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
  }

  refresh().catch((err) => notice(cards, err.message));
  setInterval(() => refresh().catch(() => null), REFRESH_MS);
}
