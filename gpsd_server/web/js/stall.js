// The stall watchdog: no live message (positions, alerts or the server's
// heartbeat) for `[desk] stall_s`, or the socket down, puts a full-width red
// banner over the page and sounds the alarm; it clears by itself when messages
// flow again. The socket reconnects and the desk resyncs as before.

import { h } from "./labels.js";

export class StallWatch {
  constructor(app, stallS) {
    this.app = app;
    this.stallMs = stallS * 1000;
    this.stalled = false;
    this.since = 0;
    this.lastSound = 0;
    this.banner = document.getElementById("stall-banner");
    setInterval(() => this.check(), 1000);
  }

  check() {
    const live = this.app.live;
    if (!live) return;
    const now = performance.now();
    const quiet = now - (live.lastMessageMs || now);
    const down = !live.connected;
    const stalled = down || quiet > this.stallMs;
    if (stalled && !this.stalled) this.since = now - (down ? 0 : quiet);
    this.stalled = stalled;
    document.body.classList.toggle("stalled", stalled);
    this.banner.hidden = !stalled;
    if (!stalled) return;
    const secs = Math.round((now - this.since) / 1000);
    this.banner.replaceChildren(
      h("b", {}, down ? "⚠ 实时连接已断开" : "⚠ 实时数据中断"),
      ` ${down ? "正在重连" : "服务器无响应"}，已 ${secs} 秒未收到任何数据 — 地图与告警不再更新，请联系值班技术人员`,
    );
    // Loud at 2 a.m.: the alarm every 10 s while it lasts (when the sound is on).
    if (now - this.lastSound > 10000) {
      this.lastSound = now;
      this.app.alerts?.beep(true);
    }
  }
}
