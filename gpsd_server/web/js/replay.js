// Replay over /ws/replay: pick vehicle(s) and a range, play / pause, seek on a
// timeline that marks the alerts, 1x-100x, follow, statistics at the end.

import { api } from "./api.js";
import { CLASS_COLOR, fmtDateTime, fmtDistance, h, kindLabel } from "./labels.js";

const L = window.L;
const SPEEDS = [1, 2, 5, 10, 20, 50, 100];
const TRAIL_MAX = 5000;

function toLocalInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export class ReplayPanel {
  constructor(app, root, { showTab }) {
    this.app = app;
    this.root = root;
    this.showTab = showTab;
    this.ws = null;
    this.range = null; // [startMs, endMs] from replay_info
    this.playing = false;
    this.tracks = new Map(); // vehicle id -> {marker, line, lls}
    this.layer = L.layerGroup().addTo(app.map);
    this.lastClock = null;
    this.build();
  }

  build() {
    const now = Date.now();
    const dayStart = new Date(now);
    dayStart.setHours(0, 0, 0, 0);
    this.vehiclesInput = h("input", { id: "replay-vehicles", list: "replay-plates", placeholder: "车牌或编号，多个用逗号分隔" });
    this.datalist = h("datalist", { id: "replay-plates" });
    this.vehiclesInput.addEventListener("focus", () => this.fillPlates());
    this.start = h("input", { id: "replay-start", type: "datetime-local", value: toLocalInput(dayStart.getTime()) });
    this.end = h("input", { id: "replay-end", type: "datetime-local", value: toLocalInput(now) });
    this.speed = h("select", { id: "replay-speed", onchange: () => this.send({ type: "speed", speed: Number(this.speed.value) }) },
      SPEEDS.map((s) => h("option", { value: s, selected: s === 10 }, `${s}×`)));
    this.follow = h("input", { id: "replay-follow", type: "checkbox", checked: true });
    this.playBtn = h("button", { id: "replay-play", class: "primary", onclick: () => this.playPause() }, "▶ 播放");
    this.stopBtn = h("button", { id: "replay-stop", onclick: () => this.stop() }, "■ 停止");
    this.slider = h("input", { id: "replay-seek", type: "range", min: 0, max: 1000, value: 0, disabled: true });
    this.slider.addEventListener("change", () => this.seek(Number(this.slider.value) / 1000));
    this.marks = h("div", { class: "marks" });
    this.clock = h("div", { id: "replay-clock", class: "clock" }, "—");
    this.status = h("div", { id: "replay-status", class: "muted" });
    this.stats = h("div", { id: "replay-stats", class: "stats", hidden: true });
    this.events = h("div", { id: "replay-events", class: "events" });
    this.root.append(
      h("label", {}, "车辆", this.vehiclesInput), this.datalist,
      h("div", { class: "row" }, h("label", {}, "开始", this.start), h("label", {}, "结束", this.end)),
      h("div", { class: "row" }, this.playBtn, this.stopBtn, h("label", {}, "速度", this.speed),
        h("label", { class: "chip" }, this.follow, "跟随")),
      h("div", { class: "timeline" }, this.marks, this.slider),
      this.clock, this.status, this.stats, this.events,
    );
  }

  fillPlates() {
    if (this.datalist.childElementCount) return;
    const opts = [...this.app.store.vehicles.values()].slice(0, 3000).map((v) => h("option", { value: v.plate || v.id }, v.id));
    this.datalist.replaceChildren(...opts);
  }

  // Called from the vehicle card / an alert: preset vehicles and range, show the tab.
  prepare(ids, aroundMs) {
    const store = this.app.store;
    this.vehiclesInput.value = ids.map((id) => store.vehicles.get(id)?.plate || id).join(", ");
    if (aroundMs && isFinite(aroundMs)) {
      this.start.value = toLocalInput(aroundMs - 15 * 60000);
      this.end.value = toLocalInput(Math.min(aroundMs + 15 * 60000, Date.now()));
    }
    this.showTab("replay");
  }

  resolveIds() {
    const store = this.app.store;
    const byPlate = new Map([...store.vehicles.values()].map((v) => [v.plate, v.id]));
    return this.vehiclesInput.value.split(/[,，;\s]+/).filter(Boolean).map((t) => byPlate.get(t) || t);
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  playPause() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.playing = !this.playing;
      this.send({ type: this.playing ? "resume" : "pause" });
      this.playBtn.textContent = this.playing ? "❚❚ 暂停" : "▶ 继续";
      return;
    }
    this.begin();
  }

  begin() {
    const vehicles = this.resolveIds();
    const start = new Date(this.start.value);
    const end = new Date(this.end.value);
    if (!vehicles.length || !isFinite(start) || !isFinite(end) || start >= end) {
      this.status.textContent = "请选择车辆和有效的时间范围";
      return;
    }
    this.reset();
    // The replayed vehicles' live markers leave the map until the replay is stopped.
    this.app.store.hidden = new Set(vehicles);
    this.app.vlayer.redraw();
    this.status.textContent = "连接回放服务…";
    const ws = new WebSocket(api.wsUrl("/ws/replay"));
    this.ws = ws;
    let informed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "start", vehicles, start: start.toISOString(), end: end.toISOString(), speed: Number(this.speed.value),
      }));
      this.playing = true;
      this.playBtn.textContent = "❚❚ 暂停";
    };
    ws.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m.type === "replay_info") informed = true;
      this.handle(m);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.playing = false;
      this.playBtn.textContent = "▶ 播放";
      if (!informed) this.status.textContent = "回放服务不可用 (接口尚未启用或无权限)";
    };
  }

  handle(m) {
    switch (m.type) {
      case "replay_info": {
        this.range = [Date.parse(m.start), Date.parse(m.end)];
        this.slider.disabled = false;
        this.status.textContent = `回放 ${fmtDateTime(this.range[0])} — ${fmtDateTime(this.range[1])}`;
        const span = this.range[1] - this.range[0] || 1;
        this.marks.replaceChildren(
          ...(m.alerts || []).map((a) => {
            const x = ((Date.parse(a.ts) - this.range[0]) / span) * 100;
            return h("i", { class: "mark", style: `left:${Math.max(0, Math.min(100, x))}%`, title: kindLabel(a.kind) });
          }),
        );
        break;
      }
      case "replay_position":
        this.move(m);
        break;
      case "replay_alert":
        this.events.prepend(
          h("div", { class: `mini-alert sev-${m.severity}` }, `${fmtDateTime(Date.parse(m.ts))} ${m.plate || m.vehicle_id} ${kindLabel(m.kind)}`),
        );
        break;
      case "replay_clock":
        this.setClock(Date.parse(m.ts));
        break;
      case "replay_end":
        this.showStats(m.stats || {});
        this.playing = false;
        this.playBtn.textContent = "▶ 播放";
        break;
      case "error":
        this.status.textContent = `回放错误: ${m.error}`;
        break;
      default:
        break;
    }
  }

  move(m) {
    const id = m.vehicle_id;
    const ll = this.app.toDisplayLatLng(m.lon, m.lat);
    let t = this.tracks.get(id);
    if (!t) {
      const known = this.app.store.vehicles.get(id); // replay positions carry no class/plate
      const color = CLASS_COLOR[m.class || known?.cls] || "#0050ff";
      t = {
        lls: [],
        line: L.polyline([], { color, weight: 3, opacity: 0.8 }).addTo(this.layer),
        marker: L.circleMarker(ll, { radius: 7, color: "#fff", weight: 2, fillColor: color, fillOpacity: 1 })
          .bindTooltip(m.plate || known?.plate || id, { permanent: true, direction: "right", className: "replay-label" })
          .addTo(this.layer),
      };
      this.tracks.set(id, t);
    }
    t.lls.push(ll);
    if (t.lls.length > TRAIL_MAX) t.lls.shift();
    t.line.setLatLngs(t.lls);
    t.marker.setLatLng(ll);
    if (this.follow.checked && this.tracks.size === 1) this.app.map.panTo(ll, { animate: false });
    if (m.ts) this.setClock(Date.parse(m.ts));
  }

  setClock(ms) {
    if (!isFinite(ms)) return;
    this.lastClock = ms;
    this.clock.textContent = fmtDateTime(ms);
    if (this.range && document.activeElement !== this.slider) {
      this.slider.value = String(Math.round(((ms - this.range[0]) / (this.range[1] - this.range[0] || 1)) * 1000));
    }
  }

  seek(fraction) {
    if (!this.range) return;
    const ts = new Date(this.range[0] + fraction * (this.range[1] - this.range[0]));
    for (const t of this.tracks.values()) {
      t.lls = [];
      t.line.setLatLngs([]);
    }
    this.send({ type: "seek", ts: ts.toISOString() });
    this.setClock(ts.getTime());
  }

  showStats(s) {
    this.stats.hidden = false;
    const km = s.distance_km;
    this.stats.replaceChildren(
      h("b", {}, "回放统计"),
      h("div", {}, `里程 ${km == null ? "—" : fmtDistance(km * 1000)}`),
      h("div", {}, `行驶时长 ${s.driving_s == null ? "—" : `${Math.round(s.driving_s / 60)} 分钟`}`),
      h("div", {}, `停车次数 ${s.stops ?? "—"}`),
      h("div", {}, `最高速度 ${s.max_speed_kmh ?? "—"} km/h`),
    );
  }

  reset() {
    this.layer.clearLayers();
    this.tracks.clear();
    this.range = null;
    this.marks.replaceChildren();
    this.events.replaceChildren();
    this.stats.hidden = true;
    this.slider.value = "0";
    this.slider.disabled = true;
  }

  stop() {
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.app.store.hidden = new Set();
    this.app.vlayer.redraw();
    this.playing = false;
    this.playBtn.textContent = "▶ 播放";
    this.status.textContent = "已停止";
  }
}
