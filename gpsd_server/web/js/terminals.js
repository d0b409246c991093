// JT/T 808 terminal health and command status: a badge for the vehicle card
// (在线 / 被拒绝 / 未鉴权 / 离线 ...) with why in its tooltip, and the status of
// the last command sent to the terminal. Reads GET /api/terminals every 15 s.

import { api } from "./api.js";
import { fmtAge, h } from "./labels.js";

export const TERMINAL_STATUS_LABEL = {
  online: "在线",
  refused: "被拒绝",
  unauthenticated: "未鉴权",
  offline: "离线",
  never_seen: "未连接过",
};

// The page's existing tag colours: green, amber, grey, red.
const STATUS_CLASS = { online: "st-moving", unauthenticated: "st-stopped", offline: "st-offline",
  never_seen: "st-offline", refused: "st-alert" };

export const TERMINAL_STATE_LABEL = {
  connected: "已连接", registered: "已注册", authenticated: "已鉴权", auth_failed: "鉴权失败",
  unknown_terminal: "未登记终端", deregistered: "已注销", emqx: "经 EMQX 网关", never_seen: "未连接过",
};

export const DROP_LABEL = {
  bad_checksum: "校验码错误", bad_escape: "转义错误", truncated: "报文截断", bad_length: "长度错误",
  oversize: "报文超长", bad_header: "包头错误", bad_body: "消息体错误", unauthenticated: "鉴权前上报",
  auth_failed: "鉴权码错误", unknown_terminal: "未登记终端", phone_changed: "终端号变化", garbage: "无效数据过多",
};

export const COMMAND_STATUS_LABEL = {
  queued: "排队中", sent: "已下发", acknowledged: "终端已确认", failed: "失败", timed_out: "超时未应答",
};

export const COMMAND_KIND_LABEL = { text: "文本信息", position_query: "位置查询", report_interval: "上报间隔" };

const FINAL = new Set(["acknowledged", "failed", "timed_out"]);

export function commandText(c) {
  if (!c) return "";
  const kind = COMMAND_KIND_LABEL[c.kind] || c.kind;
  const status = COMMAND_STATUS_LABEL[c.status] || c.status;
  const note = c.status === "sent" && c.transport === "mqtt" ? "（经 EMQX，无应答回传）" : "";
  return `${kind} #${c.id} ${status}${note}`;
}

export function isFinal(status) {
  return FINAL.has(status);
}

export class TerminalBoard {
  constructor() {
    this.byVehicle = new Map();
    this.loadedAt = 0;
  }

  start() {
    if (!api.has("/api/terminals")) return;
    this.load().catch(() => {});
    setInterval(() => this.load().catch(() => {}), 15000);
  }

  async load() {
    const res = await api.optional("/api/terminals");
    if (!res) return;
    this.byVehicle = new Map((res.terminals || []).filter((t) => t.vehicle_id).map((t) => [t.vehicle_id, t]));
    this.loadedAt = Date.now();
  }

  // The card's "终端" cell: the badge, and the last command's status.
  cell(vehicleId) {
    const t = this.byVehicle.get(vehicleId);
    if (!t) return h("span", { class: "muted" }, this.loadedAt ? "无车载终端" : "—");
    const why = [];
    why.push(`状态: ${TERMINAL_STATE_LABEL[t.state] || t.state}`);
    if (t.edition) why.push(`协议: JT/T 808-${t.edition}`);
    if (t.last_frame) why.push(`最后报文: ${fmtAge((Date.now() - Date.parse(t.last_frame)) / 1000)}前`);
    if (t.last_drop) why.push(`最近丢弃: ${DROP_LABEL[t.last_drop] || t.last_drop}`);
    const drops = Object.entries(t.drops || {}).map(([k, n]) => `${DROP_LABEL[k] || k} ${n}`);
    if (drops.length) why.push(`丢弃: ${drops.join("，")}`);
    const badge = h("span", { class: `tag ${STATUS_CLASS[t.status] || ""}`, title: why.join("\n"),
      dataset: { terminalStatus: t.status } }, TERMINAL_STATUS_LABEL[t.status] || t.status);
    const reason = t.status === "refused" ? ` ${TERMINAL_STATE_LABEL[t.state] || t.state}` : "";
    const last = t.last_command ? h("div", { class: "muted" }, `最近指令: ${commandText(t.last_command)}`) : "";
    return h("span", {}, badge, reason, last);
  }
}
