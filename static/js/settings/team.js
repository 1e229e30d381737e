// Team: members (role, last active), pending invitations (resend with a new link shown once,
// withdraw), invite, change a role, remove or leave.
import { api } from "../api.js";
import { formatDate, h } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";
import { showOnce } from "./dialog.js";

const LINK_ONCE = "Send them this link. It is shown once and valid for 7 days; resending makes a new one.";

export async function renderTeam(el, me) {
  const { members, roles, invitations } = await api("/admin/api/team");
  const writable = can(me, "team.write");
  const myRank = roles.find((r) => r.name === me.admin.role)?.rank ?? 0;
  const grantable = roles.filter((r) => r.rank <= myRank).map((r) => r.name);
  const rankOf = (name) => roles.find((r) => r.name === name)?.rank ?? 0;
  const rerender = () => renderTeam(el, me);
  let status;

  const rows = members.filter((m) => m.status === "active").map((m) => {
    const self = m.id === me.admin.id;
    const roleCell = writable && rankOf(m.role) <= myRank
      ? h("select", { "aria-label": `Role of ${m.email}`, onchange: (e) => guarded(status, async () => {
          try {
            await api(`/admin/api/team/${m.id}`, { method: "PATCH", body: { role: e.target.value } });
          } catch (err) {
            e.target.value = m.role; // refused (e.g. the last owner): the table keeps the real role
            throw err;
          }
          await rerender();
        }) }, roles.map((r) => h("option", { value: r.name, selected: r.name === m.role,
          disabled: !grantable.includes(r.name) }, r.name)))
      : m.role;
    const leave = () => guarded(status, async () => {
      if (!confirm("Leave this workspace? You will be signed out.")) return;
      await api(`/admin/api/team/${m.id}`, { method: "DELETE" });
      location.href = "/login.html";
    });
    const remove = () => guarded(status, async () => {
      if (!confirm(`Remove ${m.email} from the team?`)) return;
      await api(`/admin/api/team/${m.id}`, { method: "DELETE" });
      await rerender();
    });
    const action = self
      ? h("button", { class: "btn small", type: "button", onclick: leave }, "Leave")
      : writable && rankOf(m.role) <= myRank
        ? h("button", { class: "btn danger small", type: "button", onclick: remove }, "Remove")
        : null;
    return h("tr", { dataset: { email: m.email } },
      h("td", {}, m.name || "—", self ? h("span", { class: "badge" }, "you") : null),
      h("td", {}, m.email), h("td", {}, roleCell),
      h("td", { class: "last-active" }, formatDate(m.last_active_at || m.last_login_at)), h("td", {}, action));
  });
  const table = h("table", { class: "table", id: "team-table" },
    h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Last active", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows));

  const inviteRows = invitations.map((i) => h("tr", { dataset: { email: i.email, id: i.id } },
    h("td", {}, i.email), h("td", {}, i.role), h("td", {}, i.invited_by || "—"),
    h("td", {}, h("span", { class: `pill ${i.status === "expired" ? "revoked" : "invited"}` },
      i.status === "expired" ? "expired" : "invited"), " ",
    h("small", { class: "muted" }, `until ${formatDate(i.expires_at)}`)),
    h("td", {}, writable && rankOf(i.role) <= myRank ? h("div", { class: "row-actions" },
      h("button", { class: "btn small", type: "button", onclick: () => guarded(status, async () => {
        const again = await api(`/admin/api/team/invitations/${i.id}/resend`, { method: "POST" });
        await rerender();
        showOnce(`New invitation link for ${i.email}`, `${LINK_ONCE} The previous link no longer works.`,
          again.invite_url, "invite-url");
      }) }, "Resend"),
      h("button", { class: "btn danger small", type: "button", onclick: () => guarded(status, async () => {
        if (!confirm(`Withdraw the invitation of ${i.email}? Its link stops working.`)) return;
        await api(`/admin/api/team/invitations/${i.id}`, { method: "DELETE" });
        await rerender();
      }) }, "Revoke")) : null)));
  const pending = invitations.length || writable
    ? [h("h3", {}, "Pending invitations"),
      invitations.length
        ? h("table", { class: "table", id: "invites-table" },
          h("thead", {}, h("tr", {}, ["Email", "Role", "Invited by", "Status", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, inviteRows))
        : h("p", { class: "muted", id: "no-invites" }, "No pending invitations.")]
    : [];

  let inviteForm = null;
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
        await rerender();
        showOnce(`Invitation for ${invite.member.email}`, LINK_ONCE, invite.invite_url, "invite-url");
      });
    });
  }
  status = section(el, "Team", "Who can sign in to this workspace, with which role, and when they were last active.",
    table, ...pending, inviteForm);
}
