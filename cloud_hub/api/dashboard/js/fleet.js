// Fleet health: the brand's devices (GET .../devices) and the hub's counters (/metrics).
import { barChart } from "./chart.js";
import { h, show, table, when } from "./dom.js";

const WATCHED = [
  ["twinsync_hub_deltas_written_total", "deltas written"],
  ["twinsync_hub_ops_written_total", "field values written"],
  ["twinsync_hub_rejected_total", "messages rejected"],
  ["twinsync_hub_api_refused_total", "API requests refused"],
];

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "value" }, show(value)), h("div", { class: "label" }, label));
}

function count(items, keyOf) {
  const out = new Map();
  for (const item of items) for (const k of keyOf(item)) out.set(k, (out.get(k) || 0) + 1);
  return [...out.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
}

async function metricsPart(api) {
  let metrics;
  try {
    metrics = await api.metrics();
  } catch (err) {
    return [h("p", { class: "note" }, `Hub counters unavailable: ${err.message}`)];
  }
  const total = (name) => metrics.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0);
  const rejected = metrics.filter((m) => m.name === "twinsync_hub_rejected_total" && m.value > 0);
  return [
    h("h2", {}, "Hub counters (all brands this instance serves, since it started)"),
    h("div", { class: "cards", id: "counters" }, WATCHED.map(([name, label]) => card(label, total(name)))),
    h("h2", {}, "Rejected messages by reason"),
    rejected.length
      ? table(["reason", "messages"], rejected.map((m) => [m.labels.reason || "", m.value]), { numeric: [1], id: "rejections" })
      : h("p", { class: "note", id: "rejections" }, "No message rejected."),
  ];
}

export async function render({ api }) {
  const { devices } = await api.get("devices");
  const online = devices.filter((d) => d.online && !d.revoked).length;
  const byProduct = count(devices, (d) => [d.product]);
  const models = count(devices, (d) => d.models || []);
  const failing = devices.filter((d) => Object.keys(d.model_failures || {}).length);
  const rows = [...devices]
    .sort((a, b) => (b.last_seen_ms || 0) - (a.last_seen_ms || 0))
    .map((d) => [
      d.device,
      d.product,
      d.revoked ? "revoked" : d.online ? "online" : "offline",
      when(d.last_seen_ms),
      show(d.last_seq),
      show(d.skew_ms),
      show(d.outbox_depth),
      (d.models || []).join(", "),
      Object.entries(d.model_failures || {}).map(([m, why]) => `${m}: ${why}`).join("; "),
    ]);
  return [
    h("h2", {}, `Fleet of ${api.brand}`),
    h("div", { class: "cards", id: "fleet-cards" },
      card("devices", devices.length), card("online", online), card("with model failures", failing.length)),
    h("div", { class: "charts" },
      barChart("Devices per product", byProduct.map(([label, value]) => ({ label, value }))),
      models.length ? barChart("Models running (devices)", models.map(([label, value]) => ({ label, value }))) : null),
    ...(await metricsPart(api)),
    h("h2", {}, "Devices"),
    table(
      ["device", "product", "status", "last seen", "last seq", "clock skew ms", "outbox", "models", "model failures"],
      rows,
      { numeric: [4, 5, 6], id: "devices" },
    ),
  ];
}
