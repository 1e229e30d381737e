// The composer's audience: the shared audience builder (/js/audience-builder.js: a saved segment or a
// filter, with a live count) plus "Save as segment". The composer sees value() -> {segment_id} | {filter}
// and onCount({count, users}) after every preview (count null when the filter is refused).
import { api } from "../api.js";
import { mountAudienceBuilder } from "../audience-builder.js";
import { h, notice } from "../dom.js";

export function mountAudience(container, { audience, onCount }) {
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
    builder = mountAudienceBuilder(box, { ...initial, onPreview: (r) => onCount(r.error ? { count: null, users: [] } : r) });
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
