// Twin explorer, one twin: its behaviour tags, its merged fields (GET .../twins/{twin}) and a history plot per
// numeric field (GET .../history with every=, one bucket per point).
import { lineChart } from "./chart.js";
import { h, link, show, table, when } from "./dom.js";

// range -> [milliseconds, bucket]: at most ~120 buckets a chart
const RANGES = { "6h": [6 * 3600e3, "5m"], "24h": [24 * 3600e3, "15m"], "7d": [7 * 86400e3, "2h"], "30d": [30 * 86400e3, "6h"] };

async function history(api, twin, field, range) {
  const [span, every] = RANGES[range];
  const end = Date.now() + 1;
  const body = await api.get(`twins/${encodeURIComponent(twin)}/history`, { field, start: Math.max(0, end - span), end, every });
  const points = body.points.filter((p) => typeof p.value === "number").map((p) => ({ x: p.time_ms, y: p.value }));
  return points.length ? lineChart(`${field} (every ${every})`, points) : null;
}

export async function render({ api, arg, params }) {
  const twin = arg;
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const state = await api.get(`twins/${encodeURIComponent(twin)}`);
  const names = Object.keys(state.fields).sort();
  const rows = names.map((name) => {
    const f = state.fields[name];
    return [name, show(f.value), when(f.updated_ms), f.device];
  });
  const numeric = names.filter((n) => typeof state.fields[n].value === "number");
  const charts = (await Promise.all(numeric.map((n) => history(api, twin, n, range)))).filter(Boolean);
  const risk = state.scores && state.scores.churn_risk;
  // Behaviour tags: the true <product>.tag_<name> fields, with the catalog that set them.
  const tags = names.filter((n) => n.includes(".tag_") && state.fields[n].value === true).map((n) => {
    const [product, tag] = n.split(".tag_");
    const ref = state.fields[`${product}.tags_ref`];
    return h("li", {}, h("strong", {}, tag), ` (${product}${ref ? `, ${show(ref.value)}` : ""})`);
  });
  return [
    h("p", {}, link("twins", "← all twins")),
    h("h2", {}, `Twin ${state.twin}`),
    h("p", {}, `Devices: ${state.devices.join(", ")}`),
    risk ? h("p", { id: "churn" }, `Churn risk ${show(risk.value)} (${risk.product}, model ${show(risk.model)}, ${when(risk.updated_ms)})`) : null,
    tags.length ? h("ul", { id: "tags", class: "tags" }, tags) : h("p", { id: "tags" }, "No behaviour tags."),
    table(["field", "value", "updated", "device"], rows, { id: "fields" }),
    h("h2", {}, "History"),
    h("p", { class: "pager" }, "Range: ", Object.keys(RANGES).map((r) =>
      r === range ? h("strong", {}, r, " ") : [link(`twin/${twin}?range=${r}`, r), " "])),
    charts.length ? h("div", { class: "charts", id: "history" }, charts) : h("p", { id: "history" }, "No numeric values in this range."),
  ];
}
