// The composer's schedule: now, once at a local time in a timezone, or a cron in a timezone with an
// optional end; the next run times shown are the server's (POST /admin/api/broadcasts/cron-preview).
import { api } from "../api.js";
import { h } from "../dom.js";
import { wallTime } from "./common.js";

const ZONES = (() => {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC", "Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"];
  }
})();
const HERE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// datetime-local inputs give "YYYY-MM-DDTHH:MM"; the API's local times are the same without seconds.
const minutes = (value) => (value ? value.slice(0, 16) : "");

// The instant (UTC ISO) a wall-clock time in `zone` names: end_at is an instant, the picker a wall time.
export function zonedInstant(local, zone) {
  const asUtc = Date.parse(`${local}:00Z`);
  let guess = asUtc;
  for (let i = 0; i < 2; i += 1) { // twice: the offset at the guess may differ across a DST change
    guess = asUtc - (Date.parse(`${wallTime(guess, zone)}:00Z`) - guess);
  }
  return new Date(guess).toISOString();
}

export function mountSchedulePicker(errors, onChange) {
  const kinds = ["now", "once", "recurring"];
  const labels = { now: "Send now", once: "Once, at a set time", recurring: "Recurring (cron)" };
  const radios = kinds.map((k) => h("input", { type: "radio", name: "schedule-kind", value: k, checked: k === "now" }));
  const at = h("input", { type: "datetime-local", name: "at" });
  const zone = h("input", { name: "timezone", list: "tz-list", value: HERE, autocomplete: "off", spellcheck: false });
  const zoneBox = h("div", { class: "row", hidden: true },
    h("label", {}, "Timezone", zone, errors.slot("$.schedule.timezone")));
  const cron = h("input", { name: "cron", placeholder: "0 9 * * 1", class: "mono", autocomplete: "off",
    spellcheck: false });
  const endAt = h("input", { type: "datetime-local", name: "end_at" });
  const every = h("input", { type: "checkbox", name: "every_occurrence" });
  const nextRuns = h("ol", { class: "next-runs", "data-testid": "next-runs" });
  const cronError = errors.slot("$.schedule.cron");
  const onceBox = h("div", { class: "row", hidden: true },
    h("label", {}, "Send at", at, errors.slot("$.schedule.at")));
  const recurringBox = h("div", { class: "stack", hidden: true },
    h("div", { class: "row" }, h("label", {}, "Cron (minute hour day month weekday)", cron, cronError)),
    h("div", { class: "row" }, h("label", {}, "Ends (optional)", endAt, errors.slot("$.schedule.end_at"))),
    h("label", { class: "check" }, every, "Send every occurrence to everyone (otherwise a user gets only the first)"),
    h("div", {}, h("strong", {}, "Next runs"), nextRuns));
  const el = h("fieldset", { "data-testid": "schedule-picker" }, h("legend", {}, "Schedule"),
    h("div", { class: "schedule-kinds" }, kinds.map((k, i) => h("label", { class: "check" }, radios[i], labels[k]))),
    errors.slot("$.schedule"), onceBox, zoneBox, recurringBox,
    h("datalist", { id: "tz-list" }, ZONES.map((z) => h("option", { value: z }))));

  // An unknown zone cannot convert: send the wall time and let the server name the zone as the problem.
  const safeInstant = (local, z) => {
    try {
      return zonedInstant(local, z);
    } catch {
      return `${local}:00Z`;
    }
  };
  const kind = () => radios.find((r) => r.checked).value;

  function value() {
    const k = kind();
    if (k === "once") return { kind: "once", at: minutes(at.value), timezone: zone.value.trim() };
    if (k === "recurring") {
      return { kind: "recurring", cron: cron.value.trim(), timezone: zone.value.trim(),
        end_at: endAt.value ? safeInstant(minutes(endAt.value), zone.value.trim()) : null,
        every_occurrence: every.checked };
    }
    return { kind: "now" };
  }

  function set(s) {
    const k = s?.kind || "now";
    radios.forEach((r) => { r.checked = r.value === k; });
    if (k === "once") {
      at.value = minutes(s.at);
      zone.value = s.timezone || HERE;
    } else if (k === "recurring") {
      cron.value = s.cron || "";
      zone.value = s.timezone || HERE;
      endAt.value = s.end_at ? wallTime(s.end_at, zone.value) : "";
      every.checked = Boolean(s.every_occurrence);
    }
    changed();
  }

  let asked = 0;
  async function preview() {
    const s = value();
    if (s.kind !== "recurring" || !s.cron) {
      nextRuns.replaceChildren();
      return;
    }
    const mine = ++asked;
    try {
      const out = await api("/admin/api/broadcasts/cron-preview", { method: "POST",
        body: { cron: s.cron, timezone: s.timezone, count: 5 } });
      if (mine !== asked) return; // a newer keystroke asked again
      cronError.textContent = "";
      errors.slots.get("$.schedule.timezone").textContent = "";
      nextRuns.replaceChildren(...out.times.map((t) => h("li", { "data-testid": "next-run-time", dataset: { utc: t.utc } },
        `${t.local.replace("T", " ").slice(0, 16)} ${out.timezone}`, h("span", { class: "muted" }, ` · ${t.utc}`))));
      if (!out.meets_min_interval) {
        cronError.textContent = `Runs must be at least ${Math.round(out.min_interval_s / 60)} minutes apart; `
          + "this schedule would be refused.";
      }
    } catch (err) {
      if (mine !== asked) return;
      nextRuns.replaceChildren();
      // cron-preview names its own body ($.cron, $.timezone): show it by the composer's field
      const path = err.details?.path;
      if (path && path.startsWith("$.") && !path.startsWith("$.schedule")) {
        errors.show({ message: err.message, details: { path: `$.schedule.${path.slice(2)}` } });
      } else {
        cronError.textContent = err.message;
      }
    }
  }

  let timer = null;
  function changed() {
    const k = kind();
    onceBox.hidden = k !== "once";
    recurringBox.hidden = k !== "recurring";
    zoneBox.hidden = k === "now";
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
    onChange?.(value());
  }
  el.addEventListener("input", changed);
  el.addEventListener("change", changed);
  return { el, value, set, kind };
}
