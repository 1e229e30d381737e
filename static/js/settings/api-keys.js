// API keys: list (scopes, creator, last use and address, expiry, status), create with kind and scopes
// (the key is shown once), rotate with a grace period, rename, re-scope, revoke.
import { api } from "../api.js";
import { formatDate, h } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";
import { ask, showOnce } from "./dialog.js";

const GRACES = [["0", "Immediately"], ["3600", "1 hour"], ["86400", "24 hours"], ["604800", "7 days"]];
const STATUS_CLASS = { active: "active", expiring: "invited", expired: "revoked", revoked: "revoked" };
const SHOW_ONCE = "Copy this key now: it is stored only as a hash and will not be shown again.";

function scopePicker(all, checked, mine) {
  return h("fieldset", { class: "scopes", "data-testid": "scope-picker" }, h("legend", {}, "Scopes"),
    all.map((s) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "scope", value: s, checked: checked.includes(s),
        disabled: !mine.includes(s) }), s)));
}

export async function renderKeys(el, me) {
  if (!can(me, "api_keys.read")) {
    section(el, "API keys", "Your role cannot see API keys.");
    return;
  }
  const { api_keys: keys, scopes: allScopes } = await api("/admin/api/api-keys");
  const writable = can(me, "api_keys.write");
  const mine = allScopes.filter((s) => can(me, s));
  const rerender = () => renderKeys(el, me);
  let status;

  const actions = (k) => {
    if (!writable || k.status === "revoked") return null;
    const live = k.status === "active" || k.status === "expiring";
    return h("div", { class: "row-actions" },
      live ? h("button", { class: "btn small", type: "button", onclick: () => guarded(status, async () => {
        const values = await ask(`Rename ${k.prefix}…`, [
          h("label", {}, "Name", h("input", { name: "name", value: k.name, maxlength: "200" })),
          k.kind === "secret" ? scopePicker(allScopes, k.scopes, mine) : null,
        ], "Save", "edit-key-dialog");
        if (!values) return;
        const body = { name: values.name };
        if (k.kind === "secret") body.scopes = values.__checked;
        await api(`/admin/api/api-keys/${k.id}`, { method: "PATCH", body });
        await rerender();
      }) }, k.kind === "secret" ? "Edit" : "Rename") : null,
      k.status === "active" ? h("button", { class: "btn small", type: "button", onclick: () => guarded(status, async () => {
        const values = await ask(`Rotate ${k.prefix}…`, [
          h("p", {}, "A new key replaces this one. Keep the old key working for:"),
          h("select", { name: "grace_seconds", "aria-label": "Grace period" },
            GRACES.map(([v, label]) => h("option", { value: v, selected: v === "86400" }, label))),
        ], "Rotate", "rotate-key-dialog");
        if (!values) return;
        const result = await api(`/admin/api/api-keys/${k.id}/rotate`, { method: "POST",
          body: { grace_seconds: Number(values.grace_seconds) } });
        await rerender();
        showOnce("New key", SHOW_ONCE, result.key, "new-key");
      }) }, "Rotate") : null,
      h("button", { class: "btn danger small", type: "button", onclick: () => guarded(status, async () => {
        if (!confirm(`Revoke ${k.prefix}…? Apps using it stop working.`)) return;
        await api(`/admin/api/api-keys/${k.id}`, { method: "DELETE" });
        await rerender();
      }) }, "Revoke"));
  };

  const rows = keys.map((k) => h("tr", { dataset: { prefix: k.prefix, id: k.id } },
    h("td", {}, k.name || "—"), h("td", {}, k.kind), h("td", { class: "mono" }, `${k.prefix}…`),
    h("td", { class: "scopes-cell" }, k.scopes ? k.scopes.join(", ") : "own user only"),
    h("td", {}, k.created_by ? (k.created_by.name || k.created_by.email) : "—", h("br"),
      h("small", { class: "muted" }, formatDate(k.created_at))),
    h("td", { class: "last-used" }, formatDate(k.last_used_at),
      k.last_used_ip ? h("small", { class: "muted mono" }, ` from ${k.last_used_ip}`) : null),
    h("td", {}, k.expires_at ? formatDate(k.expires_at) : "never"),
    h("td", {}, h("span", { class: `pill ${STATUS_CLASS[k.status] || ""}` }, k.status)),
    h("td", {}, actions(k))));
  const table = h("table", { class: "table", id: "keys-table" },
    h("thead", {}, h("tr", {}, ["Name", "Kind", "Key", "Scopes", "Created by", "Last used", "Expires", "Status", ""]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));

  let form = null;
  if (writable) {
    const picker = scopePicker(allScopes, mine, mine);
    const kind = h("select", { name: "kind", "aria-label": "Kind" },
      h("option", { value: "publishable" }, "publishable (SDK)"), h("option", { value: "secret" }, "secret (server)"));
    const syncPicker = () => { picker.hidden = kind.value !== "secret"; };
    kind.addEventListener("change", syncPicker);
    syncPicker();
    form = h("form", { class: "inline-form", id: "key-form" },
      h("input", { name: "name", placeholder: "Key name, e.g. iOS app", maxlength: "200", "aria-label": "Key name" }),
      kind, h("button", { class: "btn primary", type: "submit" }, "Create key"), picker);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(status, async () => {
        const body = { name: form.elements.name.value, kind: kind.value };
        if (kind.value === "secret") {
          body.scopes = [...picker.querySelectorAll("input:checked")].map((c) => c.value);
        }
        const result = await api("/admin/api/api-keys", { method: "POST", body });
        await rerender();
        showOnce("Your new API key", SHOW_ONCE, result.key, "new-key");
      });
    });
  }
  status = section(el, "API keys",
    "Publishable keys go in your apps' SDK; secret keys stay on your servers and may only do what their " +
    "scopes allow. Last use is recorded to the minute.", table, form);
}
