// The vehicle list (车辆 tab): every vehicle the map's filters let through,
// searchable, with counts per status; click one to select it on the map.

import { CLASS_COLOR, CLASS_LABEL, STATUS_LABEL, fmtAge, h } from "./labels.js";
import { plateKey } from "./vehicles.js";

const MAX_ROWS = 300;

export class VehicleList {
  constructor(app, root, { select }) {
    this.app = app;
    this.root = root;
    this.select = select;
    this.status = "";
    this.query = "";
    this.root.append(
      h("div", { class: "toolbar" },
        h("input", { id: "vlist-q", type: "search", placeholder: "车牌/编号/公司",
          oninput: (e) => ((this.query = e.target.value), this.render()) })),
      (this.chips = h("div", { id: "vlist-counts", class: "vlist-counts" })),
      (this.list = h("div", { id: "vlist", class: "vlist" })),
    );
  }

  render() {
    if (!this.root.classList.contains("active")) return;
    const store = this.app.store;
    const now = store.now();
    const q = plateKey(this.query);
    const counts = { all: 0, moving: 0, stopped: 0, offline: 0, alert: 0 };
    const rows = [];
    for (const v of store.vehicles.values()) {
      if (!store.visible(v, now)) continue;
      if (q && !plateKey(v.plate).includes(q) && !plateKey(v.id).includes(q) && !plateKey(v.company).includes(q)) continue;
      const st = store.status(v, now);
      counts.all++;
      counts[st]++;
      if (this.status && st !== this.status) continue;
      rows.push([v, st]);
    }
    rows.sort((a, b) => (a[0].plate || a[0].id).localeCompare(b[0].plate || b[0].id, "zh-CN"));
    const chip = (key, label) =>
      h("button", { class: `small chip-count${this.status === key ? " on" : ""}`, dataset: { status: key },
        onclick: () => ((this.status = this.status === key ? "" : key), this.render()) }, `${label} ${counts[key || "all"]}`);
    this.chips.replaceChildren(chip("", "全部"), ...Object.entries(STATUS_LABEL).map(([k, l]) => chip(k, l)));
    this.list.replaceChildren(
      ...rows.slice(0, MAX_ROWS).map(([v, st]) =>
        h("div", { class: "vrow", dataset: { vehicleId: v.id }, onclick: () => this.select(v.id, { fly: true }) },
          h("i", { class: "swatch", style: `background:${CLASS_COLOR[v.cls] || CLASS_COLOR.other}` }),
          h("b", {}, v.plate || v.id), h("span", { class: "muted" }, ` ${CLASS_LABEL[v.cls] || ""}`),
          h("span", { class: `tag st-${st}` }, STATUS_LABEL[st]),
          h("span", { class: "muted right" }, v.speed != null && st === "moving" ? `${v.speed} km/h` : fmtAge((now - v.tsMs) / 1000)))),
      rows.length > MAX_ROWS ? h("div", { class: "muted" }, `另有 ${rows.length - MAX_ROWS} 辆，请缩小范围`) : "",
      rows.length ? "" : h("div", { class: "empty" }, "无符合条件的车辆"),
    );
  }
}
