// Webhooks: endpoints with an event picker and their health; the secret shown once; ping, rotate,
// enable/disable, delete; each endpoint's delivery log with its attempts, and replay.
import { api } from "../api.js";
import { formatDate, h } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

function health(ep) {
  if (!ep.enabled) return h("span", { class: "pill revoked" }, `disabled${ep.disabled_reason ? ` (${ep.disabled_reason})` : ""}`);
  const rate = ep.health.success_rate;
  if (rate === null) return h("span", { class: "pill" }, "no attempts yet");
  const pct = `${Math.round(rate * 100)}% ok`;
  return h("span", { class: `pill ${rate >= 0.9 ? "active" : "invited"}`, title: `last ${ep.health.recent_attempts} attempts` }, pct);
}

function attemptText(a) {
  const answer = a.status_code === null ? (a.error || "no answer") : `HTTP ${a.status_code}`;
  return `#${a.attempt} · ${answer} · ${a.latency_ms} ms · ${formatDate(a.created_at)}`;
}

async function renderLog(box, ep, writable, status) {
  const { deliveries } = await api(`/admin/webhooks/${ep.id}/deliveries?limit=20`);
  const rows = deliveries.map((d) => {
    const detail = h("td", { colspan: "5", class: "attempts" });
    const detailRow = h("tr", { hidden: true }, detail);
    const show = () => guarded(status, async () => {
      const full = await api(`/admin/webhooks/${ep.id}/deliveries/${d.id}`);
      detail.replaceChildren(
        h("ol", { class: "attempt-log" }, full.attempt_log.map((a) => h("li", { "data-testid": "attempt" }, attemptText(a),
          a.response ? h("code", { class: "mono" }, ` ${a.response.slice(0, 200)}`) : null))),
        h("pre", { class: "mono payload" }, JSON.stringify(full.payload, null, 2)));
      detailRow.hidden = !detailRow.hidden;
    });
    const replay = writable && ep.enabled
      ? h("button", { class: "btn small", type: "button", onclick: () => guarded(status, async () => {
          await api(`/admin/webhooks/${ep.id}/deliveries/${d.id}/replay`, { method: "POST" });
          await renderLog(box, ep, writable, status);
        }) }, "Replay")
      : null;
    return [h("tr", { dataset: { delivery: d.id, status: d.status } },
      h("td", {}, d.event_type), h("td", {}, h("span", { class: `pill ${d.status === "delivered" ? "active" : d.status === "failed" ? "revoked" : "invited"}` }, d.status)),
      h("td", {}, d.last_status === null ? "—" : `HTTP ${d.last_status}`, ` · ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`),
      h("td", {}, formatDate(d.created_at)),
      h("td", {}, h("button", { class: "btn small", type: "button", onclick: show }, "Attempts"), replay)), detailRow];
  });
  box.replaceChildren(deliveries.length
    ? h("table", { class: "table deliveries", "data-testid": "delivery-log" },
      h("thead", {}, h("tr", {}, ["Event", "Status", "Last answer", "Created", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.flat()))
    : h("p", { class: "muted" }, "No deliveries yet."));
}

export async function renderWebhooks(el, me) {
  if (!can(me, "webhooks.read")) {
    section(el, "Webhooks", "Your role cannot see webhooks.");
    return;
  }
  const [{ endpoints }, { event_types: types }] = await Promise.all([
    api("/admin/webhooks"), api("/admin/webhooks/event-types")]);
  const writable = can(me, "webhooks.write");
  let status;
  const shown = h("div", { id: "webhook-secret" });

  // After a re-render: this render's elements are gone, the new ones are found in `el`.
  const showSecret = (label, secret) => el.querySelector("#webhook-secret").replaceChildren(h("div", { class: "notice ok" },
    `${label} Copy the signing secret now — it will not be shown again:`,
    h("input", { readonly: true, class: "mono", value: secret, "data-testid": "webhook-secret" })));

  const cards = endpoints.map((ep) => {
    const log = h("div", { class: "delivery-log" });
    const act = (label, cls, action) => writable
      ? h("button", { class: `btn small ${cls}`, type: "button", onclick: () => guarded(status, action) }, label) : null;
    const actions = h("div", { class: "actions" },
      act("Send test ping", "", async () => {
        const result = await api(`/admin/webhooks/${ep.id}/test`, { method: "POST" });
        await renderWebhooks(el, me);
        const answer = result.attempt.status_code === null ? result.attempt.error : `HTTP ${result.attempt.status_code}`;
        el.querySelector(".status").replaceChildren(h("div", { class: `notice ${result.delivery.status === "delivered" ? "ok" : "error"}`,
          "data-testid": "ping-result" }, `Ping: ${answer} in ${result.attempt.latency_ms} ms`));
        const again = el.querySelector(`[data-endpoint="${ep.id}"] .delivery-log`);
        if (again) await renderLog(again, ep, writable, status);
      }),
      act("Rotate secret", "", async () => {
        if (!confirm("Rotate the signing secret? The old one keeps signing for 24 hours.")) return;
        const rotated = await api(`/admin/webhooks/${ep.id}/rotate-secret`, { method: "POST" });
        await renderWebhooks(el, me);
        showSecret("Secret rotated; the old one also signs for 24 hours.", rotated.secret);
      }),
      act(ep.enabled ? "Disable" : "Enable", "", async () => {
        await api(`/admin/webhooks/${ep.id}`, { method: "PATCH", body: { enabled: !ep.enabled } });
        await renderWebhooks(el, me);
      }),
      act("Delete", "danger", async () => {
        if (!confirm(`Delete the endpoint ${ep.url} and its delivery log?`)) return;
        await api(`/admin/webhooks/${ep.id}`, { method: "DELETE" });
        await renderWebhooks(el, me);
      }),
      h("button", { class: "btn small", type: "button", onclick: () => guarded(status, () => renderLog(log, ep, writable, status)) },
        "Delivery log"));
    return h("article", { class: "endpoint card-inner", dataset: { endpoint: ep.id } },
      h("div", { class: "endpoint-head" }, h("strong", { class: "mono" }, ep.url), " ", health(ep)),
      ep.description ? h("p", { class: "muted" }, ep.description) : null,
      h("p", { class: "muted" }, `Events: ${ep.event_types ? ep.event_types.join(", ") : "all"}`,
        ep.health.pending ? ` · ${ep.health.pending} pending` : "",
        ep.health.last_attempt_at ? ` · last attempt ${formatDate(ep.health.last_attempt_at)}` : ""),
      actions, log);
  });

  let form = null;
  if (writable) {
    const picker = h("fieldset", { class: "event-picker" }, h("legend", {}, "Events"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "all", checked: true }), "All events"),
      types.filter((t) => t.type !== "webhook.ping").map((t) => h("label", { class: "check", title: t.description },
        h("input", { type: "checkbox", name: "event_type", value: t.type }), t.type)));
    form = h("form", { class: "stack narrow", id: "webhook-form" },
      h("label", {}, "Endpoint URL", h("input", { name: "url", type: "url", required: true, maxlength: "2048",
        placeholder: "https://example.com/replyhq/webhooks" })),
      h("label", {}, "Description", h("input", { name: "description", maxlength: "500", placeholder: "optional" })),
      picker, h("button", { class: "btn primary", type: "submit" }, "Add endpoint"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(status, async () => {
        const data = new FormData(form);
        const picked = data.getAll("event_type");
        const body = { url: data.get("url"), description: data.get("description") || "",
          event_types: data.get("all") || !picked.length ? null : picked };
        const created = await api("/admin/webhooks", { method: "POST", body });
        await renderWebhooks(el, me);
        showSecret("Endpoint added.", created.secret);
      });
    });
  }
  status = section(el, "Webhooks",
    "ReplyHQ POSTs signed events (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature) to your " +
    "endpoints, retrying with backoff for about three days. See /docs/webhooks for verifying them.",
    shown, h("div", { id: "webhook-endpoints" }, cards.length ? cards : h("p", { class: "muted" }, "No endpoints yet.")),
    form);
}
