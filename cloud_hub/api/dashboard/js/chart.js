// Charts as inline SVG drawn here (no library, no third-party origin). Labels are text
// nodes like everything else the pages show.
import { h, s, show } from "./dom.js";

const W = 360;
const H = 160;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  return [lo, hi];
}

function frame(title, svg) {
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg);
}

/** A line chart of [{x: Unix ms, y: number}] in time order. */
export function lineChart(title, points) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title });
  const [x0, x1] = extent(points.map((p) => p.x));
  const [y0, y1] = extent(points.map((p) => p.y));
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  svg.append(
    s("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    s("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
    s("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, show(y1)),
    s("text", { x: PAD.left - 4, y: H - PAD.bottom, "text-anchor": "end" }, show(y0)),
    s("text", { x: PAD.left, y: H - 6 }, new Date(x0).toLocaleString()),
    s("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end" }, new Date(x1).toLocaleTimeString()),
  );
  const d = points.map((p, i) => `${i ? "L" : "M"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ");
  svg.append(s("path", { class: "series", d, "data-points": points.length }));
  if (points.length === 1) svg.append(s("circle", { class: "dot", cx: px(points[0].x), cy: py(points[0].y), r: 3 }));
  return frame(title, svg);
}

/** A horizontal bar chart of [{label, value}]. */
export function barChart(title, bars) {
  const row = 20;
  const height = PAD.top + bars.length * row + 4;
  const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, width: W, height, role: "img", "aria-label": title });
  const max = Math.max(1, ...bars.map((b) => b.value));
  const left = 90;
  bars.forEach((b, i) => {
    const y = PAD.top + i * row;
    const width = ((W - left - 50) * b.value) / max;
    svg.append(
      s("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, b.label),
      s("rect", { class: "bar", x: left, y: y + 2, width: Math.max(width, 1).toFixed(1), height: row - 6, "data-value": b.value }),
      s("text", { x: left + width + 4, y: y + 13 }, show(b.value)),
    );
  });
  return frame(title, svg);
}

/** Who moved where: `flows` is [{from, to, count}], drawn as bands from a left column
 * (where twins were) to a right column (where they are). */
export function flowDiagram(title, flows) {
  const froms = [...new Set(flows.map((f) => f.from))].sort();
  const tos = [...new Set(flows.map((f) => f.to))].sort();
  const rows = Math.max(froms.length, tos.length, 1);
  const height = PAD.top * 2 + rows * 28;
  const svg = s("svg", { viewBox: `0 0 ${W} ${height}`, width: W, height, role: "img", "aria-label": title });
  const max = Math.max(1, ...flows.map((f) => f.count));
  const y = (list, name) => PAD.top + list.indexOf(name) * 28 + 12;
  const xl = 70;
  const xr = W - 70;
  for (const f of flows) {
    const a = y(froms, f.from);
    const b = y(tos, f.to);
    const mid = (xl + xr) / 2;
    svg.append(
      s("path", {
        class: "flow",
        d: `M${xl},${a} C${mid},${a} ${mid},${b} ${xr},${b}`,
        "stroke-width": (2 + (14 * f.count) / max).toFixed(1),
        "data-count": f.count,
      }),
    );
  }
  froms.forEach((name) => {
    svg.append(s("rect", { class: "node", x: xl - 6, y: y(froms, name) - 8, width: 6, height: 16 }));
    svg.append(s("text", { x: xl - 10, y: y(froms, name) + 4, "text-anchor": "end" }, name));
  });
  tos.forEach((name) => {
    svg.append(s("rect", { class: "node", x: xr, y: y(tos, name) - 8, width: 6, height: 16 }));
    svg.append(s("text", { x: xr + 10, y: y(tos, name) + 4 }, name));
  });
  return frame(title, svg);
}
