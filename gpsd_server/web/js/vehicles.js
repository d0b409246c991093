// Live vehicles: a store fed by websocket messages in batches, and one canvas
// layer that draws every visible vehicle in a few fill calls (one path per
// colour), so thousands of vehicles cost a few milliseconds per redraw.

import { CLASS_COLOR } from "./labels.js";

const L = window.L;
// The server's own thresholds ([rules] offline_s and moving_kmh, from /api/map);
// these are their defaults until the map settings arrive.
export const thresholds = { offlineS: 600, movingKmh: 5 };
const OFFLINE_COLOR = "#9aa0a6";
const LABEL_MIN_ZOOM = 15;
const LABEL_MAX = 600;

// A plate or id as typed or printed, reduced to what identifies it: no middle
// dot, spaces or dashes, upper case (the province character stays, and a query
// without it still matches as a substring).
export function plateKey(text) {
  return String(text ?? "").replace(/[\s·•・．.\-_]/g, "").toUpperCase();
}

export class VehicleStore {
  constructor({ transform, project }) {
    this.transform = transform; // WGS-84 -> display coordinates
    this.project = project; // display [lon, lat] -> [x, y] world pixels at zoom 0
    this.vehicles = new Map();
    this.pending = new Map();
    this.info = new Map(); // id -> {plate, company, class, permits} from /api/vehicles
    this.alertCount = new Map(); // vehicle id -> open alerts
    this.clockOffsetMs = 0; // server clock - browser clock
    this.filter = { classes: null, statuses: null, company: "", query: "" };
    this.hidden = new Set(); // vehicles drawn by a replay: their live marker stays off the map
    this.updates = 0;
  }

  now() {
    return Date.now() + this.clockOffsetMs;
  }

  // Queue a position (websocket message, snapshot item or /api/vehicles row).
  enqueue(msg) {
    const id = msg.vehicle_id ?? msg.id;
    if (id == null || !isFinite(msg.lon) || !isFinite(msg.lat)) return;
    this.pending.set(id, msg);
  }

  // Apply what was queued since the last flush; returns how many vehicles moved.
  flush() {
    const n = this.pending.size;
    for (const [id, m] of this.pending) {
      let v = this.vehicles.get(id);
      if (!v) {
        v = { id, plate: null, cls: "other", company: "", tsMs: 0, speed: null, heading: null, alarm: 0 };
        this.vehicles.set(id, v);
      }
      const tsMs = typeof m.ts === "number" ? m.ts * 1000 : Date.parse(m.ts);
      if (isFinite(tsMs) && tsMs < v.tsMs) continue; // older than what we show
      const info = this.info.get(id);
      v.plate = m.plate ?? v.plate ?? info?.plate ?? id;
      v.cls = m.class ?? v.cls ?? info?.class;
      v.company = m.company ?? info?.company ?? v.company;
      v.tsMs = isFinite(tsMs) ? tsMs : this.now();
      v.lon = m.lon;
      v.lat = m.lat;
      v.speed = m.speed ?? m.speed_kmh ?? null;
      v.heading = m.heading ?? null;
      if (m.alarm != null) v.alarm = m.alarm;
      v.moving = m.status ? m.status === "moving" : (v.speed || 0) >= thresholds.movingKmh;
      const [dlon, dlat] = this.transform(m.lon, m.lat);
      v.dlon = dlon;
      v.dlat = dlat;
      [v.px, v.py] = this.project(dlon, dlat);
    }
    this.pending.clear();
    this.updates += n;
    return n;
  }

  setInfo(rows) {
    for (const r of rows) {
      this.info.set(r.id, r);
      const v = this.vehicles.get(r.id);
      if (v) {
        v.company = r.company ?? v.company;
        v.plate = r.plate ?? v.plate;
      }
    }
  }

  // Re-project after a change of display transform (map config arrives late).
  reproject() {
    for (const v of this.vehicles.values()) {
      [v.dlon, v.dlat] = this.transform(v.lon, v.lat);
      [v.px, v.py] = this.project(v.dlon, v.dlat);
    }
  }

  status(v, now = this.now()) {
    if ((this.alertCount.get(v.id) || 0) > 0) return "alert";
    if ((now - v.tsMs) / 1000 > thresholds.offlineS) return "offline";
    return v.moving ? "moving" : "stopped";
  }

  visible(v, now) {
    if (this.hidden.has(v.id)) return false;
    const f = this.filter;
    if (f.classes && !f.classes.has(v.cls)) return false;
    if (f.company && v.company !== f.company) return false;
    if (f.statuses) {
      const s = this.status(v, now);
      // a vehicle in alert still counts under its movement state for the filter
      const base = (now - v.tsMs) / 1000 > thresholds.offlineS ? "offline" : v.moving ? "moving" : "stopped";
      if (!f.statuses.has(s) && !f.statuses.has(base)) return false;
    }
    if (f.query) {
      const q = plateKey(f.query);
      if (!plateKey(v.plate).includes(q) && !plateKey(v.id).includes(q)) return false;
    }
    return true;
  }

  // Plate search: 湘A·H8977, 湘AH8977, AH8977, "ah 8977" and H8977 all find 湘A·H8977.
  search(query, limit = 20) {
    const q = plateKey(query);
    if (!q) return [];
    const out = [];
    for (const v of this.vehicles.values()) {
      if (plateKey(v.plate).includes(q) || plateKey(v.id).includes(q)) {
        out.push(v);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  counts(now = this.now()) {
    const c = { total: 0, moving: 0, stopped: 0, offline: 0, alert: 0, visible: 0 };
    for (const v of this.vehicles.values()) {
      c.total++;
      c[this.status(v, now)]++;
      if (this.visible(v, now)) c.visible++;
    }
    return c;
  }
}

// Rectangles already taken by labels, bucketed by 64 px cells.
class LabelGrid {
  constructor() {
    this.cells = new Map();
  }
  add(x, y, w, hgt) {
    const keys = [];
    for (let cx = Math.floor(x / 64); cx <= Math.floor((x + w) / 64); cx++) {
      for (let cy = Math.floor(y / 64); cy <= Math.floor((y + hgt) / 64); cy++) keys.push(`${cx},${cy}`);
    }
    for (const k of keys) {
      for (const [ax, ay, aw, ah] of this.cells.get(k) || []) {
        if (x < ax + aw && ax < x + w && y < ay + ah && ay < y + hgt) return false;
      }
    }
    for (const k of keys) {
      if (!this.cells.has(k)) this.cells.set(k, []);
      this.cells.get(k).push([x, y, w, hgt]);
    }
    return true;
  }
}

export const VehicleLayer = L.Layer.extend({
  options: { pane: "vehicles", padding: 0.3 },

  initialize(store, options) {
    L.setOptions(this, options);
    this.store = store;
    this.selected = null;
    this.blink = false;
    this._frame = 0;
    this.lastDrawMs = 0;
    this.drawn = 0;
  },

  onAdd(map) {
    if (!map.getPane(this.options.pane)) {
      map.createPane(this.options.pane).style.zIndex = 450;
    }
    this._canvas = L.DomUtil.create("canvas", "vehicle-canvas leaflet-zoom-hide");
    this._ctx = this._canvas.getContext("2d");
    map.getPane(this.options.pane).appendChild(this._canvas);
    map.on("moveend zoomend resize viewreset", this._reset, this);
    this._reset();
  },

  onRemove(map) {
    map.off("moveend zoomend resize viewreset", this._reset, this);
    this._canvas.remove();
  },

  _reset() {
    const map = this._map;
    const size = map.getSize();
    const pad = size.multiplyBy(this.options.padding).round();
    this._origin = map.containerPointToLayerPoint(pad.multiplyBy(-1)).round();
    this._w = size.x + 2 * pad.x;
    this._h = size.y + 2 * pad.y;
    const dpr = window.devicePixelRatio || 1;
    this._canvas.width = Math.round(this._w * dpr);
    this._canvas.height = Math.round(this._h * dpr);
    this._canvas.style.width = `${this._w}px`;
    this._canvas.style.height = `${this._h}px`;
    this._ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    L.DomUtil.setPosition(this._canvas, this._origin);
    this._draw();
  },

  redraw() {
    if (!this._map || this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._draw();
    });
  },

  // Screen position (canvas pixels) of every visible vehicle, for drawing and hits.
  _screen(v, scale, ox, oy) {
    return [v.px * scale - ox, v.py * scale - oy];
  },

  _draw() {
    const map = this._map;
    if (!map) return;
    const t0 = performance.now();
    const ctx = this._ctx;
    const store = this.store;
    ctx.clearRect(0, 0, this._w, this._h);
    const zoom = map.getZoom();
    const scale = map.getZoomScale(zoom, 0);
    const po = map.getPixelOrigin();
    const ox = po.x + this._origin.x;
    const oy = po.y + this._origin.y;
    const now = store.now();
    const w = this._w;
    const hgt = this._h;
    const groups = new Map(); // fill colour -> Path2D
    const rings = new Path2D();
    let anyRing = false;
    const labels = [];
    const big = zoom >= 14;
    const r = big ? 5 : 3.5;
    const arrow = big ? 9 : 6.5;
    let n = 0;
    for (const v of store.vehicles.values()) {
      if (!store.visible(v, now)) continue;
      const x = v.px * scale - ox;
      const y = v.py * scale - oy;
      if (x < -12 || y < -12 || x > w + 12 || y > hgt + 12) continue;
      n++;
      const status = store.status(v, now);
      const offline = (now - v.tsMs) / 1000 > thresholds.offlineS;
      const color = offline ? OFFLINE_COLOR : CLASS_COLOR[v.cls] || CLASS_COLOR.other;
      let p = groups.get(color);
      if (!p) groups.set(color, (p = new Path2D()));
      if (v.moving && !offline && v.heading != null) {
        // arrow pointing along the heading (0 = north, clockwise)
        const a = (v.heading * Math.PI) / 180;
        const s = Math.sin(a);
        const c = Math.cos(a);
        const pt = (dx, dy) => [x + dx * c - dy * s, y + dx * s + dy * c];
        const [x1, y1] = pt(0, -arrow);
        const [x2, y2] = pt(arrow * 0.6, arrow * 0.6);
        const [x3, y3] = pt(0, arrow * 0.25);
        const [x4, y4] = pt(-arrow * 0.6, arrow * 0.6);
        p.moveTo(x1, y1);
        p.lineTo(x2, y2);
        p.lineTo(x3, y3);
        p.lineTo(x4, y4);
        p.closePath();
      } else {
        p.moveTo(x + r, y);
        p.arc(x, y, r, 0, 2 * Math.PI);
      }
      if (status === "alert") {
        rings.moveTo(x + r + 5, y);
        rings.arc(x, y, r + 5, 0, 2 * Math.PI);
        anyRing = true;
      }
      if (zoom >= LABEL_MIN_ZOOM && labels.length < LABEL_MAX) labels.push([x, y, v.plate || v.id, v.id === this.selected]);
    }
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(0,0,0,0.55)";
    for (const [color, p] of groups) {
      ctx.fillStyle = color;
      ctx.fill(p);
      if (big) ctx.stroke(p);
    }
    if (anyRing) {
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = this.blink ? "rgba(220,30,30,0.35)" : "rgba(220,30,30,0.95)";
      ctx.stroke(rings);
    }
    const sel = this.selected && store.vehicles.get(this.selected);
    if (sel) {
      const x = sel.px * scale - ox;
      const y = sel.py * scale - oy;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#0050ff";
      ctx.beginPath();
      ctx.arc(x, y, r + 9, 0, 2 * Math.PI);
      ctx.stroke();
    }
    if (labels.length) {
      ctx.font = "12px 'Microsoft YaHei','WenQuanYi Micro Hei','Noto Sans CJK SC',sans-serif";
      ctx.textBaseline = "middle";
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.fillStyle = "#111";
      // The selected vehicle's label first, then each label only where it overlaps none drawn.
      labels.sort((a, b) => (b[3] ? 1 : 0) - (a[3] ? 1 : 0));
      const placed = new LabelGrid();
      this.labelsDrawn = 0;
      for (const [x, y, text] of labels) {
        const lx = x + r + 6;
        const width = ctx.measureText(text).width;
        if (!placed.add(lx - 2, y - 8, width + 4, 16)) continue;
        ctx.strokeText(text, lx, y);
        ctx.fillText(text, lx, y);
        this.labelsDrawn++;
      }
    }
    this.drawn = n;
    this.lastDrawMs = performance.now() - t0;
  },

  // The visible vehicle nearest to a container point, within `tolerance` px.
  hit(containerPoint, tolerance = 12) {
    const map = this._map;
    const lp = map.containerPointToLayerPoint(containerPoint);
    const scale = map.getZoomScale(map.getZoom(), 0);
    const po = map.getPixelOrigin();
    const store = this.store;
    const now = store.now();
    let best = null;
    let bestD = tolerance * tolerance;
    for (const v of store.vehicles.values()) {
      if (!store.visible(v, now)) continue;
      const dx = v.px * scale - po.x - lp.x;
      const dy = v.py * scale - po.y - lp.y;
      const d = dx * dx + dy * dy;
      if (d <= bestD) {
        bestD = d;
        best = v;
      }
    }
    return best;
  },
});
