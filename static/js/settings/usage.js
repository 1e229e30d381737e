// Usage: the month's meters (seats, active users, conversations, messages by sender, broadcasts,
// workflows, webhook deliveries, secret-key API calls) and their daily series as charts.
import { api } from "../api.js";
import { h, notice } from "../dom.js";
import { can } from "../shell.js";
import { section } from "./common.js";

let chartLib = null;

// Chart.js is vendored at /vendor/chart.umd.min.js; settings.html loads it only when this section shows.
function loadChart() {
  if (window.Chart) return Promise.resolve(window.Chart);
  chartLib ??= new Promise((resolve) => {
    const script = h("script", { src: "/vendor/chart.umd.min.js" });
    script.addEventListener("load", () => resolve(window.Chart || null));
    script.addEventListener("error", () => resolve(null)); // npm ci not run: the meters still show
    document.head.append(script);
  });
  return chartLib;
}

function meter(id, label, value, sub) {
  return h("div", { class: "meter", "data-testid": `usage-${id}` },
    h("div", { class: "label" }, label),
    h("div", { class: "value", "data-testid": `usage-${id}-value` }, String(value)),
    sub ? h("div", { class: "sub" }, sub) : null);
}

function currentMonth() {
  return new Date().toISOString().slice(0, 7);
}

const CHARTS = [
  ["messages", "Conversations and messages", (u) => [
    ["Conversations", u.conversations.daily, "#3b5bdb"],
    ["User messages", u.messages.by_sender.user.daily, "#94a8f0"],
    ["Agent replies", u.messages.by_sender.admin.daily, "#2b8a3e"],
    ["Notes", u.messages.by_sender.note.daily, "#e8a317"],
    ["Bot", u.messages.by_sender.bot.daily, "#868e96"],
  ]],
  ["platform", "Users, deliveries and API calls", (u) => [
    ["New active users", u.active_users.daily, "#7048e8"],
    ["Webhook deliveries", u.webhook_deliveries.daily, "#0b7285"],
    ["Secret-key API calls", u.api_calls.daily, "#c92a2a"],
    ["Broadcast recipients", u.broadcast_recipients.daily, "#e64980"],
    ["Workflow runs", u.workflow_runs.daily, "#5c940d"],
  ]],
];

export async function renderUsage(el, me) {
  if (!can(me, "usage.read")) {
    section(el, "Usage", "Only owners and admins see the workspace's usage.");
    return;
  }
  const picker = h("input", { type: "month", name: "month", value: currentMonth(), max: currentMonth(),
    "aria-label": "Month" });
  const meters = h("div", { class: "meters", "data-testid": "usage-meters" });
  const canvases = Object.fromEntries(CHARTS.map(([id, title]) =>
    [id, h("canvas", { "data-testid": `usage-chart-${id}`, "aria-label": `${title}, per day` })]));
  const charts = {};
  const status = section(el, "Usage",
    "What the workspace used this month, per UTC day. Counted as it happens; a recount of the records gives the same totals.",
    h("label", { class: "inline" }, "Month ", picker), meters,
    ...CHARTS.map(([id, title]) => h("div", {}, h("h3", {}, title), h("div", { class: "chart-box" }, canvases[id]))));

  async function show(month) {
    const u = await api(`/admin/api/usage?month=${encodeURIComponent(month)}`);
    const m = u.messages.by_sender;
    meters.replaceChildren(
      meter("seats", "Seats", u.seats.total,
        u.seats.pending_invites ? `${u.seats.pending_invites} invitation(s) pending` : "teammates"),
      meter("active-users", "Monthly active users", u.active_users.total, "distinct SDK users seen"),
      meter("conversations", "Conversations", u.conversations.total, "started"),
      meter("messages", "Messages", u.messages.total,
        `${m.user.total} user · ${m.admin.total} agent · ${m.note.total} notes · ${m.bot.total} bot`),
      meter("broadcast-recipients", "Broadcast recipients", u.broadcast_recipients.total, "messages sent"),
      meter("workflow-runs", "Workflow runs", u.workflow_runs.total, "started"),
      meter("webhook-deliveries", "Webhook deliveries", u.webhook_deliveries.total, "events sent to endpoints"),
      meter("api-calls", "API calls", u.api_calls.total, "with a secret key"));
    const Chart = await loadChart();
    if (!Chart) return;
    const labels = u.days.map((d) => d.slice(5));
    for (const [id, , datasets] of CHARTS) {
      const data = { labels, datasets: datasets(u).map(([label, values, color]) =>
        ({ label, data: values, backgroundColor: color, borderColor: color })) };
      if (charts[id]) {
        charts[id].data = data;
        charts[id].update();
      } else {
        charts[id] = new Chart(canvases[id], { type: "bar", data,
          options: { maintainAspectRatio: false, animation: false,
            scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
      }
    }
    el.dataset.month = u.month;
  }

  picker.addEventListener("change", () => show(picker.value || currentMonth()).catch((err) => notice(status, err.message)));
  await show(currentMonth()).catch((err) => notice(status, err.message));
}
