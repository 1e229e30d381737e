// The composer's audience: the shared audience builder (/js/audience-builder.js: a saved segment or a
// filter, with a live count), or a plain picker with the same interface where that module is missing,
// plus "Save as segment". The composer sees value() -> {segment_id} | {filter} and
// onCount({count, users}) after every preview (count null when the filter is refused).
import { api } from "../api.js";
import { h, notice } from "../dom.js";

async function builderModule() {
  try {
    const mod = await import("/js/audience-builder.js");
    return mod.mountAudienceBuilder ? mod : null;
  } catch {
    return null;
  }
}

export async function mountAudience(container, { audience, onCount }) {
  const shared = await builderModule();
  const mount = shared ? shared.mountAudienceBuilder : mountPlainPicker;
  const box = h("div");
  const segmentName = h("input", { name: "segment_name", placeholder: "Segment name", maxlength: 200,
    "aria-label": "Segment name" });
  const saveSegment = h("button", { class: "btn small", type: "button", "data-testid": "save-segment" },
    "Save as segment");
  const status = h("div", { "aria-live": "polite" });
  container.replaceChildren(box, h("div", { class: "inline-form" }, segmentName, saveSegment), status);

  let builder = null;
  const start = (initial) => {
    builder?.destroy();
    builder = mount(box, { ...initial, onPreview: (r) => onCount(r.error ? { count: null, users: [] } : r) });
  };
  start({ filter: audience?.filter || { all: [] }, segmentId: audience?.segment_id || null });

  saveSegment.addEventListener("click", async () => {
    const name = segmentName.value.trim();
    if (!name) {
      notice(status, "Name the segment first.");
      segmentName.focus();
      return;
    }
    try {
      const segment = await api("/admin/api/segments", { method: "POST", body: { name, filter: builder.getFilter() } });
      segmentName.value = "";
      start({ filter: segment.filter, segmentId: segment.id }); // the broadcast now targets the saved segment
      notice(status, `Saved as segment "${segment.name}".`, "ok");
    } catch (err) {
      notice(status, err.message);
    }
  });

  return {
    value() {
      const id = builder.segmentId();
      return id ? { segment_id: id } : { filter: builder.getFilter() };
    },
  };
}

// The builder's interface on a plain form: a saved segment, or a filter typed as JSON.
function mountPlainPicker(element, { filter, segmentId, onPreview }) {
  let segments = [];
  const select = h("select", { name: "segment", "aria-label": "Segment", "data-testid": "audience-segment" },
    h("option", { value: "" }, "Custom filter"));
  const text = h("textarea", { name: "filter", class: "mono", rows: 4, spellcheck: false, "aria-label": "Filter (JSON)" },
    JSON.stringify(filter));
  const count = h("div", { "data-testid": "audience-count" });
  const problem = h("span", { class: "field-error" });
  element.replaceChildren(h("div", { class: "stack" }, select, text, problem, count));

  const current = () => {
    if (select.value) return segments.find((s) => s.id === select.value)?.filter || {};
    try {
      return JSON.parse(text.value);
    } catch {
      return null;
    }
  };
  let asked = 0;
  async function preview() {
    text.hidden = Boolean(select.value);
    const mine = ++asked;
    try {
      const out = await api("/admin/api/segments/preview", { method: "POST", body: { filter: current() } });
      if (mine !== asked) return;
      problem.textContent = "";
      count.textContent = `${out.count} users match`;
      onPreview(out);
    } catch (err) {
      if (mine !== asked) return;
      problem.textContent = err.message;
      count.textContent = "—";
      onPreview({ error: err });
    }
  }
  let timer = null;
  select.addEventListener("change", preview);
  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(preview, 300); });
  api("/admin/api/segments").then((out) => {
    segments = out.segments;
    select.append(...segments.map((s) => h("option", { value: s.id, selected: s.id === segmentId }, s.name)));
    preview();
  }).catch(preview);
  return {
    getFilter: current,
    segmentId: () => select.value || null,
    destroy: () => element.replaceChildren(),
  };
}
