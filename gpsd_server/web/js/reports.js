// 报表: mileage per vehicle and per company, violations, permit compliance per
// trip, patrol coverage per grid (also coloured on the map by last visit), the
// 12319 dispatch log. Local dates of the city; sortable tables; a row opens the
// vehicle's track (or replay) at that time; each report exports as XLSX and as
// CSV from the server (Chinese headers, local times, the same numbers).

import { api, ApiError } from "./api.js";
import { CLASS_LABEL, fmtAge, h, kindLabel } from "./labels.js";
import { addDays, fmtLocal, localMidnightIso, localToday } from "./localtime.js";

const yes = (v) => (v ? "是" : "否");
const num = (d) => (v) => (v == null ? "—" : Number(v).toFixed(d));

// id -> {name, path, range: "day"|"days", rows(body), cols: [[key, label, format?]], extra query}
const REPORTS = {
  mileage: {
    name: "车辆里程", path: "/api/reports/mileage", range: "day", rows: (b) => b.vehicles, open: "track",
    cols: [["plate", "车牌"], ["id", "编号"], ["class", "类型", (v) => CLASS_LABEL[v] || v], ["company", "所属公司"],
      ["distance_km", "里程(km)", num(3)], ["driving_s", "行驶时间", fmtAge], ["max_speed_kmh", "最高速度(km/h)", num(1)],
      ["fixes", "定位点数"]],
    vehicle: (r) => r.id,
  },
  companies: {
    name: "公司里程", path: "/api/reports/mileage", range: "day", query: { by: "company" }, rows: (b) => b.companies,
    cols: [["company", "所属公司"], ["vehicles", "车辆数"], ["distance_km", "里程(km)", num(3)], ["driving_s", "行驶时间", fmtAge]],
  },
  violations: {
    name: "违规统计", path: "/api/reports/violations", range: "days", rows: (b) => b.rows, open: "track",
    cols: [["day", "日期"], ["plate", "车牌"], ["vehicle_id", "编号"], ["company", "所属公司"], ["kind", "告警类型", kindLabel],
      ["count", "次数"]],
    vehicle: (r) => r.vehicle_id, dayOf: (r) => r.day,
  },
  permits: {
    name: "许可合规", path: "/api/reports/permits", range: "day", rows: (b) => b.trips, open: "replay",
    cols: [["plate", "车牌"], ["vehicle_id", "编号"], ["company", "所属公司"], ["start", "开始", "time"], ["end", "结束", "time"],
      ["distance_km", "里程(km)", num(3)], ["permit_id", "许可证"], ["on_route_pct", "在核准路线(%)", num(1)],
      ["inside_hours_pct", "许可时段内(%)", num(1)], ["origin_reached", "到达工地", yes], ["destination_reached", "到达消纳场", yes],
      ["compliant", "合规", yes]],
    vehicle: (r) => r.vehicle_id,
  },
  coverage: {
    name: "网格巡查", path: "/api/reports/patrol-coverage", range: "days", rows: (b) => b.grids, open: "grid",
    cols: [["name", "网格"], ["id", "编号"], ["visited", "已巡查", yes], ["first_visit", "首次到达", "time"],
      ["last_visit", "最后到达", "time"], ["inside_s", "区域内时间", fmtAge], ["vehicles", "巡查车辆数"]],
  },
  dispatches: {
    name: "12319 派单", path: "/api/reports/dispatches", range: "days", rows: (b) => b.dispatches, open: "track",
    cols: [["created_at", "派单时间", "time"], ["plate", "车牌"], ["vehicle_id", "执法车"], ["note", "事件说明"],
      ["distance_m", "直线距离(m)", num(0)], ["created_by", "派单人"]],
    vehicle: (r) => r.vehicle_id,
  },
};

export class ReportsView {
  constructor(app, root, { showView, showTrack }) {
    this.app = app;
    this.root = root;
    this.showView = showView;
    this.showTrack = showTrack;
    this.kind = "mileage";
    this.sort = null; // [key, direction]
    this.body = null;
    this.built = false;
  }

  get tz() {
    return this.app.config?.timezone || "Asia/Shanghai";
  }

  build() {
    const yesterday = localToday(this.tz, -1);
    this.root.append(
      h("div", { class: "report-bar" },
        h("nav", { class: "report-tabs", id: "report-kinds" },
          // A company account has its own vehicles' reports; the 12319 dispatch log is the city's.
          Object.entries(REPORTS).filter(([id]) => !(this.app.isCompany() && id === "dispatches")).map(([id, r]) =>
            h("button", { dataset: { report: id }, class: id === this.kind ? "active" : "", onclick: () => this.choose(id) }, r.name))),
        h("span", { class: "report-dates" },
          (this.dayBox = h("label", {}, "日期 ", (this.day = h("input", { id: "report-day", type: "date", value: yesterday,
            onchange: () => this.load() })))),
          (this.rangeBox = h("label", {}, "从 ", (this.from = h("input", { id: "report-from", type: "date",
            value: addDays(yesterday, -6), onchange: () => this.load() })), " 至 ",
            (this.to = h("input", { id: "report-to", type: "date", value: yesterday, onchange: () => this.load() })))),
          h("span", { class: "muted" }, ` (${this.tz === "Asia/Shanghai" ? "北京时间" : this.tz})`)),
        h("span", { class: "report-actions" },
          (this.paint = h("button", { id: "report-paint", onclick: () => this.paintGrids() }, "在地图上着色")),
          h("button", { id: "export-xlsx", onclick: () => this.download("xlsx") }, "导出 Excel"),
          h("button", { id: "export-csv", onclick: () => this.download("csv") }, "导出 CSV"))),
      (this.summary = h("div", { id: "report-summary", class: "report-summary" })),
      (this.table = h("div", { id: "report-table", class: "report-table" })),
    );
    this.built = true;
  }

  open() {
    if (!this.built) this.build();
    this.load();
  }

  choose(id) {
    this.kind = id;
    this.sort = null;
    for (const b of this.root.querySelectorAll("#report-kinds button")) b.classList.toggle("active", b.dataset.report === id);
    this.load();
  }

  query() {
    const r = REPORTS[this.kind];
    const q = new URLSearchParams(r.query || {});
    if (r.range === "day") q.set("day", this.day.value);
    else {
      q.set("start", localMidnightIso(this.from.value, this.tz));
      q.set("end", localMidnightIso(addDays(this.to.value, 1), this.tz));
    }
    return q;
  }

  async load() {
    const r = REPORTS[this.kind];
    this.dayBox.hidden = r.range !== "day";
    this.rangeBox.hidden = r.range === "day";
    this.paint.hidden = this.kind !== "coverage";
    this.table.replaceChildren(h("div", { class: "muted" }, "查询中…"));
    this.root.dataset.loaded = "";
    const kind = this.kind;
    try {
      const body = await api.get(`${r.path}?${this.query()}`);
      if (kind !== this.kind) return;
      this.body = body;
      this.render();
    } catch (e) {
      this.body = null;
      const why = e instanceof ApiError && e.body?.parameter ? `${e.message} (${e.body.parameter})` : e.message;
      this.table.replaceChildren(h("div", { class: "error" }, `查询失败: ${why}`));
    }
    this.root.dataset.loaded = kind;
  }

  rows() {
    const r = REPORTS[this.kind];
    const rows = [...(r.rows(this.body) || [])];
    if (this.sort) {
      const [key, dir] = this.sort;
      rows.sort((a, b) => {
        const x = a[key];
        const y = b[key];
        if (x == null) return 1;
        if (y == null) return -1;
        return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), "zh-CN")) * dir;
      });
    }
    return rows;
  }

  render() {
    const r = REPORTS[this.kind];
    const rows = this.rows();
    const fmt = (col, v) => (col[2] === "time" ? fmtLocal(v, this.tz) : col[2] ? col[2](v) : v ?? "—");
    const head = h("tr", {}, r.cols.map((c) => {
      const on = this.sort && this.sort[0] === c[0];
      return h("th", { dataset: { key: c[0] }, class: on ? "sorted" : "",
        onclick: () => ((this.sort = [c[0], on ? -this.sort[1] : -1]), this.render()) },
        c[1], on ? (this.sort[1] > 0 ? " ▲" : " ▼") : "");
    }));
    const body = rows.map((row) =>
      h("tr", { class: r.open ? "link" : "", onclick: () => this.openRow(row) },
        r.cols.map((c) => h("td", { class: typeof row[c[0]] === "number" ? "num" : "" }, fmt(c, row[c[0]])))));
    this.table.replaceChildren(
      rows.length ? h("table", { class: "grid-table" }, h("thead", {}, head), h("tbody", {}, body))
        : h("div", { class: "empty" }, "该时段没有数据"));
    this.summary.replaceChildren(this.summaryText(rows));
  }

  summaryText(rows) {
    const sum = (k) => rows.reduce((s, x) => s + (Number(x[k]) || 0), 0);
    switch (this.kind) {
      case "mileage": return `${rows.length} 辆车 · 合计 ${sum("distance_km").toFixed(1)} km`;
      case "companies": return `${rows.length} 家公司 · 合计 ${sum("distance_km").toFixed(1)} km`;
      case "violations": return `共 ${sum("count")} 次违规`;
      case "permits": return `${rows.length} 趟 · 合规 ${rows.filter((x) => x.compliant).length} 趟 · 持证车辆 ${this.body.vehicles_with_permits}`;
      case "coverage": return `${rows.length} 个网格 · 已巡查 ${rows.filter((x) => x.visited).length} · 未巡查 ${(this.body.unvisited || []).length}`;
      case "dispatches": return `共 ${rows.length} 次派单`;
      default: return "";
    }
  }

  openRow(row) {
    const r = REPORTS[this.kind];
    if (r.open === "grid") return this.showGrid(row.id);
    const vid = r.vehicle?.(row);
    if (!vid) return;
    if (r.open === "replay" && row.start) {
      this.showView("map");
      this.app.replay.prepare([vid], Date.parse(row.start));
      document.querySelector(".tabs button[data-tab=replay]")?.click();
      return;
    }
    let day = r.dayOf?.(row);
    if (this.kind === "dispatches") day = new Intl.DateTimeFormat("en-CA", { timeZone: this.tz }).format(new Date(row.created_at));
    day ||= r.range === "day" ? this.day.value : this.to.value;
    const start = localMidnightIso(day, this.tz);
    const end = localMidnightIso(addDays(day, 1), this.tz);
    this.showTrack(vid, start, end, `${day} 轨迹`);
  }

  showGrid(id) {
    this.paintGrids();
    this.showView("map");
    const b = this.app.city?.highlight(id);
    if (b) this.app.map.fitBounds(b.pad(0.5), { maxZoom: 15 });
  }

  // Grids coloured by last visit: red never, orange more than 12 h before the end, green within.
  paintGrids() {
    if (this.kind !== "coverage" || !this.body) return;
    const city = this.app.city;
    const end = Date.parse(this.body.end);
    city?.groups.grids?.addTo(this.app.map);
    for (const g of this.body.grids) {
      const hit = city?.byId.get(g.id);
      if (!hit?.layer.setStyle) continue;
      const age = g.last_visit ? (end - Date.parse(g.last_visit)) / 3600000 : null;
      const color = age == null ? "#d62728" : age > 12 ? "#f0a30a" : "#2ca02c";
      hit.layer.setStyle({ fillColor: color, fillOpacity: 0.35, color, weight: 1.5 });
    }
    this.app.coveragePainted = true;
    this.showView("map");
  }

  async download(format) {
    const r = REPORTS[this.kind];
    const q = this.query();
    q.set("format", format);
    const res = await fetch(`${r.path}?${q}`, { headers: api.headers({ Accept: "*/*" }) });
    if (!res.ok) {
      this.summary.textContent = `导出失败: HTTP ${res.status}`;
      return;
    }
    const blob = await res.blob();
    const name = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") || "")?.[1] || `report.${format}`;
    const a = h("a", { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
}
