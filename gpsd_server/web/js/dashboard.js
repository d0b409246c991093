// 统计: the fleet now, a local day's violations by kind and company, top
// offenders and the 7-day trend, from GET /api/dashboard (counted by the
// database). Charts by ECharts, served from /vendor like Leaflet and loaded
// the first time the view opens.

import { api } from "./api.js";
import { CLASS_LABEL, SEVERITY_LABEL, h, kindLabel } from "./labels.js";
import { localToday } from "./localtime.js";

const ECHARTS = "/vendor/echarts/dist/echarts.min.js";
let loading = null;

function loadEcharts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  loading ||= new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = ECHARTS;
    s.onload = () => resolve(window.echarts);
    s.onerror = () => reject(new Error("ECharts 未安装 (tools/web_setup.sh)"));
    document.head.append(s);
  });
  return loading;
}

export class DashboardView {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.charts = {};
    this.built = false;
    this.timer = 0;
  }

  get tz() {
    return this.app.config?.timezone || "Asia/Shanghai";
  }

  build() {
    const card = (key, label, cls = "") => h("div", { class: `figure ${cls}` },
      h("div", { class: "value", dataset: { figure: key } }, "—"), h("div", { class: "label" }, label));
    const chart = (id, title) => h("div", { class: "chart-box" }, h("div", { class: "chart-title" }, title),
      h("div", { id, class: "chart" }));
    this.root.append(
      h("div", { class: "report-bar" },
        h("b", {}, "运行统计"),
        h("label", {}, " 日期 ", (this.day = h("input", { id: "dash-day", type: "date", value: localToday(this.tz),
          onchange: () => this.load() }))),
        h("button", { id: "dash-refresh", onclick: () => this.load() }, "刷新"),
        (this.stamp = h("span", { class: "muted" }))),
      h("div", { class: "figures" },
        card("now.vehicles", "车辆总数"), card("now.by_status.moving", "行驶中", "ok"), card("now.by_status.stopped", "停车"),
        card("now.by_status.offline", "离线", "off"), card("now.alerts_open", "待处理告警", "hot"),
        card("now.vehicles_in_violation", "违规进行中", "hot"), card("violations.total", "当日违规"),
        card("violations.by_severity.critical", "当日紧急", "hot")),
      h("div", { class: "charts" },
        chart("chart-kind", "当日违规 · 按类型"), chart("chart-company", "当日违规 · 按公司"),
        chart("chart-trend", "近 7 日违规趋势"), chart("chart-class", "当前车辆 · 按类型")),
      h("div", { class: "tops" },
        h("div", {}, h("div", { class: "chart-title" }, "违规车辆 TOP 10"), (this.topVehicles = h("table", { id: "top-vehicles", class: "grid-table" }))),
        h("div", {}, h("div", { class: "chart-title" }, "违规公司 TOP 10"), (this.topCompanies = h("table", { id: "top-companies", class: "grid-table" })))),
    );
    this.built = true;
    window.addEventListener("resize", () => Object.values(this.charts).forEach((c) => c.resize()));
  }

  async open() {
    if (!this.built) this.build();
    await this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => !this.root.hidden && this.load(), 60000);
  }

  async load() {
    this.root.dataset.loaded = "";
    const body = await api.get(`/api/dashboard?day=${this.day.value}`);
    this.body = body;
    for (const el of this.root.querySelectorAll("[data-figure]")) {
      const v = el.dataset.figure.split(".").reduce((o, k) => (o == null ? o : o[k]), body);
      el.textContent = v == null ? "0" : String(v);
    }
    this.stamp.textContent = ` 更新于 ${new Date(body.generated_at).toLocaleTimeString("zh-CN", { hour12: false })}`;
    const row = (...cells) => h("tr", {}, cells.map((c) => h("td", {}, c)));
    this.topVehicles.replaceChildren(h("tr", {}, ["车牌", "所属公司", "次数"].map((t) => h("th", {}, t))),
      ...body.top_vehicles.map((v) => row(v.plate || v.vehicle_id, v.company || "—", String(v.count))));
    this.topCompanies.replaceChildren(h("tr", {}, ["所属公司", "次数"].map((t) => h("th", {}, t))),
      ...body.top_companies.map((c) => row(c.company || "(未登记)", String(c.count))));
    try {
      await this.draw(await loadEcharts(), body);
    } catch (e) {
      this.stamp.textContent += ` · 图表不可用: ${e.message}`;
    }
    this.root.dataset.loaded = body.day;
  }

  chart(echarts, id) {
    const el = this.root.querySelector(`#${id}`);
    if (!this.charts[id]) this.charts[id] = echarts.init(el, null, { renderer: "canvas" });
    return this.charts[id];
  }

  async draw(echarts, b) {
    const font = { fontFamily: "Microsoft YaHei, WenQuanYi Micro Hei, Noto Sans CJK SC, sans-serif" };
    const kinds = Object.entries(b.violations.by_kind);
    this.chart(echarts, "chart-kind").setOption({
      textStyle: font, tooltip: { trigger: "item" }, legend: { type: "scroll", bottom: 0 },
      series: [{ type: "pie", radius: ["35%", "65%"], center: ["50%", "45%"], label: { formatter: "{b}\n{c}" },
        data: kinds.length ? kinds.map(([k, n]) => ({ name: kindLabel(k), value: n })) : [{ name: "无违规", value: 0 }] }],
    }, true);
    const companies = Object.entries(b.violations.by_company).slice(0, 10).reverse();
    this.chart(echarts, "chart-company").setOption({
      textStyle: font, tooltip: {}, grid: { left: 140, right: 30, top: 10, bottom: 25 },
      xAxis: { type: "value", minInterval: 1 }, yAxis: { type: "category", data: companies.map(([c]) => c || "(未登记)") },
      series: [{ type: "bar", data: companies.map(([, n]) => n), itemStyle: { color: "#e08a00" }, label: { show: true, position: "right" } }],
    }, true);
    this.chart(echarts, "chart-trend").setOption({
      textStyle: font, tooltip: { trigger: "axis" }, legend: { bottom: 0 }, grid: { left: 40, right: 20, top: 15, bottom: 50 },
      xAxis: { type: "category", data: b.trend.map((t) => t.day.slice(5)) }, yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: SEVERITY_LABEL.critical, type: "bar", stack: "s", data: b.trend.map((t) => t.critical), itemStyle: { color: "#d62728" } },
        { name: SEVERITY_LABEL.warning, type: "bar", stack: "s", data: b.trend.map((t) => t.warning), itemStyle: { color: "#e08a00" } },
        { name: "合计", type: "line", data: b.trend.map((t) => t.total), itemStyle: { color: "#2b7bd9" } },
      ],
    }, true);
    const classes = Object.keys(b.now.by_class);
    this.chart(echarts, "chart-class").setOption({
      textStyle: font, tooltip: {}, grid: { left: 60, right: 20, top: 15, bottom: 25 },
      xAxis: { type: "category", data: classes.map((c) => CLASS_LABEL[c] || c) }, yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", data: classes.map((c) => b.now.by_class[c]), itemStyle: { color: "#2b7bd9" },
        label: { show: true, position: "top" } }],
    }, true);
  }
}
