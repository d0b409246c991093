"""Reset and check the scale-out prototype's results.

    python tools/cluster/proto_check.py --reset            empty tables, purge and re-declare the topology
    python tools/cluster/proto_check.py --vehicles 200 --fixes 100 [--events run/events.jsonl]

The check proves, from what was committed in PostgreSQL:

* exactly once: every expected (vehicle, seq) is in proto_fix once (unique
  index), none is missing, none is extra; redeliveries were caught by
  ON CONFLICT DO NOTHING and are counted as duplicates;
* per-vehicle order: walking proto_proc (one row per processed fix, in commit
  order) a vehicle's stored fixes come exactly as 1, 2, 3, ..., by whichever
  worker; a row that stored nothing must be a redelivery of a seq already
  stored (a "duplicate"), never a fix processed ahead of an older one;
* failover: with the run's events (SIGKILL time, acquire/release events), how
  long each orphaned partition went without an owner and without a commit.

Prints one JSON object; exit code 1 when a property does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict

import aio_pika
import psycopg
from proto_common import AMQP_URL, EXCHANGE, PARTITIONS, PG_DSN, declare_topology, fleet, queue_name

SCHEMA = """
DROP TABLE IF EXISTS proto_fix, proto_proc;
CREATE TABLE proto_fix (
    vid text NOT NULL, seq int NOT NULL, lat float8, lon float8, ts int8,
    worker int, part int, stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX proto_fix_uq ON proto_fix (vid, seq);
CREATE TABLE proto_proc (
    proc_id bigserial PRIMARY KEY, worker int, pid int, vid text, seq int, part int,
    inserted bool, batch bigint, pos int, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


async def reset_engine(amqp_url: str, partitions: int) -> None:
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        ch = await conn.channel()
        for p in range(partitions):
            try:
                q = await ch.declare_queue(queue_name(p), passive=True)
                await q.purge()
            except aio_pika.exceptions.ChannelClosed:
                ch = await conn.channel()
        # Re-create the hash exchange so its ring matches the configured weight.
        await ch.exchange_delete(EXCHANGE)
        await declare_topology(ch)


def reset(pg_dsn: str, amqp_url: str, partitions: int) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(SCHEMA)
    asyncio.run(reset_engine(amqp_url, partitions))


def check(pg_dsn: str, vehicles: int, fixes: int, events: list[dict] | None = None) -> dict:
    expected = {(vid, s) for vid, _ in fleet(vehicles) for s in range(1, fixes + 1)}
    with psycopg.connect(pg_dsn) as c:
        stored_rows = c.execute("SELECT vid, seq, count(*) FROM proto_fix GROUP BY vid, seq").fetchall()
        proc = c.execute(
            "SELECT proc_id, worker, vid, seq, part, inserted, extract(epoch FROM at)::float8 FROM proto_proc ORDER BY proc_id"
        ).fetchall()
        totals = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM proto_proc"
        ).fetchone()
        per_worker = c.execute(
            "SELECT worker, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM proto_proc GROUP BY worker ORDER BY worker"
        ).fetchall()
        per_part = c.execute("SELECT part, count(*) FROM proto_fix GROUP BY part ORDER BY part").fetchall()
    stored = {(v, s) for v, s, _ in stored_rows}
    multi = [(v, s, n) for v, s, n in stored_rows if n != 1]
    missing = expected - stored
    extra = stored - expected

    # Order: per vehicle, stored fixes must come 1, 2, 3, ... in commit order.
    high: dict[str, int] = defaultdict(int)
    violations = []
    dup_ok = 0
    owners: dict[str, set] = defaultdict(set)
    for proc_id, worker, vid, seq, part, inserted, _at in proc:
        owners[vid].add(worker)
        if inserted:
            if seq != high[vid] + 1:
                violations.append({"proc_id": proc_id, "vid": vid, "seq": seq, "after": high[vid], "worker": worker})
            high[vid] = max(high[vid], seq)
        elif seq <= high[vid]:
            dup_ok += 1  # a redelivery of a fix already stored, detected by ON CONFLICT
        else:
            violations.append({"proc_id": proc_id, "vid": vid, "seq": seq, "dup_ahead_of": high[vid]})

    out: dict = {
        "expected": len(expected),
        "stored": len(stored_rows),
        "stored_more_than_once": len(multi),
        "missing": len(missing),
        "extra": len(extra),
        "processed_rows": totals[0],
        "inserted": totals[1],
        "on_conflict_duplicates": totals[2],
        "duplicates_of_already_stored": dup_ok,
        "order_violations": len(violations),
        "order_violation_examples": violations[:5],
        "vehicles_seen_by_more_than_one_worker": sum(1 for v in owners.values() if len(v) > 1),
        "per_worker": [{"worker": w, "inserted": i, "duplicates": d} for w, i, d in per_worker],
        "per_partition_fixes": {p: n for p, n in per_part},
    }
    out["exactly_once"] = not multi and not missing and not extra
    out["order_kept"] = not violations
    if events:
        out["failover"] = failover(events, proc)
    return out


def failover(events: list[dict], proc: list) -> dict:
    kills = [e for e in events if e["ev"] == "kill"]
    res = []
    for k in kills:
        w, tk = k["worker"], k["t"]
        owned: set[int] = set()
        for e in events:
            if e["t"] > tk:
                break
            if e.get("worker") != w:
                continue
            if e["ev"] == "acquire":
                owned.add(e["p"])
            elif e["ev"] == "release":
                owned.discard(e["p"])
            elif e["ev"] == "started":
                owned = set()
        parts = []
        for p in sorted(owned):
            acq = [e["t"] for e in events if e["ev"] == "acquire" and e["p"] == p and e["t"] > tk and e["worker"] != w]
            last_old = max((at for _, wk, _, _, pp, _, at in proc if pp == p and wk == w and at <= tk), default=None)
            first_new = min((at for _, wk, _, _, pp, _, at in proc if pp == p and wk != w and at > tk), default=None)
            parts.append(
                {
                    "p": p,
                    "lease_taken_after_s": round(min(acq) - tk, 3) if acq else None,
                    "first_commit_by_new_owner_after_s": round(first_new - tk, 3) if first_new else None,
                    "no_commit_window_s": round(first_new - last_old, 3) if first_new and last_old else None,
                }
            )
        taken = [x["lease_taken_after_s"] for x in parts if x["lease_taken_after_s"] is not None]
        commits = [
            x["first_commit_by_new_owner_after_s"] for x in parts if x["first_commit_by_new_owner_after_s"] is not None
        ]
        res.append(
            {
                "killed_worker": w,
                "orphaned_partitions": sorted(owned),
                "max_lease_taken_after_s": max(taken) if taken else None,
                "max_first_commit_after_s": max(commits) if commits else None,
                "partitions": parts,
            }
        )
    rejoin = []
    for r in [e for e in events if e["ev"] == "restart"]:
        # Until the next restart or the end of the run (shutdown releases are not rebalancing).
        end = min([e["t"] for e in events if e["ev"] in ("restart", "stop", "kill") and e["t"] > r["t"]], default=1e18)
        win = [e for e in events if r["t"] < e["t"] < end]
        acq = [e["t"] for e in win if e["ev"] == "acquire" and e["worker"] == r["worker"]]
        rel = [e for e in win if e["ev"] == "release" and e["worker"] != r["worker"]]
        rejoin.append(
            {
                "worker": r["worker"],
                "first_partition_after_s": round(min(acq) - r["t"], 3) if acq else None,
                "partitions_taken": len(acq),
                "partitions_released_by_others": len(rel),
            }
        )
    return {"kills": res, "rejoins": rejoin}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reset", action="store_true")
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--fixes", type=int, default=100)
    ap.add_argument("--events", help="JSON lines written by proto_run.py")
    ap.add_argument("--partitions", type=int, default=PARTITIONS)
    ap.add_argument("--pg-dsn", default=PG_DSN)
    ap.add_argument("--amqp-url", default=AMQP_URL)
    args = ap.parse_args()
    if args.reset:
        reset(args.pg_dsn, args.amqp_url, args.partitions)
        print(json.dumps({"reset": True}))
        return
    events = None
    if args.events:
        with open(args.events) as f:
            events = sorted((json.loads(line) for line in f if line.strip()), key=lambda e: e["t"])
    out = check(args.pg_dsn, args.vehicles, args.fixes, events)
    print(json.dumps(out, indent=2))
    sys.exit(0 if out["exactly_once"] and out["order_kept"] else 1)


if __name__ == "__main__":
    main()
