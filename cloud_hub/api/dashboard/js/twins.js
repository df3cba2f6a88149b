// Twin explorer, the list: GET .../twins a page at a time (the API's cursor, kept in the
// page's address so the browser's back button pages back).
import { h, link, show, table, when } from "./dom.js";

const PAGE = 50;

export async function render({ api, params }) {
  const after = params.get("after");
  const body = await api.get("twins", { limit: PAGE, after });
  // With the twin query index the hub also answers what it knows of each twin (items).
  const items = Array.isArray(body.items) ? body.items : null;
  const head = items ? ["twin", "products", "last seen", "churn risk"] : ["twin"];
  const rows = items
    ? items.map((t) => [link(`twin/${t.twin}`, t.twin), t.products.join(", "), when(t.last_seen_ms), show(t.churn_risk)])
    : body.twins.map((t) => [link(`twin/${t}`, t)]);
  const nav = [];
  if (after) nav.push(link("twins", "First page"));
  if (body.next) {
    const next = new URL(body.next, location.origin).searchParams.get("after");
    nav.push(link(`twins?after=${encodeURIComponent(next)}`, "Next page"));
  }
  return [
    h("h2", {}, `Twins of ${api.brand}`),
    h("p", { class: "note" }, after ? `Twins after ${after}, ${PAGE} a page.` : `The first ${PAGE} twins, by id.`),
    body.twins.length ? table(head, rows, { numeric: items ? [3] : [], id: "twins" }) : h("p", { id: "twins" }, "No twins yet."),
    h("p", { class: "pager" }, nav),
  ];
}
