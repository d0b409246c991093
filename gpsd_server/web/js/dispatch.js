// 12319 dispatch: a point (map click in dispatch mode, or typed WGS-84
// coordinates) -> the nearest online patrol cars with distance and ETA; an
// operator records the dispatch. A car with a JT/T 808 terminal gets the case
// on its screen (0x8300); the panel follows that command until the terminal
// acknowledges it.

import { api, ApiError } from "./api.js";
import { esc, fmtAge, fmtDistance, h } from "./labels.js";
import { commandText, isFinal } from "./terminals.js";

const L = window.L;

export class DispatchPanel {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.point = null; // [lon, lat] WGS-84
    this.cars = [];
    this.chosen = null;
    this.layer = L.layerGroup().addTo(app.map);
    this.build();
  }

  build() {
    this.lon = h("input", { id: "dispatch-lon", type: "text", inputmode: "decimal", placeholder: "经度 lon (WGS-84)" });
    this.lat = h("input", { id: "dispatch-lat", type: "text", inputmode: "decimal", placeholder: "纬度 lat" });
    // Pasting "lon, lat" into the first box fills both.
    this.lon.addEventListener("input", () => {
      const m = this.lon.value.split(/[,\s，]+/).filter(Boolean);
      if (m.length === 2) {
        this.lon.value = m[0];
        this.lat.value = m[1];
      }
    });
    this.pickBtn = h("button", { id: "dispatch-pick", onclick: () => this.togglePicking() }, "地图选点");
    this.note = h("textarea", { id: "dispatch-note", rows: 2, placeholder: "事件说明 (12319 工单号、内容)" });
    this.place = h("input", { id: "dispatch-place", type: "text", maxlength: 200, placeholder: "地点描述 (可选，发往车载终端)" });
    this.status = h("div", { id: "dispatch-status", class: "muted" });
    this.commandStatus = h("div", { id: "dispatch-command", class: "muted" });
    this.list = h("div", { id: "dispatch-list", class: "dispatch-list" });
    this.root.append(
      h("div", { class: "muted" }, "在地图上点选事件位置，或输入坐标，查询最近的在线执法车。"),
      h("div", { class: "row" }, this.lon, this.lat),
      h("div", { class: "row" }, this.pickBtn,
        h("button", { id: "dispatch-search", class: "primary", onclick: () => this.searchTyped() }, "查询最近车辆")),
      this.status,
      this.list,
      h("div", { class: "op-only" }, this.note, this.place,
        h("button", { id: "dispatch-send", class: "primary", onclick: () => this.send() }, "派单 Dispatch")),
      this.commandStatus,
    );
  }

  togglePicking() {
    if (this.app.pickHandler) this.stopPicking();
    else this.startPicking();
  }

  startPicking() {
    this.app.pickHandler = ([lon, lat]) => {
      this.stopPicking();
      this.lon.value = lon.toFixed(6);
      this.lat.value = lat.toFixed(6);
      this.search(lon, lat);
    };
    this.app.map.getContainer().classList.add("picking");
    document.getElementById("dispatch-hint").hidden = false;
    this.pickBtn.classList.add("on");
  }

  stopPicking() {
    this.app.pickHandler = null;
    this.app.map.getContainer().classList.remove("picking");
    document.getElementById("dispatch-hint").hidden = true;
    this.pickBtn.classList.remove("on");
  }

  searchTyped() {
    const lon = Number(this.lon.value);
    const lat = Number(this.lat.value);
    if (!isFinite(lon) || !isFinite(lat) || Math.abs(lon) > 180 || Math.abs(lat) > 90 || !this.lon.value || !this.lat.value) {
      this.status.textContent = "请输入有效的经纬度";
      return;
    }
    this.search(lon, lat);
  }

  async search(lon, lat) {
    this.point = [lon, lat];
    this.chosen = null;
    this.layer.clearLayers();
    const here = this.app.toDisplayLatLng(lon, lat);
    L.circleMarker(here, { radius: 8, color: "#fff", weight: 2, fillColor: "#e67e22", fillOpacity: 1 })
      .bindTooltip("事件位置").addTo(this.layer);
    this.status.textContent = "查询中…";
    let res;
    try {
      res = await api.optional(`/api/dispatch/nearest?lon=${lon}&lat=${lat}&limit=5`);
    } catch (e) {
      this.status.textContent = `查询失败: ${e.message}`;
      return;
    }
    if (res === null) {
      this.status.textContent = "派单接口尚未启用";
      this.list.replaceChildren();
      return;
    }
    this.cars = res.vehicles || [];
    this.status.textContent = this.cars.length ? `最近的在线执法车 (${this.cars.length})` : "附近没有在线执法车";
    const bounds = L.latLngBounds([here]);
    this.list.replaceChildren(
      ...this.cars.map((c, i) => {
        const ll = this.app.toDisplayLatLng(c.lon, c.lat);
        bounds.extend(ll);
        L.polyline([here, ll], { color: "#1f9d55", weight: 2, dashArray: "4 4" }).addTo(this.layer);
        const radio = h("input", { type: "radio", name: "dispatch-car", value: c.id, checked: i === 0,
          onchange: () => (this.chosen = c.id) });
        return h("label", { class: "car", dataset: { vehicleId: c.id } }, radio,
          h("b", {}, c.plate || c.id), " ",
          h("span", {}, `${fmtDistance(c.distance_m)} · 约 ${c.eta_min == null ? "—" : Math.round(c.eta_min)} 分钟`),
          " ", h("span", { class: "muted" }, `定位 ${fmtAge(c.age_s)}前`));
      }),
    );
    this.chosen = this.cars[0]?.id ?? null;
    if (this.cars.length) this.app.map.flyToBounds(bounds.pad(0.3), { maxZoom: 16, duration: 0.5 });
  }

  async send() {
    if (!this.point || !this.chosen) {
      this.status.textContent = "请先选择位置和车辆";
      return;
    }
    const [lon, lat] = this.point;
    try {
      const body = { lon, lat, vehicle_id: this.chosen, note: this.note.value.trim(), place: this.place.value.trim() };
      const res = await api.post("/api/dispatch", body);
      const car = this.cars.find((c) => c.id === this.chosen);
      this.status.innerHTML = `已派单 <b id="dispatch-id">#${esc(res?.id ?? "")}</b> → ${esc(car?.plate || this.chosen)}`;
      this.note.value = "";
      this.place.value = "";
      this.follow(res?.command, res?.terminal);
    } catch (e) {
      this.status.textContent = `派单失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`;
    }
  }

  // The terminal's side of the dispatch: queued -> sent -> acknowledged.
  async follow(command, hasTerminal) {
    clearTimeout(this.followTimer);
    if (!command) {
      this.commandStatus.textContent = hasTerminal === false ? "该车无车载终端，请电话通知" : "";
      return;
    }
    this.commandStatus.dataset.status = command.status;
    this.commandStatus.textContent = `车载终端: ${commandText(command)}`;
    if (isFinal(command.status)) return;
    const until = Date.now() + 5 * 60 * 1000;
    const poll = async () => {
      try {
        const c = await api.get(`/api/commands/${command.id}`);
        this.commandStatus.dataset.status = c.status;
        this.commandStatus.textContent = `车载终端: ${commandText(c)}`;
        if (isFinal(c.status) || (c.status === "sent" && c.transport === "mqtt")) return;
      } catch {
        /* keep the last status shown */
      }
      if (Date.now() < until) this.followTimer = setTimeout(poll, 2000);
    };
    this.followTimer = setTimeout(poll, 1000);
  }
}
