// Account: the signed-in admin's own name, email (changing it takes the current password) and password
// (a new one signs out every other session; this one stays signed in).
import { api } from "../api.js";
import { h, notice } from "../dom.js";
import { guarded, section } from "./common.js";

export async function renderAccount(el, me) {
  const account = await api("/admin/api/account");
  const name = h("input", { name: "name", value: account.name, maxlength: "200", autocomplete: "name" });
  const email = h("input", { name: "email", type: "email", value: account.email, required: true,
    autocomplete: "email" });
  const current = h("input", { name: "current_password", type: "password", autocomplete: "current-password",
    placeholder: "Needed to change your email" });
  const form = h("form", { class: "stack narrow", id: "account-form" },
    h("label", {}, "Your name", name),
    h("label", {}, "Email", email),
    h("label", {}, "Current password", current),
    h("button", { class: "btn primary", type: "submit" }, "Save"));

  const pwCurrent = h("input", { name: "current_password", type: "password", required: true,
    autocomplete: "current-password" });
  const pwNew = h("input", { name: "new_password", type: "password", required: true, minlength: "8",
    maxlength: "256", autocomplete: "new-password" });
  const pwForm = h("form", { class: "stack narrow", id: "password-form" },
    h("h3", {}, "Change password"),
    h("label", {}, "Current password", pwCurrent),
    h("label", {}, "New password (8 characters or more)", pwNew),
    h("p", { class: "muted" }, "Your other signed-in sessions will be signed out; this one stays signed in."),
    h("button", { class: "btn", type: "submit" }, "Change password"));

  const status = section(el, "Account", `Signed in as ${account.email} (${account.role}).`, form, pwForm);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      const body = { name: name.value };
      if (email.value !== account.email) {
        body.email = email.value;
        body.current_password = current.value;
      }
      const saved = await api("/admin/api/account", { method: "PATCH", body });
      await renderAccount(el, me);
      notice(el.querySelector(".status"), "Saved.", "ok");
      const shown = document.querySelector("[data-testid=admin-name]");
      if (shown) shown.textContent = saved.name || saved.email;
    });
  });
  pwForm.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      const result = await api("/admin/api/account/password", { method: "POST",
        body: { current_password: pwCurrent.value, new_password: pwNew.value } });
      pwForm.reset();
      const n = result.other_sessions_ended;
      notice(status, `Password changed. ${n} other session${n === 1 ? "" : "s"} signed out.`, "ok");
    });
  });
}
