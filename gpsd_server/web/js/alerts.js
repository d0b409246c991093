// The alert desk: open/acknowledged alerts from /api/alerts and /ws/live,
// severity, vehicle, kind and place; critical ones flash and can beep;
// acknowledge / close with a comment (operators); click -> fly to it, highlight
// its zone or route, list the nearest cameras.

import { api, ApiError } from "./api.js";
import { haversineM } from "./coords.js";
import {
  CLASS_LABEL, SEVERITY_LABEL, SEVERITY_RANK, STATE_LABEL, KIND_LABEL, detailRows, fmtDateTime, fmtDistance, fmtTime, h,
  kindLabel,
} from "./labels.js";

const L = window.L;
const MAX_KEPT = 2000;
const ALERT_NUMBER = /^[0-9]{8}-[0-9]{4,9}$/; // 20261201-0042, as the server hands them out

export class AlertDesk {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.alerts = new Map();
    this.available = null; // null unknown, false = endpoint missing
    this.filter = { severity: "warn+", state: "active", kind: "", q: "" };
    this.sort = "time";
    this.soundOn = false;
    this.audio = null;
    this.checked = new Set(); // alerts ticked for a bulk acknowledge / close
    this.selected = null;
    this.marker = null;
    this._frame = 0;
    this.build();
  }

  build() {
    const f = this.filter;
    const sel = (id, options, onchange) =>
      h("select", { id, onchange }, options.map(([v, t]) => h("option", { value: v }, t)));
    this.kindSelect = sel("alert-kind", [["", "全部类型"]], (e) => ((f.kind = e.target.value), this.render()));
    this.root.append(
      h("div", { class: "toolbar" },
        sel("alert-severity", [["warn+", "警告及以上"], ["", "全部级别"], ["critical", "紧急"], ["warning", "警告"], ["info", "提示"]],
          (e) => ((f.severity = e.target.value), this.render())),
        sel("alert-state", [["active", "未关闭"], ["open", "待处理"], ["acked", "已确认"], ["closed", "已关闭"], ["", "全部"]],
          (e) => ((f.state = e.target.value), this.render())),
        this.kindSelect,
        sel("alert-sort", [["time", "按时间"], ["severity", "按级别"]], (e) => ((this.sort = e.target.value), this.render())),
        h("input", { id: "alert-q", type: "search", placeholder: "车牌/地点/告警编号", oninput: (e) => this.search(e.target.value.trim()) }),
      ),
      (this.bulk = h("div", { id: "alert-bulk", class: "toolbar bulk op-only" },
        h("label", { class: "chip" }, (this.checkAll = h("input", { id: "alert-check-all", type: "checkbox",
          onchange: (e) => this.checkVisible(e.target.checked) })), "全选"),
        (this.checkedInfo = h("span", { class: "muted" }, "已选 0 条")),
        h("button", { id: "alert-bulk-ack", class: "small", onclick: () => this.bulkAck() }, "批量确认"),
        h("button", { id: "alert-bulk-close", class: "small", onclick: () => this.bulkClose() }, "批量关闭"))),
      (this.note = h("div", { class: "note", hidden: true })),
      (this.list = h("div", { id: "alert-list", class: "alert-list" })),
      (this.detail = h("div", { id: "alert-detail", class: "alert-detail", hidden: true })),
    );
    // The sound choice is remembered per user (browser storage), so a reload at 2 a.m. keeps it on.
    const toggle = document.getElementById("sound-toggle");
    const key = `gpsd.sound.${this.app.user?.name || ""}`;
    const show = () => {
      toggle.textContent = this.soundOn ? "提示音 开" : "提示音 关";
      toggle.classList.toggle("on", this.soundOn);
    };
    this.soundOn = localStorage.getItem(key) === "on";
    if (this.soundOn) {
      // Browsers start audio suspended until the first gesture on the page: resume it then.
      this.audio = new AudioContext();
      const resume = () => this.audio?.resume();
      document.addEventListener("pointerdown", resume, { once: true });
      document.addEventListener("keydown", resume, { once: true });
    }
    show();
    toggle.addEventListener("click", () => {
      this.soundOn = !this.soundOn;
      localStorage.setItem(key, this.soundOn ? "on" : "off");
      if (this.soundOn && !this.audio) this.audio = new AudioContext(); // created on a user gesture
      this.audio?.resume();
      show();
      if (this.soundOn) this.beep();
    });
  }

  checkVisible(on) {
    for (const a of this.visible()) if (a.state !== "closed") on ? this.checked.add(a.id) : this.checked.delete(a.id);
    this.render();
  }

  async bulkAck() {
    const ids = [...this.checked].filter((id) => this.alerts.get(id)?.state === "open");
    if (!ids.length) return this.flashNote("请先勾选待处理的告警");
    await this.bulkSend("/api/alerts/ack", { ids }, "确认");
  }

  async bulkClose() {
    const ids = [...this.checked].filter((id) => this.alerts.get(id) && this.alerts.get(id).state !== "closed");
    if (!ids.length) return this.flashNote("请先勾选告警");
    const comment = await askComment(`批量关闭 ${ids.length} 条告警`);
    if (comment === null) return;
    await this.bulkSend("/api/alerts/close", { ids, comment }, "关闭");
  }

  async bulkSend(path, body, verb) {
    try {
      const res = await api.post(path, body);
      for (const a of res.alerts || []) this.upsert(a, { live: false });
      for (const a of res.alerts || []) this.checked.delete(a.id);
      const refused = (res.refused || []).length;
      this.flashNote(`已${verb} ${(res.alerts || []).length} 条${refused ? `，${refused} 条状态已变化未处理` : ""}`);
    } catch (e) {
      this.flashNote(`批量${verb}失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`);
    }
    this.render();
  }

  async load() {
    // "active" = open or acknowledged (one request); older servers know only open/acked/closed.
    let data = await api.optional("/api/alerts?state=active&limit=500").catch((e) => {
      if (e instanceof ApiError && e.status === 422) return undefined;
      throw e;
    });
    if (data === undefined) {
      const open = await api.optional("/api/alerts?state=open&limit=200");
      const acked = open && (await api.optional("/api/alerts?state=acked&limit=200"));
      data = open && { alerts: [...(open.alerts || []), ...((acked && acked.alerts) || [])] };
    }
    if (data === null) {
      this.available = false;
      this.note.hidden = false;
      this.note.textContent = "告警查询接口尚未启用：仅显示实时推送的告警。";
      this.render();
      return false;
    }
    this.available = true;
    for (const a of data.alerts || []) this.upsert(a, { live: false });
    this.render();
    return true;
  }

  upsert(a, { live }) {
    if (a.id == null) return;
    const old = this.alerts.get(a.id);
    const merged = { ...(old || {}), ...a };
    if (old && old.state && a.state === "open" && old.state !== "open") merged.state = old.state; // a late "start" does not reopen
    merged.tsMs = Date.parse(merged.ts || merged.raised_at);
    merged.receivedMs = old?.receivedMs ?? Date.now();
    this.alerts.set(a.id, merged);
    if (live && !old && merged.severity === "critical" && merged.state !== "closed" && a.phase !== "end") this.beep();
    if (this.alerts.size > MAX_KEPT) this.prune();
    this.updateVehicleCounts();
    this.scheduleRender();
  }

  prune() {
    const closed = [...this.alerts.values()].filter((a) => a.state === "closed").sort((a, b) => a.tsMs - b.tsMs);
    for (const a of closed.slice(0, this.alerts.size - MAX_KEPT)) this.alerts.delete(a.id);
  }

  updateVehicleCounts() {
    const counts = new Map();
    let open = 0;
    for (const a of this.alerts.values()) {
      if (a.state === "closed") continue;
      if (a.state === "open" && a.severity !== "info") open++;
      const ongoing = a.phase !== "end" && a.active !== false;
      if (a.vehicle_id && ongoing && a.severity !== "info") counts.set(a.vehicle_id, (counts.get(a.vehicle_id) || 0) + 1);
    }
    this.app.store.alertCount = counts;
    this.app.vlayer?.redraw();
    const badge = document.getElementById("alert-badge");
    badge.textContent = String(open);
    badge.classList.toggle("hot", [...this.alerts.values()].some((a) => a.state === "open" && a.severity === "critical"));
  }

  openFor(vehicleId) {
    return [...this.alerts.values()].filter((a) => a.vehicle_id === vehicleId && a.state !== "closed");
  }

  kindText(a) {
    if (a.kind === "zone") return a.phase === "end" || a.active === false ? "离开区域" : "进入区域";
    return kindLabel(a.kind);
  }

  // Where, in the city's own words: the ledger's place (district · grid · site or road),
  // else the zone or route; raw coordinates only as the last resort.
  placeText(a) {
    const city = this.app.city;
    return a.place || a.zone_name || city?.nameOf(a.zone_id) || city?.nameOf(a.route_id) ||
      (Number.isFinite(a.lon) && Number.isFinite(a.lat) ? `${a.lon.toFixed(5)}, ${a.lat.toFixed(5)}` : "位置未知");
  }

  title(a) {
    return a.number ? `#${a.number}` : "#—";
  }

  // The number an operator reads out (the desk, a report, the phone): the one
  // alert, whatever the filters, fetched when it is not among those loaded
  // (a closed one, last week's).
  async search(q) {
    this.filter.q = q;
    this.render();
    if (!ALERT_NUMBER.test(q) || [...this.alerts.values()].some((a) => a.number === q)) return;
    try {
      const a = await api.optional(`/api/alerts/${encodeURIComponent(q)}`);
      if (this.filter.q !== q) return; // typed on meanwhile
      if (!a) return this.flashNote(`未找到告警 #${q}`);
      this.upsert(a, { live: false });
      this.render();
      this.focus(a.id);
    } catch (e) {
      this.flashNote(`查询告警 #${q} 失败: ${e.message}`);
    }
  }

  visible() {
    const f = this.filter;
    const q = f.q.toUpperCase();
    if (ALERT_NUMBER.test(f.q)) return [...this.alerts.values()].filter((a) => a.number === f.q);
    let items = [...this.alerts.values()].filter((a) => {
      if (f.severity === "warn+" ? a.severity === "info" : f.severity && a.severity !== f.severity) return false;
      if (f.state === "active" ? a.state === "closed" : f.state && a.state !== f.state) return false;
      if (f.kind && a.kind !== f.kind) return false;
      if (q && !`${a.plate || ""} ${a.vehicle_id || ""} ${this.placeText(a)} ${this.kindText(a)} ${a.number || ""}`.toUpperCase().includes(q)) return false;
      return true;
    });
    items.sort((a, b) =>
      this.sort === "severity"
        ? (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || b.tsMs - a.tsMs
        : b.tsMs - a.tsMs,
    );
    return items.slice(0, 500);
  }

  scheduleRender() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  render() {
    const kinds = new Set([...this.alerts.values()].map((a) => a.kind));
    const have = new Set([...this.kindSelect.options].map((o) => o.value));
    for (const k of kinds) if (!have.has(k)) this.kindSelect.append(h("option", { value: k }, kindLabel(k)));
    const canOp = this.app.canOperate();
    const rows = this.visible().map((a) => {
      const flashing = a.severity === "critical" && a.state === "open";
      return h("div",
        {
          class: `alert-row sev-${a.severity} state-${a.state}${flashing ? " flash" : ""}${this.selected === a.id ? " selected" : ""}`,
          dataset: { alertId: a.id },
          onclick: () => this.focus(a.id),
        },
        canOp && a.state !== "closed"
          ? h("input", { type: "checkbox", class: "pick op-only", checked: this.checked.has(a.id),
              onclick: (e) => e.stopPropagation(),
              onchange: (e) => ((e.target.checked ? this.checked.add(a.id) : this.checked.delete(a.id)), this.renderBulk()) })
          : "",
        h("span", { class: `sev sev-${a.severity}` }, SEVERITY_LABEL[a.severity] || a.severity),
        h("span", { class: "what" },
          h("b", {}, this.kindText(a)), a.phase === "end" || a.active === false ? h("span", { class: "muted" }, " (已结束)") : "",
          h("br"), h("span", { class: "plate" }, a.plate || a.vehicle_id || ""), " ",
          h("span", { class: "muted" }, CLASS_LABEL[a.class] || "")),
        h("span", { class: "where" }, this.placeText(a), h("br"),
          h("span", { class: "muted" }, `${this.title(a)} · ${fmtTime(a.tsMs)} · ${STATE_LABEL[a.state] || a.state || ""}`)),
        canOp && a.state !== "closed"
          ? h("span", { class: "actions op-only" },
              a.state === "open"
                ? h("button", { class: "small ack", onclick: (e) => (e.stopPropagation(), this.ack(a.id)) }, "确认")
                : "",
              h("button", { class: "small close", onclick: (e) => (e.stopPropagation(), this.close(a.id)) }, "关闭"))
          : "",
      );
    });
    this.list.replaceChildren(...(rows.length ? rows : [h("div", { class: "empty" }, "暂无告警")]));
    this.renderBulk();
  }

  renderBulk() {
    for (const id of this.checked) if (!this.alerts.has(id) || this.alerts.get(id).state === "closed") this.checked.delete(id);
    this.checkedInfo.textContent = `已选 ${this.checked.size} 条`;
    this.bulk.hidden = !this.app.canOperate();
  }

  async ack(id) {
    try {
      const res = await api.post(`/api/alerts/${encodeURIComponent(id)}/ack`);
      this.upsert({ ...(res && res.id === id ? res : {}), id, state: "acked" }, { live: false });
    } catch (e) {
      this.flashNote(`确认失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`);
    }
  }

  async close(id) {
    const a = this.alerts.get(id);
    const comment = await askComment(`关闭告警 ${a ? this.title(a) : ""}`);
    if (comment === null) return;
    try {
      const res = await api.post(`/api/alerts/${encodeURIComponent(id)}/close`, { comment });
      this.upsert({ ...(res && res.id === id ? res : {}), id, state: "closed", comment }, { live: false });
    } catch (e) {
      this.flashNote(`关闭失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`);
    }
  }

  flashNote(text) {
    this.note.hidden = false;
    this.note.textContent = text;
  }

  async focus(id) {
    const a = this.alerts.get(id);
    if (!a) return;
    const app = this.app;
    this.selected = id;
    this.render();
    const target = Number.isFinite(a.lon) ? app.toDisplayLatLng(a.lon, a.lat) : null;
    const bounds = app.city?.highlight(a.zone_id ?? a.route_id) || (a.route_id ? app.city?.highlight(a.route_id) : null);
    if (bounds && target) app.map.flyToBounds(bounds.extend(target).pad(0.2), { maxZoom: 16, duration: 0.6 });
    else if (target) app.map.flyTo(target, Math.max(app.map.getZoom(), 15), { duration: 0.6 });
    if (this.marker) this.marker.remove();
    if (target) {
      this.marker = L.circleMarker(target, { radius: 14, color: "#ff0033", weight: 3, fill: false, className: "alert-marker" })
        .addTo(app.map);
    }
    this.detail.hidden = false;
    const rows = detailRows(a.details, (id) => app.city?.nameOf(id));
    const ended = a.ended_ts ? ` · 结束 ${fmtDateTime(Date.parse(a.ended_ts))}` : "";
    this.detail.replaceChildren(
      h("div", { class: "row" }, h("b", { class: "alert-title" }, `告警 ${this.title(a)}`),
        h("button", { class: "small x", onclick: () => this.unfocus() }, "×")),
      h("div", {}, h("b", {}, `${this.kindText(a)} · ${a.plate || a.vehicle_id || ""}`),
        h("span", { class: "muted" }, ` ${SEVERITY_LABEL[a.severity] || ""} · ${STATE_LABEL[a.state] || ""}`)),
      h("div", { class: "muted" }, `发生 ${fmtDateTime(a.tsMs)}${ended} · 上报 ${fmtDateTime(Date.parse(a.raised_at))}`),
      h("div", { class: "place" }, `地点: ${this.placeText(a)}`),
      rows.length
        ? h("table", { class: "kv details" }, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))))
        : "",
      a.acked_by ? h("div", { class: "muted" }, `确认: ${a.acked_by} ${fmtDateTime(Date.parse(a.acked_at))}`) : "",
      a.closed_by ? h("div", { class: "muted" }, `关闭: ${a.closed_by} ${fmtDateTime(Date.parse(a.closed_at))} ${a.comment || ""}`) : "",
      a.vehicle_id ? h("button", { class: "small", onclick: () => app.replay.prepare([a.vehicle_id], a.tsMs) }, "回放该时段") : "",
      (this.cameraBox = h("div", { id: "alert-cameras", class: "cameras" }, "附近视频监控: 查询中…")),
    );
    if (Number.isFinite(a.lon)) this.nearestCameras(a.lon, a.lat);
  }

  unfocus() {
    this.selected = null;
    this.detail.hidden = true;
    this.app.city?.clearHighlight();
    this.marker?.remove();
    this.marker = null;
    this.render();
  }

  async nearestCameras(lon, lat) {
    let cams = null;
    let local = false;
    try {
      const res = await api.optional(`/api/cameras/nearest?lon=${lon}&lat=${lat}&limit=3`);
      cams = res?.cameras ?? null;
    } catch {
      cams = null;
    }
    if (cams === null) {
      // Endpoint not there yet: the cameras are in the city layers already.
      local = true;
      cams = (this.app.city?.cameras || [])
        .map((c) => ({ ...c, distance_m: haversineM(lon, lat, c.lon, c.lat) }))
        .sort((a, b) => a.distance_m - b.distance_m)
        .slice(0, 3);
    }
    if (!this.cameraBox) return;
    this.cameraBox.replaceChildren(
      h("div", { class: "muted" }, `附近视频监控${local ? " (本地计算)" : ""}`),
      ...(cams.length
        ? cams.map((c) =>
            h("div", { class: "camera", dataset: { cameraId: c.id },
              onclick: () => this.app.map.flyTo(this.app.toDisplayLatLng(c.lon, c.lat), 17, { duration: 0.5 }) },
              `▣ ${c.name || c.id} · ${fmtDistance(c.distance_m)}`))
        : [h("div", { class: "muted" }, "无")]),
    );
  }

  // Two tones for a critical alert; three falling ones (the stall alarm) when `stall`.
  beep(stall = false) {
    if (!this.soundOn || !this.audio) return;
    const ctx = this.audio;
    const t = ctx.currentTime;
    const tones = stall ? [[0, 990], [1, 740], [2, 520]] : [[0, 880], [1, 660]];
    for (const [i, f] of tones) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, t + i * 0.2);
      g.gain.exponentialRampToValueAtTime(0.3, t + i * 0.2 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.2 + 0.18);
      o.connect(g).connect(ctx.destination);
      o.start(t + i * 0.2);
      o.stop(t + i * 0.2 + 0.2);
    }
  }
}

// A small modal asking for a closing comment; resolves to the text or null.
export function askComment(title) {
  const modal = document.getElementById("modal");
  const form = document.getElementById("modal-form");
  document.getElementById("modal-title").textContent = title;
  const input = h("textarea", { id: "modal-comment", rows: 3, placeholder: "处理意见 comment", required: true });
  document.getElementById("modal-body").replaceChildren(input);
  modal.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    const done = (value) => {
      modal.hidden = true;
      form.onsubmit = null;
      resolve(value);
    };
    form.onsubmit = (ev) => {
      ev.preventDefault();
      done(input.value.trim());
    };
    document.getElementById("modal-cancel").onclick = () => done(null);
  });
}

export { KIND_LABEL };
