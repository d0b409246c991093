// City layers from /api/geofences: one Leaflet layer group per family, a
// layer switcher, and lookup by feature id (to highlight an alert's zone/route).

import { ZONE_KIND_LABEL, esc } from "./labels.js";

const L = window.L;

// family -> [label, kinds, on by default]
export const FAMILIES = [
  ["areas", "片区 Areas", ["area"], false],
  ["districts", "行政区 Districts", ["district"], true],
  ["grids", "网格 Grids", ["grid"], true],
  ["routes", "核准路线 Routes", ["route"], true],
  ["zones", "禁行/限速区 Zones", ["prohibited", "speed_zone"], true],
  ["sites", "工地/消纳场/搅拌站 Sites", ["construction_site", "disposal_site", "plant"], true],
  ["cameras", "视频监控 Cameras", ["camera"], true],
  ["info_points", "信息采集点 Info points", ["info_point"], false],
];

const STYLE = {
  area: { color: "#6b5b95", weight: 2, fill: false, dashArray: "8 4" },
  district: { color: "#34495e", weight: 2, fill: true, fillOpacity: 0.03 },
  grid: { color: "#95a5a6", weight: 0.8, fill: false },
  route: { color: "#8e44ad", weight: 3, opacity: 0.8 },
  prohibited: { color: "#c0392b", weight: 2, fillColor: "#e74c3c", fillOpacity: 0.12, dashArray: "5 3" },
  speed_zone: { color: "#d35400", weight: 1.5, fillColor: "#f39c12", fillOpacity: 0.08 },
  construction_site: { color: "#b9770e", weight: 1.5, fillColor: "#f5b041", fillOpacity: 0.3 },
  disposal_site: { color: "#196f3d", weight: 1.5, fillColor: "#52be80", fillOpacity: 0.3 },
  plant: { color: "#1a5276", weight: 1.5, fillColor: "#5dade2", fillOpacity: 0.3 },
  camera: { radius: 4, color: "#fff", weight: 1, fillColor: "#2c3e50", fillOpacity: 1 },
  info_point: { radius: 2.5, color: "#16a085", weight: 1, fillColor: "#1abc9c", fillOpacity: 0.9 },
};
const HIGHLIGHT = { color: "#ff00cc", weight: 6, opacity: 1, fillColor: "#ff00cc", fillOpacity: 0.25, dashArray: null };

function describe(p) {
  const rows = [`<b>${esc(p.name || p.id)}</b> <span class="muted">${esc(ZONE_KIND_LABEL[p.kind] || p.kind)}</span>`];
  if (p.speed_limit_kmh) rows.push(`限速 ${esc(p.speed_limit_kmh)} km/h`);
  if (p.schedule) rows.push(`时段 ${esc(p.schedule.from ?? "")}–${esc(p.schedule.to ?? "")}`);
  if (p.classes) rows.push(`适用 ${esc(p.classes.join(", "))}`);
  rows.push(`<span class="muted">${esc(p.id)}</span>`);
  return rows.join("<br>");
}

export class CityLayers {
  constructor(map, { toDisplay, renderer }) {
    this.map = map;
    this.toDisplay = toDisplay;
    this.renderer = renderer;
    this.groups = {};
    this.byId = new Map(); // feature id -> {layer, feature, kind}
    this.cameras = []; // {id, name, lon, lat}
    this.control = null;
    this.loaded = false;
    this.featureCount = 0;
    this._highlighted = null;
  }

  load(collection) {
    for (const g of Object.values(this.groups)) g.remove();
    this.groups = {};
    this.byId.clear();
    this.cameras = [];
    const families = new Map();
    for (const [key, , kinds] of FAMILIES) for (const k of kinds) families.set(k, key);
    const byFamily = {};
    for (const f of collection.features || []) {
      const kind = f.properties?.kind;
      const fam = families.get(kind) || "zones";
      (byFamily[fam] ||= []).push(f);
      if (kind === "camera" && f.geometry?.type === "Point") {
        const [lon, lat] = f.geometry.coordinates;
        this.cameras.push({ id: f.properties.id, name: f.properties.name, lon, lat });
      }
    }
    const toLatLng = (c) => {
      const [x, y] = this.toDisplay(c[0], c[1]);
      return L.latLng(y, x);
    };
    const overlays = {};
    for (const [key, label, , on] of FAMILIES) {
      const feats = byFamily[key] || [];
      const group = L.geoJSON(
        { type: "FeatureCollection", features: feats },
        {
          coordsToLatLng: toLatLng,
          style: (f) => STYLE[f.properties.kind] || STYLE.speed_zone,
          pointToLayer: (f, ll) =>
            L.circleMarker(ll, { ...(STYLE[f.properties.kind] || STYLE.info_point), renderer: this.renderer }),
          onEachFeature: (f, layer) => {
            if (this.renderer && layer.options) layer.options.renderer = this.renderer;
            layer.bindTooltip(describe(f.properties), { sticky: true });
            if (f.properties.id != null) this.byId.set(String(f.properties.id), { layer, feature: f, group: key });
          },
          interactive: true,
        },
      );
      this.groups[key] = group;
      overlays[`${label} <span class="muted">(${feats.length})</span>`] = group;
      if (on) group.addTo(this.map);
    }
    if (this.control) this.control.remove();
    this.control = L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(this.map);
    this.featureCount = (collection.features || []).length;
    this.loaded = true;
  }

  bounds() {
    const b = L.latLngBounds([]);
    for (const key of ["districts", "areas", "grids"]) {
      const g = this.groups[key];
      if (g && g.getLayers().length) b.extend(g.getBounds());
    }
    return b.isValid() ? b : null;
  }

  // Highlight a zone or route by id; returns its display bounds or null.
  highlight(id) {
    this.clearHighlight();
    const hit = id != null && this.byId.get(String(id));
    if (!hit) return null;
    const group = this.groups[hit.group];
    if (group && !this.map.hasLayer(group)) group.addTo(this.map);
    if (!hit.layer.setStyle) return null;
    hit.layer.setStyle(HIGHLIGHT);
    hit.layer.bringToFront?.();
    this._highlighted = hit;
    return hit.layer.getBounds ? hit.layer.getBounds() : null;
  }

  clearHighlight() {
    const hit = this._highlighted;
    if (hit) this.groups[hit.group]?.resetStyle(hit.layer);
    this._highlighted = null;
  }

  nameOf(id) {
    const hit = id != null && this.byId.get(String(id));
    return hit ? hit.feature.properties.name : null;
  }
}
