// Experiments: the strategy lab's randomised experiments, newest first, with their arms
// and results (GET .../lab/experiments, docs/hub.md "Strategy lab"): each arm's churn
// rate with its interval, the uplift (holdout rate - treated rate, Newcombe's 95 %
// interval) and the relative effect a forecast can learn.
import { h, show, table, when } from "./dom.js";

function pct(x) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`;
}

function interval(stat) {
  if (!stat) return "–";
  return `${pct(stat.value)} [${pct(stat.low)}, ${pct(stat.high)}]`;
}

function arm(a) {
  return a ? `${a.churned} / ${a.twins} (${pct(a.rate)})` : "–";
}

export async function render({ api }) {
  const body = await api.get("lab/experiments");
  const rows = body.experiments.map((e) => {
    const r = e.result || {};
    return [
      e.id,
      e.offer.name,
      e.status + (r.interim ? " (interim)" : ""),
      show(e.assigned.treated),
      show(e.assigned.holdout),
      show(e.excluded),
      arm(r.treated),
      arm(r.holdout),
      interval(r.uplift),
      interval(r.effect),
      when(e.finished_ms || e.ends_ms),
    ];
  });
  const nodes = [h("h2", {}, "Experiments")];
  if (!rows.length) {
    nodes.push(h("p", { class: "note", id: "no-experiments" }, "No experiment yet (POST .../lab/experiments)."));
    return nodes;
  }
  nodes.push(
    h("p", { class: "note" },
      "Churned: not seen in the window's last quiet days. Uplift: holdout rate − treated rate " +
      "(95 % interval, Newcombe); effect: the share of would-be churners kept (Katz)."),
    table(
      ["experiment", "offer", "status", "treated", "holdout", "excluded", "treated churned",
        "holdout churned", "uplift", "effect", "ends / ended"],
      rows,
      { numeric: [3, 4, 5], id: "experiments" },
    ),
  );
  return nodes;
}
