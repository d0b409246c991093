// The case report in the cases tab (GET /api/reports/cases): times per step
// (median, p90) with overdue counts, and cases per category, district, grid
// and patrol car, for today, the last 7 or the last 30 days.

import { api } from "./api.js";
import { fmtAge, h } from "./labels.js";

const RANGES = [["today", "今日"], ["7", "近7天"], ["30", "近30天"]];

function dur(s) {
  return s == null ? "—" : fmtAge(s);
}

function table(id, head, rows) {
  return h("table", { id, class: "report" },
    h("tr", {}, head.map((x) => h("th", {}, x))),
    rows.length ? rows.map((r) => h("tr", {}, r.map((x) => h("td", {}, x ?? "—")))) : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "无数据")));
}

export class CaseReport {
  constructor(panel, root) {
    this.panel = panel;
    this.root = root;
    this.range = "today";
  }

  bounds() {
    const now = new Date(this.panel.app.store.now());
    const start = new Date(now);
    if (this.range === "today") start.setHours(0, 0, 0, 0);
    else start.setTime(now.getTime() - Number(this.range) * 86400000);
    return [start.toISOString(), new Date(now.getTime() + 60000).toISOString()];
  }

  async load() {
    const [start, end] = this.bounds();
    this.root.replaceChildren(h("div", { class: "muted" }, "统计中…"));
    let r;
    try {
      r = await api.get(`/api/reports/cases?start=${start}&end=${end}`);
    } catch (e) {
      this.root.replaceChildren(h("div", { class: "error" }, `报表查询失败: ${e.message}`));
      return;
    }
    const total = r.category.reduce((n, x) => n + x.count, 0);
    const csv = (by) => h("a", { href: "#", onclick: (e) => (e.preventDefault(), this.download(by, start, end)) }, "CSV");
    this.root.replaceChildren(
      h("div", { class: "row" },
        RANGES.map(([v, t]) => h("button", { class: `small${this.range === v ? " on" : ""}`, dataset: { range: v },
          onclick: () => ((this.range = v), this.load()) }, t)),
        h("span", { class: "muted" }, `共受理 ${total} 件`)),
      h("div", { class: "section-title" }, "各环节用时 ", csv("steps")),
      table("case-report-steps", ["环节", "件数", "中位数", "P90", "超时件数"],
        r.steps.map((s) => [s.name, s.count, dur(s.median_s), dur(s.p90_s), s.step in { dispatch: 1, arrive: 1, handle: 1, callback: 1 } ? s.overdue : ""])),
      h("div", { class: "section-title" }, "按类别 ", csv("category")),
      table("case-report-category", ["类别", "件数", "未结", "结案", "超时", "结案中位用时"],
        r.category.map((x) => [x.name, x.count, x.open, x.closed, x.overdue, dur(x.close_median_s)])),
      h("div", { class: "section-title" }, "按区 ", csv("district")),
      table("case-report-district", ["区", "件数", "未结", "结案", "超时"],
        r.district.map((x) => [x.name || "城区外", x.count, x.open, x.closed, x.overdue])),
      h("div", { class: "section-title" }, "按网格（前10） ", csv("grid")),
      table("case-report-grid", ["网格", "件数", "未结", "超时"], r.grid.slice(0, 10).map((x) => [x.name || "—", x.count, x.open, x.overdue])),
      h("div", { class: "section-title" }, "按执法车 ", csv("vehicle")),
      table("case-report-vehicle", ["车辆", "派遣", "到场(定位)", "到场中位", "中途离开", "超时"],
        r.vehicle.map((x) => [x.plate || x.vehicle_id, x.dispatched, `${x.arrived} (${x.arrived_gps})`, dur(x.arrive_median_s),
          x.left_before_handled, x.overdue])),
    );
  }

  async download(by, start, end) {
    const res = await fetch(`/api/reports/cases?start=${start}&end=${end}&by=${by}&format=csv`, { headers: api.headers() });
    const blob = await res.blob();
    const a = h("a", { href: URL.createObjectURL(blob), download: `cases-${by}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
  }
}
