// Workspace & security: name, timezone, identity verification mode, and rotating the identity secret
// (the new secret is shown once; the old one keeps verifying for 24 hours unless told otherwise).
import { api } from "../api.js";
import { formatDate, h, notice } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

const MODES = [
  ["off", "Off: user_hash is not checked"],
  ["log_only", "Log only: a missing or wrong user_hash is accepted, logged and counted"],
  ["enforce", "Enforce: a missing or wrong user_hash is refused"],
];

function zones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC"];
  }
}

export async function renderWorkspace(el, me) {
  const ws = await api("/admin/api/workspace");
  const writable = can(me, "settings.write");
  const name = h("input", { name: "name", value: ws.name, maxlength: "200", required: true, disabled: !writable });
  const timezone = h("input", { name: "timezone", value: ws.timezone, list: "timezones", maxlength: "64",
    required: true, disabled: !writable, autocomplete: "off" });
  const list = h("datalist", { id: "timezones" }, ["UTC", ...zones()].map((z) => h("option", { value: z })));
  const mode = h("select", { name: "identity_verification", disabled: !writable },
    MODES.map(([value, label]) => h("option", { value, selected: value === ws.identity_verification }, label)));
  const form = h("form", { class: "stack narrow", id: "workspace-form" },
    h("label", {}, "Workspace name", name),
    h("label", {}, "Timezone", timezone, list),
    h("label", {}, "Identity verification", mode),
    writable ? h("button", { class: "btn primary", type: "submit" }, "Save") : null);

  const secret = h("div", { class: "stack narrow", id: "identity-secret" },
    h("h3", {}, "Identity secret"),
    h("p", { class: "muted" }, "Your backend signs each user id with it: user_hash = HMAC-SHA256(secret, user_id). ",
      "It is shown only once, when rotated: rotate it to get one you can copy."),
    ws.identity_secret_hint
      ? h("p", {}, "Current secret ends in ", h("code", { class: "mono", "data-testid": "identity-secret-hint" },
        ws.identity_secret_hint), ws.identity_secret_rotated_at ? ` · rotated ${formatDate(ws.identity_secret_rotated_at)}` : "")
      : null,
    ws.previous_secret_valid_until
      ? h("p", { class: "muted" }, `The previous secret still verifies until ${formatDate(ws.previous_secret_valid_until)}.`)
      : null,
    h("div", { id: "new-identity-secret" }),
    writable ? h("button", { class: "btn danger", type: "button", id: "rotate-secret", onclick: () => guarded(status, async () => {
      if (!confirm("Rotate the identity secret? The current one keeps working for 24 hours.")) return;
      const rotated = await api("/admin/api/workspace/identity-secret/rotate", { method: "POST", body: {} });
      await renderWorkspace(el, me);
      el.querySelector("#new-identity-secret").replaceChildren(h("div", { class: "notice ok" },
        "Copy the new identity secret now — it will not be shown again:",
        h("input", { readonly: true, class: "mono", value: rotated.identity_secret, "data-testid": "identity-secret" })));
    }) }, "Rotate secret") : null);

  const status = section(el, "Workspace & security",
    "Your workspace, its timezone, and how SDK users prove who they are.", form, secret);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      const saved = await api("/admin/api/workspace", { method: "PATCH",
        body: { name: name.value, timezone: timezone.value, identity_verification: mode.value } });
      await renderWorkspace(el, me);
      notice(el.querySelector(".status"), "Saved.", "ok");
      const shown = document.querySelector("[data-testid=workspace-name]");
      if (shown) shown.textContent = saved.name;
    });
  });
}
