// Triggers: the brand's trigger rules and their newest events (GET .../triggers and
// GET .../triggers/events, scope triggers). Events name twins (pseudonyms) only.
import { h, link, show, table, when } from "./dom.js";

function condition(rule) {
  const product = rule.product ? `${rule.product}: ` : "";
  if (rule.kind === "churn_risk") return `${product}churn risk crosses ${rule.threshold} ${rule.direction}ward`;
  if (rule.kind === "tag") return `${product}tag ${rule.tag} ${rule.change}`;
  if (rule.kind === "segment_change") return `${product}segment changes`;
  return `${product}anomalies grow`;
}

export async function render({ api }) {
  const [{ rules, max_rules }, { events, pending_deliveries }] = await Promise.all([
    api.get("triggers"),
    api.get("triggers/events", { limit: 50 }),
  ]);
  const ruleRows = rules.map((r) => [
    r.rule_id, r.name, condition(r), r.where || "", r.webhook || "(stream only)", when(r.created_ms),
  ]);
  const eventRows = events.map((e) => [
    String(e.seq), when(e.changed_ms), e.rule_name, link(`twin/${e.twin}`, e.twin), e.field,
    show(e.from), show(e.to),
  ]);
  return [
    h("h2", {}, `Triggers of ${api.brand}`),
    h("p", { id: "trigger-summary" },
      `${rules.length} of at most ${max_rules} rules; ${pending_deliveries} events wait for their webhook.`),
    rules.length
      ? table(["rule", "name", "condition", "where", "webhook", "created"], ruleRows, { id: "rules" })
      : h("p", {}, "No trigger rule yet: register one with POST .../triggers (docs/brand-api.md, \"Triggers\")."),
    h("h3", {}, "Recent events"),
    events.length
      ? table(["seq", "changed", "rule", "twin", "field", "from", "to"], eventRows, { id: "trigger-events", numeric: [0] })
      : h("p", { id: "no-events" }, "No trigger event yet."),
  ];
}
