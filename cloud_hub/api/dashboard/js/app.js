// The dashboard's shell: the key form, the hash router and the one place a page's
// refusal is shown. Pages are modules exporting `render(ctx)` that return nodes.
import { Api, ApiError, forget, save, saved } from "./api.js";
import { h } from "./dom.js";
import * as churn from "./churn.js";
import * as experiments from "./experiments.js";
import * as fleet from "./fleet.js";
import * as insights from "./insights.js";
import * as privacy from "./privacy.js";
import * as triggers from "./triggers.js";
import * as segments from "./segments.js";
import * as twin from "./twin.js";
import * as twins from "./twins.js";

const PAGES = { fleet, twins, twin, segments, insights, churn, triggers, experiments, privacy };
const main = document.getElementById("page");
let generation = 0;

function route() {
  const raw = decodeURIComponent(location.hash.slice(1)) || "fleet";
  const [path, query = ""] = raw.split("?", 2);
  const [name, ...rest] = path.split("/");
  return { name: name in PAGES ? name : "fleet", arg: rest.join("/"), params: new URLSearchParams(query) };
}

function refusal(err) {
  if (err instanceof ApiError) {
    return h("div", { class: "refusal", role: "alert", "data-code": err.code },
      h("strong", {}, `The hub refused: ${err.status} ${err.code}`), h("br"), err.message);
  }
  return h("div", { class: "refusal", role: "alert", "data-code": "page_error" }, `This page failed: ${err}`);
}

async function render() {
  const mine = ++generation;
  const where = route();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.dataset.page === where.name || (where.name === "twin" && a.dataset.page === "twins"));
  }
  const { brand, key } = saved();
  if (!brand || !key) {
    main.dataset.state = "idle";
    main.replaceChildren(h("p", {}, "Paste a brand and one of its API keys above to begin."));
    return;
  }
  main.dataset.state = "loading";
  main.dataset.page = where.name;
  main.replaceChildren(h("p", { class: "note" }, "Loading…"));
  try {
    const nodes = await PAGES[where.name].render({ api: new Api(brand, key), arg: where.arg, params: where.params });
    if (mine !== generation) return; // the user went elsewhere meanwhile
    main.replaceChildren(...nodes);
    main.dataset.state = "ready";
  } catch (err) {
    if (mine !== generation) return;
    main.replaceChildren(refusal(err));
    main.dataset.state = "error";
  }
}

const form = document.getElementById("key-form");
form.addEventListener("submit", (event) => {
  event.preventDefault();
  save(form.brand.value.trim(), form.key.value.trim());
  form.key.value = "";
  render();
});
document.getElementById("forget").addEventListener("click", () => {
  forget();
  render();
});
window.addEventListener("hashchange", render);
form.brand.value = saved().brand || "";
render();
