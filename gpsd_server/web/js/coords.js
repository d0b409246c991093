// WGS-84 <-> GCJ-02 <-> BD-09 for display over Chinese basemaps.
// Argument order is ALWAYS (lon, lat) and results are [lon, lat] (the classic
// swap bug lives elsewhere). Forward conversions are the published closed
// forms; inverses iterate the forward form until it reproduces the input
// (< 1e-9 degrees, about 0.1 mm). Outside mainland China the input is returned.
// Pure functions, no DOM: the same file runs in the page and under node.

const A = 6378245.0; // Krasovsky 1940 semi-major axis used by GCJ-02
const EE = 0.00669342162296594323; // its first eccentricity squared
const X_PI = (Math.PI * 3000.0) / 180.0;

export function outOfChina(lon, lat) {
  return !(lon > 72.004 && lon < 137.8347 && lat > 0.8293 && lat < 55.8271);
}

function offsetLat(x, y) {
  let r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  r += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  r += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0;
  r += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30.0)) * 2.0) / 3.0;
  return r;
}

function offsetLon(x, y) {
  let r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  r += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  r += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0;
  r += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0;
  return r;
}

export function wgs84ToGcj02(lon, lat) {
  if (outOfChina(lon, lat)) return [lon, lat];
  let dLat = offsetLat(lon - 105.0, lat - 35.0);
  let dLon = offsetLon(lon - 105.0, lat - 35.0);
  const radLat = (lat / 180.0) * Math.PI;
  let magic = Math.sin(radLat);
  magic = 1 - EE * magic * magic;
  const sqrtMagic = Math.sqrt(magic);
  dLat = (dLat * 180.0) / (((A * (1 - EE)) / (magic * sqrtMagic)) * Math.PI);
  dLon = (dLon * 180.0) / ((A / sqrtMagic) * Math.cos(radLat) * Math.PI);
  return [lon + dLon, lat + dLat];
}

export function gcj02ToBd09(lon, lat) {
  if (outOfChina(lon, lat)) return [lon, lat];
  const z = Math.sqrt(lon * lon + lat * lat) + 0.00002 * Math.sin(lat * X_PI);
  const theta = Math.atan2(lat, lon) + 0.000003 * Math.cos(lon * X_PI);
  return [z * Math.cos(theta) + 0.0065, z * Math.sin(theta) + 0.006];
}

export function wgs84ToBd09(lon, lat) {
  const [x, y] = wgs84ToGcj02(lon, lat);
  return gcj02ToBd09(x, y);
}

// Invert a forward (lon, lat) -> [lon, lat] map near the identity by fixed-point
// iteration: each step removes the residual of the forward image.
function invert(forward, lon, lat) {
  let x = lon;
  let y = lat;
  for (let i = 0; i < 30; i++) {
    const [fx, fy] = forward(x, y);
    const dx = fx - lon;
    const dy = fy - lat;
    x -= dx;
    y -= dy;
    if (Math.abs(dx) < 1e-10 && Math.abs(dy) < 1e-10) break;
  }
  return [x, y];
}

export function gcj02ToWgs84(lon, lat) {
  if (outOfChina(lon, lat)) return [lon, lat];
  return invert(wgs84ToGcj02, lon, lat);
}

export function bd09ToGcj02(lon, lat) {
  if (outOfChina(lon, lat)) return [lon, lat];
  return invert(gcj02ToBd09, lon, lat);
}

export function bd09ToWgs84(lon, lat) {
  if (outOfChina(lon, lat)) return [lon, lat];
  return invert(wgs84ToBd09, lon, lat);
}

// Display transform for a basemap CRS: {toDisplay(lon, lat), fromDisplay(lon, lat)}.
export function displayTransform(crs) {
  switch (crs) {
    case "gcj02":
      return { crs, toDisplay: wgs84ToGcj02, fromDisplay: gcj02ToWgs84 };
    case "bd09":
      return { crs, toDisplay: wgs84ToBd09, fromDisplay: bd09ToWgs84 };
    default: // wgs84 / cgcs2000: identical within centimetres
      return { crs: "wgs84", toDisplay: (lon, lat) => [lon, lat], fromDisplay: (lon, lat) => [lon, lat] };
  }
}

// Great-circle distance in metres (display and tests only; metric work is server-side).
export function haversineM(lon1, lat1, lon2, lat2) {
  const r = 6371008.8;
  const p1 = (lat1 * Math.PI) / 180;
  const p2 = (lat2 * Math.PI) / 180;
  const dp = p2 - p1;
  const dl = ((lon2 - lon1) * Math.PI) / 180;
  const h = Math.sin(dp / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
}
