// Users: searchable list with device metadata and presence, and a detail panel with conversations.
import { api } from "./api.js";
import { h, notice } from "./dom.js";
import { ago, deviceBadges, userLabel } from "./format.js";

export function mountUsers(main) {
  const search = h("input", { type: "search", placeholder: "Search name, email, user id, device", "aria-label": "Search users",
    "data-testid": "users-search", style: "flex:1" });
  const body = h("tbody", { "data-testid": "users-table" });
  const more = h("button", { class: "btn", type: "button", hidden: true }, "Load more");
  const count = h("span", { class: "muted" });
  const panel = h("aside", { class: "card", "data-testid": "user-detail" }, h("p", { class: "muted" }, "Select a user to see details."));
  main.append(h("div", { class: "users-layout" },
    h("section", { class: "card" },
      h("div", { class: "inline-form", style: "margin-top:0" }, search, count),
      h("table", { class: "table" },
        h("thead", {}, h("tr", {}, ["User", "Device", "Last seen", "Conversations"].map((t) => h("th", {}, t)))), body),
      more),
    panel));

  let offset = 0;
  let selected = null;
  async function load(reset) {
    if (reset) offset = 0;
    const p = new URLSearchParams({ limit: "50", offset: String(offset) });
    if (search.value.trim()) p.set("q", search.value.trim());
    const page = await api(`/admin/api/users?${p}`);
    const rows = page.users.map((u) => h("tr", {
      class: `row-link${u.id === selected ? " selected" : ""}`, dataset: { id: u.id }, "data-testid": "user-row",
      onclick: () => show(u.id),
    },
    h("td", {}, h("span", { class: `dot${u.online ? " on" : ""}`, title: u.online ? "online" : "offline" }),
      h("strong", {}, userLabel(u)), u.email && u.name ? h("div", { class: "muted" }, u.email) : null),
    h("td", {}, deviceBadges(u.metadata?.device)),
    h("td", {}, ago(u.last_seen_at)),
    h("td", {}, String(u.conversations_count))));
    if (reset) body.replaceChildren(...rows);
    else body.append(...rows);
    if (!page.users.length && reset) body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No users yet.")));
    count.textContent = `${page.total} user${page.total === 1 ? "" : "s"}`;
    offset = page.next_offset ?? offset;
    more.hidden = page.next_offset === null;
  }

  async function show(id) {
    selected = id;
    body.querySelectorAll("tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
    const { user, conversations, sessions } = await api(`/admin/api/users/${id}`);
    const device = user.metadata?.device || {};
    const attrs = Object.entries(user.attributes || {});
    panel.replaceChildren(
      h("h2", {}, userLabel(user)),
      h("p", { class: "muted" }, user.online ? `Online on ${sessions.length} device${sessions.length === 1 ? "" : "s"}` : `Last seen ${ago(user.last_seen_at)}`),
      h("dl", { class: "kv" },
        h("dt", {}, "Email"), h("dd", {}, user.email || "—"),
        h("dt", {}, "User id"), h("dd", { class: "mono" }, user.user_id || user.anonymous_id),
        h("dt", {}, "First seen"), h("dd", {}, new Date(user.first_seen_at).toLocaleString()),
        ...Object.entries(device).flatMap(([k, v]) => [h("dt", {}, k.replace("_", " ")), h("dd", {}, String(v))])),
      attrs.length ? h("h3", { style: "margin-top:1rem" }, "Attributes") : null,
      attrs.length ? h("dl", { class: "kv" }, ...attrs.flatMap(([k, v]) => [h("dt", {}, k),
        h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))])) : null,
      h("h3", { style: "margin-top:1rem" }, "Conversations"),
      conversations.length ? h("ul", { "data-testid": "user-conversations" }, conversations.map((c) => h("li", {},
        h("a", { href: `/chat.html?c=${c.id}` }, c.subject || c.last_message_preview || "Conversation"), " ",
        h("span", { class: `status-pill ${c.status}` }, c.status)))) : h("p", { class: "muted" }, "None yet."),
  );
  }

  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(true).catch((e) => notice(panel, e.message)), 250);
  });
  more.addEventListener("click", () => load(false));
  load(true).catch((e) => notice(panel, e.message));
}
