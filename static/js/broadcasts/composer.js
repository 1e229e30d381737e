// The broadcast composer: message with a personalised preview, audience with a live count, schedule
// with the server's next run times, rate; save a draft, schedule it or send it now. `?id=` edits a draft.
import { api } from "../api.js";
import { h, notice } from "../dom.js";
import { userLabel } from "../format.js";
import { can } from "../shell.js";
import { mountAudience } from "./audience.js";
import { confirmDialog, FieldErrors } from "./common.js";
import { mountSchedulePicker } from "./schedule-picker.js";

const PLACEHOLDER = /\{\{\s*user\.([a-z_]+)(?:\.([^|}\s]+))?\s*(?:\|([^}]*))?\}\}/g;

// What a recipient would read: the same placeholders the server fills at send time.
export function personalise(text, user) {
  const u = user || {};
  return text.replace(PLACEHOLDER, (whole, field, sub, fallback = "") => {
    let v;
    if (field === "name") v = u.name;
    else if (field === "email") v = u.email;
    else if (field === "external_id") v = u.user_id ?? u.external_id;
    else if (field === "custom" && sub) v = (u.attributes || u.custom || {})[sub];
    else return whole;
    return v === null || v === undefined || v === "" ? fallback : String(v);
  });
}

export async function mountComposer(main, me) {
  const editing = new URLSearchParams(location.search).get("id");
  let id = editing;
  const top = h("div", { "aria-live": "polite" });
  const errors = new FieldErrors(top);
  if (!can(me, "broadcasts.write")) {
    notice(main, "You can read broadcasts but not write them; ask an admin for the broadcasts.write permission.");
    return;
  }

  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "Spring release" });
  const text = h("textarea", { name: "text", rows: 6, maxlength: 5000,
    placeholder: "Hi {{user.name|there}}, …" });
  const sender = h("select", { name: "sender" }, h("option", { value: me.admin.id }, me.admin.name || me.admin.email));
  const buttonLabel = h("input", { name: "button_label", maxlength: 40, placeholder: "See what's new" });
  const buttonUrl = h("input", { name: "button_url", type: "url", placeholder: "https://example.com/new" });
  const rate = h("input", { name: "rate_per_s", type: "number", min: 1, step: 1, value: 100 });
  const count = h("strong", { "data-testid": "recipient-count" }, "…");
  const audienceBox = h("div", { "data-testid": "audience-builder" });
  const schedule = mountSchedulePicker(errors, () => syncButtons());

  const sampleSelect = h("select", { name: "sample", "aria-label": "Preview as" });
  const pvSender = h("div", { class: "pv-sender" });
  const pvText = h("div", { "data-testid": "preview-text" });
  const pvButton = h("span", { class: "preview-button", "data-testid": "preview-button", hidden: true });
  let samples = [];

  const save = h("button", { class: "btn", type: "button", "data-testid": "save-draft" }, "Save draft");
  const scheduleBtn = h("button", { class: "btn primary", type: "button", "data-testid": "schedule" }, "Schedule");
  const sendNow = h("button", { class: "btn primary", type: "button", "data-testid": "send-now" }, "Send now");

  const form = h("div", { class: "stack" },
    h("section", { class: "card stack" },
      h("label", {}, "Name", name, errors.slot("$.name")),
      h("label", {}, "Message", text, errors.slot("$.message.text"),
        h("span", { class: "muted" }, "Placeholders: {{user.name|fallback}}, {{user.email}}, {{user.external_id}}, "
          + "{{user.custom.plan}}")),
      h("div", { class: "row" },
        h("label", {}, "Sender", sender, errors.slot("$.message.sender_admin_id")),
        h("label", {}, "Button label (optional)", buttonLabel, errors.slot("$.message.button_label")),
        h("label", {}, "Button URL", buttonUrl, errors.slot("$.message.button_url")))),
    h("section", { class: "card stack" },
      h("fieldset", {}, h("legend", {}, "Audience"), audienceBox, errors.slot("$.audience"),
        h("div", {}, "Recipients now: ", count)),
      schedule.el,
      h("label", { style: "max-width:14rem" }, "Rate (recipients per second)", rate, errors.slot("$.rate_per_s"))),
    top,
    h("div", { class: "actions-bar" }, save, scheduleBtn, sendNow));
  const preview = h("aside", { class: "card stack", "data-testid": "message-preview" },
    h("h2", {}, "Preview"), h("label", {}, "As", sampleSelect),
    h("div", { class: "preview-bubble" }, pvSender, pvText, pvButton));
  main.append(h("div", { class: "composer" }, form, preview));

  let recipients = null;
  function renderPreview() {
    const user = samples[Number(sampleSelect.value) || 0] || null;
    pvSender.textContent = sender.selectedOptions[0]?.textContent || "";
    pvText.textContent = personalise(text.value, user) || "Your message appears here.";
    pvButton.textContent = buttonLabel.value;
    pvButton.hidden = !buttonLabel.value.trim();
  }
  function setSamples(users) {
    const before = samples[Number(sampleSelect.value) || 0]?.id;
    samples = users.slice(0, 20);
    sampleSelect.replaceChildren(...(samples.length ? samples.map((u, i) => h("option", { value: i, selected: u.id === before },
      userLabel(u))) : [h("option", { value: 0 }, "a user with no name (fallbacks)")]));
    renderPreview();
  }
  // "Send now" of a recurring draft sends the first run now and keeps the schedule; "Schedule" of a
  // "now" draft would be the same as sending it, so it is not offered.
  function syncButtons() {
    scheduleBtn.hidden = schedule.kind() === "now";
  }
  for (const el of [text, sender, buttonLabel, sampleSelect]) el.addEventListener("input", renderPreview);
  sampleSelect.addEventListener("change", renderPreview);

  // Teammates as senders when the caller may list them; otherwise only themselves.
  await api("/admin/api/team").then(({ members }) => {
    const others = members.filter((m) => m.status === "active" && m.id !== me.admin.id);
    sender.append(...others.map((m) => h("option", { value: m.id }, m.name || m.email)));
  }).catch(() => null);
  api("/admin/api/users?limit=5").then((p) => { if (!samples.length) setSamples(p.users || []); }).catch(() => null);

  let draft = null;
  if (editing) {
    const b = await api(`/admin/api/broadcasts/${editing}`);
    draft = b;
    if (b.status !== "draft") {
      notice(top, `This broadcast is ${b.status}; only drafts are edited. Duplicate it to start a new draft.`);
    }
    name.value = b.name;
    text.value = b.message.text;
    if (![...sender.options].some((o) => o.value === b.message.sender_admin_id) && b.message.sender_admin_id) {
      sender.append(h("option", { value: b.message.sender_admin_id }, "another teammate"));
    }
    sender.value = b.message.sender_admin_id || me.admin.id;
    buttonLabel.value = b.message.button_label || "";
    buttonUrl.value = b.message.button_url || "";
    rate.value = b.rate_per_s;
    schedule.set(b.schedule);
  }
  const audience = mountAudience(audienceBox, { audience: draft?.audience, onCount: ({ count: n, users }) => {
    recipients = n;
    count.textContent = n === null || n === undefined ? "—" : String(n);
    if (users?.length) setSamples(users);
  } });
  if (draft && draft.status !== "draft") {
    form.querySelectorAll("input, textarea, select, button").forEach((el) => { el.disabled = true; });
  }
  syncButtons();
  renderPreview();

  function body() {
    const message = { text: text.value, sender_admin_id: sender.value };
    if (buttonUrl.value.trim() || buttonLabel.value.trim()) {
      message.button_url = buttonUrl.value.trim();
      message.button_label = buttonLabel.value.trim();
    }
    const out = { name: name.value.trim(), message, audience: audience.value(), schedule: schedule.value() };
    if (rate.value.trim()) out.rate_per_s = Number(rate.value); // empty: the server's default rate
    return out;
  }

  async function saveDraft() {
    const payload = body();
    const saved = id
      ? await api(`/admin/api/broadcasts/${id}`, { method: "PATCH", body: payload })
      : await api("/admin/api/broadcasts", { method: "POST", body: payload });
    id = saved.id;
    history.replaceState(null, "", `/broadcast-new.html?id=${id}`);
    return saved;
  }

  async function run(action) {
    errors.clear();
    form.querySelectorAll(".actions-bar .btn").forEach((b) => { b.disabled = true; });
    try {
      await action();
    } catch (err) {
      if (err.status === 422 || err.details) errors.show(err);
      else notice(top, err.message);
    } finally {
      form.querySelectorAll(".actions-bar .btn").forEach((b) => { b.disabled = false; });
    }
  }

  const who = () => (recipients === null ? "this audience" : `${recipients} recipient${recipients === 1 ? "" : "s"}`);
  save.addEventListener("click", () => run(async () => {
    await saveDraft();
    notice(top, "Draft saved.", "ok");
  }));
  sendNow.addEventListener("click", () => run(async () => {
    await saveDraft();
    const then = schedule.kind() === "recurring" ? " Its schedule carries on after this run." : "";
    if (!(await confirmDialog(`Send "${name.value.trim()}" to ${who()} now?${then}`, "Send now"))) {
      notice(top, "Saved as a draft; nothing was sent.", "ok");
      return;
    }
    await api(`/admin/api/broadcasts/${id}/send-now`, { method: "POST" });
    location.href = `/broadcast-analytics.html?id=${id}`;
  }));
  scheduleBtn.addEventListener("click", () => run(async () => {
    await saveDraft();
    const s = schedule.value();
    const when = s.kind === "once" ? `at ${s.at.replace("T", " ")} ${s.timezone}` : `on "${s.cron}" (${s.timezone})`;
    if (!(await confirmDialog(`Schedule "${name.value.trim()}" for ${who()} ${when}?`, "Schedule"))) {
      notice(top, "Saved as a draft; not scheduled.", "ok");
      return;
    }
    await api(`/admin/api/broadcasts/${id}/schedule`, { method: "POST" });
    location.href = "/broadcasts.html";
  }));
}
