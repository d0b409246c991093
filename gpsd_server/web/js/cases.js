// 12319 cases (案件): the list with filters, the map layer of open cases
// coloured by state and lateness, filing a case by clicking the map or typing
// an address, the case card with its steps, timeline and the car's track since
// dispatch, the dispatch proposal by ETA, and the case report. Changes arrive
// as `case` messages on /ws/live.

import { api, ApiError } from "./api.js";
import { askComment } from "./alerts.js";
import { fmtAge, fmtDateTime, fmtDistance, h } from "./labels.js";
import { CaseReport } from "./casereport.js";
import { COMMAND_STATUS_LABEL } from "./terminals.js";

const L = window.L;

export const CASE_STATE_LABEL = {
  accepted: "已受理", dispatched: "已派遣", arrived: "已到场", handled: "已处置",
  called_back: "已回访", closed: "已结案", cancelled: "已撤销",
};
export const CASE_STATE_COLOR = {
  accepted: "#7a3fd0", dispatched: "#1f6fd9", arrived: "#e08a00", handled: "#1f9d55",
  called_back: "#138a8a", closed: "#8a949e", cancelled: "#b0b7be",
};
export const PRIORITY_LABEL = { urgent: "紧急", high: "较急", normal: "一般" };
export const CHANNEL_LABEL = { hotline: "12319热线", patrol: "巡查上报", camera: "视频发现", info_point: "信息采集点" };
export const STEP_LABEL = { dispatch: "派遣", arrive: "到场", handle: "处置", callback: "回访" };
const EVENT_LABEL = {
  created: "受理", dispatched: "派遣", reassigned: "改派", arrived: "到场", left: "离开现场", returned: "返回现场",
  handled: "处置完毕", called_back: "回访", closed: "结案", cancelled: "撤销", note: "备注",
  terminal_queued: "终端排队", terminal_sent: "已下发车载终端", terminal_acknowledged: "车载终端已确认",
  terminal_failed: "终端下发失败", terminal_timed_out: "终端未应答",
};
// Operator actions: [action, button label, prompt]
const ACTIONS = [
  ["arrive", "人工确认到场", "到场说明（车辆无定位时使用）"],
  ["handle", "处置完毕", "处置结果"],
  ["callback", "已回访", "回访结果（市民意见）"],
  ["close", "结案", "结案意见"],
  ["cancel", "撤销", "撤销原因"],
  ["note", "备注", "备注内容"],
];
const FINAL = new Set(["closed", "cancelled"]);

export class CasePanel {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.cases = new Map();
    this.meta = null;
    this.selected = null;
    this.detailData = null;
    this.filter = { state: "open", category: "", priority: "", district: "", late: false, q: "" };
    this.layer = L.layerGroup().addTo(app.map);
    this.focusLayer = L.layerGroup().addTo(app.map); // the selected case: radius, car track, proposal routes
    this.markers = new Map();
    this.point = null; // the new case's place [lon, lat]
    this._frame = 0;
    this.build();
    setInterval(() => this.tickLate(), 15000);
  }

  // ------------------------------------------------------------ layout

  build() {
    const sel = (id, options, onchange) =>
      h("select", { id, onchange }, options.map(([v, t]) => h("option", { value: v }, t)));
    this.categorySelect = sel("case-category", [["", "全部类别"]], (e) => this.setFilter("category", e.target.value));
    this.districtSelect = sel("case-district", [["", "全部区"]], (e) => this.setFilter("district", e.target.value));
    this.toolbar = h("div", { class: "toolbar" },
      sel("case-state", [["open", "未结案"], ["all", "全部"], ...Object.entries(CASE_STATE_LABEL)],
        (e) => this.setFilter("state", e.target.value, true)),
      this.categorySelect,
      sel("case-priority", [["", "全部级别"], ...Object.entries(PRIORITY_LABEL)], (e) => this.setFilter("priority", e.target.value)),
      this.districtSelect,
      h("label", { class: "chip" }, h("input", { id: "case-late", type: "checkbox", onchange: (e) => this.setFilter("late", e.target.checked) }), "仅超时"),
      h("input", { id: "case-q", type: "search", placeholder: "编号/地址/描述", oninput: (e) => this.setFilter("q", e.target.value.trim()) }),
    );
    this.viewButtons = {
      list: h("button", { id: "case-view-list", class: "on", onclick: () => this.show("list") }, "案件列表"),
      report: h("button", { id: "case-view-report", onclick: () => this.show("report") }, "统计报表"),
    };
    this.legend = h("div", { class: "case-legend muted" },
      Object.entries(CASE_STATE_LABEL).filter(([k]) => !FINAL.has(k)).map(([k, t]) =>
        h("span", {}, h("i", { class: "dot", style: `background:${CASE_STATE_COLOR[k]}` }), t)),
      h("span", {}, h("i", { class: "dot late" }), "超时"));
    this.listBox = h("div", { id: "case-list", class: "case-list" });
    this.detailBox = h("div", { id: "case-detail", class: "case-detail", hidden: true });
    this.formBox = h("form", { id: "case-form", class: "case-form", hidden: true, onsubmit: (e) => this.submit(e) });
    this.reportBox = h("div", { id: "case-report", class: "case-report", hidden: true });
    this.report = new CaseReport(this, this.reportBox);
    this.note = h("div", { class: "note", hidden: true });
    this.root.append(
      h("div", { class: "row" },
        h("button", { id: "case-new", class: "primary op-only", onclick: () => this.openForm() }, "＋ 新建案件"),
        this.viewButtons.list, this.viewButtons.report),
      this.note, this.toolbar, this.legend, this.listBox, this.formBox, this.detailBox, this.reportBox,
    );
  }

  show(view) {
    this.view = view;
    for (const [k, b] of Object.entries(this.viewButtons)) b.classList.toggle("on", k === view);
    this.toolbar.hidden = view !== "list";
    this.legend.hidden = view !== "list";
    this.listBox.hidden = view !== "list";
    this.detailBox.hidden = view !== "detail";
    this.formBox.hidden = view !== "form";
    this.reportBox.hidden = view !== "report";
    if (view !== "form" && this.pickBtn?.classList.contains("on")) this.stopPicking();
    if (view === "report") this.report.load();
    if (view === "list") this.unfocus();
  }

  flashNote(text) {
    this.note.hidden = !text;
    this.note.textContent = text || "";
  }

  // ------------------------------------------------------------ data

  async load() {
    if (!api.has("/api/cases")) return false;
    if (!this.meta) {
      this.meta = await api.get("/api/cases/meta");
      for (const c of this.meta.categories) this.categorySelect.append(h("option", { value: c.id }, c.name));
    }
    const state = this.filter.state;
    const data = await api.get(`/api/cases?state=${encodeURIComponent(state)}&limit=500`);
    if (state === "open") for (const [id, c] of this.cases) if (FINAL.has(c.state)) this.cases.delete(id);
    for (const c of data.cases || []) this.cases.set(c.id, c);
    this.render();
    return true;
  }

  upsert(c) {
    const old = this.cases.get(c.id);
    if (old && Date.parse(old.updated_at) > Date.parse(c.updated_at)) return;
    this.cases.set(c.id, c);
    this.scheduleRender();
    if (this.selected === c.id && this.view === "detail") this.openDetail(c.id, { refresh: true });
  }

  setFilter(key, value, reload = false) {
    this.filter[key] = value;
    if (reload) this.load().catch((e) => this.flashNote(`查询失败: ${e.message}`));
    else this.render();
  }

  visible() {
    const f = this.filter;
    const q = f.q.toUpperCase();
    return [...this.cases.values()]
      .filter((c) => {
        if (f.state === "open" ? FINAL.has(c.state) : f.state !== "all" && c.state !== f.state) return false;
        if (f.category && c.category !== f.category) return false;
        if (f.priority && c.priority !== f.priority) return false;
        if (f.district && c.district_id !== f.district) return false;
        if (f.late && !this.isLate(c)) return false;
        if (q && !`${c.number} ${c.description} ${c.address} ${c.place || ""} ${c.plate || ""}`.toUpperCase().includes(q)) return false;
        return true;
      })
      .sort((a, b) => Number(this.isLate(b)) - Number(this.isLate(a)) || Date.parse(b.accepted_at) - Date.parse(a.accepted_at));
  }

  // Late now: the step it waits for is past its deadline (the server said so, or the clock says so since).
  isLate(c) {
    if (FINAL.has(c.state)) return false;
    if (c.late) return true;
    const pending = { accepted: "dispatch", dispatched: "arrive", arrived: "handle", handled: "callback" }[c.state];
    const step = (c.steps || []).find((s) => s.step === pending);
    return !!(step && step.due_at && this.app.store.now() > Date.parse(step.due_at));
  }

  dueText(c) {
    const pending = { accepted: "dispatch", dispatched: "arrive", arrived: "handle", handled: "callback" }[c.state];
    const step = (c.steps || []).find((s) => s.step === pending);
    if (!step || !step.due_at) return "";
    const left = (Date.parse(step.due_at) - this.app.store.now()) / 1000;
    return left >= 0 ? `${STEP_LABEL[pending]}剩 ${fmtAge(left)}` : `${STEP_LABEL[pending]}超时 ${fmtAge(-left)}`;
  }

  tickLate() {
    this.render();
  }

  scheduleRender() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  fillDistricts() {
    if (this.districtSelect.options.length > 1 || !this.app.city?.byId) return;
    const districts = [...this.app.city.byId.values()].map((x) => x.feature.properties).filter((p) => p.kind === "district");
    for (const d of districts.sort((a, b) => String(a.id).localeCompare(String(b.id)))) {
      this.districtSelect.append(h("option", { value: d.id }, d.name || d.id));
    }
  }

  render() {
    this.fillDistricts();
    const items = this.visible();
    const open = [...this.cases.values()].filter((c) => !FINAL.has(c.state));
    const badge = document.getElementById("case-badge");
    if (badge) {
      badge.textContent = String(open.length);
      badge.classList.toggle("hot", open.some((c) => this.isLate(c)));
    }
    this.listBox.replaceChildren(
      ...(items.length
        ? items.slice(0, 300).map((c) => this.row(c))
        : [h("div", { class: "empty" }, "暂无案件")]),
    );
    this.drawMarkers();
  }

  row(c) {
    const late = this.isLate(c);
    return h("div",
      { class: `case-row${late ? " late" : ""}${this.selected === c.id ? " selected" : ""}`, dataset: { caseId: c.id, state: c.state },
        onclick: () => this.openDetail(c.id, { fly: true }) },
      h("span", { class: `prio prio-${c.priority}` }, PRIORITY_LABEL[c.priority] || c.priority),
      h("span", { class: "what" },
        h("b", {}, c.category_name), " ", h("span", { class: "muted" }, c.number), h("br"),
        h("span", { class: "where" }, c.address || c.place || `${c.lon.toFixed(5)}, ${c.lat.toFixed(5)}`)),
      h("span", { class: "state" },
        h("span", { class: "case-state", style: `background:${CASE_STATE_COLOR[c.state]}` }, CASE_STATE_LABEL[c.state] || c.state),
        h("br"), h("span", { class: late ? "late-text" : "muted" }, this.dueText(c) || (c.plate ? c.plate : ""))),
    );
  }

  // Open cases as pins (a DOM marker each: few, and they must stand out from
  // the vehicles' canvas), coloured by state; late ones have a red pulsing ring.
  drawMarkers() {
    const seen = new Set();
    for (const c of this.cases.values()) {
      if (FINAL.has(c.state) && this.selected !== c.id) continue;
      seen.add(c.id);
      const late = this.isLate(c);
      const look = `${c.state}|${late}|${this.selected === c.id}|${c.priority}`;
      let m = this.markers.get(c.id);
      const ll = this.app.toDisplayLatLng(c.lon, c.lat);
      if (!m) {
        m = L.marker(ll, { keyboard: false, riseOnHover: true }).addTo(this.layer);
        m.on("click", (e) => {
          if (this.app.pickHandler) {
            // Picking a place (a new case, a dispatch point): a pin there is the place, not a link.
            this.app.pickHandler(this.app.fromDisplayLatLng(e.latlng), e.latlng);
            return;
          }
          this.app.showTab("cases");
          this.openDetail(c.id);
        });
        this.markers.set(c.id, m);
      } else {
        m.setLatLng(ll);
      }
      if (m.look !== look) {
        m.look = look;
        const cls = `case-pin${late ? " late" : ""}${this.selected === c.id ? " selected" : ""}`;
        const mark = c.priority === "urgent" ? "急" : "案";
        m.setIcon(L.divIcon({
          className: "", iconSize: [22, 22], iconAnchor: [11, 11],
          html: `<div class="${cls}" data-case-id="${c.id}" style="background:${CASE_STATE_COLOR[c.state]}">${mark}</div>`,
        }));
        m.setZIndexOffset(late ? 1000 : this.selected === c.id ? 2000 : 0);
      }
      m.bindTooltip(`${c.number} ${c.category_name} · ${CASE_STATE_LABEL[c.state]}${late ? " · 超时" : ""}`);
    }
    for (const [id, m] of this.markers) {
      if (!seen.has(id)) {
        m.remove();
        this.markers.delete(id);
      }
    }
  }

  // ------------------------------------------------------------ filing a case

  openForm(point = null) {
    const m = this.meta;
    if (!m) return;
    const options = (list) => list.map((x) => h("option", { value: x.id }, x.name));
    this.point = null;
    this.formBox.replaceChildren(
      h("div", { class: "muted" }, "在地图上点选案件位置，或输入地址（区、网格、工地、道路、“A路与B路路口”、经纬度）。"),
      h("div", { class: "row" },
        (this.pickBtn = h("button", { type: "button", id: "case-pick", onclick: () => this.togglePicking() }, "地图选点")),
        h("span", { class: "search grow" },
          (this.addressInput = h("input", { id: "case-address", type: "search", maxlength: 200, placeholder: "地址 / 地名", autocomplete: "off",
            oninput: () => this.searchAddress() })),
          (this.addressResults = h("div", { id: "case-address-results", class: "dropdown", hidden: true })))),
      (this.placeLine = h("div", { id: "case-place", class: "muted" }, "尚未选择位置")),
      h("div", { class: "grid2" },
        h("label", {}, "来源", h("select", { id: "case-channel" }, options(m.channels))),
        h("label", {}, "紧急程度", h("select", { id: "case-priority-input" }, options(m.priorities))),
        h("label", {}, "类别", h("select", { id: "case-category-input" }, options(m.categories))),
        h("label", {}, "报告人 / 回访电话", h("input", { id: "case-reporter", maxlength: 100 }))),
      h("label", {}, "案件描述", h("textarea", { id: "case-description", rows: 3, maxlength: 2000 })),
      (this.formError = h("div", { id: "case-form-error", class: "error" })),
      h("div", { class: "row right" },
        h("button", { type: "button", onclick: () => this.show("list") }, "取消"),
        h("button", { type: "submit", id: "case-submit", class: "primary" }, "受理 (立案)")),
    );
    document.getElementById("case-priority-input").value = "normal";
    this.show("form");
    if (point) this.setPoint(point[0], point[1]);
    else this.startPicking();
  }

  togglePicking() {
    if (this.app.pickHandler) this.stopPicking();
    else this.startPicking();
  }

  startPicking() {
    this.app.pickHandler = ([lon, lat]) => {
      this.stopPicking();
      this.setPoint(lon, lat);
    };
    this.app.map.getContainer().classList.add("picking");
    const hint = document.getElementById("dispatch-hint");
    hint.textContent = "立案：点击地图选择案件位置 (Esc 取消)";
    hint.hidden = false;
    this.pickBtn?.classList.add("on");
  }

  stopPicking() {
    this.app.pickHandler = null;
    this.app.map.getContainer().classList.remove("picking");
    document.getElementById("dispatch-hint").hidden = true;
    this.pickBtn?.classList.remove("on");
  }

  async setPoint(lon, lat, name = null) {
    this.point = [lon, lat];
    this.focusLayer.clearLayers();
    const ll = this.app.toDisplayLatLng(lon, lat);
    L.circleMarker(ll, { radius: 9, color: "#fff", weight: 2, fillColor: "#e67e22", fillOpacity: 1 })
      .bindTooltip("案件位置").addTo(this.focusLayer);
    if (this.meta) L.circle(ll, { radius: this.meta.arrive_radius_m, color: "#e67e22", weight: 1, fill: false, dashArray: "4 4" }).addTo(this.focusLayer);
    if (name && this.addressInput && !this.addressInput.value) this.addressInput.value = name;
    this.placeLine.textContent = `${lon.toFixed(6)}, ${lat.toFixed(6)} · 定位中…`;
    try {
      const at = await api.get(`/api/places/at?lon=${lon}&lat=${lat}`);
      this.placeLine.textContent = `${at.place || "城区范围外"} （${lon.toFixed(6)}, ${lat.toFixed(6)}）`;
    } catch {
      this.placeLine.textContent = `${lon.toFixed(6)}, ${lat.toFixed(6)}`;
    }
    this.placeLine.dataset.ready = "1";
  }

  async searchAddress() {
    const q = this.addressInput.value.trim();
    clearTimeout(this._search);
    if (!q) {
      this.addressResults.hidden = true;
      return;
    }
    this._search = setTimeout(async () => {
      const res = await api.get(`/api/places?q=${encodeURIComponent(q)}&limit=8`).catch(() => ({ places: [] }));
      const kind = { crossing: "路口", road: "道路", coordinates: "坐标", camera: "监控点", info_point: "信息采集点", grid: "网格",
        district: "行政区", area: "片区", construction_site: "工地", disposal_site: "消纳场", plant: "搅拌站", prohibited: "禁行区",
        speed_zone: "限速区" };
      this.addressResults.replaceChildren(...(res.places || []).map((p) =>
        h("div", { class: "item", onmousedown: (e) => {
          e.preventDefault();
          this.addressInput.value = p.kind === "coordinates" ? this.addressInput.value : p.name;
          this.addressResults.hidden = true;
          this.setPoint(p.lon, p.lat);
          this.app.map.flyTo(this.app.toDisplayLatLng(p.lon, p.lat), Math.max(this.app.map.getZoom(), 15), { duration: 0.5 });
        } }, h("b", {}, p.name), " ", h("span", { class: "muted" }, `${kind[p.kind] || p.kind} ${p.place || ""}`))));
      this.addressResults.hidden = !(res.places || []).length;
    }, 200);
  }

  async submit(ev) {
    ev.preventDefault();
    if (!this.point) {
      this.formError.textContent = "请先在地图上选择位置或选择地址";
      return;
    }
    const body = {
      channel: document.getElementById("case-channel").value,
      priority: document.getElementById("case-priority-input").value,
      category: document.getElementById("case-category-input").value,
      reporter: document.getElementById("case-reporter").value.trim(),
      description: document.getElementById("case-description").value.trim(),
      address: this.addressInput.value.trim(),
      lon: this.point[0],
      lat: this.point[1],
    };
    try {
      const c = await api.post("/api/cases", body);
      this.upsert(c);
      this.openDetail(c.id, { propose: true });
    } catch (e) {
      this.formError.textContent = `立案失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`;
    }
  }

  // ------------------------------------------------------------ the case card

  async openDetail(id, { fly = false, propose = false, refresh = false } = {}) {
    const first = this.selected !== id || !refresh;
    this.selected = id;
    this.show("detail");
    let data;
    try {
      data = await api.get(`/api/cases/${id}`);
    } catch (e) {
      this.detailBox.replaceChildren(h("div", { class: "error" }, `案件查询失败: ${e.message}`));
      return;
    }
    if (this.selected !== id) return;
    this.detailData = data;
    this.cases.set(id, data.case);
    this.renderDetail(data, { propose });
    this.render();
    if (first) this.drawFocus(data.case, { fly });
    else this.drawTrack(data.case);
  }

  unfocus() {
    this.selected = null;
    this.detailData = null;
    this.focusLayer.clearLayers();
    this.render();
  }

  renderDetail(data, { propose }) {
    const c = data.case;
    const canOp = this.app.canOperate();
    const late = this.isLate(c);
    const command = c.command ? `${COMMAND_STATUS_LABEL[c.command.status] || c.command.status || "—"}` : c.vehicle_id ? "无车载终端" : "—";
    const arrival = c.arrived_at
      ? `${fmtDateTime(Date.parse(c.arrived_at))} · ${c.arrival_source === "gps" ? "定位自动判定" : "人工确认"}` +
        (c.arrival_distance_m != null ? ` · 距 ${fmtDistance(c.arrival_distance_m)}` : "")
      : "—";
    const onSite = c.state === "arrived" && c.on_site != null ? (c.on_site ? "在现场" : "已离开现场") : null;
    const buttons = ACTIONS.filter(([a]) => c.actions.includes(a)).map(([a, label, prompt]) =>
      h("button", { class: `small${a === "cancel" ? " danger" : ""}`, dataset: { action: a }, onclick: () => this.act(c.id, a, prompt) }, label));
    const dispatchBtn = c.actions.includes("dispatch")
      ? h("button", { class: "small primary", id: "case-propose", onclick: () => this.propose(c) }, c.vehicle_id ? "改派" : "派遣车辆")
      : "";
    this.detailBox.dataset.caseId = c.id;
    this.detailBox.dataset.state = c.state;
    // A refresh of the same case (its own live update, often just after it was
    // filed) keeps the proposal on screen, with the operator's choice in it.
    const kept = this.proposalFor === `${c.id}:${c.state}` && c.actions.includes("dispatch") && this.proposalBox
      ? [...this.proposalBox.childNodes] : null;
    if (!kept) this.proposalFor = null;
    this.detailBox.replaceChildren(
      h("div", { class: "row" },
        h("button", { class: "small", onclick: () => this.show("list") }, "← 列表"),
        h("b", { class: "case-number" }, c.number),
        h("span", { class: `prio prio-${c.priority}` }, PRIORITY_LABEL[c.priority]),
        h("span", { class: "case-state", id: "case-state-tag", style: `background:${CASE_STATE_COLOR[c.state]}` }, CASE_STATE_LABEL[c.state]),
        late ? h("span", { class: "late-text" }, "超时") : ""),
      h("table", { class: "kv" },
        kv("类别", c.category_name), kv("来源", CHANNEL_LABEL[c.channel] || c.channel),
        kv("地点", c.place || "—"), c.address ? kv("地址", c.address) : "", c.reporter ? kv("报告人", c.reporter) : "",
        kv("受理", `${fmtDateTime(Date.parse(c.accepted_at))} · ${c.accepted_by}`),
        kv("处置车辆", c.vehicle_id ? h("a", { href: "#", onclick: (e) => (e.preventDefault(), this.app.select?.(c.vehicle_id)) }, c.plate || c.vehicle_id) : "—"),
        c.vehicle_id ? kv("车载终端", command) : "",
        kv("到场", arrival), onSite ? kv("现场", onSite) : ""),
      c.description ? h("div", { class: "case-text" }, c.description) : "",
      h("table", { id: "case-steps", class: "steps" },
        h("tr", {}, h("th", {}, "环节"), h("th", {}, "用时"), h("th", {}, "时限"), h("th", {}, "")),
        c.steps.map((s) => {
          const running = !s.done_at && s.started_at && !FINAL.has(c.state);
          const took = s.took_s != null ? s.took_s : running ? (this.app.store.now() - Date.parse(s.started_at)) / 1000 : null;
          return h("tr", { class: s.overdue ? "overdue" : "", dataset: { step: s.step } },
            h("td", {}, STEP_LABEL[s.step]), h("td", {}, took == null ? "—" : `${fmtAge(took)}${running ? "…" : ""}`),
            h("td", {}, s.limit_s ? fmtAge(s.limit_s) : "不限"), h("td", {}, s.overdue ? "超时" : s.done_at ? "✓" : ""));
        })),
      canOp ? h("div", { id: "case-actions", class: "row op-only" }, dispatchBtn, buttons) : "",
      (this.proposalBox = h("div", { id: "case-proposal", class: "dispatch-list" })),
      h("div", { class: "muted" }, `办理过程（审计记录 ${data.audit.events} 条${data.audit.intact ? "，校验完整" : "，校验失败！"}）`),
      h("div", { id: "case-timeline", class: "timeline-list" },
        data.events.map((e) => h("div", { class: `ev ev-${e.kind}`, dataset: { kind: e.kind } },
          h("div", {},
            h("span", { class: "t" }, fmtDateTime(Date.parse(e.at))), " ",
            h("span", { class: "k" }, EVENT_LABEL[e.kind] || e.kind), " ",
            h("span", { class: "who muted" }, e.by === "gps" ? "定位判定" : e.by === "terminal" ? "车载终端" : e.by)),
          eventText(e) ? h("div", { class: "c" }, eventText(e)) : ""))),
    );
    if (!data.audit.intact) this.detailBox.classList.add("tampered");
    if (kept) this.proposalBox.replaceChildren(...kept);
    else if (propose && canOp && c.actions.includes("dispatch")) this.propose(c);
  }

  drawFocus(c, { fly }) {
    this.focusLayer.clearLayers();
    const ll = this.app.toDisplayLatLng(c.lon, c.lat);
    L.circle(ll, { radius: this.meta?.arrive_radius_m || 100, color: CASE_STATE_COLOR[c.state], weight: 1.5, fillOpacity: 0.08, interactive: false })
      .addTo(this.focusLayer);
    if (fly) this.app.map.flyTo(ll, Math.max(this.app.map.getZoom(), 15), { duration: 0.5 });
    this.drawTrack(c, { fit: fly });
  }

  // The car's track since it was sent, until the case was handled (or now).
  async drawTrack(c, { fit = false } = {}) {
    if (this.trackLine) this.trackLine.remove();
    this.trackLine = null;
    if (!c.vehicle_id || !c.assigned_at) return;
    const end = c.handled_at || new Date(this.app.store.now() + 60000).toISOString();
    try {
      const fc = await api.get(`/api/vehicles/${encodeURIComponent(c.vehicle_id)}/track?start=${c.assigned_at}&end=${end}`);
      const line = fc.features.find((f) => f.geometry && f.geometry.type === "LineString");
      if (!line || this.selected !== c.id) return;
      const lls = line.geometry.coordinates.map(([x, y]) => this.app.toDisplayLatLng(x, y));
      this.trackLine = L.polyline(lls, { color: "#0050ff", weight: 4, opacity: 0.85 }).addTo(this.focusLayer);
      this.trackLine.bindTooltip(`${c.plate || c.vehicle_id} 派遣后轨迹`);
      if (fit && lls.length > 1) {
        const bounds = L.latLngBounds(lls).extend(this.app.toDisplayLatLng(c.lon, c.lat));
        this.app.map.flyToBounds(bounds.pad(0.3), { maxZoom: 16, duration: 0.5 });
      }
    } catch {
      /* no track yet */
    }
  }

  async propose(c) {
    const key = `${c.id}:${c.state}`;
    this.proposalFor = key;
    this.proposalBox.replaceChildren(h("div", { class: "muted" }, "正在计算最近车辆…"));
    let res;
    try {
      res = await api.get(`/api/cases/${c.id}/proposal?limit=5`);
    } catch (e) {
      if (this.proposalFor === key) this.proposalBox.replaceChildren(h("div", { class: "error" }, `查询失败: ${e.message}`));
      return;
    }
    if (this.proposalFor !== key) return; // another case, or this one moved on meanwhile
    const cars = res.vehicles || [];
    if (this.routes) this.routes.forEach((r) => r.remove());
    this.routes = [];
    let chosen = cars[0]?.id ?? null;
    const here = this.app.toDisplayLatLng(c.lon, c.lat);
    const bounds = L.latLngBounds([here]);
    cars.forEach((car, i) => {
      const ll = this.app.toDisplayLatLng(car.lon, car.lat);
      bounds.extend(ll);
      const pts = car.path ? car.path.map(([x, y]) => this.app.toDisplayLatLng(x, y)) : [ll, here];
      const line = L.polyline(pts, { color: i === 0 ? "#1f9d55" : "#7f8c8d", weight: i === 0 ? 4 : 2, opacity: i === 0 ? 0.9 : 0.6,
        dashArray: car.method === "road" ? null : "4 4" }).addTo(this.focusLayer);
      this.routes.push(line);
    });
    this.proposalBox.replaceChildren(
      h("div", { class: "muted" }, cars.length ? "推荐车辆（按预计到达时间）" : "附近没有在线执法车"),
      ...cars.map((car, i) => h("label", { class: "car", dataset: { vehicleId: car.id } },
        h("input", { type: "radio", name: "case-car", value: car.id, checked: i === 0, onchange: () => (chosen = car.id) }),
        h("b", {}, car.plate || car.id), " ",
        h("span", {}, `约 ${Math.max(1, Math.round(car.eta_min))} 分钟 · ${fmtDistance(car.route_m)}`),
        h("span", { class: `method m-${car.method}` }, car.method === "road" ? "路网" : "直线"),
        car.busy.length ? h("span", { class: "busy" }, `执行中 ${car.busy.join(",")}`) : "")),
      cars.length ? h("div", { class: "row" },
        h("input", { id: "case-dispatch-comment", type: "text", maxlength: 200, placeholder: "派遣说明（可选）" }),
        h("button", { id: "case-dispatch", class: "primary", onclick: () => this.dispatch(c.id, chosen) }, "派遣")) : "",
    );
    if (cars.length) this.app.map.flyToBounds(bounds.pad(0.25), { maxZoom: 16, duration: 0.5 });
  }

  async dispatch(id, vehicleId) {
    if (!vehicleId) return;
    const comment = document.getElementById("case-dispatch-comment")?.value.trim() || "";
    try {
      const c = await api.post(`/api/cases/${id}/dispatch`, { vehicle_id: vehicleId, comment });
      this.proposalFor = null; // sent: the proposal is done with
      this.upsert(c);
      await this.openDetail(id, { refresh: true });
      this.drawFocus(c, { fly: false });
    } catch (e) {
      this.flashNote(`派遣失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`);
    }
  }

  async act(id, action, prompt) {
    const comment = await askComment(prompt);
    if (comment === null) return;
    try {
      const c = await api.post(`/api/cases/${id}/${action}`, { comment });
      this.upsert(c);
      await this.openDetail(id, { refresh: true });
    } catch (e) {
      this.flashNote(`操作失败: ${e instanceof ApiError && e.status === 403 ? "无权限" : e.message}`);
    }
  }
}

function kv(k, v) {
  return h("tr", {}, h("th", {}, k), h("td", {}, v));
}

function eventText(e) {
  const d = e.data || {};
  const bits = [];
  if (e.kind === "dispatched" || e.kind === "reassigned") {
    bits.push(`${d.plate || d.vehicle_id}`);
    if (d.eta_min != null) bits.push(`预计 ${Math.max(1, Math.round(d.eta_min))} 分钟（${d.method === "road" ? "路网" : "直线"}）`);
    if (d.terminal === false) bits.push("无车载终端，请电话通知");
  }
  if ((e.kind === "arrived" || e.kind === "left" || e.kind === "returned") && d.distance_m != null) bits.push(`距案件 ${fmtDistance(d.distance_m)}`);
  if (e.kind === "arrived" && d.after_s != null) bits.push(`派遣后 ${fmtAge(d.after_s)}`);
  if (e.kind.startsWith("terminal_") && d.command_id) bits.push(`指令 #${d.command_id}`);
  if (e.comment) bits.push(e.comment);
  return bits.join(" · ");
}
