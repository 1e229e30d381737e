// Modal dialogs of the settings sections (native <dialog>): a form asking for values, and the
// show-once dialog of a secret (an API key, an invitation link) that is never shown again.
import { h } from "../dom.js";

// Opens a modal; resolves with the form's values on submit, null when cancelled.
export function ask(title, fields, submitLabel, id) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog", class: "stack" }, h("h3", {}, title), fields,
      h("div", { class: "inline-form" },
        h("button", { class: "btn primary", type: "submit", value: "ok" }, submitLabel),
        h("button", { class: "btn", type: "button", onclick: () => dialog.close("cancel") }, "Cancel")));
    const dialog = h("dialog", { class: "card", id }, form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = Object.fromEntries(new FormData(form));
      values.__checked = [...form.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
      dialog.close("ok");
      resolve(values);
    });
    dialog.addEventListener("close", () => { dialog.remove(); resolve(null); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Shows a value once, with a copy button; closing it forgets the value.
export function showOnce(title, explanation, value, testid) {
  const input = h("input", { readonly: true, class: "mono", value, "data-testid": testid });
  const dialog = h("dialog", { class: "card show-once", "aria-label": title },
    h("h3", {}, title), h("p", {}, explanation), input,
    h("div", { class: "inline-form" },
      h("button", { class: "btn", type: "button", onclick: async () => {
        input.select();
        try { await navigator.clipboard.writeText(value); } catch { document.execCommand?.("copy"); }
      } }, "Copy"),
      h("button", { class: "btn primary", type: "button", "data-testid": "close-show-once",
        onclick: () => dialog.close() }, "I have copied it")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  input.select();
}
