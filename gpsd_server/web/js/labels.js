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

// -- alert details in the desk: a Chinese label and a unit for every key -----

export const ALARM_LABEL = {
  sos: "紧急报警", overspeed: "终端超速", fatigue_driving: "疲劳驾驶", danger_warning: "危险预警",
  gnss_fault: "定位模块故障", antenna_disconnected: "定位天线断开", antenna_short_circuit: "定位天线短路",
  main_power_low: "主电源欠压", main_power_cut: "主电源断电", lcd_fault: "显示屏故障", tts_fault: "语音模块故障",
  camera_fault: "摄像头故障", ic_card_fault: "IC卡模块故障", overspeed_prewarning: "超速预警",
  fatigue_prewarning: "疲劳预警", illegal_driving: "违规行驶", tyre_pressure: "胎压异常",
  right_turn_blind_spot: "右转盲区", daily_driving_time_exceeded: "当天累计驾驶超时", overtime_parking: "超时停车",
  area_in_out: "进出区域", route_in_out: "进出路线", segment_drive_time: "路段行驶时间异常", route_deviation: "路线偏离",
  vss_fault: "车速传感器故障", fuel_abnormal: "油量异常", stolen: "车辆被盗", illegal_ignition: "非法点火",
  illegal_displacement: "非法位移", collision: "碰撞预警", rollover_warning: "侧翻预警", illegal_door_open: "非法开门",
};

const seconds = (v) => fmtAge(Number(v));
const metres = (v) => fmtDistance(Number(v));
const kmh = (v) => `${Number(v).toFixed(1)} km/h`;
const when = (v) => fmtDateTime(typeof v === "number" ? v * 1000 : Date.parse(v));
const yesNo = (v) => (v ? "是" : "否");

// key -> [label, format]; a key without an entry is shown by its name (and flagged by the browser test).
export const DETAIL_LABEL = {
  alarm: ["报警类型", (v) => ALARM_LABEL[v] || v],
  bit: ["报警位", (v) => `第 ${v} 位`],
  limit_kmh: ["限速", kmh],
  limit_source: ["限速依据", (v) => ({ zone: "限速区", class: "车型限速" })[v] || v],
  speed_kmh: ["速度", kmh],
  peak_kmh: ["最高速度", kmh],
  duration_s: ["持续时间", seconds],
  threshold_s: ["判定时长", seconds],
  gap_s: ["中断时长", seconds],
  delay_s: ["补传延迟", seconds],
  distance_m: ["偏离距离", metres],
  max_distance_m: ["最大偏离", metres],
  started_at: ["开始时间", when],
  stopped_since: ["停车开始", when],
  left_plant_at: ["离开搅拌站", when],
  last_seen: ["最后定位", when],
  offline_since: ["离线开始", when],
  name: ["区域", (v) => v],
  zone_kind: ["区域类型", (v) => ZONE_KIND_LABEL[v] || v],
  permit: ["许可证", (v) => v],
  permits: ["许可证", (v) => (Array.isArray(v) ? v.join("、") : v)],
  plant: ["搅拌站", (v) => v],
  returned_to_plant: ["返回搅拌站", yesNo],
  loaded: ["重车", yesNo],
  unloaded: ["已卸载", yesNo],
  sign: ["判定依据", (v) => ({ stop: "非工地停车", lift: "车厢举升", drum: "搅拌罐反转" })[v] || v],
  drum: ["搅拌罐", (v) => ({ cw: "正转", ccw: "反转(卸料)", stopped: "停转" })[v] || v],
  backfill: ["盲区补传", yesNo],
  restored: ["重启后恢复", yesNo],
  position: ["位置", (v) => ({ last_known: "最后已知位置", unknown: "未知" })[v] || v],
  route_id: ["路线", (v) => v],
  zone_id: ["区域", (v) => v],
};

// [[label, text], ...] for an alert's details: Chinese, with units, rounded.
export function detailRows(details, nameOf = () => null) {
  if (!details || typeof details !== "object") return [];
  return Object.entries(details).map(([k, v]) => {
    const known = DETAIL_LABEL[k];
    if (!known) return [k, typeof v === "number" ? String(Math.round(v * 10) / 10) : typeof v === "object" ? JSON.stringify(v) : String(v)];
    if ((k === "route_id" || k === "zone_id" || k === "plant") && nameOf(v)) return [known[0], nameOf(v)];
    return [known[0], v == null ? "—" : known[1](v)];
  });
}
