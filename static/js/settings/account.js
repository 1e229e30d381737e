// Account: the workspace name and identity verification.
import { api } from "../api.js";
import { h, notice } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

export async function renderAccount(el, me) {
  const account = await api("/admin/api/account");
  const writable = can(me, "settings.write");
  const name = h("input", { name: "name", value: account.name, maxlength: "200", required: true,
    disabled: !writable });
  const verify = h("input", { type: "checkbox", name: "identity_verification_required",
    checked: account.identity_verification_required, disabled: !writable });
  const form = h("form", { class: "stack narrow", id: "account-form" },
    h("label", {}, "Workspace name", name),
    h("label", { class: "check" }, verify, "Require identity verification (user_hash) for SDK users"),
    account.identity_secret
      ? h("label", {}, "Identity verification secret",
        h("input", { readonly: true, value: account.identity_secret, class: "mono", "data-testid": "identity-secret" }))
      : null,
    writable ? h("button", { class: "btn primary", type: "submit" }, "Save") : null);
  const status = section(el, "Account",
    "Your workspace. The identity secret signs user_hash on your backend; keep it server-side.", form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      await api("/admin/api/account", { method: "PATCH",
        body: { name: name.value, identity_verification_required: verify.checked } });
      await renderAccount(el, me);
      notice(el.querySelector(".status"), "Saved.", "ok");
      document.querySelector("[data-testid=workspace-name]").textContent = name.value;
    });
  });
}
