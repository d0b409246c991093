// The control-room page: login, map and city layers, live vehicles, and the
// alert desk / replay / dispatch panels. window.gpsd is a small hook for the
// browser tests and for the console.

import { api, ApiError } from "./api.js";
import * as coords from "./coords.js";
import { AlertDesk } from "./alerts.js";
import { DispatchPanel } from "./dispatch.js";
import { CasePanel } from "./cases.js";
import { TerminalBoard } from "./terminals.js";
import { ReplayPanel } from "./replay.js";
import { CityLayers } from "./layers.js";
import { VehicleLayer, VehicleStore, thresholds } from "./vehicles.js";
import { CLASS_COLOR, CLASS_LABEL, STATUS_LABEL, esc, fmtAge, fmtDateTime, fmtDistance, h } from "./labels.js";
// The supervisor's desk (issue 16): basemap presets, views, stall watchdog, vehicle list.
import { chosenBasemap, setupBasemaps } from "./basemaps.js";
import { DashboardView } from "./dashboard.js";
import { ReportsView } from "./reports.js";
import { StallWatch } from "./stall.js";
import { VehicleList } from "./vehiclelist.js";

const L = window.L;
const FLUSH_MS = 300; // websocket positions are applied and drawn at most ~3 times a second
const DEFAULT_CENTER = [112.35, 28.57];

const app = {
  user: null,
  config: null,
  transform: coords.displayTransform("wgs84"),
  map: null,
  store: null,
  vlayer: null,
  city: null,
  alerts: null,
  replay: null,
  dispatch: null,
  live: null,
  trackLayer: null,
  selected: null,
  pickHandler: null, // a panel that wants the next map click (dispatch mode)
  canOperate() {
    // A company account acts on its own vehicles' alerts only where the server allows it ([desk] company_may_ack).
    if (this.isCompany()) return !!this.user.may_ack;
    return this.user && (this.user.role === "operator" || this.user.role === "admin");
  },
  // A company account (企业): the server sends it only its own vehicles; no 12319 cases, no dispatch.
  isCompany() {
    return this.user?.role === "company";
  },
  toDisplayLatLng(lon, lat) {
    const [x, y] = this.transform.toDisplay(lon, lat);
    return L.latLng(y, x);
  },
  fromDisplayLatLng(ll) {
    return this.transform.fromDisplay(ll.lng, ll.lat); // -> [lon, lat] WGS-84
  },
};

// ---------------------------------------------------------------- login

async function whoAmI() {
  if (!api.has("/api/me")) return { name: "dev", role: "admin", noAuth: true }; // a server without auth
  try {
    return await api.get("/api/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return { name: "dev", role: "admin", noAuth: true };
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

function askLogin(message = "") {
  const box = document.getElementById("login");
  const form = document.getElementById("login-form");
  const input = document.getElementById("login-token");
  const err = document.getElementById("login-error");
  box.hidden = false;
  err.textContent = message;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      api.token = input.value.trim();
      const me = await whoAmI().catch(() => null);
      if (!me) {
        err.textContent = "令牌无效或已过期 Invalid token";
        return;
      }
      box.hidden = true;
      resolve(me);
    };
  });
}

let relogging = false;
function onUnauthorized() {
  if (!app.user || relogging) return; // during boot the login box is already handled
  relogging = true;
  api.token = "";
  app.live?.close();
  askLogin("会话已失效，请重新登录 Session expired").then(() => location.reload());
}

function applyUser(user) {
  app.user = user;
  document.body.dataset.role = user.role;
  document.body.classList.toggle("may-ack", !!user.may_ack);
  const roleLabel = { viewer: "查看", operator: "值班员", admin: "管理员", company: "企业" }[user.role] || user.role;
  const company = user.company ? ` · ${user.company}（${user.vehicles ?? 0} 辆）` : "";
  document.getElementById("user").textContent = `${user.name} · ${roleLabel}${company}`;
  document.getElementById("logout").hidden = !!user.noAuth;
  // A company account has one company: the company filter would offer nothing.
  document.getElementById("company-filter").hidden = user.role === "company";
}

// ---------------------------------------------------------------- live websocket

class LiveSocket {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.ws = null;
    this.delay = 1000;
    this.closed = false;
    this.connected = false;
    this.messages = 0;
  }
  connect() {
    if (this.closed) return;
    // The lean frames of positions (an array per position) and no zone
    // presence records (the page does not show them): a third of the bytes.
    const url = api.wsUrl("/ws/live");
    const ws = new WebSocket(`${url}${url.includes("?") ? "&" : "?"}positions=rows&zones=false`);
    this.ws = ws;
    ws.onopen = () => {
      this.connected = true;
      this.lastMessageMs = performance.now();
      this.delay = 1000;
      setWsState("ok");
    };
    ws.onmessage = (ev) => {
      this.messages++;
      this.lastMessageMs = performance.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.onMessage(msg);
    };
    let opened = false;
    ws.addEventListener("open", () => (opened = true));
    ws.onclose = (ev) => {
      this.connected = false;
      if (this.closed) return;
      setWsState("down", ev.code);
      // A refused handshake (bad token: 4401 before accept shows as 1006) -> check the token.
      if (!opened || ev.code === 4401 || ev.code === 4403) whoAmI().then((me) => me || onUnauthorized()).catch(() => {});
      setTimeout(() => this.connect(), this.delay * (0.75 + Math.random() / 2));
      this.delay = Math.min(this.delay * 2, 15000);
    };
  }
  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }
  close() {
    this.closed = true;
    this.ws?.close();
  }
}

function setWsState(state, code) {
  const el = document.getElementById("ws-state");
  el.className = `dot ${state}`;
  el.title = state === "ok" ? "实时连接正常 live" : `实时连接断开，重连中 (${code ?? ""})`;
}

// Every live message goes through here (and window.gpsd.inject uses it too).
function handleLive(msg) {
  switch (msg.type) {
    case "snapshot":
      for (const v of msg.vehicles || []) app.store.enqueue(v);
      // Each (re)connect: fetch the desk again, so alerts raised while the
      // socket was down (or before it was up) are not missed.
      app.alerts?.load().catch(() => {});
      app.cases?.load().catch(() => {});
      break;
    case "batch":
      // Several messages in one frame, in order (a burst, or a flush's zone records).
      for (const m of msg.messages || []) handleLive(m);
      break;
    case "positions":
      // One frame per flush interval carries every position since the last.
      for (const p of msg.positions || []) app.store.enqueue(p);
      break;
    case "rows": {
      // The lean frame (?positions=rows): one array per position, in the order of `fields`.
      const f = msg.fields || [];
      const [iv, it, ix, iy, is, ih, ic] = ["vehicle_id", "ts", "lon", "lat", "speed", "heading", "class"].map((n) =>
        f.indexOf(n),
      );
      for (const r of msg.rows || []) {
        app.store.enqueue({ vehicle_id: r[iv], ts: r[it], lon: r[ix], lat: r[iy], speed: r[is], heading: r[ih], class: r[ic] });
      }
      break;
    }
    case "position":
      app.store.enqueue(msg);
      break;
    case "alert":
      app.alerts.upsert(msg, { live: true });
      break;
    case "case": // 12319 cases (cases.js)
      app.cases?.upsert(msg);
      break;
    case "heartbeat": // the server is alive on a quiet night (the stall watchdog reads the time)
      break;
    default:
      break;
  }
}

function flushPositions() {
  if (!app.store.pending.size) return 0;
  const n = app.store.flush();
  app.vlayer.redraw();
  if (performance.now() - lastCounts > 1000) updateCounts();
  else if (!countsTimer) countsTimer = setTimeout(updateCounts, 1000);
  if (app.selected && app.store.vehicles.has(app.selected)) renderCard();
  return n;
}

// ---------------------------------------------------------------- filters, search, counts

function buildFilters() {
  const classBox = document.getElementById("class-filter");
  for (const [cls, label] of Object.entries(CLASS_LABEL)) {
    classBox.append(
      h("label", { class: "chip" },
        h("input", { type: "checkbox", checked: true, value: cls, onchange: applyFilters }),
        h("i", { class: "swatch", style: `background:${CLASS_COLOR[cls]}` }), label),
    );
  }
  const statusBox = document.getElementById("status-filter");
  for (const [st, label] of Object.entries(STATUS_LABEL)) {
    statusBox.append(
      h("label", { class: `chip st-${st}` },
        h("input", { type: "checkbox", checked: true, value: st, onchange: applyFilters }), label),
    );
  }
  document.getElementById("company-filter").addEventListener("change", applyFilters);
  const search = document.getElementById("plate-search");
  const results = document.getElementById("search-results");
  search.addEventListener("input", () => {
    const hits = app.store.search(search.value, 12);
    results.replaceChildren(
      ...hits.map((v) =>
        h("div", { class: "item", onmousedown: () => selectVehicle(v.id, { fly: true }) },
          h("b", {}, v.plate || v.id), " ", h("span", { class: "muted" }, `${CLASS_LABEL[v.cls] || ""} ${v.id}`)),
      ),
    );
    results.hidden = hits.length === 0;
  });
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      const [first] = app.store.search(search.value, 1);
      if (first) selectVehicle(first.id, { fly: true });
      results.hidden = true;
    } else if (ev.key === "Escape") results.hidden = true;
  });
  search.addEventListener("blur", () => setTimeout(() => (results.hidden = true), 150));
}

function applyFilters() {
  const checked = (id) => new Set([...document.querySelectorAll(`#${id} input:checked`)].map((i) => i.value));
  const classes = checked("class-filter");
  const statuses = checked("status-filter");
  app.store.filter.classes = classes.size === Object.keys(CLASS_LABEL).length ? null : classes;
  app.store.filter.statuses = statuses.size === Object.keys(STATUS_LABEL).length ? null : statuses;
  app.store.filter.company = document.getElementById("company-filter").value;
  app.vlayer.redraw();
  updateCounts();
}

function fillCompanies() {
  const sel = document.getElementById("company-filter");
  const have = new Set([...sel.options].map((o) => o.value));
  const names = new Set();
  for (const r of app.store.info.values()) if (r.company) names.add(r.company);
  for (const v of app.store.vehicles.values()) if (v.company) names.add(v.company);
  for (const n of [...names].sort()) if (!have.has(n)) sel.append(h("option", { value: n }, n));
}

let lastCounts = 0;
let countsTimer = 0;
function updateCounts() {
  clearTimeout(countsTimer);
  countsTimer = 0;
  lastCounts = performance.now();
  const c = app.store.counts();
  document.getElementById("counts").innerHTML =
    `车辆 <b>${c.total}</b> · <span class="st-moving">行驶 ${c.moving}</span> · ` +
    `<span class="st-stopped">停车 ${c.stopped}</span> · <span class="st-offline">离线 ${c.offline}</span> · ` +
    `<span class="st-alert">告警 ${c.alert}</span>` + (c.visible !== c.total ? ` · 显示 ${c.visible}` : "");
}

// ---------------------------------------------------------------- vehicle card and track

function selectVehicle(id, { fly = false } = {}) {
  const v = app.store.vehicles.get(id);
  if (!v) return;
  app.selected = id;
  app.vlayer.selected = id;
  app.vlayer.redraw();
  if (fly) app.map.flyTo(L.latLng(v.dlat, v.dlon), Math.max(app.map.getZoom(), 15), { duration: 0.6 });
  renderCard();
}

function closeCard() {
  app.selected = null;
  app.vlayer.selected = null;
  app.vlayer.redraw();
  document.getElementById("card").hidden = true;
}

function renderCard() {
  const v = app.store.vehicles.get(app.selected);
  const card = document.getElementById("card");
  if (!v) return;
  const now = app.store.now();
  const status = app.store.status(v, now);
  const info = app.store.info.get(v.id) || {};
  const permits = info.permits || info.permit || null;
  const open = app.alerts.openFor(v.id);
  const permitRows = (Array.isArray(permits) ? permits : permits ? [permits] : []).map((p) =>
    h("div", { class: "permit" },
      `${p.id ?? ""} ${app.city.nameOf(p.origin) || p.origin || ""} → ${app.city.nameOf(p.destination) || p.destination || ""}`,
      p.hours ? ` ${p.hours.from}–${p.hours.to}` : "", p.valid_to ? h("span", { class: "muted" }, ` 至 ${p.valid_to}`) : ""),
  );
  card.replaceChildren(
    h("div", { class: "card-head" },
      h("i", { class: "swatch", style: `background:${CLASS_COLOR[v.cls] || CLASS_COLOR.other}` }),
      h("b", { class: "plate" }, v.plate || v.id),
      h("span", { class: `tag st-${status}` }, STATUS_LABEL[status]),
      h("button", { class: "x", title: "关闭", onclick: closeCard }, "×")),
    h("table", { class: "kv" },
      row("编号 ID", v.id),
      row("类型", CLASS_LABEL[v.cls] || v.cls),
      row("公司", v.company || info.company || "—"),
      row("速度", v.speed == null ? "—" : `${v.speed} km/h`),
      row("方向", v.heading == null ? "—" : `${v.heading}°`),
      row("定位时间", fmtDateTime(v.tsMs)),
      row("距今", fmtAge((now - v.tsMs) / 1000)),
      row("坐标 WGS-84", `${v.lon.toFixed(6)}, ${v.lat.toFixed(6)}`),
      row("终端", app.terminals ? app.terminals.cell(v.id) : "—"),
    ),
    permitRows.length ? h("div", { class: "section" }, h("div", { class: "muted" }, "运输许可 Permit"), permitRows) : "",
    h("div", { class: "section" },
      h("div", { class: "muted" }, `未处理告警 ${open.length}`),
      open.slice(0, 5).map((a) =>
        h("div", { class: `mini-alert sev-${a.severity}`, onclick: () => app.alerts.focus(a.id) },
          `${app.alerts.kindText(a)} · ${fmtDateTime(Date.parse(a.ts || a.raised_at))}`))),
    h("div", { class: "row" },
      h("button", { id: "card-track", onclick: () => showTrackToday(v.id) }, "今日轨迹"),
      h("button", { id: "card-replay", onclick: () => app.replay.prepare([v.id]) }, "回放"),
      h("button", { onclick: () => app.map.flyTo(L.latLng(v.dlat, v.dlon), 16, { duration: 0.5 }) }, "定位")),
    h("div", { id: "card-track-info", class: "muted" }, app.trackInfo?.id === v.id ? app.trackInfo.text : ""),
  );
  card.hidden = false;
}

function row(k, v) {
  return h("tr", {}, h("th", {}, k), h("td", {}, v));
}

function startOfToday() {
  const d = new Date(app.store.now());
  d.setHours(0, 0, 0, 0);
  return d;
}

async function showTrackToday(id) {
  const start = startOfToday().toISOString();
  const end = new Date(app.store.now() + 60000).toISOString();
  try {
    const fc = await api.get(`/api/vehicles/${encodeURIComponent(id)}/track?start=${start}&end=${end}`);
    drawTrack(fc);
    const line = fc.features.find((f) => f.geometry && f.geometry.type === "LineString");
    const n = fc.features.length - 1;
    let m = 0;
    const c = line ? line.geometry.coordinates : [];
    for (let i = 1; i < c.length; i++) m += coords.haversineM(c[i - 1][0], c[i - 1][1], c[i][0], c[i][1]);
    app.trackInfo = { id, text: `今日轨迹 ${n} 个点，约 ${fmtDistance(m)}` };
  } catch (e) {
    app.trackInfo = { id, text: `轨迹查询失败: ${e.message}` };
  }
  // Kept in app state: the card is redrawn as positions arrive.
  const box = document.getElementById("card-track-info");
  if (box && app.selected === id) box.textContent = app.trackInfo.text;
}

// A vehicle's track between two instants (a report row's day): on the map, in the card.
async function showTrack(id, startIso, endIso, label) {
  showView("map");
  selectVehicle(id);
  try {
    const fc = await api.get(`/api/vehicles/${encodeURIComponent(id)}/track?start=${startIso}&end=${endIso}`);
    drawTrack(fc);
    app.trackInfo = { id, text: `${label}: ${Math.max(fc.features.length - 1, 0)} 个点` };
  } catch (e) {
    app.trackInfo = { id, text: `轨迹查询失败: ${e.message}` };
  }
  renderCard();
}

export function showView(name) {
  for (const b of document.querySelectorAll("#views button")) b.classList.toggle("active", b.dataset.view === name);
  for (const v of document.querySelectorAll("main .view")) v.hidden = v.id !== `view-${name}`;
  document.body.dataset.view = name;
  if (name === "map") app.map.invalidateSize();
  if (name === "reports") app.reports.open();
  if (name === "dashboard") app.dashboard.open();
}

function setupViews() {
  for (const b of document.querySelectorAll("#views button")) b.addEventListener("click", () => showView(b.dataset.view));
}

function drawTrack(fc) {
  app.trackLayer.clearLayers();
  const line = fc.features.find((f) => f.geometry && f.geometry.type === "LineString");
  if (!line || line.geometry.coordinates.length === 0) return;
  const lls = line.geometry.coordinates.map(([x, y]) => app.toDisplayLatLng(x, y));
  L.polyline(lls, { color: "#0050ff", weight: 3, opacity: 0.85 }).addTo(app.trackLayer);
  L.circleMarker(lls[0], { radius: 5, color: "#fff", fillColor: "#1f9d55", fillOpacity: 1 })
    .bindTooltip("起点").addTo(app.trackLayer);
  L.circleMarker(lls[lls.length - 1], { radius: 5, color: "#fff", fillColor: "#c0392b", fillOpacity: 1 })
    .bindTooltip("终点").addTo(app.trackLayer);
  app.map.fitBounds(L.latLngBounds(lls).pad(0.15), { maxZoom: 16 });
}

// ---------------------------------------------------------------- boot

function buildMap(config) {
  const center = config?.center || DEFAULT_CENTER;
  app.basemapChoice = chosenBasemap(config);
  app.transform = coords.displayTransform(app.basemapChoice?.crs || config?.tile_crs || "wgs84");
  const map = L.map("map", { preferCanvas: true, zoomControl: true, minZoom: 3, maxZoom: 19 });
  app.map = map;
  map.attributionControl.setPrefix(false);
  const [x, y] = app.transform.toDisplay(center[0], center[1]);
  map.setView([y, x], config?.zoom ?? 12);
  app.basemaps = setupBasemaps(map, config, app.basemapChoice);
  L.control.scale({ imperial: false }).addTo(map);
  const renderer = L.canvas({ padding: 0.3 });
  app.city = new CityLayers(map, { toDisplay: app.transform.toDisplay, renderer });
  app.trackLayer = L.layerGroup().addTo(map);
  app.store = new VehicleStore({
    transform: app.transform.toDisplay,
    project: (lon, lat) => {
      const p = map.project(L.latLng(lat, lon), 0);
      return [p.x, p.y];
    },
  });
  app.vlayer = new VehicleLayer(app.store).addTo(map);
  map.on("click", (e) => {
    if (app.pickHandler) {
      app.pickHandler(app.fromDisplayLatLng(e.latlng), e.latlng);
      return;
    }
    const v = app.vlayer.hit(e.containerPoint);
    if (v) selectVehicle(v.id);
  });
  map.on("mousemove", (e) => {
    if (app.pickHandler) return;
    map.getContainer().style.cursor = app.vlayer.hit(e.containerPoint, 8) ? "pointer" : "";
  });
}

async function loadVehicles() {
  const data = await api.get("/api/vehicles");
  const rows = data.vehicles || [];
  const offsets = rows.filter((r) => r.age_s != null).map((r) => Date.parse(r.ts) + r.age_s * 1000 - Date.now());
  if (offsets.length) app.store.clockOffsetMs = offsets.sort((a, b) => a - b)[offsets.length >> 1];
  app.store.setInfo(rows);
  for (const r of rows) if (!app.store.vehicles.has(r.id)) app.store.enqueue(r);
  flushPositions();
  fillCompanies();
  return rows;
}

async function loadGeofences() {
  const fc = await api.optional("/api/geofences");
  if (!fc) return false;
  app.city.load(fc);
  return true;
}

function setupTabs() {
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => showTab(b.dataset.tab));
  }
}

export function showTab(name) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll("#side .tab")) s.classList.toggle("active", s.id === `tab-${name}`);
  if (name === "vehicles") app.vehicleList?.render();
}

async function boot() {
  api.onUnauthorized = onUnauthorized;
  // `make demo` prints links with #token=...: take it, then drop it from the address bar.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    api.token = fromLink;
    history.replaceState(null, "", location.pathname + location.search);
  }
  await api.discover();
  let me = await whoAmI();
  if (!me) me = await askLogin(api.token ? "令牌无效或已过期" : "");
  applyUser(me);
  document.getElementById("logout").addEventListener("click", () => {
    api.token = "";
    location.reload();
  });
  const config = await api.optional("/api/map").catch(() => null);
  app.config = config;
  if (config?.moving_kmh != null) thresholds.movingKmh = config.moving_kmh;
  if (config?.offline_s != null) thresholds.offlineS = config.offline_s;
  if (config?.city) document.getElementById("city-name").textContent = config.city;
  buildMap(config);
  buildFilters();
  setupTabs();
  app.alerts = new AlertDesk(app, document.getElementById("tab-alerts"));
  app.dispatch = new DispatchPanel(app, document.getElementById("tab-dispatch"));
  app.showTab = showTab;
  app.select = (id) => selectVehicle(id, { fly: true });
  app.cases = app.isCompany() ? null : new CasePanel(app, document.getElementById("tab-cases"));
  app.terminals = new TerminalBoard();
  app.terminals.start();
  app.replay = new ReplayPanel(app, document.getElementById("tab-replay"), { showTab });
  app.vehicleList = new VehicleList(app, document.getElementById("tab-vehicles"), { select: selectVehicle });
  app.reports = new ReportsView(app, document.getElementById("view-reports"), { showView, showTrack, selectVehicle });
  app.dashboard = new DashboardView(app, document.getElementById("view-dashboard"));
  setupViews();
  app.live = new LiveSocket(handleLive);
  app.stall = new StallWatch(app, config?.stall_s ?? 15);
  const [geoOk] = await Promise.all([
    loadGeofences().catch(() => false),
    loadVehicles().catch(() => []),
    app.alerts.load().catch(() => null),
    app.cases?.load().catch(() => null),
  ]);
  app.geofencesLoaded = geoOk;
  app.live.connect();
  if (!config?.center) {
    const b = app.city.bounds();
    if (b) app.map.fitBounds(b);
    else if (app.store.vehicles.size) {
      const all = [...app.store.vehicles.values()].map((v) => L.latLng(v.dlat, v.dlon));
      app.map.fitBounds(L.latLngBounds(all).pad(0.1), { maxZoom: 15 });
    }
  }
  setInterval(flushPositions, FLUSH_MS);
  setInterval(() => {
    updateCounts();
    fillCompanies();
    if (app.selected) renderCard();
    app.vehicleList?.render();
  }, 2000);
  setInterval(() => {
    app.vlayer.blink = !app.vlayer.blink;
    if (app.store.alertCount.size) app.vlayer.redraw();
  }, 600);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      app.dispatch.stopPicking();
      app.cases?.stopPicking();
      closeCard();
    }
  });
  updateCounts();
  document.body.classList.add("ready");
}

// A small hook for tests and the browser console.
window.gpsd = {
  app,
  coords,
  ready: null,
  vehicleCount: () => app.store?.vehicles.size ?? 0,
  visibleCount: () => app.store?.counts().visible ?? 0,
  vehicle(id) {
    const v = app.store?.vehicles.get(id);
    return v ? { ...v, status: app.store.status(v) } : null;
  },
  inject(messages) {
    for (const m of Array.isArray(messages) ? messages : [messages]) handleLive(m);
  },
  flush: () => flushPositions(),
  lastDrawMs: () => app.vlayer?.lastDrawMs ?? 0,
  liveConnected: () => !!app.live?.connected,
  cityLoaded: () => ({ loaded: !!app.city?.loaded, features: app.city?.featureCount ?? 0 }),
  select: (id) => selectVehicle(id, { fly: true }),
  showView: (name) => showView(name),
  stalled: () => !!app.stall?.stalled,
  basemap: () => app.basemaps?.current ?? null,
};
window.gpsd.ready = boot().catch((e) => {
  document.body.classList.add("boot-failed");
  document.getElementById("counts").textContent = `启动失败: ${esc(e.message)}`;
  throw e;
});
