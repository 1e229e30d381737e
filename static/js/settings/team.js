// Team: members, roles, invitations, removal.
import { api } from "../api.js";
import { formatDate, h } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

export async function renderTeam(el, me) {
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
          await renderTeam(el, me);
        }) }, roles.map((r) => h("option", { value: r.name, selected: r.name === m.role,
          disabled: !grantable.includes(r.name) }, r.name)))
      : m.role;
    const remove = writable && !self
      ? h("button", { class: "btn danger small", type: "button", onclick: () => guarded(status, async () => {
          if (!confirm(`Remove ${m.email} from the team?`)) return;
          await api(`/admin/api/team/${m.id}`, { method: "DELETE" });
          await renderTeam(el, me);
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
        await renderTeam(el, me);
        el.querySelector("#invite-result").replaceChildren(h("div", { class: "notice ok" },
          `Invitation for ${invite.member.email} created. Send them this link (shown once, valid 7 days):`,
          h("input", { readonly: true, class: "mono", value: invite.invite_url, "data-testid": "invite-url" })));
      });
    });
  }
  status = section(el, "Team", "Who can sign in to this workspace, and with which role.",
    table, inviteForm, inviteResult);
}
