// Segments: sizes per product and who moved where, both from the segment changes the API
// serves (GET .../segments/changes): a twin's segment is the `to` of its latest change.
import { barChart, flowDiagram } from "./chart.js";
import { h, link, table } from "./dom.js";

const PRODUCTS = ["coffee", "thermostat", "tv", "wearable"];
const RANGES = { "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

async function product(api, name, range) {
  const now = Date.now() + 1;
  // every change ever: the latest per twin is where the twin is now
  const all = (await api.get("segments/changes", { product: name, start: 0, end: now })).changes;
  const current = new Map();
  for (const c of all) current.set(c.twin, c.to); // oldest first: the last wins
  const sizes = new Map();
  for (const seg of current.values()) sizes.set(seg, (sizes.get(seg) || 0) + 1);
  const since = now - RANGES[range];
  const first = new Map();
  const last = new Map();
  for (const c of all.filter((c) => c.time_ms >= since)) {
    if (!first.has(c.twin)) first.set(c.twin, c.from);
    last.set(c.twin, c.to);
  }
  const moves = new Map();
  for (const [twin, to] of last) {
    const from = first.get(twin);
    if (from === to) continue; // moved away and back
    const key = `${from === null ? "new" : `segment ${from}`}→segment ${to}`;
    moves.set(key, (moves.get(key) || 0) + 1);
  }
  const flows = [...moves.entries()].map(([k, count]) => {
    const [from, to] = k.split("→");
    return { from, to, count };
  });
  const bars = [...sizes.entries()].sort((a, b) => a[0] - b[0]).map(([seg, n]) => ({ label: `segment ${seg}`, value: n }));
  if (!bars.length) return [h("h2", {}, name), h("p", { class: "note" }, "No segments yet.")];
  return [
    h("h2", {}, name),
    h("div", { class: "charts" },
      barChart(`${name}: twins per segment`, bars),
      flows.length ? flowDiagram(`${name}: moves in the last ${range}`, flows) : h("p", { class: "note" }, `No twin changed segment in the last ${range}.`)),
    flows.length ? table(["from", "to", "twins"], flows.map((f) => [f.from, f.to, f.count]), { numeric: [2] }) : null,
  ];
}

export async function render({ api, params }) {
  const range = RANGES[params.get("range")] ? params.get("range") : "7d";
  const parts = await Promise.all(PRODUCTS.map((p) => product(api, p, range)));
  return [
    h("p", { class: "pager" }, "Moves over: ", Object.keys(RANGES).map((r) =>
      r === range ? h("strong", {}, r, " ") : [link(`segments?range=${r}`, r), " "])),
    h("div", { id: "segments" }, parts.flat()),
  ];
}
