// Settings: one section per module under settings/ (each renders itself into its card).
import { h } from "./dom.js";
import { mountShell } from "./shell.js";
import { renderAccount } from "./settings/account.js";
import { renderKeys } from "./settings/api-keys.js";
import { renderBranding } from "./settings/branding.js";
import { renderTeam } from "./settings/team.js";
import { renderUsage } from "./settings/usage.js";
import { renderWebhooks } from "./settings/webhooks.js";
import { renderWorkspace } from "./settings/workspace.js";

const { main, me } = await mountShell({ page: "settings", title: "Settings" });

// [id, tab label, render]: the order of the tabs and the cards.
const SECTIONS = [
  ["account", "Account", renderAccount],
  ["workspace", "Workspace & security", renderWorkspace],
  ["branding", "Branding", renderBranding],
  ["team", "Team", renderTeam],
  ["api-keys", "API keys", renderKeys],
  ["webhooks", "Webhooks", renderWebhooks],
  ["usage", "Usage", renderUsage],
];
const cards = SECTIONS.map(([id]) => h("section", { class: "card", id }));
main.append(
  h("nav", { class: "tabs", "aria-label": "Settings sections" },
    SECTIONS.map(([id, label]) => h("a", { href: `#${id}` }, label))),
  ...cards);

await Promise.all(SECTIONS.map(([, , render], i) => render(cards[i], me)));
main.dataset.ready = "true";
if (location.hash) document.querySelector(location.hash)?.scrollIntoView();
