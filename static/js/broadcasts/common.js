// Pieces the three broadcast pages share: status badges, progress bars, rates, a confirm dialog,
// and 422 errors put beside the field their `details.path` names.
import { h } from "../dom.js";

export function statusBadge(status) {
  return h("span", { class: `status-badge ${status}`, "data-testid": "broadcast-status" }, status);
}

// The wall-clock "YYYY-MM-DDTHH:MM" of an instant in `zone`.
export function wallTime(instant, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", { timeZone: zone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
    .formatToParts(new Date(instant)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

// A full schedule (one broadcast) or only its kind (a list item's `schedule_kind`).
export function scheduleText(schedule) {
  const s = typeof schedule === "string" ? { kind: schedule } : schedule || {};
  if (s.kind === "once") return s.at ? `once, ${s.at.replace("T", " ")} ${s.timezone}` : "once, at a set time";
  if (s.kind === "recurring") {
    const until = s.end_at ? ` until ${wallTime(s.end_at, s.timezone).replace("T", " ")}` : "";
    return s.cron ? `recurring "${s.cron}" ${s.timezone}${until}` : "recurring";
  }
  return "one-off, sent now";
}

export function percent(part, whole) {
  if (!whole) return "0%";
  return `${Math.round((100 * part) / whole)}%`;
}

// A bar with "sent / targeted"; update(progress) moves it, so a socket event can feed it.
export function progressBar(testid = "progress") {
  const fill = h("div", { class: "fill", style: "width:0%" });
  const label = h("span", { class: "label" });
  const el = h("div", { class: "progress", "data-testid": testid, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100" }, h("div", { class: "bar" }, fill), label);
  // `idle`: no run to show (a draft), said in words rather than an empty bar.
  function update({ sent = 0, targeted = 0, status = null, idle = null } = {}) {
    const done = ["completed", "cancelled", "failed"].includes(status);
    const pct = targeted ? Math.min(100, Math.round((100 * sent) / targeted)) : done ? 100 : 0;
    fill.style.width = `${pct}%`;
    el.setAttribute("aria-valuenow", String(pct));
    el.dataset.percent = String(pct);
    if (idle) label.textContent = idle;
    else if (targeted) label.textContent = `${sent} / ${targeted} · ${pct}%`;
    else label.textContent = done ? "nobody to send to" : "preparing…";
  }
  return { el, update };
}

// The current run's progress of a broadcast (its `current_run`), for a bar.
export function currentProgress(b) {
  const run = b.current_run;
  return run ? { run_id: run.id, targeted: run.targeted, sent: run.sent, status: run.status } : null;
}

export function rates(stats) {
  const s = stats || {};
  const base = s.sent || 0;
  return `${percent(s.delivered || 0, base)} delivered · ${percent(s.read || 0, base)} read · `
    + `${percent(s.clicked || 0, base)} clicked`;
}

// A modal asking yes/no with a visible sentence (a person reads the recipient count in it).
export function confirmDialog(text, yesLabel, noLabel = "Cancel") {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "card", "data-testid": "confirm-dialog" },
      h("p", { "data-testid": "confirm-text" }, text),
      h("div", { class: "inline-form" },
        h("button", { class: "btn primary", type: "button", onclick: () => { dialog.close(); resolve(true); } },
          yesLabel),
        h("button", { class: "btn", type: "button", onclick: () => dialog.close() }, noLabel)));
    dialog.addEventListener("close", () => { dialog.remove(); resolve(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Error slots by JSON path prefix: a 422 at `$.schedule.cron` lands in the slot of `$.schedule.cron`,
// one at `$.audience.filter.all[1].value` in the slot of `$.audience`; unknown paths in the fallback.
export class FieldErrors {
  constructor(fallback) {
    this.slots = new Map();
    this.fallback = fallback;
  }

  slot(path, testid) {
    const el = h("span", { class: "field-error", role: "alert", "data-error-for": path,
      "data-testid": testid || `error-${path.replace(/^\$\./, "").replace(/[^a-z0-9]+/gi, "-")}` });
    this.slots.set(path, el);
    return el;
  }

  clear() {
    for (const el of this.slots.values()) el.textContent = "";
    this.fallback.replaceChildren();
  }

  // Shows an API error; returns the slot that took it (null when it went to the fallback).
  show(err) {
    const path = err?.details?.path || (Array.isArray(err?.details) ? err.details[0]?.path : null);
    if (path) {
      let best = null;
      for (const key of this.slots.keys()) {
        if ((path === key || path.startsWith(key + ".") || path.startsWith(key + "["))
            && (!best || key.length > best.length)) best = key;
      }
      if (best) {
        const el = this.slots.get(best);
        el.textContent = err.message;
        el.scrollIntoView?.({ block: "center" });
        return el;
      }
    }
    this.fallback.replaceChildren(h("div", { class: "notice error", role: "alert" }, err.message));
    return null;
  }
}
