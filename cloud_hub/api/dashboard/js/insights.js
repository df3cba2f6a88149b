// Segment insights: per product and model version, the segment map (sizes over the last
// 24 h or 7 d, a line per segment), who moved where (migration matrix as a flow
// diagram), what sets each segment apart (profiles, in words) and whether a segment's
// share moved beyond normal variation. From GET .../segments/sizes, /migration,
// /profile and /alerts (docs/hub.md, "Segment intelligence").
import { flowDiagram } from "./chart.js";
import { h, link, s, show, table } from "./dom.js";

const PRODUCTS = ["coffee", "thermostat", "tv", "wearable"];
const RANGES = { "24h": [24 * 3600e3, "1h"], "7d": [7 * 86400e3, "6h"] };
// One colour per segment number (SVG presentation attributes: no inline style).
const COLOURS = ["#2f6fdf", "#d9822b", "#2e9e5b", "#b8418e", "#7a5cc4", "#c0392b", "#148f9e", "#8c6d1f"];
const W = 360;
const H = 170;
const PAD = { left: 40, right: 8, top: 8, bottom: 22 };

function colour(segment) {
  return COLOURS[((segment % COLOURS.length) + COLOURS.length) % COLOURS.length];
}

/** Twins per segment over time: a line per series of a sizes answer (one model). */
function sizeChart(title, times, series) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title });
  const max = Math.max(1, ...series.flatMap((x) => x.twins));
  const px = (i) => PAD.left + (times.length < 2 ? 0 : (i / (times.length - 1)) * (W - PAD.left - PAD.right));
  const py = (n) => H - PAD.bottom - (n / max) * (H - PAD.top - PAD.bottom);
  svg.append(
    s("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    s("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
    s("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, show(max)),
    s("text", { x: PAD.left - 4, y: H - PAD.bottom, "text-anchor": "end" }, "0"),
    s("text", { x: PAD.left, y: H - 6 }, new Date(times[0]).toLocaleString()),
    s("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end" }, new Date(times[times.length - 1]).toLocaleTimeString()),
  );
  for (const x of series) {
    const d = x.twins.map((n, i) => `${i ? "L" : "M"}${px(i).toFixed(1)},${py(n).toFixed(1)}`).join(" ");
    svg.append(
      s("path", { class: "segment-line", d, stroke: colour(x.segment), fill: "none", "stroke-width": 2, "data-segment": x.segment, "data-now": x.twins[x.twins.length - 1] }),
    );
  }
  const legend = h("p", { class: "legend" }, series.map((x) => [
    s("svg", { width: 10, height: 10, viewBox: "0 0 10 10", "aria-hidden": "true" },
      s("rect", { width: 10, height: 10, fill: colour(x.segment) })),
    ` segment ${x.segment} `,
  ]));
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg, legend);
}

function byModel(series) {
  const out = new Map();
  for (const x of series) {
    if (!out.has(x.model)) out.set(x.model, []);
    out.get(x.model).push(x);
  }
  return out;
}

async function product(api, name, range) {
  const now = Date.now();
  const [span, step] = RANGES[range];
  const [sizes, migration, profile, alerts] = await Promise.all([
    api.get("segments/sizes", { product: name, start: now - span, end: now + 1, step }),
    api.get("segments/migration", { product: name, from: now - span, to: now }),
    api.get("segments/profile", { product: name, top: 3 }),
    api.get("segments/alerts", { product: name }),
  ]);
  if (!sizes.series.length && !profile.models.length) {
    return [h("h2", {}, name), h("p", { class: "note" }, "No segments yet.")];
  }
  const parts = [h("h2", {}, name)];
  const charts = [];
  for (const [model, series] of byModel(sizes.series)) {
    charts.push(sizeChart(`${name} ${model || "(no model ref)"}: twins per segment, last ${range}`, sizes.times_ms, series));
  }
  const label = (seg, none) => (seg === null ? none : `segment ${seg}`);
  const flows = migration.cells
    .filter((c) => c.from !== c.to)
    .map((c) => ({ from: label(c.from, "new"), to: label(c.to, "left"), count: c.twins }));
  charts.push(
    flows.length
      ? flowDiagram(`${name}: who moved where, last ${range}`, flows)
      : h("p", { class: "note" }, `No twin changed segment in the last ${range}.`),
  );
  parts.push(h("div", { class: "charts" }, charts));
  parts.push(
    h("p", { class: "note migration" },
      `Last ${range}: ${migration.entered} entered, ${migration.moved} moved, ${migration.stayed} stayed, ${migration.left} left.`),
  );
  for (const m of profile.models) {
    parts.push(
      table(
        ["segment", "twins", "share", "what sets it apart"],
        m.segments.map((x) => [x.segment, x.twins, `${(100 * x.share).toFixed(0)}%`, x.features.length ? x.features.map((f) => f.text).join("; ") : x.summary]),
        { numeric: [1, 2], caption: `${name} ${m.model || "(no model ref)"}: profiles of ${m.twins} twins`, id: `profile-${name}` },
      ),
    );
  }
  parts.push(
    table(
      ["model", "segment", "share", "baseline", "z", "verdict"],
      alerts.segments.map((x) => [x.model || "", x.segment, `${(100 * x.share).toFixed(1)}%`, x.baseline_share === null ? "" : `${(100 * x.baseline_share).toFixed(1)}%`, x.z === null ? "" : show(x.z), x.alert ? h("strong", { class: "alert" }, x.why) : x.why]),
      { numeric: [1, 2, 3, 4], caption: `${name}: share alerts (${alerts.alerts})`, id: `alerts-${name}` },
    ),
  );
  return parts;
}

export async function render({ api, params }) {
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const parts = await Promise.all(PRODUCTS.map((p) => product(api, p, range)));
  return [
    h("p", { class: "pager" }, "Over: ", Object.keys(RANGES).map((r) =>
      r === range ? h("strong", {}, r, " ") : [link(`insights?range=${r}`, r), " "])),
    h("div", { id: "insights" }, parts.flat()),
  ];
}
