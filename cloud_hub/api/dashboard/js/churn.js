// Churn risk: the riskiest twins first. The ranking needs the hub's twin query index
// (GET .../twins with where= and sort=, docs/brand-api.md "Finding twins"); a hub without
// it is said so, never ranked on a guess.
import { ApiError } from "./api.js";
import { h, link, show, table, when } from "./dom.js";

const LIMIT = 50;

/** The riskiest twins, or {needsIndex: reason}. The one function to change if the query
 * changes. A hub without the index ignores where= and answers no `items`. */
export async function riskiest(api, limit = LIMIT) {
  let body;
  try {
    body = await api.get("twins", { where: "churn_risk >= 0", sort: "-churn_risk", limit });
  } catch (err) {
    if (err instanceof ApiError && err.code === "index_disabled") return { needsIndex: err.message };
    throw err;
  }
  if (!Array.isArray(body.items)) {
    return { needsIndex: "this hub does not filter or sort twins (GET .../twins answered without items)" };
  }
  return { items: body.items, count: body.count, exact: body.count_exact };
}

export async function render({ api }) {
  const found = await riskiest(api);
  if (found.needsIndex) {
    return [
      h("h2", {}, "Churn risk"),
      h("p", { class: "refusal", id: "needs-index" },
        `The churn-risk list needs the twin query index: ${found.needsIndex}. `,
        "Each twin's own risk is on its page (Twins)."),
    ];
  }
  const rows = found.items.map((t) => [
    link(`twin/${t.twin}`, t.twin),
    show(t.churn_risk),
    t.products.join(", "),
    Object.entries(t.segments || {}).map(([p, s]) => `${p} ${s}`).join(", "),
    when(t.last_seen_ms),
  ]);
  return [
    h("h2", {}, "Churn risk"),
    h("p", { class: "note" }, `${found.count}${found.exact ? "" : "+"} twins scored; the ${rows.length} riskiest:`),
    table(["twin", "churn risk", "products", "segments", "last seen"], rows, { numeric: [1], id: "churn" }),
  ];
}
