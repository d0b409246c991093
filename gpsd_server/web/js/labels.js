// Chinese labels (with English where it helps) and colours shared by the views.

export const CLASS_LABEL = {
  muck_truck: "渣土车",
  mixer_truck: "搅拌车",
  patrol: "执法车",
  other: "其他",
};

export const CLASS_COLOR = {
  muck_truck: "#d9822b",
  mixer_truck: "#2b7bd9",
  patrol: "#1f9d55",
  other: "#7a6fd0",
};

export const STATUS_LABEL = { moving: "行驶", stopped: "停车", offline: "离线", alert: "告警" };

export const SEVERITY_LABEL = { critical: "紧急", warning: "警告", info: "提示" };
export const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

export const STATE_LABEL = { open: "待处理", acked: "已确认", closed: "已关闭" };

export const KIND_LABEL = {
  zone: "进出区域",
  zone_enter: "进入区域",
  zone_exit: "离开区域",
  forbidden_zone: "闯入禁行区",
  prohibited: "闯入禁行区",
  route_deviation: "偏离路线",
  overspeed: "超速",
  curfew: "非许可时段行驶",
  illegal_dumping: "疑似偷倒",
  suspected_dumping: "疑似偷倒",
  uncovered_load: "未密闭运输",
  offline: "终端离线",
  tampering: "终端破坏",
  power_cut: "主电源断电",
  antenna_cut: "天线断开",
  sos: "紧急报警",
  mixer_overtime: "搅拌车超时",
  delivery_overtime: "搅拌车超时",
  patrol_coverage: "网格未巡查",
  terminal_alarm: "终端报警",
  case_dispatch_overdue: "12319派遣超时",
  case_arrive_overdue: "12319到场超时",
  case_handle_overdue: "12319处置超时",
  case_callback_overdue: "12319回访超时",
};

export const ZONE_KIND_LABEL = {
  area: "片区",
  district: "行政区",
  grid: "网格",
  prohibited: "禁行区",
  construction_site: "工地",
  disposal_site: "消纳场",
  plant: "搅拌站",
  speed_zone: "限速区",
  route: "核准路线",
  camera: "视频监控",
  info_point: "信息采集点",
};

export const kindLabel = (k) => KIND_LABEL[k] || k;

export function fmtAge(s) {
  if (s == null || !isFinite(s)) return "—";
  if (s < 0) s = 0;
  s = Math.round(s); // 239.7 s is 4 分 0 秒, not 3 分 60 秒
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分 ${s % 60} 秒`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
  return `${Math.floor(s / 86400)} 天`;
}

const timeFmt = new Intl.DateTimeFormat("zh-CN", {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dateTimeFmt = new Intl.DateTimeFormat("zh-CN", {
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
export const fmtTime = (ms) => (isFinite(ms) ? timeFmt.format(new Date(ms)) : "—");
export const fmtDateTime = (ms) => (isFinite(ms) ? dateTimeFmt.format(new Date(ms)) : "—");

export function fmtDistance(m) {
  if (m == null || !isFinite(m)) return "—";
  return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 2 : 1)} km`;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Tiny DOM helper: h("div", {class: "x", onclick}, child, "text", ...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
