// Shared by every settings section: a section's frame and its error reporting.
import { h, notice } from "../dom.js";

// Fills a section: title, description, a status line (returned) and the body.
export function section(el, title, description, ...body) {
  const status = h("div", { class: "status", "aria-live": "polite" });
  el.replaceChildren(h("h2", {}, title), h("p", { class: "muted" }, description), status, ...body);
  return status;
}

// Runs an action; a failure is shown in the section's status line.
export async function guarded(status, action) {
  try {
    await action();
  } catch (err) {
    notice(status, err.message);
  }
}
