// Small display helpers shared by the dashboard, inbox and users screens.
import { h } from "./dom.js";

export function ago(value) {
  if (!value) return "—";
  const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
  return duration(seconds) + " ago";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function userLabel(user) {
  return user?.name || user?.email || user?.user_id || (user?.anonymous_id ? "Visitor" : "Unknown user");
}

// platform, model, OS and app version as pills
export function deviceBadges(device) {
  const d = device || {};
  const parts = [
    d.platform,
    d.model,
    d.os_version && `OS ${d.os_version}`,
    d.app_version && `app ${d.app_version}`,
  ].filter(Boolean);
  if (!parts.length) return h("span", { class: "muted" }, "no device info");
  return h("span", { class: "device", "data-testid": "device" }, parts.map((p) => h("span", { class: "pill" }, p)));
}
