// Privacy requests: every data-subject request of the brand, its deadline and receipt
// (GET .../privacy/requests, scope privacy). The customer's identifier is never there.
import { h, table, when } from "./dom.js";

export async function render({ api }) {
  const { requests } = await api.get("privacy/requests");
  const states = new Map();
  for (const r of requests) states.set(r.state, (states.get(r.state) || 0) + 1);
  const rows = requests.map((r) => [
    r.request_id,
    r.kind,
    r.state,
    when(r.received_ms),
    when(r.deadline_ms),
    r.completed_ms ? when(r.completed_ms) : "",
    r.receipt ? h("details", {}, h("summary", {}, "signed receipt"), h("pre", {}, JSON.stringify(r.receipt, null, 2))) : "",
  ]);
  return [
    h("h2", {}, `Privacy requests of ${api.brand}`),
    h("p", { id: "request-states" }, requests.length
      ? [...states.entries()].map(([s, n]) => `${n} ${s}`).join(", ")
      : "No privacy request yet."),
    requests.length
      ? table(["request", "kind", "state", "received", "deadline", "completed", "receipt"], rows, { id: "requests" })
      : null,
  ];
}
