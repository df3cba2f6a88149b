// Building the page without ever parsing API data as HTML: every value is a text node
// (textContent), so a twin field holding markup shows as the characters it is.

/** An element: `attrs` are set as attributes (never event handlers or style), children
 * are nodes or values shown as text. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element, like h(). */
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") || name === "style") throw new Error(`attribute ${name} refused`);
    node.setAttribute(name, String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A table: `head` is a list of column names, `rows` a list of lists of cells (a cell is
 * a node or a value); `numeric` names the columns aligned right. */
export function table(head, rows, { numeric = [], caption = null, id = null } = {}) {
  return h(
    "table",
    { id },
    caption === null ? null : h("caption", {}, caption),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h("tr", {}, row.map((cell, i) => h("td", { class: numeric.includes(i) ? "num" : null }, cell))),
      ),
    ),
  );
}

/** A time (Unix ms) as local date and time; "never" for none. */
export function when(ms) {
  if (ms === null || ms === undefined) return "never";
  return new Date(ms).toLocaleString();
}

/** A value as text: numbers rounded for reading, the rest as they are. */
export function show(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  return String(value);
}

/** A link to a page of the dashboard (a hash route). */
export function link(hash, text) {
  return h("a", { href: `#${hash}` }, text);
}
