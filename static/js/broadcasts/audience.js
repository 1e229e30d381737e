// The composer's audience: the shared audience builder (/js/audience-builder.js) when the server has
// it, else a plain picker (a saved segment, or a filter as JSON) with the same live count.
// Either way the composer sees: value() -> {segment_id} | {filter}, set(audience), and
// onChange({audience, count, users}) after every preview.
import { api } from "../api.js";
import { h } from "../dom.js";

export async function mountAudience(container, { onChange }) {
  let shared = null;
  try {
    shared = await import("/js/audience-builder.js");
  } catch {
    shared = null;
  }
  if (shared?.mountAudienceBuilder) return shared.mountAudienceBuilder(container, { onChange });
  return mountPlainPicker(container, { onChange });
}

async function mountPlainPicker(container, { onChange }) {
  const { segments = [] } = await api("/admin/api/segments").catch(() => ({ segments: [] }));
  const select = h("select", { name: "segment", "aria-label": "Segment" },
    h("option", { value: "" }, "Custom filter"),
    segments.map((s) => h("option", { value: s.id }, s.name)));
  const filter = h("textarea", { name: "filter", class: "mono", rows: 4, spellcheck: false,
    "aria-label": "Filter (JSON)" }, '{"all": []}');
  const count = h("span", { "data-testid": "audience-count" });
  const problem = h("span", { class: "field-error" });
  container.replaceChildren(h("div", { class: "stack" }, select, filter, problem,
    h("div", {}, h("strong", {}, "Recipients: "), count)));

  function value() {
    if (select.value) return { segment_id: select.value };
    try {
      return { filter: JSON.parse(filter.value) };
    } catch {
      return { filter: null };
    }
  }

  let asked = 0;
  async function refresh() {
    filter.hidden = Boolean(select.value);
    const audience = value();
    const mine = ++asked;
    try {
      const segment = audience.segment_id ? segments.find((s) => s.id === audience.segment_id) : null;
      const out = await api("/admin/api/segments/preview", { method: "POST",
        body: { filter: segment ? segment.filter : audience.filter } });
      if (mine !== asked) return;
      problem.textContent = "";
      count.textContent = String(out.count);
      onChange?.({ audience, count: out.count, users: out.users || [] });
    } catch (err) {
      if (mine !== asked) return;
      problem.textContent = err.message;
      count.textContent = "—";
      onChange?.({ audience, count: null, users: [] });
    }
  }
  let timer = null;
  const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
  select.addEventListener("change", refresh);
  filter.addEventListener("input", later);
  refresh();
  return {
    value,
    set(audience) {
      select.value = audience?.segment_id || "";
      if (audience?.filter) filter.value = JSON.stringify(audience.filter, null, 1);
      refresh();
    },
  };
}
