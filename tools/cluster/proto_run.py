"""Run the scale-out prototype's scenarios against the private services.

    python tools/cluster/proto_run.py failover   3 workers, SIGKILL one mid-run, restart it, check
    python tools/cluster/proto_run.py bench      engine ceiling, then 1, 2, 3 workers draining a backlog
    python tools/cluster/proto_run.py all        both; writes $GPSD_STATE/cluster/run/results.json

Needs: tools/cluster/services.sh start (RabbitMQ) and the private PostgreSQL
(GPSD_STATE=... GPSD_PG_PORT=55541 GPSD_MQTT_PORT=18941 bash tools/services.sh start).
Every process it starts is bounded (--max-seconds / --timeout) and is ended
by pid before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from proto_check import check, reset
from proto_common import AMQP_URL, PARTITIONS, PG_DSN, cpu_seconds, rss_kb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = Path(os.environ.get("GPSD_STATE", REPO / ".state"))
RUN = STATE / "cluster" / "run"
PY = sys.executable


def pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def beam_pid() -> int | None:
    return pidfile(STATE / "cluster" / "rabbitmq" / "rabbitmq.pid")


def pg_pid() -> int | None:
    return pidfile(Path(os.environ.get("GPSD_PG_PIDFILE", STATE / "pg" / "postmaster.pid")))


def pg_cpu(pid: int | None) -> float:
    """CPU of the PostgreSQL cluster: postmaster, live backends, and reaped ones."""
    if not pid:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / tick  # cutime + cstime
    return cpu_seconds(pid, children=True) + reaped


class Proc:
    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self.fh = open(log, "w")
        self.p = subprocess.Popen([PY, *args], cwd=HERE, stdout=self.fh, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def end(self, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.fh.close()
        return self.p.returncode


def worker_args(wid: int, extra: list[str] | None = None) -> list[str]:
    return ["proto_worker.py", "--worker-id", str(wid), "--max-seconds", "300", *(extra or [])]


def stored_count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM proto_fix").fetchone()[0]


def wait_owned(procs: list[Proc], partitions: int, timeout: float = 15) -> None:
    end = time.time() + timeout
    while time.time() < end:
        owned: dict[int, int] = {}
        for pr in procs:
            for e in pr.lines():
                if e.get("ev") == "acquire":
                    owned[e["p"]] = e["worker"]
                elif e.get("ev") == "release" and owned.get(e["p"]) == e["worker"]:
                    del owned[e["p"]]
        if len(owned) == partitions:
            return
        time.sleep(0.1)


def failover(args) -> dict:
    RUN.mkdir(parents=True, exist_ok=True)
    reset(args.pg_dsn, args.amqp_url, args.partitions)
    expected = args.vehicles * args.fixes
    bpid, ppid = beam_pid(), pg_pid()
    api = Proc("api", ["proto_api_node.py", "--exit-idle", "4", "--max-seconds", "200"], RUN / "api.log")
    workers = {w: Proc(f"w{w}", worker_args(w), RUN / f"worker{w}.log") for w in (1, 2)}
    workers[3] = Proc("w3", worker_args(3, ["--crash-after-commit-at", str(args.kill_at + 2.5)]), RUN / "worker3.log")
    wait_owned(list(workers.values()), args.partitions)
    events: list[dict] = []
    cpu0 = {"engine": cpu_seconds(bpid) if bpid else 0.0, "postgresql": pg_cpu(ppid)}
    t0 = time.time()
    pub = Proc(
        "pub",
        [
            "proto_publish.py",
            "--vehicles",
            str(args.vehicles),
            "--fixes",
            str(args.fixes),
            "--connections",
            "10",
            "--rate",
            str(args.rate),
            "--timeout",
            "200",
        ],
        RUN / "publish.log",
    )
    # Timeline: worker 2 is SIGKILLed at --kill-at and restarted --restart-after
    # later; worker 3 kills itself between a commit and its ack shortly after
    # (the window where redeliveries of stored fixes happen) and is restarted
    # --restart-after after that.
    victim = 2
    killed: list[Proc] = []
    restart_at: dict[int, float] = {}
    crashed_w3 = False
    while pub.p.poll() is None or restart_at:
        now = time.time()
        if victim in workers and now - t0 >= args.kill_at and not any(e["ev"] == "kill" for e in events):
            workers[victim].p.send_signal(signal.SIGKILL)
            workers[victim].p.wait()
            events.append(
                {
                    "ev": "kill",
                    "worker": victim,
                    "t": time.time(),
                    "pid": workers[victim].p.pid,
                    "how": "SIGKILL from outside",
                }
            )
            workers[victim].fh.close()
            killed.append(workers.pop(victim))
            restart_at[victim] = time.time() + args.restart_after
        if not crashed_w3 and 3 in workers and workers[3].p.poll() is not None:
            crashed_w3 = True
            crash = [e for e in workers[3].lines() if e.get("ev") == "crash"]
            events.append(
                {
                    "ev": "kill",
                    "worker": 3,
                    "t": crash[0]["t"] if crash else time.time(),
                    "how": "SIGKILL between commit and ack",
                }
            )
            workers[3].fh.close()
            killed.append(workers.pop(3))
            restart_at[3] = time.time() + args.restart_after
        for w, at in list(restart_at.items()):
            if now >= at:
                events.append({"ev": "restart", "worker": w, "t": time.time()})
                workers[w] = Proc(f"w{w}b", worker_args(w), RUN / f"worker{w}b.log")
                del restart_at[w]
        if now - t0 > 240:
            break
        time.sleep(0.02)
    pub.p.wait(timeout=240)
    deadline = time.time() + 90
    while stored_count(args.pg_dsn) < expected and time.time() < deadline:
        time.sleep(0.2)
    t_done = time.time()
    cpu1 = {"engine": cpu_seconds(bpid) if bpid else 0.0, "postgresql": pg_cpu(ppid)}
    worker_cpu = {}
    events.append({"ev": "stop", "t": time.time()})
    for w, pr in workers.items():
        pr.end()
    for pr in [*killed, *workers.values()]:
        for e in pr.lines():
            events.append(e)
            if e.get("ev") == "stats":
                worker_cpu[pr.name] = e["cpu"]
            if e.get("ev") == "stopped":
                worker_cpu[pr.name] = e["cpu"]
    api.p.wait(timeout=60)
    api.fh.close()
    api_out = [e for e in api.lines() if e.get("ev") == "api_node_done"]
    pub_out = pub.lines()
    pub.fh.close()
    events.sort(key=lambda e: e["t"])
    (RUN / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    res = check(args.pg_dsn, args.vehicles, args.fixes, events)
    res["publisher"] = pub_out[-1] if pub_out else None
    res["api_node"] = api_out[-1] if api_out else None
    res["api_node_saw_every_stored_fix"] = bool(api_out) and api_out[-1]["distinct_fixes"] == expected
    res["wall_seconds_publish_to_all_stored"] = round(t_done - t0, 2)
    res["cpu_seconds"] = {
        "engine_rabbitmq": round(cpu1["engine"] - cpu0["engine"], 2),
        "postgresql": round(cpu1["postgresql"] - cpu0["postgresql"], 2),
        "workers": worker_cpu,
    }
    res["scenario"] = {
        "workers": 3,
        "partitions": args.partitions,
        "rate_fixes_per_s": args.rate,
        "kill_at_s": args.kill_at,
        "restart_after_s": args.restart_after,
        "killed": "worker 2 by SIGKILL at kill_at; worker 3 kills itself after a commit, before its ack, "
        "at kill_at + 2.5 s; each restarted restart_after later",
    }
    return res


def publish_backlog(args, vehicles: int, fixes: int) -> dict:
    pub = Proc(
        "pub",
        [
            "proto_publish.py",
            "--vehicles",
            str(vehicles),
            "--fixes",
            str(fixes),
            "--connections",
            str(args.connections),
            "--timeout",
            "200",
        ],
        RUN / "bench_publish.log",
    )
    pub.p.wait(timeout=240)
    pub.fh.close()
    out = pub.lines()
    return out[-1] if out else {}


def bench(args) -> dict:
    RUN.mkdir(parents=True, exist_ok=True)
    bpid, ppid = beam_pid(), pg_pid()
    v, f = args.bench_vehicles, args.bench_fixes
    total = v * f
    res: dict = {"backlog_fixes": total, "partitions": args.partitions}
    res["engine_rss_kb_before"] = rss_kb(bpid) if bpid else None

    # 1. Engine ceiling: MQTT QoS 1 publish -> quorum queues -> 2 trivial consumers (ack only), concurrently.
    reset(args.pg_dsn, args.amqp_url, args.partitions)
    cons = [
        Proc(f"t{w}", worker_args(w, ["--no-write", "--no-hub", "--exit-idle", "2"]), RUN / f"trivial{w}.log")
        for w in (1, 2)
    ]
    wait_owned(cons, args.partitions)
    c0 = cpu_seconds(bpid) if bpid else 0.0
    t0 = time.time()
    pub = publish_backlog(args, v, f)
    for c in cons:
        c.p.wait(timeout=120)
    stops = [e for c in cons for e in c.lines() if e.get("ev") == "stopped"]
    last_ack = max(e["t"] for e in stops) - 2.0  # minus the idle wait
    c1 = cpu_seconds(bpid) if bpid else 0.0
    for c in cons:
        c.end()
    res["engine_ceiling"] = {
        "publish_pubacked_per_s": pub.get("pubacked_per_s"),
        "end_to_end_msg_per_s": round(total / (last_ack - t0)),
        "consumed": sum(e["processed"] for e in stops),
        "engine_cpu_seconds": round(c1 - c0, 2),
        "engine_cpu_share": round((c1 - c0) / (last_ack - t0), 2),
        "consumer_cpu_seconds": [e["cpu"] for e in stops],
        "engine_rss_kb_after": rss_kb(bpid) if bpid else None,
    }

    # 2. Workers: a backlog in the partition queues, drained by 1, 2, 3 workers writing to PostgreSQL.
    res["workers"] = []
    for k in (1, 2, 3):
        reset(args.pg_dsn, args.amqp_url, args.partitions)
        b0 = cpu_seconds(bpid) if bpid else 0.0
        pubk = publish_backlog(args, v, f)
        b1 = cpu_seconds(bpid) if bpid else 0.0
        e0, p0 = (cpu_seconds(bpid) if bpid else 0.0), pg_cpu(ppid)
        ws = [
            Proc(f"b{k}w{w}", worker_args(w, ["--exit-idle", "2"]), RUN / f"bench{k}_w{w}.log") for w in range(1, k + 1)
        ]
        for w in ws:
            w.p.wait(timeout=280)
        e1, p1 = (cpu_seconds(bpid) if bpid else 0.0), pg_cpu(ppid)
        stops = [e for w in ws for e in w.lines() if e.get("ev") == "stopped"]
        for w in ws:
            w.end()
        with psycopg.connect(args.pg_dsn) as c:
            n, first, last = c.execute(
                "SELECT count(*), extract(epoch FROM min(at))::float8, extract(epoch FROM max(at))::float8 FROM proto_proc"
            ).fetchone()
            per_worker = c.execute(
                "SELECT worker, count(*), extract(epoch FROM max(at) - min(at))::float8 FROM proto_proc GROUP BY worker ORDER BY 1"
            ).fetchall()
        span = float(last - first)
        ok = check(args.pg_dsn, v, f)
        res["workers"].append(
            {
                "workers": k,
                "stored": ok["stored"],
                "exactly_once": ok["exactly_once"],
                "order_kept": ok["order_kept"],
                "drain_seconds": round(span, 3),
                "fixes_per_s_total": round(n / span),
                "fixes_per_s_per_worker": round(n / span / k),
                "per_worker": [
                    {"worker": w, "fixes": int(c), "fixes_per_s": round(c / float(s)) if s else None}
                    for w, c, s in per_worker
                ],
                "cpu_seconds": {
                    "workers": [e["cpu"] for e in stops],
                    "engine_rabbitmq": round(e1 - e0, 2),
                    "postgresql": round(p1 - p0, 2),
                },
                "backlog_publish_pubacked_per_s": pubk.get("pubacked_per_s"),
                "backlog_publish_engine_cpu_seconds": round(b1 - b0, 2),
                "backlog_publish_seconds": pubk.get("puback_seconds"),
            }
        )
    res["engine_rss_kb_end"] = rss_kb(bpid) if bpid else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["failover", "bench", "all"])
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--fixes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1000, help="failover run: total fixes/s")
    ap.add_argument("--kill-at", type=float, default=7)
    ap.add_argument("--restart-after", type=float, default=6)
    ap.add_argument("--bench-vehicles", type=int, default=1000)
    ap.add_argument("--bench-fixes", type=int, default=60)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=PARTITIONS)
    ap.add_argument("--pg-dsn", default=PG_DSN)
    ap.add_argument("--amqp-url", default=AMQP_URL)
    args = ap.parse_args()
    out: dict = {"host": {"cores": os.cpu_count()}}
    if args.scenario in ("failover", "all"):
        out["failover"] = failover(args)
        print(json.dumps(out["failover"], indent=2), flush=True)
    if args.scenario in ("bench", "all"):
        out["bench"] = bench(args)
        print(json.dumps(out["bench"], indent=2), flush=True)
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / f"results-{args.scenario}.json").write_text(json.dumps(out, indent=2))
    ok = all(
        out[k]["exactly_once"] and out[k]["order_kept"] and out[k]["api_node_saw_every_stored_fix"]
        for k in ("failover",)
        if k in out
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
