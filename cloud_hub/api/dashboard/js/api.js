// The dashboard's one way to the hub: the documented API, with the brand key the user
// pasted (sessionStorage: gone when the tab closes), sent as the API's own header. No
// cookie is ever sent (credentials: "omit"), so another site cannot act with it.

const BRAND = "twinsync.brand";
const KEY = "twinsync.key";

/** A refusal of the API: its status and its {"error": {"code", "message"}}. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function saved() {
  return { brand: sessionStorage.getItem(BRAND), key: sessionStorage.getItem(KEY) };
}

export function save(brand, key) {
  sessionStorage.setItem(BRAND, brand);
  sessionStorage.setItem(KEY, key);
}

export function forget() {
  sessionStorage.removeItem(BRAND);
  sessionStorage.removeItem(KEY);
}

async function call(url, key) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const resp = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
  const text = await resp.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const err = body && body.error ? body.error : { code: `http_${resp.status}`, message: resp.statusText };
    throw new ApiError(resp.status, err.code, err.message);
  }
  if (body === null) throw new ApiError(resp.status, "not_json", `${url} did not answer JSON`);
  return body;
}

/** The API of one brand: get("twins", {limit: 50}) is GET /v1/brands/{brand}/twins?limit=50. */
export class Api {
  constructor(brand, key) {
    this.brand = brand;
    this.key = key;
  }

  url(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) query.set(name, String(value));
    }
    const q = query.toString();
    return `/v1/brands/${encodeURIComponent(this.brand)}/${path}${q ? `?${q}` : ""}`;
  }

  get(path, params = {}) {
    return call(this.url(path, params), this.key);
  }

  /** GET a `next` URL as the API gave it (same origin, same brand). */
  next(url) {
    if (!url.startsWith(`/v1/brands/${encodeURIComponent(this.brand)}/`)) {
      throw new ApiError(0, "bad_next", "the next page's URL is not this brand's");
    }
    return call(url, this.key);
  }

  /** The hub's Prometheus metrics (no key: the same for every brand). */
  async metrics() {
    const resp = await fetch("/metrics", { credentials: "omit", cache: "no-store" });
    if (!resp.ok) throw new ApiError(resp.status, `http_${resp.status}`, "the hub's /metrics is not reachable from here");
    return parseMetrics(await resp.text());
  }
}

/** Prometheus text: [{name, labels: {...}, value}], comments left out. */
export function parseMetrics(text) {
  const out = [];
  const line = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/;
  const label = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) continue;
    const m = line.exec(raw.trim());
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
