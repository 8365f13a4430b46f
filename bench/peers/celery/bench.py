#!/usr/bin/env python3
"""The benchmark protocol of /work/shared/BENCH.md applied to Celery 5 (Redis broker and backend).

    .venv/bin/python bench.py [--tasks N] [--skip-latency] [--json] [--pool prefork|threads|...]

The benchmark process enqueues (single, bulk, latency) and observes the result backend; the worker
is ONE `celery worker --concurrency 10` process (prefork pool by default: a main process and 10
forked children) started by this script. It starts consuming an idle queue; once it answers a
ping, the clock starts and the benchmark queue is added with `control.add_consumer` (so Celery's
start-up is outside the clock, consuming from the queue inside it).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import celery
import redis
from celery import group

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tasks import BROKER_DB, REDIS, RESULT_DB, app, noop  # noqa: E402

SINGLE_JOBS = 2000
BULK_CHUNK = 1000
LATENCY_JOBS = 1000
CONCURRENCY = 10
QUEUE = "owlclaw_bench"
IDLE_QUEUE = "owlclaw_idle"
META = "celery-task-meta-"


def log(msg):
    print(f"[celery] {msg}", file=sys.stderr, flush=True)


def now_us():
    return time.time_ns() // 1000


def vm_hwm_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def percentile(s, p):
    import math
    return s[min(len(s), max(1, math.ceil(p / 100 * len(s)))) - 1]


def results(rb, ids):
    """Results of the given task ids that the backend holds (status, result) by id."""
    got = {}
    for k in range(0, len(ids), 1000):
        chunk = ids[k:k + 1000]
        for tid, raw in zip(chunk, rb.mget([META + t for t in chunk])):
            if raw is not None:
                d = json.loads(raw)
                got[tid] = (d["status"], d["result"])
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pool", default="prefork", help="Celery worker pool (default prefork, Celery's default)")
    a = ap.parse_args()
    n = a.tasks

    rq = redis.Redis.from_url(f"{REDIS}/{BROKER_DB}")
    rb = redis.Redis.from_url(f"{REDIS}/{RESULT_DB}")
    rq.flushdb()
    rb.flushdb()

    # enqueue_single: 2,000 jobs, one apply_async call each.
    noop.apply_async(args=[{"i": -1, "t": now_us()}], queue="owlclaw_warmup")  # open the connection
    rq.flushdb()
    t0 = time.perf_counter()
    for i in range(SINGLE_JOBS):
        noop.apply_async(args=[{"i": i, "t": now_us()}], queue=QUEUE)
    single_s = time.perf_counter() - t0
    enqueue_single = SINGLE_JOBS / single_s
    log(f"enqueue_single: {SINGLE_JOBS} jobs in {single_s:.3f}s = {enqueue_single:.0f}/s")
    rq.flushdb()

    # enqueue_bulk: Celery has no bulk enqueue; a group of 1,000 signatures per apply_async (one
    # producer connection, one message per job) is the nearest thing.
    ids = []
    t0 = time.perf_counter()
    for i in range(0, n, BULK_CHUNK):
        g = group(noop.s({"i": k, "t": now_us()}).set(queue=QUEUE) for k in range(i, min(n, i + BULK_CHUNK)))
        res = g.apply_async()
        ids += [r.id for r in res.results]
    bulk_s = time.perf_counter() - t0
    enqueue_bulk = n / bulk_s
    log(f"enqueue_bulk: {n} jobs in {bulk_s:.3f}s = {enqueue_bulk:.0f}/s")
    queued = rq.llen(QUEUE)
    if queued != n:
        raise SystemExit(f"enqueue_bulk: {queued} messages in the queue, expected {n}")

    # drain
    logf = tempfile.NamedTemporaryFile(prefix="owlclaw-peer-celery-", suffix=".log", delete=False)
    name = f"owlclaw-peer-{uuid.uuid4().hex[:8]}@%h"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--concurrency", str(CONCURRENCY),
         "--pool", a.pool, "-Q", IDLE_QUEUE, "-n", name, "--loglevel", "WARNING"],
        cwd=os.path.dirname(os.path.abspath(__file__)), stdout=logf, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        hostname = None
        deadline = time.time() + 60
        while hostname is None:
            if worker.poll() is not None or time.time() > deadline:
                raise SystemExit(f"celery worker did not start (see {logf.name})")
            for reply in app.control.ping(timeout=0.5) or []:
                for h in reply:
                    if h.startswith(name.split("@")[0]):
                        hostname = h
        t0 = time.perf_counter()
        app.control.add_consumer(QUEUE, destination=[hostname], reply=False)
        # The N-th completion as stored: the result backend DB holds one key per finished task.
        while rb.dbsize() < n:
            time.sleep(0.002)
        drain_s = time.perf_counter() - t0
        drain = n / drain_s
        got = results(rb, ids)
        ok = sum(1 for st, _ in got.values() if st == "SUCCESS")
        if ok != n:
            raise SystemExit(f"drain: {ok} SUCCESS results in the backend, expected {n}")
        log(f"drain: {n} jobs in {drain_s:.3f}s = {drain:.0f}/s ({ok} SUCCESS results verified in the result backend)")

        latency = None
        if not a.skip_latency:
            time.sleep(0.5)
            lat_ids = []
            start = time.perf_counter()
            for k in range(LATENCY_JOBS):
                wait = start + k * 0.010 - time.perf_counter()  # missed ticks delayed, not burst
                if wait > 0:
                    time.sleep(wait)
                lat_ids.append(noop.apply_async(args=[{"i": n + k, "t": now_us()}], queue=QUEUE).id)
            deadline = time.time() + 120
            while True:
                got = results(rb, lat_ids)
                if len(got) == LATENCY_JOBS:
                    break
                if time.time() > deadline:
                    raise SystemExit(f"latency: only {len(got)} of {LATENCY_JOBS} jobs finished within 120 s")
                time.sleep(0.05)
            s = sorted(r / 1000 for _, r in got.values())
            latency = {"p50": percentile(s, 50), "p95": percentile(s, 95), "p99": percentile(s, 99), "max": s[-1]}
            log("latency: %d jobs, queue-to-start p50=%.2fms p95=%.2fms p99=%.2fms max=%.2fms"
                % (LATENCY_JOBS, latency["p50"], latency["p95"], latency["p99"], latency["max"]))
        main_rss = vm_hwm_mb(worker.pid)
        kids = children(worker.pid)
        kid_rss = [vm_hwm_mb(p) for p in kids]
        total = main_rss + sum(x for x in kid_rss if x == x)
        log(f"peak rss: worker={total:.1f}MiB (VmHWM of the main process {main_rss:.1f}MiB + its {len(kids)} pool processes; "
            "shared copy-on-write pages are counted in each)")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        rq.flushdb()
        rb.flushdb()
        os.unlink(logf.name)

    r2 = lambda x: round(x, 2)
    out = {
        "system": "celery",
        "celery_version": celery.__version__,
        "pool": a.pool,
        "tasks": n,
        "worker_concurrency": CONCURRENCY,
        "enqueue_bulk": round(enqueue_bulk),
        "enqueue_bulk_chunk": BULK_CHUNK,
        "enqueue_single": round(enqueue_single),
        "drain": round(drain),
        "durations_s": {"drain": round(drain_s, 3)},
        "latency_ms": latency and {k: r2(v) for k, v in latency.items()},
        "peak_rss_mb": {"worker": r2(total), "worker_main_process": r2(main_rss), "pool_processes": len(kids)},
    }
    if a.json:
        print(json.dumps(out))
    else:
        lat = ("latency_ms p50=%.2f p95=%.2f p99=%.2f" % (latency["p50"], latency["p95"], latency["p99"])
               if latency else "latency_ms p50=n/a p95=n/a p99=n/a")
        print(f"celery {celery.__version__} (Redis broker and backend, one worker, --pool {a.pool} --concurrency {CONCURRENCY}), {n} tasks")
        print(f"enqueue_bulk: {out['enqueue_bulk']}/s")
        print(f"enqueue_single: {out['enqueue_single']}/s")
        print(f"drain: {out['drain']}/s")
        print(lat)
        print(f"peak_rss_mb worker={total:.1f}")


if __name__ == "__main__":
    main()
