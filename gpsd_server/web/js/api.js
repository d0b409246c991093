// HTTP and websocket access with the login token. A 401 anywhere sends the
// user back to the login box (through onUnauthorized).

const TOKEN_KEY = "gpsd.token";

export class ApiError extends Error {
  constructor(status, body, path) {
    super((body && (body.error || body.detail)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

export const api = {
  onUnauthorized: () => {},
  routes: null, // path templates from /openapi.json (regexes), or null when unknown

  // Learn which endpoints exist from the public OpenAPI description, so that
  // endpoints that have not landed are not requested at all (no 404 noise).
  async discover() {
    try {
      const res = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
      if (!res.ok) return;
      const spec = await res.json();
      this.routes = Object.keys(spec.paths || {}).map(
        (t) => new RegExp(`^${t.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}/g, "[^/]+")}$`),
      );
    } catch {
      this.routes = null;
    }
  },

  // false only when the OpenAPI description is known and lacks the path.
  has(path) {
    if (!this.routes) return true;
    const bare = path.split("?")[0];
    return this.routes.some((r) => r.test(bare));
  },

  get token() {
    return localStorage.getItem(TOKEN_KEY) || "";
  },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },

  headers(extra = {}) {
    const h = { Accept: "application/json", ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  },

  // Returns the parsed JSON; throws ApiError (status 404 = not there yet).
  async request(method, path, body) {
    const init = { method, headers: this.headers(body ? { "Content-Type": "application/json" } : {}) };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(path, init);
    let data = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) data = await res.json().catch(() => null);
    if (res.status === 401) {
      this.onUnauthorized();
      throw new ApiError(401, data, path);
    }
    if (!res.ok) throw new ApiError(res.status, data, path);
    return data;
  },
  get(path) {
    return this.request("GET", path);
  },
  post(path, body) {
    return this.request("POST", path, body ?? {});
  },

  // GET that answers null when the endpoint does not exist (404/405/501).
  async optional(path) {
    if (!this.has(path)) return null;
    try {
      return await this.get(path);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405 || e.status === 501)) return null;
      throw e;
    }
  },

  wsUrl(path) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    return `${proto}//${location.host}${path}${q}`;
  },
};
