// The audience builder: edits a segment filter (groups all/any of conditions field/op/value, as
// docs/broadcasts.md "Segments" describes), shows how many users it selects now (debounced
// POST /admin/api/segments/preview) and loads a saved segment's filter.
//
//   import { mountAudienceBuilder } from "/js/audience-builder.js";
//   const builder = mountAudienceBuilder(element, {
//     filter: { all: [] },            // initial filter (default: every user)
//     segmentId: null,                // or start from a saved segment (its filter is loaded)
//     onChange(filter, { segmentId }) {},  // every edit; segmentId while a loaded segment is unchanged
//     onPreview(result) {},           // {count, users} after each preview, or {error}
//     api,                            // (path, {method, body}) => Promise<data>; default /js/api.js
//     debounceMs: 400, showSaved: true,
//   });
//   builder.getFilter(); builder.setFilter(filter); builder.segmentId(); builder.refresh(); builder.destroy();
import { api as defaultApi } from "./api.js";
import { h } from "./dom.js";
import { userLabel } from "./format.js";

const STRING_OPS = ["eq", "neq", "contains", "in", "exists"];
// field -> label, section, kind, ops (the server's list: server/segments/filters.py FIELDS)
export const FIELDS = [
  { field: "external_id", label: "User id", section: "User", kind: "string", ops: STRING_OPS },
  { field: "name", label: "Name", section: "User", kind: "string", ops: STRING_OPS },
  { field: "email", label: "Email", section: "User", kind: "string", ops: STRING_OPS },
  { field: "anonymous", label: "Anonymous (no user id)", section: "User", kind: "bool", ops: ["eq"] },
  { field: "first_seen_at", label: "First seen", section: "Activity", kind: "time", ops: ["gt", "lt", "exists"] },
  { field: "last_seen_at", label: "Last seen", section: "Activity", kind: "time", ops: ["gt", "lt", "exists"] },
  { field: "has_open_conversation", label: "Has an open conversation", section: "Activity", kind: "bool", ops: ["eq"] },
  { field: "device.platform", label: "Platform", section: "Device", kind: "string", ops: ["eq", "neq", "in", "exists"] },
  { field: "device.os_version", label: "OS version", section: "Device", kind: "version", ops: ["eq", "neq", "gt", "lt", "exists"] },
  { field: "device.app_version", label: "App version", section: "Device", kind: "version", ops: ["eq", "neq", "gt", "lt", "exists"] },
  { field: "device.sdk_version", label: "SDK version", section: "Device", kind: "version", ops: ["eq", "neq", "gt", "lt", "exists"] },
  { field: "device.model", label: "Model", section: "Device", kind: "string", ops: STRING_OPS },
  { field: "custom", label: "Custom attribute…", section: "Custom", kind: "custom",
    ops: ["eq", "neq", "contains", "in", "gt", "lt", "exists"] },
];
const BY_FIELD = Object.fromEntries(FIELDS.map((f) => [f.field, f]));
const MAX_DEPTH = 4;

function opLabel(kind, op) {
  const labels = {
    time: { gt: "after", lt: "before" },
    version: { gt: "above", lt: "below" },
    custom: { gt: "greater than / after", lt: "less than / before" },
  };
  return labels[kind]?.[op] ?? { eq: "is", neq: "is not", contains: "contains", in: "is one of" }[op] ?? op;
}

function specOf(field) {
  return BY_FIELD[field.startsWith("custom.") ? "custom" : field] || null;
}

// -- model: the filter JSON plus what only the editor needs (custom name, value type, time mode) --

function toModel(node) {
  if (node && (Array.isArray(node.all) || Array.isArray(node.any))) {
    const kind = Array.isArray(node.all) ? "all" : "any";
    return { kind, items: node[kind].map(toModel) };
  }
  const c = { field: node?.field ?? "name", op: node?.op ?? "eq", value: node?.value ?? "", custom: "", type: "text" };
  if (c.field.startsWith("custom.")) c.custom = c.field.slice(7);
  const v = c.value;
  if (v && typeof v === "object" && !Array.isArray(v)) c.type = "days";
  else if ((typeof v === "boolean" && c.op !== "exists") || (Array.isArray(v) && typeof v[0] === "boolean")) c.type = "bool";
  else if (typeof v === "number" || (Array.isArray(v) && typeof v[0] === "number")) c.type = "number";
  else if (typeof v === "string" && (specOf(c.field)?.kind === "time" || ["gt", "lt"].includes(c.op))) c.type = "date";
  return c;
}

function toJSON(node) {
  if (node.items) return { [node.kind]: node.items.map(toJSON) };
  return { field: node.field === "custom" || node.field.startsWith("custom.") ? `custom.${node.custom}` : node.field,
    op: node.op, value: node.value };
}

const SCALAR_OPS = ["eq", "neq", "contains"];

// A fresh value (and value type) for the condition's field and op.
function resetValue(c, spec) {
  if (spec.kind === "custom") {
    if (["gt", "lt"].includes(c.op)) c.type = ["number", "days", "date"].includes(c.type) ? c.type : "number";
    else if (c.op === "contains" || !["text", "number", "bool"].includes(c.type)) c.type = "text";
  } else {
    c.type = spec.kind === "time" ? (c.type === "date" ? "date" : "days") : spec.kind === "bool" ? "bool" : "text";
  }
  if (c.op === "in") c.value = [];
  else if (c.type === "days") c.value = { days_ago: 7 };
  else if (c.type === "bool") c.value = true;
  else c.value = "";
}

function defaultCondition() {
  return { field: "name", op: "eq", value: "", custom: "", type: "text" };
}

// A value typed into the box, as the condition's JSON value.
function parseValue(text, type) {
  if (type === "number") return text.trim() === "" || Number.isNaN(Number(text)) ? text : Number(text);
  if (type === "bool") return text.trim() === "true";
  return text;
}

function localInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// -- the editor -----------------------------------------------------------------------------------

export function mountAudienceBuilder(element, options = {}) {
  const callApi = options.api || defaultApi;
  const debounceMs = options.debounceMs ?? 400;
  let root = toModel(options.filter || { all: [] });
  let loadedSegment = null; // {id, json}: the saved segment the editor still shows unchanged
  let timer = null;
  let sequence = 0;
  let destroyed = false;
  const nodesByPath = new Map(); // "$.filter.all[0]" -> the element drawing that node (for 422 paths)

  const tree = h("div", { class: "ab-tree", "data-testid": "audience-tree" });
  const count = h("div", { class: "ab-count", "data-testid": "audience-count", "aria-live": "polite" }, "…");
  const sample = h("ul", { class: "ab-sample muted", "data-testid": "audience-sample" });
  const error = h("div", { class: "ab-error", role: "alert", "data-testid": "audience-error", hidden: true });
  const saved = h("select", { "aria-label": "Load a saved segment", "data-testid": "audience-segment" },
    h("option", { value: "" }, "Load a saved segment…"));
  const savedRow = h("div", { class: "ab-saved", hidden: options.showSaved === false }, saved);
  element.replaceChildren(h("div", { class: "audience-builder" }, savedRow, tree, error,
    h("div", { class: "ab-preview" }, count, sample)));
  injectStyle();

  function segmentId() {
    return loadedSegment && JSON.stringify(toJSON(root)) === loadedSegment.json ? loadedSegment.id : null;
  }

  function changed() {
    if (destroyed) return;
    const filter = toJSON(root);
    if (!segmentId()) saved.value = "";
    options.onChange?.(filter, { segmentId: segmentId() });
    schedulePreview();
  }

  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, debounceMs);
  }

  async function preview() {
    const mine = ++sequence;
    count.textContent = "Counting…";
    try {
      const result = await callApi("/admin/api/segments/preview", { method: "POST", body: { filter: toJSON(root) } });
      if (mine !== sequence || destroyed) return; // an older answer arriving after a newer question
      showError(null);
      count.textContent = result.count === 1 ? "1 user matches" : `${result.count.toLocaleString()} users match`;
      count.dataset.count = String(result.count);
      const more = result.count > 5 ? [h("li", {}, `and ${(result.count - 5).toLocaleString()} more`)] : [];
      sample.replaceChildren(...result.users.slice(0, 5).map((u) => h("li", {}, userLabel(u))), ...more);
      options.onPreview?.(result);
    } catch (err) {
      if (mine !== sequence || destroyed) return;
      count.textContent = "—";
      delete count.dataset.count;
      sample.replaceChildren();
      showError(err);
      options.onPreview?.({ error: err });
    }
  }

  function showError(err) {
    tree.querySelectorAll(".ab-invalid").forEach((el) => el.classList.remove("ab-invalid"));
    if (!err) {
      error.hidden = true;
      return;
    }
    const path = err.details?.path;
    error.textContent = err.details?.reason || err.message;
    error.hidden = false;
    if (!path) return;
    // The deepest drawn node the path starts with: a condition, or the group holding the bad item.
    const hit = [...nodesByPath.keys()].filter((p) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`))
      .sort((a, b) => b.length - a.length)[0];
    nodesByPath.get(hit)?.classList.add("ab-invalid");
  }

  function render() {
    nodesByPath.clear();
    tree.replaceChildren(groupView(root, null, "$.filter", 1));
  }

  function groupView(group, parent, path, depth) {
    const items = h("div", { class: "ab-items" });
    group.items.forEach((item, i) => {
      const itemPath = `${path}.${group.kind}[${i}]`;
      items.append(item.items ? groupView(item, group, itemPath, depth + 1) : conditionView(item, group, itemPath));
    });
    if (!group.items.length) {
      items.append(h("p", { class: "muted ab-empty" }, group.kind === "all" ? "No conditions: every user." : "No conditions: nobody."));
    }
    const kind = h("select", { "aria-label": "Match", "data-testid": "group-kind",
      onchange: () => { group.kind = kind.value; render(); changed(); } },
    h("option", { value: "all", selected: group.kind === "all" }, "all"),
    h("option", { value: "any", selected: group.kind === "any" }, "any"));
    const el = h("fieldset", { class: `ab-group${parent ? " nested" : ""}`, "data-testid": "audience-group", dataset: { path } },
      h("legend", {}, "Users matching ", kind, " of:"),
      items,
      h("div", { class: "ab-actions" },
        h("button", { class: "btn small", type: "button", "data-testid": "add-condition",
          onclick: () => { group.items.push(defaultCondition()); render(); changed(); } }, "+ Condition"),
        depth < MAX_DEPTH ? h("button", { class: "btn small", type: "button", "data-testid": "add-group",
          onclick: () => { group.items.push({ kind: group.kind === "all" ? "any" : "all", items: [defaultCondition()] }); render(); changed(); } },
        "+ Group") : null,
        parent ? h("button", { class: "btn small danger", type: "button", "data-testid": "remove-group",
          onclick: () => { parent.items.splice(parent.items.indexOf(group), 1); render(); changed(); } }, "Remove group") : null));
    nodesByPath.set(path, el);
    return el;
  }

  function conditionView(c, parent, path) {
    const spec = specOf(c.field) || BY_FIELD.name;
    const fieldSelect = h("select", { "aria-label": "Field", "data-testid": "condition-field", onchange: () => {
      const next = BY_FIELD[fieldSelect.value];
      c.field = next.field;
      c.op = next.ops[0];
      c.type = "";
      resetValue(c, next);
      render();
      changed();
    } }, [...new Set(FIELDS.map((f) => f.section))].map((section) => h("optgroup", { label: section },
      FIELDS.filter((f) => f.section === section).map((f) => h("option", { value: f.field, selected: f === spec }, f.label)))));
    const custom = spec.kind === "custom"
      ? h("input", { value: c.custom, placeholder: "attribute name", maxlength: "100", "aria-label": "Attribute name",
        "data-testid": "condition-custom", oninput: () => { c.custom = custom.value; changed(); } })
      : null;
    // `exists` is shown as two choices: "is set" and "is not set".
    const opSelect = h("select", { "aria-label": "Operator", "data-testid": "condition-op", onchange: () => {
      const [op, set] = opSelect.value.split(":");
      const keep = SCALAR_OPS.includes(c.op) && SCALAR_OPS.includes(op) && !(op === "contains" && c.type !== "text");
      c.op = op;
      if (op === "exists") c.value = set === "true";
      else if (!keep) resetValue(c, spec);
      render();
      changed();
    } }, spec.ops.flatMap((op) => op === "exists"
      ? [h("option", { value: "exists:true", selected: c.op === "exists" && c.value === true }, "is set"),
        h("option", { value: "exists:false", selected: c.op === "exists" && c.value === false }, "is not set")]
      : [h("option", { value: op, selected: c.op === op }, opLabel(spec.kind, op))]));
    const el = h("div", { class: "ab-condition", "data-testid": "audience-condition", dataset: { path } },
      fieldSelect, custom, opSelect, c.op === "exists" ? null : valueView(c, spec),
      h("button", { class: "btn small ghost", type: "button", "aria-label": "Remove condition", "data-testid": "remove-condition",
        onclick: () => { parent.items.splice(parent.items.indexOf(c), 1); render(); changed(); } }, "✕"));
    nodesByPath.set(path, el);
    return el;
  }

  function valueView(c, spec) {
    const typeSelect = (choices) => {
      const select = h("select", { "aria-label": "Value type", "data-testid": "condition-type", onchange: () => {
        c.type = select.value;
        c.value = c.op === "in" ? [] : c.type === "days" ? { days_ago: 7 } : c.type === "bool" ? true : "";
        render();
        changed();
      } }, choices.map(([value, label]) => h("option", { value, selected: c.type === value }, label)));
      return select;
    };
    const box = (attrs, read) => {
      const input = h("input", { "aria-label": "Value", "data-testid": "condition-value", ...attrs,
        oninput: () => { c.value = read(input.value); changed(); } });
      return input;
    };
    const typeChoice = spec.kind === "custom" && ["eq", "neq", "in"].includes(c.op) ? typeSelect(VALUE_TYPES) : null;
    if (c.op === "in") {
      const text = Array.isArray(c.value) ? c.value.join(", ") : "";
      return h("span", { class: "ab-value" }, typeChoice, box({ value: text, placeholder: "a, b, c" },
        (t) => t.split(",").map((s) => s.trim()).filter(Boolean).map((s) => parseValue(s, c.type))));
    }
    if (spec.kind === "bool" || c.type === "bool") {
      const select = h("select", { "aria-label": "Value", "data-testid": "condition-value",
        onchange: () => { c.value = select.value === "true"; changed(); } },
      h("option", { value: "true", selected: c.value === true }, spec.kind === "bool" ? "yes" : "true"),
      h("option", { value: "false", selected: c.value === false }, spec.kind === "bool" ? "no" : "false"));
      return spec.kind === "custom" ? h("span", { class: "ab-value" }, typeChoice, select) : select;
    }
    const timeInput = () => (c.type === "days"
      ? h("span", { class: "ab-value" }, box({ type: "number", min: "0", max: "36500", value: c.value?.days_ago ?? "",
        style: "width:6rem" }, (t) => ({ days_ago: t === "" ? t : Number(t) })), " days ago")
      : box({ type: "datetime-local", value: typeof c.value === "string" ? localInput(c.value) : "" },
        // The browser's local time, sent as the instant it names.
        (t) => (t ? new Date(t).toISOString() : "")));
    if (spec.kind === "time") {
      return h("span", { class: "ab-value" }, typeSelect([["days", "days ago"], ["date", "a date"]]), timeInput());
    }
    if (spec.kind === "custom" && ["gt", "lt"].includes(c.op)) {
      return h("span", { class: "ab-value" }, typeSelect([["number", "number"], ["days", "days ago"], ["date", "date"]]),
        c.type === "number" ? box({ type: "number", step: "any", value: c.value ?? "" }, (t) => parseValue(t, "number"))
          : timeInput());
    }
    const placeholder = spec.kind === "version" ? "e.g. 17.4.1" : "";
    return h("span", { class: "ab-value" }, typeChoice,
      box({ value: c.value ?? "", placeholder, type: c.type === "number" ? "number" : "text", step: "any" },
        (t) => parseValue(t, c.type)));
  }

  async function loadSegments() {
    if (options.showSaved === false) return;
    try {
      const { segments } = await callApi("/admin/api/segments");
      saved.replaceChildren(h("option", { value: "" }, segments.length ? "Load a saved segment…" : "No saved segments"),
        ...segments.map((s) => h("option", { value: s.id, selected: s.id === loadedSegment?.id }, s.name)));
      saved.onchange = () => {
        const picked = segments.find((s) => s.id === saved.value);
        if (!picked) return;
        root = toModel(picked.filter);
        loadedSegment = { id: picked.id, json: JSON.stringify(toJSON(root)) };
        render();
        changed();
      };
      if (options.segmentId && !loadedSegment) {
        const picked = segments.find((s) => s.id === options.segmentId);
        if (picked) {
          saved.value = picked.id;
          saved.onchange();
        }
      }
    } catch {
      savedRow.hidden = true; // a role that cannot read segments still edits a filter
    }
  }

  render();
  loadSegments();
  schedulePreview();
  return {
    getFilter: () => toJSON(root),
    segmentId,
    setFilter(filter) {
      root = toModel(filter);
      render();
      changed();
    },
    refresh: () => { loadSegments(); preview(); },
    destroy() {
      destroyed = true;
      clearTimeout(timer);
      element.replaceChildren();
    },
  };
}

const VALUE_TYPES = [["text", "text"], ["number", "number"], ["bool", "true/false"]];

function injectStyle() {
  if (document.getElementById("audience-builder-style")) return;
  document.head.append(h("style", { id: "audience-builder-style" }, `
.audience-builder { display: flex; flex-direction: column; gap: .75rem; }
.ab-group { border: 1px solid var(--line, #e3e6ee); border-radius: 8px; padding: .6rem .8rem; margin: 0; }
.ab-group.nested { background: rgba(59, 91, 219, .03); }
.ab-group legend { padding: 0 .3rem; }
.ab-items { display: flex; flex-direction: column; gap: .45rem; margin-bottom: .5rem; }
.ab-condition, .ab-value, .ab-actions { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; }
.ab-empty { margin: 0; }
.ab-invalid { outline: 2px solid var(--danger, #c92a2a); outline-offset: 2px; border-radius: 6px; }
.ab-error { color: var(--danger, #c92a2a); }
.ab-count { font-weight: 600; }
.ab-sample { margin: .25rem 0 0; padding-left: 1.1rem; }
`));
}
