// Basemap presets from /api/map (`[map] basemaps`): 天地图, 高德 (GCJ-02), OSM,
// offline tiles served by this server, a custom URL; "无底图" always. The city
// layers and vehicles stay above whichever is shown. A preset in another
// coordinate system than the page draws in (GCJ-02 vs WGS-84) needs every
// position converted again: the choice is saved and the page reloads.

const L = window.L;
const KEY = "gpsd.basemap";
export const NONE = { id: "none", name: "无底图", crs: null, layers: [] };

export function chosenBasemap(config) {
  const presets = config?.basemaps || [];
  const saved = localStorage.getItem(KEY);
  if (saved === "none") return NONE;
  return presets.find((b) => b.id === saved) || presets[0] || legacy(config) || NONE;
}

// A server without presets: its single tile_url.
function legacy(config) {
  if (!config?.tile_url) return null;
  return { id: "custom", name: "自定义底图", crs: config.tile_crs || "wgs84", attribution: config.tile_attribution || "",
    layers: [{ url: config.tile_url, subdomains: /amap|autonavi/.test(config.tile_url) ? "1234" : "abc" }] };
}

function tileGroup(preset) {
  const layers = preset.layers.map((l) => {
    const opts = { maxZoom: l.max_zoom || 19, attribution: preset.attribution || "", className: `basemap-${preset.id}` };
    if (l.subdomains) opts.subdomains = l.subdomains;
    if (l.min_zoom != null) opts.minNativeZoom = l.min_zoom;
    if (l.max_native_zoom != null) opts.maxNativeZoom = l.max_native_zoom;
    if (l.bounds) opts.bounds = L.latLngBounds([l.bounds[1], l.bounds[0]], [l.bounds[3], l.bounds[2]]);
    return L.tileLayer(l.url, opts);
  });
  return L.layerGroup(layers);
}

export function setupBasemaps(map, config, current) {
  const presets = [...(config?.basemaps || [])];
  if (!presets.length && legacy(config)) presets.push(legacy(config));
  const drawnCrs = current.crs || "wgs84";
  const state = { current: current.id, presets: presets.map((p) => p.id) };
  const bases = {};
  const byLayer = new Map();
  for (const p of [NONE, ...presets]) {
    const group = tileGroup(p);
    bases[p.name] = group;
    byLayer.set(group, p);
    if (p.id === current.id) group.addTo(map);
  }
  document.getElementById("map").classList.toggle("no-tiles", current.id === "none");
  if (presets.length) {
    L.control.layers(bases, null, { collapsed: true, position: "topleft" }).addTo(map);
  }
  map.on("baselayerchange", (e) => {
    const p = byLayer.get(e.layer);
    if (!p) return;
    localStorage.setItem(KEY, p.id);
    state.current = p.id;
    document.getElementById("map").classList.toggle("no-tiles", p.id === "none");
    if (p.crs && p.crs !== drawnCrs) location.reload(); // positions must be converted for its grid
  });
  return state;
}
