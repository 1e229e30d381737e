// The app shell every dashboard page shares: sign-in check, sidebar navigation, header, logout.
import { api, getSession, logout, toLogin } from "./api.js";
import { h } from "./dom.js";

export const PAGES = [
  { href: "/index.html", id: "dashboard", label: "Dashboard" },
  { href: "/chat.html", id: "chat", label: "Inbox & chat" },
  { href: "/users.html", id: "users", label: "Users" },
  { href: "/broadcasts.html", id: "broadcasts", label: "Broadcasts" },
  { href: "/broadcast-new.html", id: "broadcast-new", label: "New broadcast", sub: true },
  { href: "/broadcast-analytics.html", id: "broadcast-analytics", label: "Broadcast analytics", sub: true },
  { href: "/workflows.html", id: "workflows", label: "Workflows" },
  { href: "/workflow-editor.html", id: "workflow-editor", label: "Workflow editor", sub: true },
  { href: "/analytics.html", id: "analytics", label: "Analytics" },
  { href: "/settings.html", id: "settings", label: "Settings" },
];

// Render the shell around the page and resolve with {main, me}; unsigned visitors go to login.
export async function mountShell({ page, title, comingSoon = false }) {
  if (!getSession()) {
    toLogin();
    return new Promise(() => {});
  }
  const me = await api("/admin/auth/me"); // validates the session (refreshing it if expired)
  const nav = h("nav", { class: "nav", "aria-label": "Main" },
    PAGES.map((p) => h("a", {
      href: p.href, class: `nav-link${p.sub ? " sub" : ""}${p.id === page ? " active" : ""}`,
      "aria-current": p.id === page ? "page" : null, dataset: { page: p.id },
    }, p.label)));
  const main = h("main", { class: "content", id: "content" });
  const shell = h("div", { class: "shell" },
    h("aside", { class: "sidebar" },
      h("a", { class: "brand", href: "/index.html" }, h("span", { class: "brand-mark" }, "R"), "ReplyHQ"),
      h("div", { class: "workspace", "data-testid": "workspace-name" }, me.app.name),
      nav),
    h("div", { class: "main-col" },
      h("header", { class: "topbar" },
        h("h1", {}, title),
        h("div", { class: "who" },
          h("span", { class: "who-name", "data-testid": "admin-name" }, me.admin.name || me.admin.email),
          h("span", { class: "badge" }, me.admin.role),
          h("button", { class: "btn ghost", id: "logout", type: "button", onclick: () => logout() }, "Log out"))),
      main));
  document.title = `${title} · ReplyHQ`;
  document.body.replaceChildren(shell);
  if (comingSoon) {
    main.append(h("section", { class: "card coming-soon" },
      h("h2", {}, `${title} is coming in a later release`),
      h("p", {}, "This page is part of the dashboard plan; its screens are not built yet. "
        + "Settings, team and API keys work today.")));
  }
  return { main, me };
}

export function can(me, permission) {
  return me.admin.permissions.includes(permission);
}
