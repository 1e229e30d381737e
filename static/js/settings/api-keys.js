// API keys: list, create (shown once), revoke.
import { api } from "../api.js";
import { formatDate, h } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

export async function renderKeys(el, me) {
  if (!can(me, "api_keys.read")) {
    section(el, "API keys", "Your role cannot see API keys.");
    return;
  }
  const { api_keys: keys } = await api("/admin/api/api-keys");
  const writable = can(me, "api_keys.write");
  let status;
  const rows = keys.map((k) => h("tr", { dataset: { prefix: k.prefix } },
    h("td", {}, k.name || "—"), h("td", {}, k.kind), h("td", { class: "mono" }, `${k.prefix}…`),
    h("td", {}, formatDate(k.created_at)), h("td", {}, formatDate(k.last_used_at)),
    h("td", {}, k.revoked_at ? h("span", { class: "pill revoked" }, "revoked") : h("span", { class: "pill active" }, "active")),
    h("td", {}, writable && !k.revoked_at
      ? h("button", { class: "btn danger small", type: "button", onclick: () => guarded(status, async () => {
          if (!confirm(`Revoke ${k.prefix}…? Apps using it stop working.`)) return;
          await api(`/admin/api/api-keys/${k.id}`, { method: "DELETE" });
          await renderKeys(el, me);
        }) }, "Revoke")
      : null)));
  const table = h("table", { class: "table", id: "keys-table" },
    h("thead", {}, h("tr", {}, ["Name", "Kind", "Key", "Created", "Last used", "Status", ""]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));
  let form = null;
  const created = h("div", { id: "created-key" });
  if (writable) {
    form = h("form", { class: "inline-form", id: "key-form" },
      h("input", { name: "name", placeholder: "Key name, e.g. iOS app", maxlength: "200", "aria-label": "Key name" }),
      h("select", { name: "kind", "aria-label": "Kind" },
        h("option", { value: "publishable" }, "publishable (SDK)"), h("option", { value: "secret" }, "secret (server)")),
      h("button", { class: "btn primary", type: "submit" }, "Create key"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(status, async () => {
        const result = await api("/admin/api/api-keys", { method: "POST",
          body: Object.fromEntries(new FormData(form)) });
        await renderKeys(el, me);
        el.querySelector("#created-key").replaceChildren(h("div", { class: "notice ok" },
          "Copy this key now — it is stored only as a hash and will not be shown again:",
          h("input", { readonly: true, class: "mono", value: result.key, "data-testid": "new-key" })));
      });
    });
  }
  status = section(el, "API keys",
    "Publishable keys go in your apps' SDK; secret keys stay on your servers.", table, form, created);
}
