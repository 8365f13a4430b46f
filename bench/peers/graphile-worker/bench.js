#!/usr/bin/env node
// The benchmark protocol of /work/shared/BENCH.md applied to graphile-worker on PostgreSQL.
//
//   node bench.js [--tasks N] [--skip-latency] [--json] [--pg-url URL]
//
// The benchmark process enqueues (single, bulk, latency) and observes the store; the worker is ONE
// separate Node process (worker.js, started with child_process.fork) running graphile-worker's
// `run()` with `concurrency: 10`. Each phase uses a fresh database `owlclaw_peer_<random>` on the
// server of --pg-url (default $OWLCLAW_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres),
// dropped afterwards (also when the run fails).
"use strict";
const { fork } = require("child_process");
const fs = require("fs");
const path = require("path");
const { Client, Pool } = require("pg");
const { runMigrations, makeWorkerUtils } = require("graphile-worker");

const SINGLE_JOBS = 2000;
const BULK_CHUNK = 1000;
const LATENCY_JOBS = 1000;
const CONCURRENCY = 10;
const GW_VERSION = require("graphile-worker/package.json").version;

function parseArgs(argv) {
  const a = {
    tasks: 20000,
    skipLatency: false,
    json: false,
    pgUrl: process.env.OWLCLAW_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres",
  };
  for (let k = 0; k < argv.length; k++) {
    const v = argv[k];
    if (v === "--tasks") a.tasks = parseInt(argv[++k], 10);
    else if (v === "--skip-latency") a.skipLatency = true;
    else if (v === "--json") a.json = true;
    else if (v === "--pg-url") a.pgUrl = argv[++k];
    else if (v === "-h" || v === "--help") {
      console.error("usage: node bench.js [--tasks N] [--skip-latency] [--json] [--pg-url URL]");
      process.exit(0);
    } else {
      console.error(`bench.js: unknown argument ${v}`);
      process.exit(2);
    }
  }
  return a;
}

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => console.error(`[graphile-worker] ${msg}`);

function withDb(url, db) {
  const u = new URL(url);
  u.pathname = "/" + db;
  return u.toString();
}

async function adminQuery(pgUrl, sql) {
  const c = new Client({ connectionString: pgUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A fresh database with graphile-worker's schema, dropped by `drop()`. */
async function freshDb(pgUrl) {
  const name = `owlclaw_peer_${Math.random().toString(36).slice(2, 10)}`;
  await adminQuery(pgUrl, `CREATE DATABASE ${name}`);
  const url = withDb(pgUrl, name);
  try {
    await runMigrations({ connectionString: url, logger: quietLogger() });
  } catch (e) {
    await adminQuery(pgUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    throw e;
  }
  return {
    name,
    url,
    drop: () => adminQuery(pgUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

function quietLogger() {
  const { Logger } = require("graphile-worker");
  return new Logger(() => (level, message) => {
    if (level === "error" || level === "warning") console.error(`[graphile-worker] ${level}: ${message}`);
  });
}

function vmHwmMb(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(s);
    return m ? parseInt(m[1], 10) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1];
const r2 = (x) => Math.round(x * 100) / 100;

/** The worker process and a promise-based view of its messages. */
function startWorker(url) {
  const child = fork(path.join(__dirname, "worker.js"), [url], {
    // the worker's stdout (graphile-worker's default logger) goes to our stderr: stdout is the report
    stdio: ["ignore", 2, "inherit", "ipc"],
    // graphile-worker's documented switch to stop logging every successful job (as in its own
    // performance tests); errors and warnings are still logged.
    env: { ...process.env, NO_LOG_SUCCESS: "1" },
  });
  const waiters = [];
  const queued = [];
  child.on("message", (m) => {
    const w = waiters.shift();
    if (w) w(m);
    else queued.push(m);
  });
  let exited = false;
  child.on("exit", (code) => {
    exited = true;
    while (waiters.length) waiters.shift()({ type: "exited", code });
  });
  const next = () =>
    new Promise((resolve) => {
      if (queued.length) resolve(queued.shift());
      else if (exited) resolve({ type: "exited" });
      else waiters.push(resolve);
    });
  const expect = async (type) => {
    const m = await next();
    if (m.type !== type) throw new Error(`worker sent ${JSON.stringify(m)}, expected ${type}`);
    return m;
  };
  return { child, next, expect, send: (m) => child.send(m) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const n = args.tasks;
  const cleanups = [];
  const cleanup = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()();
      } catch (e) {
        console.error(`cleanup: ${e.message}`);
      }
    }
  };
  process.on("SIGINT", () => cleanup().then(() => process.exit(130)));
  try {
    // enqueue_single: 2,000 jobs, one addJob call each, into a fresh database of its own.
    let db = await freshDb(args.pgUrl);
    cleanups.push(db.drop);
    let utils = await makeWorkerUtils({ connectionString: db.url, logger: quietLogger() });
    let t0 = performance.now();
    for (let i = 0; i < SINGLE_JOBS; i++) await utils.addJob("noop", { i, t: nowUs() });
    const singleS = (performance.now() - t0) / 1000;
    const enqueueSingle = SINGLE_JOBS / singleS;
    log(`enqueue_single: ${SINGLE_JOBS} jobs in ${singleS.toFixed(3)}s = ${enqueueSingle.toFixed(0)}/s`);
    await utils.release();
    await cleanups.pop()();

    // enqueue_bulk: N jobs through graphile_worker.add_jobs (its bulk SQL API), 1,000 per call.
    db = await freshDb(args.pgUrl);
    cleanups.push(db.drop);
    const pool = new Pool({ connectionString: db.url, max: 2 });
    cleanups.push(() => pool.end());
    utils = await makeWorkerUtils({ pgPool: pool, logger: quietLogger() });
    const bulkSql = `select count(*) from graphile_worker.add_jobs(array(
         select row('noop', p, null, null, null, null, null, null)::graphile_worker.job_spec
         from json_array_elements($1::json) p))`;
    t0 = performance.now();
    for (let i = 0; i < n; i += BULK_CHUNK) {
      const jobs = [];
      for (let k = i; k < Math.min(n, i + BULK_CHUNK); k++) jobs.push({ i: k, t: nowUs() });
      await pool.query(bulkSql, [JSON.stringify(jobs)]);
    }
    const bulkS = (performance.now() - t0) / 1000;
    const enqueueBulk = n / bulkS;
    log(`enqueue_bulk: ${n} jobs in ${bulkS.toFixed(3)}s = ${enqueueBulk.toFixed(0)}/s`);

    // drain: the worker process is started and connected outside the clock; the clock starts when
    // it is told to call run() (so graphile-worker's start-up is inside the measured time).
    const w = startWorker(db.url);
    cleanups.push(async () => {
      if (w.child.exitCode === null) w.child.kill("SIGKILL");
    });
    await w.expect("ready");
    w.send({ type: "expect", count: n });
    await w.expect("ok");
    t0 = performance.now();
    w.send({ type: "go" });
    await w.expect("reached");
    const lastBody = (performance.now() - t0) / 1000;
    // graphile-worker deletes a job when it succeeds; a failed one stays (with last_error) to retry.
    const unfinished = `select exists(select 1 from graphile_worker._private_jobs) as x`;
    while ((await pool.query(unfinished)).rows[0].x) await sleep(2);
    const drainS = (performance.now() - t0) / 1000;
    const drain = n / drainS;
    const left = (await pool.query("select count(*)::int as c from graphile_worker._private_jobs")).rows[0].c;
    w.send({ type: "completed" });
    const { count: completed, errors } = await w.expect("completed");
    if (left !== 0 || completed !== n || errors !== 0) {
      throw new Error(`drain: ${completed} job:success and ${errors} job:error events, ${left} jobs left in the store; expected ${n}, 0, 0`);
    }
    log(
      `drain: ${n} jobs in ${drainS.toFixed(3)}s = ${drain.toFixed(0)}/s (last body started at ${lastBody.toFixed(3)}s; ` +
        `store empty and ${completed} job:success events: graphile-worker deletes succeeded jobs)`
    );

    // latency: worker warm and idle; one job every 10 ms through addJob, 1,000 jobs.
    let latency = null;
    if (!args.skipLatency) {
      await sleep(500);
      w.send({ type: "expect", count: LATENCY_JOBS });
      await w.expect("ok");
      const start = performance.now();
      for (let k = 0; k < LATENCY_JOBS; k++) {
        // missed ticks are delayed rather than burst, as in ours (tokio MissedTickBehavior::Delay)
        const due = start + k * 10;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        await utils.addJob("noop", { i: n + k, t: nowUs() });
      }
      const reached = await Promise.race([w.expect("reached"), sleep(120000).then(() => null)]);
      if (!reached) throw new Error("latency: the worker did not start all jobs within 120 s");
      const s = reached.samples.map((us) => us / 1000).sort((a, b) => a - b);
      latency = { p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] };
      log(
        `latency: ${LATENCY_JOBS} jobs, queue-to-start p50=${latency.p50.toFixed(2)}ms p95=${latency.p95.toFixed(2)}ms ` +
          `p99=${latency.p99.toFixed(2)}ms max=${latency.max.toFixed(2)}ms`
      );
    }
    const rss = vmHwmMb(w.child.pid);
    log(`peak rss: worker=${rss.toFixed(1)}MiB (the worker process's VmHWM)`);
    w.send({ type: "stop" });
    await Promise.race([w.expect("exited").catch(() => {}), sleep(10000)]);
    await utils.release();
    await cleanup();

    const out = {
      system: "graphile-worker",
      graphile_worker_version: GW_VERSION,
      tasks: n,
      worker_concurrency: CONCURRENCY,
      enqueue_bulk: Math.round(enqueueBulk),
      enqueue_bulk_chunk: BULK_CHUNK,
      enqueue_single: Math.round(enqueueSingle),
      drain: Math.round(drain),
      durations_s: { drain: Math.round(drainS * 1000) / 1000, drain_last_body_start: Math.round(lastBody * 1000) / 1000 },
      latency_ms: latency && { p50: r2(latency.p50), p95: r2(latency.p95), p99: r2(latency.p99), max: r2(latency.max) },
      peak_rss_mb: { worker: r2(rss) },
    };
    if (args.json) {
      console.log(JSON.stringify(out));
    } else {
      const lat = latency
        ? `latency_ms p50=${latency.p50.toFixed(2)} p95=${latency.p95.toFixed(2)} p99=${latency.p99.toFixed(2)}`
        : "latency_ms p50=n/a p95=n/a p99=n/a";
      console.log(
        [
          `graphile-worker ${GW_VERSION} on PostgreSQL (one worker process, concurrency ${CONCURRENCY}), ${n} tasks`,
          `enqueue_bulk: ${out.enqueue_bulk}/s`,
          `enqueue_single: ${out.enqueue_single}/s`,
          `drain: ${out.drain}/s`,
          lat,
          `peak_rss_mb worker=${rss.toFixed(1)}`,
        ].join("\n")
      );
    }
  } catch (e) {
    console.error(`bench.js: failed: ${e.stack || e}`);
    await cleanup();
    process.exit(1);
  }
}

main();
