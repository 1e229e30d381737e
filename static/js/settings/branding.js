// Branding: the messenger's colour, launcher side, greeting, team intro and logo, with a live preview
// that follows the form as you type. SDKs read what is saved from GET /v1/app/config.
import { api } from "../api.js";
import { h, notice } from "../dom.js";
import { can } from "../shell.js";
import { guarded, section } from "./common.js";

const HEX = /^#[0-9a-fA-F]{6}$/;
const MAX_LOGO = 256 * 1024;

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export async function renderBranding(el, me) {
  const b = await api("/admin/api/branding");
  const writable = can(me, "settings.write");
  const workspaceName = document.querySelector("[data-testid=workspace-name]")?.textContent || me.app.name;
  const picker = h("input", { type: "color", value: b.color.toLowerCase(), "aria-label": "Pick a colour",
    disabled: !writable });
  const color = h("input", { name: "color", value: b.color, maxlength: "7", pattern: "#[0-9A-Fa-f]{6}",
    required: true, class: "mono", disabled: !writable });
  const position = h("select", { name: "launcher_position", disabled: !writable },
    ["right", "left"].map((p) => h("option", { value: p, selected: p === b.launcher_position }, p)));
  const greeting = h("textarea", { name: "greeting", maxlength: "280", rows: "2", disabled: !writable }, b.greeting);
  const intro = h("textarea", { name: "team_intro", maxlength: "500", rows: "3", disabled: !writable }, b.team_intro);
  const logo = h("input", { type: "file", name: "logo", accept: "image/png,image/jpeg,image/webp", disabled: !writable });
  const removeLogo = h("input", { type: "checkbox", name: "remove_logo", disabled: !writable || !b.logo });
  const form = h("form", { class: "stack narrow", id: "branding-form" },
    h("label", {}, "Colour", h("span", { class: "color-row" }, picker, color)),
    h("label", {}, "Launcher position", position),
    h("label", {}, "Greeting", greeting),
    h("label", {}, "Team intro", intro),
    h("label", {}, "Logo (PNG, JPEG or WebP, 256 KB at most)", logo),
    b.logo ? h("label", { class: "check" }, removeLogo, "Remove the current logo") : null,
    writable ? h("button", { class: "btn primary", type: "submit" }, "Save") : null);

  // The preview: a messenger window and its launcher, redrawn from the form on every change.
  const pvLogo = h("img", { alt: "", class: "pv-logo", "data-testid": "preview-logo" });
  const pvHeader = h("div", { class: "pv-header", "data-testid": "preview-header" }, pvLogo,
    h("strong", {}, workspaceName));
  const pvGreeting = h("p", { class: "pv-greeting", "data-testid": "preview-greeting" });
  const pvIntro = h("p", { class: "pv-intro", "data-testid": "preview-intro" });
  const pvLauncher = h("div", { class: "pv-launcher", "data-testid": "preview-launcher", "aria-hidden": "true" });
  const preview = h("div", { class: "messenger-preview", "data-testid": "messenger-preview" },
    h("div", { class: "pv-window" }, pvHeader, h("div", { class: "pv-body" }, pvGreeting, pvIntro)), pvLauncher);
  let logoSrc = b.logo ? b.logo.url : null;
  const draw = () => {
    const c = HEX.test(color.value) ? color.value : b.color;
    pvHeader.style.background = c;
    pvLauncher.style.background = c;
    preview.dataset.position = position.value;
    pvGreeting.textContent = greeting.value || "Hi there 👋";
    pvIntro.textContent = intro.value;
    pvLogo.hidden = !logoSrc || removeLogo.checked;
    if (logoSrc) pvLogo.src = logoSrc;
  };
  picker.addEventListener("input", () => { color.value = picker.value.toUpperCase(); draw(); });
  color.addEventListener("input", () => { if (HEX.test(color.value)) picker.value = color.value.toLowerCase(); draw(); });
  for (const input of [position, greeting, intro, removeLogo]) input.addEventListener("input", draw);
  position.addEventListener("change", draw);
  logo.addEventListener("change", () => {
    const file = logo.files[0];
    if (file) logoSrc = URL.createObjectURL(file);
    draw();
  });

  const status = section(el, "Branding", "How the messenger looks in your apps. The preview follows as you type.",
    h("div", { class: "branding-layout" }, form, preview));
  draw();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(status, async () => {
      const body = { color: color.value.toUpperCase(), launcher_position: position.value, greeting: greeting.value,
        team_intro: intro.value };
      const file = logo.files[0];
      if (file) {
        if (file.size > MAX_LOGO) throw new Error("The logo is over 256 KB.");
        body.logo = await readAsDataUrl(file);
      } else if (removeLogo.checked) {
        body.logo = null;
      }
      await api("/admin/api/branding", { method: "PATCH", body });
      await renderBranding(el, me);
      notice(el.querySelector(".status"), "Saved.", "ok");
    });
  });
}
