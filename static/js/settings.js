// Settings: account, team (invite, change role, remove) and API keys (create shown once, revoke).
import { api } from "./api.js";
import { formatDate, h, notice } from "./dom.js";
import { can, mountShell } from "./shell.js";

const { main, me } = await mountShell({ page: "settings", title: "Settings" });

const sections = {
  account: h("section", { class: "card", id: "account" }),
  team: h("section", { class: "card", id: "team" }),
  keys: h("section", { class: "card", id: "api-keys" }),
};
main.append(
  h("nav", { class: "tabs", "aria-label": "Settings sections" },
    h("a", { href: "#account" }, "Account"), h("a", { href: "#team" }, "Team"),
    h("a", { href: "#api-keys" }, "API keys")),
  sections.account, sections.team, sections.keys);

function section(el, title, description, ...body) {
  const status = h("div", { class: "status", "aria-live": "polite" });
  el.replaceChildren(h("h2", {}, title), h("p", { class: "muted" }, description), status, ...body);
  return status;
}

async function guarded(status, action) {
  try {
    await action();
  } catch (err) {
    notice(status, err.message);
  }
}

// ---- Account ----
async function renderAccount() {
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
  const status = section(sections.account, "Account",
    "Your workspace. The identity secret signs user_hash on your backend; keep it server-side.", form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      await api("/admin/api/account", { method: "PATCH",
        body: { name: name.value, identity_verification_required: verify.checked } });
      await renderAccount();
      notice(sections.account.querySelector(".status"), "Saved.", "ok");
      document.querySelector("[data-testid=workspace-name]").textContent = name.value;
    });
  });
}

// ---- Team ----
async function renderTeam() {
  const { members, roles } = await api("/admin/api/team");
  const writable = can(me, "team.write");
  const myRank = roles.find((r) => r.name === me.admin.role)?.rank ?? 0;
  const grantable = roles.filter((r) => r.rank <= myRank).map((r) => r.name);
  let status;

  const rows = members.map((m) => {
    const self = m.id === me.admin.id;
    const roleCell = writable
      ? h("select", { "aria-label": `Role of ${m.email}`, onchange: (e) => guarded(status, async () => {
          await api(`/admin/api/team/${m.id}`, { method: "PATCH", body: { role: e.target.value } });
          await renderTeam();
        }) }, roles.map((r) => h("option", { value: r.name, selected: r.name === m.role,
          disabled: !grantable.includes(r.name) }, r.name)))
      : m.role;
    const remove = writable && !self
      ? h("button", { class: "btn danger small", type: "button", onclick: () => guarded(status, async () => {
          if (!confirm(`Remove ${m.email} from the team?`)) return;
          await api(`/admin/api/team/${m.id}`, { method: "DELETE" });
          await renderTeam();
        }) }, "Remove")
      : null;
    return h("tr", { dataset: { email: m.email } },
      h("td", {}, m.name || "—", self ? h("span", { class: "badge" }, "you") : null),
      h("td", {}, m.email), h("td", {}, roleCell),
      h("td", {}, h("span", { class: `pill ${m.status}` }, m.status)),
      h("td", {}, formatDate(m.last_login_at)), h("td", {}, remove));
  });
  const table = h("table", { class: "table", id: "team-table" },
    h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Status", "Last login", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));

  let inviteForm = null;
  const inviteResult = h("div", { id: "invite-result" });
  if (writable) {
    inviteForm = h("form", { class: "inline-form", id: "invite-form" },
      h("input", { name: "email", type: "email", placeholder: "teammate@company.com", required: true,
        maxlength: "254", "aria-label": "Email" }),
      h("input", { name: "name", placeholder: "Name (optional)", maxlength: "200", "aria-label": "Name" }),
      h("select", { name: "role", "aria-label": "Role" },
        grantable.map((r) => h("option", { value: r, selected: r === "agent" }, r))),
      h("button", { class: "btn primary", type: "submit" }, "Invite"));
    inviteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(status, async () => {
        const fields = Object.fromEntries(new FormData(inviteForm));
        const invite = await api("/admin/api/team/invite", { method: "POST", body: fields });
        await renderTeam();
        sections.team.querySelector("#invite-result").replaceChildren(h("div", { class: "notice ok" },
          `Invitation for ${invite.member.email} created. Send them this link (shown once, valid 7 days):`,
          h("input", { readonly: true, class: "mono", value: invite.invite_url, "data-testid": "invite-url" })));
      });
    });
  }
  status = section(sections.team, "Team", "Who can sign in to this workspace, and with which role.",
    table, inviteForm, inviteResult);
}

// ---- API keys ----
async function renderKeys() {
  if (!can(me, "api_keys.read")) {
    section(sections.keys, "API keys", "Your role cannot see API keys.");
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
          await renderKeys();
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
        await renderKeys();
        sections.keys.querySelector("#created-key").replaceChildren(h("div", { class: "notice ok" },
          "Copy this key now — it is stored only as a hash and will not be shown again:",
          h("input", { readonly: true, class: "mono", value: result.key, "data-testid": "new-key" })));
      });
    });
  }
  status = section(sections.keys, "API keys",
    "Publishable keys go in your apps' SDK; secret keys stay on your servers.", table, form, created);
}

await Promise.all([renderAccount(), renderTeam(), renderKeys()]);
main.dataset.ready = "true";
if (location.hash) document.querySelector(location.hash)?.scrollIntoView();
