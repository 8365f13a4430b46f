// The dashboard in a real browser against a real server: `owlclaw serve` on a fresh SQLite file,
// runs seeded through the HTTP API (a worker registered and driven through the worker protocol),
// and headless Chromium driven by playwright-core. Screenshots of each page go to target/browser/.
//
//   OWLCLAW_BIN=target/debug/owlclaw node --test --test-concurrency=1   (in tests/browser)
//
// Every wait is on a condition with a generous deadline: the machine may be slow and loaded.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const SHOTS = path.join(REPO, "target", "browser");
const BIN = process.env.OWLCLAW_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const TOKEN_KEY = "owlclaw.dashboard.token";

/** How long to wait for anything the page or the server does. */
const DEADLINE = 45_000;
/** How long to wait for the server to start (it creates and migrates a database). */
const START_DEADLINE = 90_000;
const TEST_TIMEOUT = 240_000;

if (!BIN) throw new Error("set OWLCLAW_BIN to the owlclaw binary (cargo build -p owlclaw-cli)");
if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
fs.mkdirSync(SHOTS, { recursive: true });

// -------------------------------------------------------------------------------------------------
// The server

/** Starts `owlclaw serve` on a free port and a fresh database; with a token unless insecure. */
async function startServer({ insecure = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "owlclaw-dashboard-"));
  const database = `sqlite://${dir}/db.sqlite`;
  let token = null;
  if (!insecure) {
    const out = execFileSync(BIN, ["--json", "token", "create", "--tenant", "acme", "--database", database], {
      encoding: "utf8",
      timeout: START_DEADLINE,
    });
    token = JSON.parse(out).token;
    assert.match(token, /^owc_/);
  }
  const args = ["serve", "--listen", "127.0.0.1:0", "--database", database];
  if (insecure) args.push("--insecure-dev");
  const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within ${START_DEADLINE} ms:\n${log}`)), START_DEADLINE);
    const onData = (chunk) => {
      log += chunk;
      const m = /listening on (http:\/\/[0-9.]+:[0-9]+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stderr.setEncoding("utf8");
    proc.stdout.setEncoding("utf8");
    proc.stderr.on("data", onData);
    proc.stdout.on("data", (c) => { log += c; });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${log}`));
    });
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { url, token, stop, log: () => log };
}

/** Calls the API as a client would; answers the parsed body, or throws with the API's error. */
async function call(server, method, urlPath, body) {
  const headers = { Accept: "application/json" };
  if (server.token) headers.Authorization = `Bearer ${server.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(server.url + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(DEADLINE),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Polls `fn` until it answers something truthy, or fails after `deadline`. */
async function eventually(what, fn, deadline = DEADLINE) {
  const end = Date.now() + deadline;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function taskDef(name, extra = {}) {
  return {
    name,
    retries: 0,
    timeout: "30s",
    priority: 5,
    backoff: { initial: "1s", factor: 2, max: "5m" },
    ...extra,
  };
}

/** Registers a worker, drives a few runs to their ends through the worker protocol, queues
 * others, and defines a cron and a rate limit. Answers the ids the tests look for. */
async function seed(server) {
  const worker = await call(server, "POST", "/v1/workers", {
    name: "mailer-eu-1",
    slots: 4,
    labels: { region: "eu", tier: "standard" },
    tasks: [
      taskDef("send-email"),
      taskDef("build-report", { retries: 2, priority: 7 }),
      taskDef("render", { requires: ["gpu"] }),
      taskDef("nightly-cleanup", { cron: "0 3 * * *", timezone: "Europe/Paris" }),
    ],
  });
  const wid = worker.worker_id;
  const exchange = (req) => call(server, "POST", `/v1/workers/${encodeURIComponent(wid)}/exchange`, { held: [], want: 0, wait_ms: 0, ...req });
  const claimOne = async (runId) => {
    const got = await exchange({ want: 1, wait_ms: 5000, heartbeat: true });
    assert.equal(got.assignments.length, 1, JSON.stringify(got));
    assert.equal(got.assignments[0].run_id, runId);
    return got.assignments[0];
  };

  // A run that failed for good.
  const failed = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "bounce@example.com" }, owner: "alice" });
  const a1 = await claimOne(failed.id);
  await exchange({ completions: [{ run_id: failed.id, attempt: a1.attempt, outcome: "failed", error: "SMTP 550: mailbox unavailable", retryable: true }] });

  // A run that succeeded after two durable steps, the second spawning a child.
  const parent = await call(server, "POST", "/v1/runs", { task: "build-report", input: { month: "2026-11", format: "pdf" }, owner: "bob" });
  const a2 = await claimOne(parent.id);
  const step = (position, name, output) => call(server, "POST", `/v1/workers/${encodeURIComponent(wid)}/steps`,
    { run_id: parent.id, attempt: a2.attempt, position, name, status: "succeeded", output });
  await step(0, "fetch-data", { rows: 42 });
  const child = await call(server, "POST", "/v1/runs", {
    task: "send-email", input: { to: "bob@example.com", attach: "2026-11.pdf" }, owner: "bob", parent_id: parent.id,
    idempotency_key: `child:${parent.id}:1`,
  });
  await step(1, "spawn:send-email", { run_id: child.id });
  await exchange({ completions: [{ run_id: parent.id, attempt: a2.attempt, outcome: "succeeded", output: { url: "https://reports.example.com/2026-11.pdf", pages: 12 } }] });

  // Runs left waiting: queued ones, one a worker lacks the labels for, one due in an hour.
  const toCancel = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "carol@example.com" }, owner: "carol" });
  const toRefuse = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "erin@example.com" }, owner: "erin" });
  const forKeyboard = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "dave@example.com" }, owner: "dave" });
  await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "alice@example.com" }, owner: "alice", priority: 9 });
  const gpu = await call(server, "POST", "/v1/runs", { task: "render", input: { scene: "intro" } });
  const later = await call(server, "POST", "/v1/runs", { task: "build-report", input: { month: "2026-12" }, delay: "1h" });

  await call(server, "POST", "/v1/crons", { task: "build-report", expr: "30 9 * * 1-5", timezone: "America/New_York", input: { kind: "weekday" }, overlap: "skip", catch_up: "none" });
  await call(server, "POST", "/v1/rate-limits", { name: "smtp", limit: 20, per: "1s" });

  // Keep the worker listed (alive) while the tests run, claiming nothing.
  const heartbeat = setInterval(() => { exchange({ heartbeat: true }).catch(() => {}); }, 2000);
  return { wid, failed, parent, child, toCancel, toRefuse, forKeyboard, gpu, later, stopHeartbeat: () => clearInterval(heartbeat) };
}

/** Registers a worker of its own for one test: it claims one run at a time on demand, keeps
 * itself listed (heartbeats naming the runs it holds) and is deleted by `close`. */
async function ownWorker(server, name, tasks) {
  const worker = await call(server, "POST", "/v1/workers", { name, slots: 2, tasks });
  const wid = encodeURIComponent(worker.worker_id);
  const holding = new Set();
  const exchange = (req) => call(server, "POST", `/v1/workers/${wid}/exchange`, { held: [...holding], want: 0, wait_ms: 0, ...req });
  const heartbeat = setInterval(() => { exchange({ heartbeat: true }).catch(() => {}); }, 2000);
  return {
    /** Claims `runId` (the only run of its tasks waiting), answering its assignment. */
    async claim(runId) {
      const a = await eventually(`a claim of run ${runId}`, async () => {
        const out = await exchange({ want: 1, wait_ms: 1000, heartbeat: true });
        for (const x of out.assignments) holding.add(x.run_id);
        return out.assignments.find((x) => x.run_id === runId);
      });
      return a;
    },
    /** Checkpoints one durable step of a claimed run. */
    step: (a, position, name, status, extra = {}) => call(server, "POST", `/v1/workers/${wid}/steps`,
      { run_id: a.run_id, attempt: a.attempt, position, name, status, ...extra }),
    async complete(a, outcome, extra) {
      holding.delete(a.run_id);
      return exchange({ completions: [{ run_id: a.run_id, attempt: a.attempt, outcome, ...extra }] });
    },
    async close() {
      clearInterval(heartbeat);
      await call(server, "DELETE", `/v1/workers/${wid}`).catch(() => {});
    },
  };
}

// -------------------------------------------------------------------------------------------------
// The browser

let browser;

async function newPage(server, { signedIn = true, timezoneId } = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, timezoneId });
  context.setDefaultTimeout(DEADLINE);
  if (signedIn && server.token) {
    await context.addInitScript(([key, token]) => {
      if (!sessionStorage.getItem(key) && !sessionStorage.getItem(`${key}.set`)) {
        sessionStorage.setItem(key, token);
        sessionStorage.setItem(`${key}.set`, "1");
      }
    }, [TOKEN_KEY, server.token]);
  }
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[0-9]/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { page, context, problems };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** The ids of the runs the runs table shows, with their statuses. */
async function tableRuns(page) {
  return page.$$eval("#runs-table tbody tr", (rows) => rows.map((r) => ({ id: r.dataset.run, status: r.dataset.status })));
}

async function waitRunsTable(page) {
  await page.locator("#runs-table, #runs-empty").first().waitFor();
}

async function openRun(page, server, id) {
  await page.goto(`${server.url}/#/runs/${id}`);
  await page.locator("#run-detail").waitFor();
}

async function focusedId(page) {
  return page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.getAttribute("href") || document.activeElement.tagName));
}

/** Presses `key` (Tab, or Shift+Tab) until `pred` holds for the focused element, at most `max`
 * times: the keyboard alone moves the focus. */
async function tabUntil(page, pred, arg = null, { key = "Tab", max = 80 } = {}) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(key);
    if (await page.evaluate(pred, arg)) return;
  }
  throw new Error(`Tab never reached the element (last focus: ${await focusedId(page)})`);
}

// -------------------------------------------------------------------------------------------------
// With API tokens (the default server)

describe("the dashboard of a server with API tokens", { timeout: 20 * TEST_TIMEOUT }, () => {
  let server;
  let runs;

  before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
      timeout: START_DEADLINE,
    });
    server = await startServer();
    runs = await seed(server);
  });

  after(async () => {
    runs?.stopHeartbeat();
    await browser?.close();
    await server?.stop();
  });

  test("its files are served without a token, with a strict Content-Security-Policy", { timeout: TEST_TIMEOUT }, async () => {
    for (const [p, type] of [["/", "text/html"], ["/dashboard/app.js", "text/javascript"], ["/dashboard/app.css", "text/css"]]) {
      const res = await fetch(server.url + p, { signal: AbortSignal.timeout(DEADLINE) });
      assert.equal(res.status, 200, p);
      assert.ok(res.headers.get("content-type").startsWith(type), `${p}: ${res.headers.get("content-type")}`);
      const csp = res.headers.get("content-security-policy");
      assert.match(csp, /default-src 'self'/, p);
      assert.match(csp, /script-src 'self'(;|$)/, p);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, p);
      assert.equal(res.headers.get("cache-control"), "no-cache", p);
      assert.ok((await res.text()).length > 100, p);
    }
    // The data still needs the token, and the OpenAPI document does not list the dashboard.
    const denied = await fetch(`${server.url}/v1/runs`, { signal: AbortSignal.timeout(DEADLINE) });
    assert.equal(denied.status, 401);
    const doc = await (await fetch(`${server.url}/v1/openapi.json`)).json();
    for (const p of Object.keys(doc.paths)) assert.ok(p.startsWith("/v1/") || ["/healthz", "/readyz", "/metrics"].includes(p), p);
  });

  test("it asks for a token, shows why a wrong one is refused, and signs in with the right one", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server, { signedIn: false });
    await page.goto(server.url);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await shot(page, "sign-in");
    await page.fill("#token", "owc_not-a-real-token");
    await page.click("button[type=submit]");
    const refused = page.locator("#signin-error .error");
    await refused.waitFor();
    const text = await refused.innerText();
    assert.match(text, /401/);
    assert.match(text, /invalid API token/);
    await page.fill("#token", server.token);
    await page.click("button[type=submit]");
    await page.locator("#runs-table").waitFor();
    const shown = (await tableRuns(page)).map((r) => r.id);
    for (const r of [runs.failed, runs.parent, runs.child, runs.toCancel, runs.gpu, runs.later]) {
      assert.ok(shown.includes(r.id), `run ${r.id} is listed`);
    }
    // Newest first, as the API lists them.
    const api = await call(server, "GET", "/v1/runs?limit=50");
    assert.deepEqual(shown, api.runs.map((r) => r.id));
    assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), server.token);
    assert.match(await page.locator("#auth-state").innerText(), /Signed in/);
    await shot(page, "runs");
    // Signing out forgets the token.
    await page.click("#sign-out");
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("a token the server no longer accepts brings the sign-in form back with the API's error", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context } = await newPage(server, { signedIn: false });
    await context.addInitScript((key) => sessionStorage.setItem(key, "owc_revoked-or-mistyped"), TOKEN_KEY);
    await page.goto(server.url);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    assert.match(await page.locator("#signin-error").innerText(), /401 unauthorized[\s\S]*invalid API token/);
    await context.close();
  });

  test("filters by status, owner and task, and shows the API's refusal of a bad filter", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    await page.goto(`${server.url}/#/runs`);
    await page.locator("#runs-table").waitFor();
    await page.selectOption("#f-status", "queued");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => location.hash.includes("status=queued"));
    const expected = (await call(server, "GET", "/v1/runs?status=queued")).runs.map((r) => r.id);
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll("#runs-table tbody tr")];
      return rows.length === ids.length && rows.every((r, i) => r.dataset.run === ids[i] && r.dataset.status === "queued");
    }, expected, { timeout: DEADLINE });
    assert.ok(expected.includes(runs.toCancel.id));
    assert.ok(!expected.includes(runs.failed.id));
    await shot(page, "runs-queued");

    // Failed runs, by clicking the failed count of the overview later; here by the form.
    await page.selectOption("#f-status", "failed");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction((id) => {
      const rows = [...document.querySelectorAll("#runs-table tbody tr")];
      return location.hash.includes("status=failed") && rows.length >= 1 && rows.every((r) => r.dataset.status === "failed") && rows.some((r) => r.dataset.run === id);
    }, runs.failed.id);

    // By owner (and any status).
    await page.selectOption("#f-status", "");
    await page.fill("#f-owner", "bob");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    const bobs = (await call(server, "GET", "/v1/runs?owner=bob")).runs.map((r) => r.id).sort();
    await page.waitForFunction((n) => location.hash.includes("owner=bob") && document.querySelectorAll("#runs-table tbody tr").length === n, bobs.length);
    assert.deepEqual((await tableRuns(page)).map((r) => r.id).sort(), bobs);

    // A task name the API refuses: its code and message are shown.
    await page.fill("#f-owner", "");
    await page.fill("#f-task", "bad name");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    const error = page.locator("#page-body .error");
    await error.waitFor();
    const text = await error.innerText();
    assert.match(text, /400 invalid_input/);
    assert.match(text, /task name "bad name" contains ' '/);
    await shot(page, "runs-error");

    // Clear goes back to every run.
    await page.click("text=Clear");
    await page.waitForFunction(() => location.hash === "#/runs" && document.querySelectorAll("#runs-table tbody tr").length > 3);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("pages through the runs with next_cursor", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context } = await newPage(server);
    const all = (await call(server, "GET", "/v1/runs?limit=1000")).runs.map((r) => r.id);
    assert.ok(all.length >= 4);
    // Pages of 25 would hold every run here: ask for pages of 3 through the address.
    await page.goto(`${server.url}/#/runs?limit=3`);
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll("#runs-table tbody tr")].map((r) => r.dataset.run);
      return JSON.stringify(rows) === JSON.stringify(ids);
    }, all.slice(0, 3));
    await page.click("#next-page");
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll("#runs-table tbody tr")].map((r) => r.dataset.run);
      return JSON.stringify(rows) === JSON.stringify(ids);
    }, all.slice(3, 6));
    await page.locator("text=← Newest runs").waitFor();
    await context.close();
  });

  test("opens a run by id and shows its input, output, steps, children and events", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    await page.goto(`${server.url}/#/runs`);
    await page.locator("#runs-table").waitFor();
    await page.fill("#f-id", runs.parent.id);
    await page.click("text=Open run");
    await page.locator("#run-detail").waitFor();
    assert.equal(await page.locator("#run-detail").getAttribute("data-status"), "succeeded");
    const summary = await page.locator("#run-detail dl.facts").innerText();
    assert.match(summary, /build-report/);
    assert.match(summary, /1 of 3/);
    assert.match(summary, /bob/);
    assert.match(summary, /mailer-eu-1/);
    const input = JSON.parse(await page.locator("#run-input pre").innerText());
    assert.deepEqual(input, { month: "2026-11", format: "pdf" });
    const output = JSON.parse(await page.locator("#run-output pre").innerText());
    assert.deepEqual(output, { url: "https://reports.example.com/2026-11.pdf", pages: 12 });
    const steps = await page.locator("#steps-table tbody tr").allInnerTexts();
    assert.equal(steps.length, 2);
    assert.match(steps[0], /fetch-data[\s\S]*succeeded/);
    assert.match(steps[1], /spawn:send-email/);
    const events = await page.locator("#run-events li").allInnerTexts();
    const api = await call(server, "GET", `/v1/runs/${runs.parent.id}/events`);
    assert.equal(events.length, api.length);
    assert.match(events.at(-1), /running[\s\S]*succeeded/);
    // No action applies to a succeeded run.
    assert.equal(await page.locator("#cancel-run, #retry-run").count(), 0);
    await page.locator("details[data-key='step-0'] summary").click();
    await shot(page, "run-detail");

    // Its child, and from the child back to its parent.
    await page.click(`#run-children a[href='#/runs/${runs.child.id}']`);
    await page.waitForFunction((id) => document.querySelector("#run-id")?.textContent === id && document.querySelector("#run-detail"), runs.child.id);
    await page.click(`#run-detail a[href='#/runs/${runs.parent.id}']`);
    await page.waitForFunction((id) => document.querySelector("#run-id")?.textContent === id && document.querySelector("#run-detail"), runs.parent.id);

    // A failed run: its error and its failed attempts.
    await openRun(page, server, runs.failed.id);
    assert.match(await page.locator("#run-error").innerText(), /SMTP 550: mailbox unavailable/);
    assert.match(await page.locator("#run-detail").innerText(), /Failed attempts/);

    // A run no live worker can take says why.
    await openRun(page, server, runs.gpu.id);
    assert.match(await page.locator("#run-waiting").innerText(), /gpu/);

    // Ids the API refuses or does not know: its answer is shown.
    await page.goto(`${server.url}/#/runs/not-a-run-id`);
    await page.locator("#page-body .error").waitFor();
    assert.match(await page.locator("#page-body .error").innerText(), /400 invalid_input[\s\S]*not a run id/);
    await page.goto(`${server.url}/#/runs/00000000-0000-4000-8000-000000000000`);
    await page.locator("#page-body .error").waitFor();
    assert.match(await page.locator("#page-body .error").innerText(), /404 not_found/);
    await shot(page, "run-not-found");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("cancels a run after a confirmation that Escape dismisses", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    await openRun(page, server, runs.toCancel.id);
    assert.equal(await page.locator("#run-detail").getAttribute("data-status"), "queued");
    await page.click("#cancel-run");
    const dialog = page.locator("dialog#confirm");
    await dialog.waitFor({ state: "visible" });
    assert.match(await dialog.innerText(), /Cancel this run\?/);
    assert.equal(await focusedId(page), "confirm-no");
    await shot(page, "cancel-dialog");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.activeElement?.id === "cancel-run");
    assert.equal((await call(server, "GET", `/v1/runs/${runs.toCancel.id}`)).status, "queued", "Escape cancelled nothing");

    await page.click("#cancel-run");
    await dialog.waitFor({ state: "visible" });
    await page.click("#confirm-yes");
    await dialog.waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "cancelled");
    assert.equal((await call(server, "GET", `/v1/runs/${runs.toCancel.id}`)).status, "cancelled");
    await page.waitForFunction(() => /is now cancelled/.test(document.querySelector("#announce").textContent));
    await page.locator("#retry-run").waitFor();
    await shot(page, "run-cancelled");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("retries a failed run after a confirmation", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    await openRun(page, server, runs.failed.id);
    assert.equal(await page.locator("#run-detail").getAttribute("data-status"), "failed");
    await page.click("#retry-run");
    const dialog = page.locator("dialog#confirm");
    await dialog.waitFor({ state: "visible" });
    assert.match(await dialog.innerText(), /Retry this run\?/);
    await shot(page, "retry-dialog");
    await page.click("#confirm-yes");
    await dialog.waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "queued");
    const after = await call(server, "GET", `/v1/runs/${runs.failed.id}`);
    assert.equal(after.status, "queued");
    // Its history goes on: the retry is in the events.
    const events = await page.locator("#run-events li").allInnerTexts();
    assert.match(events.at(-1), /failed[\s\S]*queued/);
    await shot(page, "run-retried");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("an action the API refuses shows its error in the dialog", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context } = await newPage(server);
    await openRun(page, server, runs.toRefuse.id);
    await page.click("#cancel-run");
    const dialog = page.locator("dialog#confirm");
    await dialog.waitFor({ state: "visible" });
    // Someone else cancels it meanwhile.
    await call(server, "POST", `/v1/runs/${runs.toRefuse.id}/cancel`);
    await page.click("#confirm-yes");
    const error = page.locator("#confirm-error .error");
    await error.waitFor();
    assert.match(await error.innerText(), /409 invalid_transition/);
    await shot(page, "action-refused");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "cancelled");
    await context.close();
  });

  test("workers, crons, rate limits and the overview show what the API lists", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    await page.goto(`${server.url}/#/workers`);
    const worker = page.locator("tr[data-worker='mailer-eu-1']");
    await worker.waitFor();
    const w = await worker.innerText();
    for (const s of ["region=eu", "tier=standard", "send-email", "build-report", "0 of 4"]) assert.ok(w.includes(s), `${s} in ${w}`);
    await shot(page, "workers");

    await page.click("nav >> text=Crons");
    const cron = page.locator("#crons-table tbody tr", { hasText: "30 9 * * 1-5" });
    await cron.waitFor();
    const c = await cron.innerText();
    assert.match(c, /America\/New_York/);
    assert.match(c, /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in /, "the next tick");
    assert.match(c, /never/, "no tick yet");
    assert.match(c, /09:30:00 America\/New_York/, "the next tick in the schedule's own time zone");
    assert.match(c, /overlap skip, catch-up none/, "its policies");
    const nightly = await page.locator("tr[data-cron='task:nightly-cleanup']").innerText();
    assert.match(nightly, /0 3 \* \* \*[\s\S]*Europe\/Paris/);
    assert.match(nightly, /03:00:00 Europe\/Paris/);
    assert.match(nightly, /overlap allow, catch-up latest/, "the default policies");
    await shot(page, "crons");

    await page.click("nav >> text=Rate limits");
    const limit = page.locator("tr[data-limit='smtp']");
    await limit.waitFor();
    assert.match(await limit.innerText(), /smtp\s+20\s+1s\s+20/);
    await shot(page, "rate-limits");

    await page.click("nav >> text=Overview");
    await page.locator("#ov-status .card").first().waitFor();
    for (const status of ["queued", "failed", "cancelled", "succeeded", "scheduled"]) {
      const n = (await call(server, "GET", `/v1/runs?status=${status}&limit=1000`)).runs.length;
      await page.waitForFunction(([s, count]) => document.querySelector(`[data-count='${s}']`)?.textContent === String(count), [status, n]);
    }
    // The queue depth is this tenant's own, from /v1/overview.
    await page.locator("#queue-table").waitFor();
    assert.match(await page.locator("#queue-table caption").innerText(), /This tenant's runs waiting for a worker/);
    const queued = (await call(server, "GET", "/v1/overview")).queued.find((q) => q.task === "send-email");
    assert.ok(queued && queued.count > 0, JSON.stringify(queued));
    assert.match(await page.locator("#queue-table tr[data-task='send-email']").first().innerText(), /send-email\s+\d+\s+\d+/);
    assert.match(await page.locator("#ov-workers").innerText(), /1 live worker, 0 of 4 slots in use/);
    assert.match(await page.locator("#counters-table").innerText(), /Runs scheduled/);
    await shot(page, "overview");
    // A count links to the runs of that status.
    await page.click("[data-status='cancelled'].card");
    await page.waitForFunction(() => location.hash === "#/runs?status=cancelled" && document.querySelector("#runs-table"));
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("is usable by keyboard alone", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server, { signedIn: false });
    await page.goto(server.url);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    // The token field has the focus: type and press Enter.
    await page.waitForFunction(() => document.activeElement?.id === "token");
    await page.keyboard.type(server.token);
    await page.keyboard.press("Enter");
    await page.locator("#runs-table").waitFor();

    // Back up to the navigation, to the workers; the new page's heading takes the focus.
    await page.waitForFunction(() => document.activeElement?.id === "page-title");
    await tabUntil(page, () => document.activeElement?.getAttribute("href") === "#/workers", null, { key: "Shift+Tab" });
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, "none", "the focused link shows it");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.activeElement?.id === "page-title" && document.activeElement.textContent === "Workers");
    await page.locator("#workers-table").waitFor();

    // Back to the runs, into a run, its cancel dialog, and out again with Escape.
    await tabUntil(page, () => document.activeElement?.getAttribute("href") === "#/runs", null, { key: "Shift+Tab" });
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.activeElement?.id === "page-title" && document.activeElement.textContent === "Runs");
    await page.locator("#runs-table").waitFor();
    await tabUntil(page, (id) => document.activeElement?.getAttribute("href") === `#/runs/${id}`, runs.forKeyboard.id, { max: 200 });
    await page.keyboard.press("Enter");
    await page.locator("#run-detail").waitFor();
    await tabUntil(page, () => document.activeElement?.id === "cancel-run");
    await page.keyboard.press("Enter");
    await page.locator("dialog#confirm").waitFor({ state: "visible" });
    assert.equal(await focusedId(page), "confirm-no");
    await page.keyboard.press("Escape");
    await page.locator("dialog#confirm").waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.activeElement?.id === "cancel-run");
    assert.equal((await call(server, "GET", `/v1/runs/${runs.forKeyboard.id}`)).status, "queued");

    // After a reload, the first Tab reaches the skip button, which jumps to the content.
    await page.reload();
    await page.locator("#run-detail").waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await focusedId(page), "skip");
    await page.keyboard.press("Enter");
    assert.equal(await focusedId(page), "page-title");
    await shot(page, "keyboard");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("live updates show new runs without a reload, and pausing stops them", { timeout: TEST_TIMEOUT }, async () => {
    const { page, context, problems } = await newPage(server);
    // The page's timers run on a clock the test moves, so "no refresh while paused" is checked
    // without waiting.
    await page.clock.install();
    await page.goto(`${server.url}/#/runs?owner=frank`);
    await page.locator("#runs-empty").waitFor();
    const first = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "frank@example.com" }, owner: "frank" });
    await page.clock.runFor(2500);
    await page.locator(`tr[data-run='${first.id}']`).waitFor();

    await page.click("#live-toggle");
    assert.equal(await page.locator("#live-toggle").getAttribute("aria-pressed"), "false");
    let calls = 0;
    page.on("request", (r) => { if (new URL(r.url()).pathname === "/v1/runs") calls++; });
    const second = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "frank+2@example.com" }, owner: "frank" });
    await page.clock.runFor(20_000);
    assert.equal(calls, 0, "no refresh while paused");
    assert.equal(await page.locator(`tr[data-run='${second.id}']`).count(), 0);

    await page.click("#live-toggle");
    assert.equal(await page.locator("#live-toggle").getAttribute("aria-pressed"), "true");
    await page.locator(`tr[data-run='${second.id}']`).waitFor();
    await shot(page, "runs-live");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("filters by creation time, typed in the browser's time zone and sent in UTC, and counts the runs that match", { timeout: TEST_TIMEOUT }, async () => {
    // India is UTC+05:30 all year: a local time there is not the UTC one, nor a whole hour off.
    const { page, context, problems } = await newPage(server, { timezoneId: "Asia/Kolkata" });
    const kolkata = (ms) => new Date(ms + 5.5 * 3600_000).toISOString().slice(0, 19);
    const secondOf = (iso) => Math.floor(Date.parse(iso) / 1000) * 1000;
    const owner = "timeline";
    const early = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "early@example.com" }, owner });
    // The inputs take whole seconds: the second run is made in a later second than the first.
    await eventually("the clock to pass the first run's second", () => Date.now() >= secondOf(early.created_at) + 1000);
    const late = await call(server, "POST", "/v1/runs", { task: "send-email", input: { to: "late@example.com" }, owner });
    const split = secondOf(late.created_at);
    assert.ok(split > Date.parse(early.created_at), `${late.created_at} is a second after ${early.created_at}`);

    const rowsAre = (ids) => page.waitForFunction((want) =>
      JSON.stringify([...document.querySelectorAll("#runs-table tbody tr")].map((r) => r.dataset.run)) === JSON.stringify(want), ids);
    const countIs = (n) => page.waitForFunction((want) => document.querySelector("#runs-count")?.dataset.count === String(want), n);
    const hashParam = (name) => page.evaluate((k) => new URLSearchParams(location.hash.split("?")[1] || "").get(k), name);

    await page.goto(`${server.url}/#/runs?owner=${owner}`);
    await rowsAre([late.id, early.id]);
    await countIs(2);
    assert.match(await page.locator("#runs-count").innerText(), /^2 runs with owner timeline\.$/);
    assert.match(await page.locator("fieldset.range legend").innerText(), /Asia\/(Kolkata|Calcutta) time, sent in UTC/);

    // Created at or after the second of the later run, typed as the local time of Kolkata.
    await page.fill("#f-after", kolkata(split));
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => location.hash.includes("created_after="));
    const afterIso = new Date(split).toISOString();
    assert.equal(await hashParam("created_after"), afterIso, "sent in UTC");
    await rowsAre([late.id]);
    await countIs(1);
    assert.equal((await call(server, "GET", `/v1/runs/count?owner=${owner}&created_after=${encodeURIComponent(afterIso)}`)).count, 1);
    assert.match(await page.locator("#runs-count").innerText(), /^1 run with owner timeline, created at or after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.$/);
    // Drawn again from the address, the input shows the same local time.
    assert.equal(await page.inputValue("#f-after"), kolkata(split));
    await shot(page, "runs-time-range");

    // Created before it: the earlier run only.
    await page.fill("#f-after", "");
    await page.fill("#f-before", kolkata(split));
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => location.hash.includes("created_before=") && !location.hash.includes("created_after="));
    assert.equal(await hashParam("created_before"), afterIso);
    await rowsAre([early.id]);
    await countIs(1);

    // Without the owner, the count is every run created before that second, as the API counts them.
    await page.fill("#f-owner", "");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => !location.hash.includes("owner="));
    const before = (await call(server, "GET", `/v1/runs/count?created_before=${encodeURIComponent(afterIso)}`)).count;
    assert.ok(before > 2);
    await countIs(before);

    // A time the API refuses (typed into the address): its error is shown.
    await page.goto(`${server.url}/#/runs?created_after=yesterday`);
    const error = page.locator("#page-body .error");
    await error.waitFor();
    assert.match(await error.innerText(), /400 invalid_input[\s\S]*created_after/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("cancels, then retries, every queued run of one task, after a confirmation that states the count", { timeout: TEST_TIMEOUT }, async () => {
    const resizer = await call(server, "POST", "/v1/workers", { name: "resizer-1", slots: 1, tasks: [taskDef("resize-image")] });
    for (let i = 0; i < 7; i++) await call(server, "POST", "/v1/runs", { task: "resize-image", input: { image: `img-${i}.png` } });
    const count = async (q) => (await call(server, "GET", `/v1/runs/count?${q}`)).count;
    const otherQueued = await count("status=queued&task=send-email");
    assert.ok(otherQueued > 0);

    const { page, context, problems } = await newPage(server);
    // Without a filter, no bulk action: it would apply to every run.
    await page.goto(`${server.url}/#/runs`);
    await waitRunsTable(page);
    assert.equal(await page.locator("#bulk-cancel").isDisabled(), true);
    assert.equal(await page.locator("#bulk-retry").isDisabled(), true);
    assert.match(await page.locator("#bulk-hint").innerText(), /Set a filter first/);

    // The bulk calls pass through the test: it makes pages of 3 runs (the dashboard leaves the
    // API's 1,000), and holds the second page back until the progress of the first is seen.
    const bodies = [];
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    await page.route("**/v1/runs/cancel", async (route) => {
      const body = route.request().postDataJSON();
      bodies.push(body);
      if (bodies.length === 2) await held;
      await route.continue({ postData: JSON.stringify({ ...body, limit: 3 }) });
    });

    await page.selectOption("#f-status", "queued");
    await page.fill("#f-task", "resize-image");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#runs-count")?.dataset.count === "7" && document.querySelectorAll("#runs-table tbody tr").length === 7);
    assert.equal(await page.locator("#bulk-cancel").isDisabled(), false);

    // The dialog states the count first; Escape closes it and changes nothing.
    const dialog = page.locator("dialog#bulk");
    await page.click("#bulk-cancel");
    await dialog.waitFor({ state: "visible" });
    await page.waitForFunction(() => !document.querySelector("#bulk-yes").disabled);
    assert.match(await page.locator("#bulk-text").innerText(), /^7 runs match status queued, task resize-image\. Cancel all 7\?$/);
    assert.equal(await page.locator("#bulk-yes").innerText(), "Yes, cancel all 7");
    assert.equal(await focusedId(page), "bulk-no");
    await shot(page, "bulk-dialog");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    await page.waitForFunction(() => document.activeElement?.id === "bulk-cancel");
    assert.equal(await count("status=queued&task=resize-image"), 7, "Escape cancelled nothing");
    assert.equal(bodies.length, 0);

    await page.click("#bulk-cancel");
    await dialog.waitFor({ state: "visible" });
    await page.waitForFunction(() => !document.querySelector("#bulk-yes").disabled);
    await page.click("#bulk-yes");
    // The first page is done (in its own transaction) while the second waits.
    await page.waitForFunction(() => /^Cancelled 3 of 7 \(1 page, 3 runs matched so far\)$/.test(document.querySelector("#bulk-status").textContent));
    assert.equal(await count("status=cancelled&task=resize-image"), 3);
    assert.equal(await page.locator("#bulk-no").innerText(), "Stop after this page");
    await shot(page, "bulk-progress");
    // Escape while it acts stops it after the page under way, and keeps the dialog open.
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => document.querySelector("#bulk-no").textContent === "Stopping after this page…");
    assert.equal(await dialog.isVisible(), true);
    release();
    await page.waitForFunction(() => /^Stopped: cancelled 6 runs of the 6 runs matched so far\.$/.test(document.querySelector("#bulk-result").textContent));
    assert.equal(await count("status=queued&task=resize-image"), 1);
    assert.equal(await focusedId(page), "bulk-no");
    assert.equal(await page.locator("#bulk-yes").innerText(), "Continue from where it stopped");
    await page.click("#bulk-yes");
    await page.waitForFunction(() => /^Done: cancelled 7 runs of the 7 runs that matched\.$/.test(document.querySelector("#bulk-result").textContent));
    assert.match(await page.locator("#bulk-status").innerText(), /^Cancelled 7 of 7 \(3 pages, 7 runs matched so far\)$/);
    assert.equal(await page.locator("#bulk-yes").isVisible(), false);
    assert.equal(await focusedId(page), "bulk-no");
    await shot(page, "bulk-done");
    // One call per page, each with the filter and the cursor the previous one answered.
    assert.equal(bodies.length, 3);
    for (const b of bodies) assert.deepEqual({ status: b.status, task: b.task, limit: b.limit }, { status: "queued", task: "resize-image", limit: undefined });
    assert.equal(bodies[0].cursor, undefined);
    assert.ok(bodies[1].cursor && bodies[2].cursor && bodies[1].cursor !== bodies[2].cursor);
    assert.equal(await count("status=queued&task=resize-image"), 0);
    assert.equal(await count("status=cancelled&task=resize-image"), 7);
    assert.equal(await count("status=queued&task=send-email"), otherQueued, "runs of other tasks are left alone");
    await page.click("#bulk-no");
    await dialog.waitFor({ state: "hidden" });
    await page.locator("#runs-empty").waitFor();
    await page.waitForFunction(() => document.querySelector("#runs-count")?.dataset.count === "0");

    // Retry them: the API fails the second page once; the dialog shows its error, and goes on
    // from where it stopped when asked.
    const retries = [];
    await page.route("**/v1/runs/retry", async (route) => {
      const body = route.request().postDataJSON();
      retries.push(body);
      if (retries.length === 2) {
        await route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ error: { code: "unavailable", message: "the database is unavailable; try again" } }) });
        return;
      }
      await route.continue({ postData: JSON.stringify({ ...body, limit: 3 }) });
    });
    await page.selectOption("#f-status", "cancelled");
    await page.click("form[aria-label='Filter runs'] button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#runs-count")?.dataset.count === "7");
    await page.click("#bulk-retry");
    await dialog.waitFor({ state: "visible" });
    await page.waitForFunction(() => !document.querySelector("#bulk-yes").disabled);
    assert.match(await page.locator("#bulk-text").innerText(), /^7 runs match status cancelled, task resize-image\. Retry all 7\?$/);
    await page.click("#bulk-yes");
    const error = page.locator("#bulk-error .error");
    await error.waitFor();
    assert.match(await error.innerText(), /Retrying page 2 failed[\s\S]*503 unavailable[\s\S]*the database is unavailable/);
    assert.match(await page.locator("#bulk-result").innerText(), /^Interrupted: retried 3 runs of the 3 runs matched so far\.$/);
    assert.equal(await page.locator("#bulk-yes").innerText(), "Continue from where it stopped");
    assert.equal(await count("status=queued&task=resize-image"), 3);
    await shot(page, "bulk-error");
    await page.click("#bulk-yes");
    await page.waitForFunction(() => /^Done: retried 7 runs of the 7 runs that matched\.$/.test(document.querySelector("#bulk-result").textContent));
    assert.equal(await page.locator("#bulk-error .error").count(), 0);
    assert.equal(retries[2].cursor, retries[1].cursor, "it went on with the page that failed");
    assert.equal(await count("status=queued&task=resize-image"), 7);
    assert.equal(await count("status=cancelled&task=resize-image"), 0);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    await page.locator("#runs-empty").waitFor();
    await page.waitForFunction(() => document.activeElement?.id === "bulk-retry");

    assert.deepEqual(problems.filter((p) => !/status of 503/.test(p)), []);
    await context.close();
    await call(server, "DELETE", `/v1/workers/${encodeURIComponent(resizer.worker_id)}`);
  });

  test("a workflow run shows its tasks by stage, each with its status, its run and the critical path", { timeout: TEST_TIMEOUT }, async () => {
    const worker = await call(server, "POST", "/v1/workers", {
      name: "etl-1",
      slots: 4,
      tasks: ["etl/fetch", "etl/parse", "etl/enrich", "etl/publish", "etl/alert"].map((n) => taskDef(n)),
      workflows: [taskDef("etl/daily", {
        workflow: {
          tasks: [
            { name: "etl/fetch", parents: [] },
            { name: "etl/parse", parents: ["etl/fetch"] },
            { name: "etl/enrich", parents: ["etl/fetch"] },
            { name: "etl/publish", parents: ["etl/parse", "etl/enrich"] },
          ],
          output: "etl/publish",
          on_failure: "etl/alert",
        },
      })],
    });
    const wid = encodeURIComponent(worker.worker_id);
    const holding = new Set();
    const exchange = (req) => call(server, "POST", `/v1/workers/${wid}/exchange`, { held: [...holding], want: 0, wait_ms: 0, ...req });
    const heartbeat = setInterval(() => { exchange({ heartbeat: true }).catch(() => {}); }, 2000);
    /** Claims until it holds a run of each of `tasks` (the engine starts a task once its parents
     * have succeeded). */
    const claim = async (tasks) => {
      const got = new Map();
      await eventually(`runs of ${tasks.join(", ")}`, async () => {
        const out = await exchange({ want: tasks.length - got.size, wait_ms: 1000, heartbeat: true });
        for (const a of out.assignments) {
          got.set(a.task, a);
          holding.add(a.run_id);
        }
        return tasks.every((t) => got.has(t));
      });
      assert.deepEqual([...got.keys()].sort(), [...tasks].sort());
      return got;
    };
    const complete = (a, outcome, extra) => {
      holding.delete(a.run_id);
      return exchange({ completions: [{ run_id: a.run_id, attempt: a.attempt, outcome, ...extra }] });
    };
    const statusesAre = (page, want) => page.waitForFunction((w) => Object.entries(w).every(([task, status]) =>
      document.querySelector(`.wf-task[data-task="${task}"]`)?.dataset.status === status), want);
    const box = (page, task) => page.locator(`.wf-task[data-task="${task}"]`);

    try {
      const run = await call(server, "POST", "/v1/runs", { task: "etl/daily", input: { day: "2026-12-01" }, owner: "ops" });
      const fetch = (await claim(["etl/fetch"])).get("etl/fetch");
      assert.equal(fetch.parent_id, run.id);
      await complete(fetch, "succeeded", { output: { rows: 1200 } });
      const second = await claim(["etl/parse", "etl/enrich"]);

      // While it runs: the first stage done, the second running, the last pending, and why.
      const { page, context, problems } = await newPage(server);
      await openRun(page, server, run.id);
      await page.locator("#wf-graph").waitFor();
      await statusesAre(page, { "etl/fetch": "succeeded", "etl/parse": "running", "etl/enrich": "running", "etl/publish": "pending" });
      const plan = await call(server, "GET", `/v1/workflows/${encodeURIComponent("etl/daily")}/plan`);
      const columns = await page.$$eval("#wf-graph .wf-stage:not(.wf-on-failure)", (cols) => cols.map((c) => [...c.querySelectorAll(".wf-task")].map((t) => t.dataset.task)));
      assert.deepEqual(columns, plan.stages);
      assert.deepEqual(plan.stages, [["etl/fetch"], ["etl/parse", "etl/enrich"], ["etl/publish"]]);
      assert.match(await box(page, "etl/publish").innerText(), /pending[\s\S]*waiting for etl\/parse, etl\/enrich/);
      assert.equal(await box(page, "etl/publish").locator("a").count(), 0, "no run yet, no link");
      assert.equal(await box(page, "etl/fetch").locator("a").getAttribute("href"), `#/runs/${fetch.run_id}`);
      assert.match(await page.locator("#run-workflow h2").innerText(), /Workflow etl\/daily/);
      // Edges are drawn from each parent to its task.
      await page.waitForFunction(() => document.querySelectorAll("#wf-graph svg.wf-edges path").length === 4);
      await shot(page, "workflow-running");

      // One task succeeds, one fails: the last one is skipped, and the on-failure task runs.
      await complete(second.get("etl/parse"), "succeeded", { output: { lines: 1180 } });
      await complete(second.get("etl/enrich"), "failed", { error: "geo API 503: upstream unavailable", retryable: false });
      const alert = (await claim(["etl/alert"])).get("etl/alert");
      await statusesAre(page, { "etl/fetch": "succeeded", "etl/parse": "succeeded", "etl/enrich": "failed", "etl/publish": "skipped", "etl/alert": "running" });
      await complete(alert, "succeeded", { output: { paged: "on-call" } });
      await statusesAre(page, { "etl/alert": "succeeded" });
      await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "failed");
      assert.match(await box(page, "etl/publish").innerText(), /skipped[\s\S]*etl\/enrich/);
      const api = await call(server, "GET", `/v1/runs/${run.id}/tasks`);
      assert.ok(await page.locator(`.wf-task[data-task="etl/publish"] .wf-reason`).innerText() === api.tasks.find((t) => t.task === "etl/publish").reason);
      assert.match(await page.locator(".wf-on-failure").innerText(), /^On failure\netl\/alert\nsucceeded on failure\b/i);
      assert.match(await page.locator("#run-error").innerText(), /geo API 503/);

      // The critical path, with the expected durations, as the plan has it now.
      const now = await call(server, "GET", `/v1/workflows/${encodeURIComponent("etl/daily")}/plan`);
      const pathRe = `^Critical path: ${now.critical_path.map((n) => `${n.replace(/[/.]/g, "\\$&")} \\((no history|[0-9][^)]*)\\)`).join(" → ")}: .* expected`;
      await page.waitForFunction((re) => new RegExp(re).test(document.querySelector("#critical-path")?.textContent || ""), pathRe);
      assert.ok(now.tasks.find((t) => t.name === "etl/fetch").expected_ms !== null, "a succeeded task has history");

      // Every run it scheduled is among its children.
      const kids = (await call(server, "GET", `/v1/runs?parent_id=${run.id}`)).runs.map((r) => r.id);
      assert.equal(kids.length, 4);
      await page.waitForFunction((ids) => JSON.stringify([...document.querySelectorAll("#run-children tbody tr")].map((r) => r.dataset.run)) === JSON.stringify(ids), kids);
      await shot(page, "workflow-graph");
      // The same runs in the runs list, where bulk actions apply to them.
      await page.click("#all-children");
      await page.waitForFunction(([id, n]) => location.hash === `#/runs?parent_id=${id}` &&
        document.querySelector("#runs-count")?.dataset.count === String(n) && document.querySelectorAll("#runs-table tbody tr").length === n, [run.id, kids.length]);
      assert.equal(await page.inputValue("#f-parent"), run.id);
      await page.goBack();
      await page.locator("#wf-graph").waitFor();

      // By keyboard, from a task's box to its run, and back by its parent link.
      await page.locator("#page-title").focus();
      const enrich = second.get("etl/enrich").run_id;
      await tabUntil(page, (id) => document.activeElement?.closest(".wf-task") && document.activeElement.getAttribute("href") === `#/runs/${id}`, enrich);
      await page.keyboard.press("Enter");
      await page.waitForFunction((id) => document.querySelector("#run-id")?.textContent === id && document.querySelector("#run-detail")?.dataset.status === "failed", enrich);
      assert.equal(await page.locator("#wf-graph").count(), 0, "a task run has no graph");
      await page.click(`#run-detail dl.facts a[href='#/runs/${run.id}']`);
      await page.waitForFunction((id) => document.querySelector("#run-id")?.textContent === id && document.querySelector("#wf-graph"), run.id);
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      clearInterval(heartbeat);
      await call(server, "DELETE", `/v1/workers/${wid}`).catch(() => {});
    }
  });

  test("replays a failed run from its second step after a confirmation that says what runs again and what is kept", { timeout: TEST_TIMEOUT }, async () => {
    const worker = await ownWorker(server, "reporter-1", [taskDef("report/pdf")]);
    try {
      // A run whose first step succeeded and whose second failed, and so the run.
      const run = await call(server, "POST", "/v1/runs", { task: "report/pdf", input: { month: "2026-10" }, owner: "bob" });
      const a = await worker.claim(run.id);
      await worker.step(a, 0, "fetch-rows", "succeeded", { output: { rows: 314 } });
      await worker.step(a, 1, "render-pdf", "failed", { error: "font not found: Inter-Bold" });
      await worker.complete(a, "failed", { error: "render-pdf: font not found: Inter-Bold", retryable: false });
      // Another failed run with a step, which someone retries while its dialog is open.
      const other = await call(server, "POST", "/v1/runs", { task: "report/pdf", input: { month: "2026-09" }, owner: "bob" });
      const b = await worker.claim(other.id);
      await worker.step(b, 0, "fetch-rows", "failed", { error: "database timeout" });
      await worker.complete(b, "failed", { error: "fetch-rows: database timeout", retryable: false });
      const before = await call(server, "GET", `/v1/runs/${run.id}`);
      assert.equal(before.status, "failed");
      assert.equal(before.replays ?? 0, 0);
      assert.deepEqual(before.steps.map((s) => [s.position, s.name, s.status]), [[0, "fetch-rows", "succeeded"], [1, "render-pdf", "failed"]]);

      const { page, context, problems } = await newPage(server);
      const seen = [];
      page.on("request", (r) => { if (r.method() === "POST") seen.push([new URL(r.url()).pathname, r.postData()]); });
      await openRun(page, server, run.id);
      assert.equal(await page.locator("#run-detail").getAttribute("data-status"), "failed");
      // One action per step; none on a run that is not failed or cancelled (checked below).
      assert.equal(await page.locator("#steps-table button.replay-step").count(), 2);
      assert.equal(await page.locator("#run-replays").count(), 0, "no replays yet, no line");

      // The dialog says what runs again and what is kept; Escape changes nothing.
      await page.click("#replay-step-1");
      const dialog = page.locator("dialog#confirm");
      await dialog.waitFor({ state: "visible" });
      assert.equal(await focusedId(page), "confirm-no");
      const text = await dialog.innerText();
      assert.match(text, /Replay this run from this step\?/);
      assert.match(text, /Runs again: step 1 "render-pdf"[^\n]*as attempt 2/);
      assert.match(text, /Kept: the 1 step before it \(0 fetch-rows\) keeps its output and is not run again/);
      assert.match(text, /Started afresh: any child spawned from step 1 "render-pdf" on is started afresh/);
      assert.equal(await page.locator("#confirm-yes").innerText(), 'Yes, replay from step 1 "render-pdf"');
      await shot(page, "replay-dialog");
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "hidden" });
      await page.waitForFunction(() => document.activeElement?.id === "replay-step-1");
      assert.equal((await call(server, "GET", `/v1/runs/${run.id}`)).status, "failed", "Escape replayed nothing");
      assert.equal(seen.length, 0);

      // Yes: the run is queued again for a new attempt, its history and first step kept.
      await page.click("#replay-step-1");
      await dialog.waitFor({ state: "visible" });
      await page.click("#confirm-yes");
      await dialog.waitFor({ state: "hidden" });
      await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "queued");
      assert.deepEqual(seen, [[`/v1/runs/${run.id}/replay`, JSON.stringify({ from_step: "render-pdf" })]]);
      const after = await call(server, "GET", `/v1/runs/${run.id}`);
      assert.equal(after.status, "queued");
      assert.equal(after.replays, 1);
      assert.equal(after.attempt, 1);
      assert.ok(after.max_attempts >= 2, `another attempt is granted (${after.max_attempts})`);
      assert.deepEqual(after.errors.map((e) => [e.attempt, e.error]), [[1, "render-pdf: font not found: Inter-Bold"]], "the attempt history is kept");
      assert.deepEqual(after.steps.map((s) => [s.position, s.name, s.status]), [[0, "fetch-rows", "succeeded"]]);
      assert.deepEqual(after.steps[0].output, { rows: 314 });
      const events = await call(server, "GET", `/v1/runs/${run.id}/events`);
      assert.match(events.at(-1).reason, /replay from step 1 "render-pdf"/);
      // The first attempt's events are all still there (its steps are events of their own).
      assert.deepEqual(events.slice(0, 2).map((e) => [e.to, e.attempt]), [["queued", 0], ["running", 1]]);
      assert.deepEqual(events.slice(-2).map((e) => [e.from, e.to, e.attempt]), [["running", "failed", 1], ["failed", "queued", 1]]);

      // The page: the new attempt, the replays count, the first step's row, the event.
      const notice = page.locator("#run-replayed");
      await notice.waitFor();
      assert.match(await notice.innerText(), /^Replayed from step 1 "render-pdf" as attempt 2 of \d+: it is queued, waiting for attempt 2 to start\. The 1 step before it kept its output\.$/);
      assert.match(await page.locator("#run-attempt").innerText(), /^1 of \d+; attempt 2 is next$/);
      assert.equal(await page.locator("#run-replays").innerText(), "1 (replayed from a step)");
      await page.waitForFunction(() => [...document.querySelectorAll("#steps-table tbody tr")].map((r) => r.dataset.name).join() === "fetch-rows");
      assert.match(await page.locator("#steps-table tbody tr").innerText(), /fetch-rows[\s\S]*succeeded/);
      assert.equal(await page.locator("#steps-table button.replay-step").count(), 0, "a queued run is not replayed");
      assert.match((await page.locator("#run-events li").allInnerTexts()).at(-1), /failed[\s\S]*queued[\s\S]*replay from step 1 "render-pdf"/);
      await page.waitForFunction(() => /replayed from step 1 "render-pdf": it is now queued, for attempt 2/.test(document.querySelector("#announce").textContent));
      assert.equal(await focusedId(page), "page-title", "its button is gone: the focus is on the heading");
      await shot(page, "run-replayed");

      // The API refuses a replay of a run that changed meanwhile: its error is in the dialog.
      await openRun(page, server, other.id);
      await page.click("#replay-step-0");
      await dialog.waitFor({ state: "visible" });
      assert.match(await dialog.innerText(), /Kept: no step: this is the first one/);
      await call(server, "POST", `/v1/runs/${other.id}/retry`);
      await page.click("#confirm-yes");
      const error = page.locator("#confirm-error .error");
      await error.waitFor();
      assert.match(await error.innerText(), /Replaying the run failed[\s\S]*409 invalid_transition/);
      await page.keyboard.press("Escape");
      await dialog.waitFor({ state: "hidden" });
      await page.waitForFunction(() => document.querySelector("#run-detail")?.dataset.status === "queued");
      assert.equal((await call(server, "GET", `/v1/runs/${other.id}`)).replays ?? 0, 0);
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      await worker.close();
    }
  });

  test("pauses, resumes and triggers a cron schedule, each after a confirmation, and links to the run it started", { timeout: TEST_TIMEOUT }, async () => {
    // A cron declared by a task whose name has a '/': its id holds ':' and '/'.
    const worker = await ownWorker(server, "billing-1", [taskDef("billing/report", { cron: "0 6 1 * *", timezone: "Europe/Berlin" })]);
    const id = "task:billing/report";
    const cronOf = async () => (await call(server, "GET", "/v1/crons")).find((c) => c.id === id);
    try {
      const cron = await eventually(`cron ${id}`, cronOf);
      assert.equal(cron.paused_at, undefined);
      assert.ok(cron.next_tick);

      const { page, context, problems } = await newPage(server);
      const posts = [];
      page.on("request", (r) => { if (r.method() === "POST") posts.push(new URL(r.url()).pathname); });
      await page.goto(`${server.url}/#/crons`);
      const row = page.locator(`tr[data-cron="${id}"]`);
      await row.waitFor();
      assert.equal(await row.getAttribute("data-paused"), "false");
      assert.equal(await row.locator("td.cron-paused").innerText(), "no");
      assert.equal(await row.locator("button[data-action=resume]").count(), 0);
      const dialog = page.locator("dialog#confirm");

      // Pause: after the confirmation the API has it paused, and so does the page.
      await row.locator("button[data-action=pause]").click();
      await dialog.waitFor({ state: "visible" });
      assert.match(await dialog.innerText(), /Pause this cron schedule\?[\s\S]*task:billing\/report[\s\S]*fires nothing until it is resumed/);
      assert.equal(await focusedId(page), "confirm-no");
      await page.click("#confirm-yes");
      await dialog.waitFor({ state: "hidden" });
      const paused = await eventually("the cron paused", async () => { const c = await cronOf(); return c.paused_at ? c : null; });
      assert.ok(paused.paused_at);
      assert.equal(paused.next_tick ?? null, null, "no next tick while paused");
      await page.waitForFunction((cid) => document.querySelector(`tr[data-cron="${CSS.escape(cid)}"]`)?.dataset.paused === "true", id);
      const pausedCell = row.locator("td.cron-paused");
      assert.match(await pausedCell.innerText(), /^paused\s+since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
      assert.equal(await pausedCell.locator("time").getAttribute("datetime"), paused.paused_at);
      assert.match(await row.innerText(), /none while paused/);
      assert.equal(posts.at(-1), "/v1/crons/task%3Abilling%2Freport/pause", "the id is one percent-encoded path segment");
      // The focus is on the button drawn in place of Pause.
      await page.waitForFunction(() => document.activeElement?.dataset.action === "resume");
      assert.match(await page.locator("#crons-table caption").innerText(), /1 paused/);
      // With its actions, the table still fits a laptop's screen: no sideways scrolling.
      assert.ok(await page.$eval("#crons-table", (t) => t.parentElement.scrollWidth <= t.parentElement.clientWidth), "the crons table fits");
      await shot(page, "crons-paused");

      // Resume.
      await row.locator("button[data-action=resume]").click();
      await dialog.waitFor({ state: "visible" });
      assert.match(await dialog.innerText(), /Resume this cron schedule\?[\s\S]*the ticks missed while it was paused are not fired/);
      await page.click("#confirm-yes");
      await dialog.waitFor({ state: "hidden" });
      const resumed = await eventually("the cron resumed", async () => { const c = await cronOf(); return !c.paused_at && c; });
      assert.ok(resumed.next_tick);
      await page.waitForFunction((cid) => document.querySelector(`tr[data-cron="${CSS.escape(cid)}"]`)?.dataset.paused === "false", id);
      assert.equal(await row.locator("td.cron-paused").innerText(), "no");
      assert.equal(posts.at(-1), "/v1/crons/task%3Abilling%2Freport/resume");

      // Trigger now: a run with the manual metadata, and a link to it.
      await row.locator("button[data-action=trigger]").click();
      await dialog.waitFor({ state: "visible" });
      assert.match(await dialog.innerText(), /Trigger this cron schedule now\?[\s\S]*one run of billing\/report now[\s\S]*"trigger":"manual"/);
      await page.click("#confirm-yes");
      await dialog.waitFor({ state: "hidden" });
      const started = await eventually("the triggered run", async () =>
        (await call(server, "GET", `/v1/runs?task=${encodeURIComponent("billing/report")}`)).runs.find((r) => r.metadata?.trigger === "manual"));
      assert.deepEqual(started.metadata, { cron: id, trigger: "manual" });
      assert.equal(posts.at(-1), "/v1/crons/task%3Abilling%2Freport/trigger");
      const link = row.locator(`p.triggered a[href="#/runs/${started.id}"]`);
      await link.waitFor();
      assert.match(await row.locator("p.triggered").innerText(), new RegExp(`^Started run ${started.id} `));
      await page.waitForFunction((rid) => document.querySelector("#announce").textContent.includes(`started run ${rid}`), started.id);
      assert.equal((await cronOf()).paused_at, undefined, "triggering leaves the schedule as it was");
      await shot(page, "crons-triggered");
      await link.click();
      await page.waitForFunction((rid) => document.querySelector("#run-id")?.textContent === rid && document.querySelector("#run-detail"), started.id);
      assert.match(await page.locator("#meta-h + pre").innerText(), /"trigger": "manual"/);
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      await worker.close();
    }
  });

  test("the overview charts the runs finished in each minute of the last hour, with a summary and a table that give the API's totals", { timeout: TEST_TIMEOUT }, async () => {
    // Runs of a task of its own that end each way: two succeed, one fails, one is cancelled.
    const worker = await ownWorker(server, "charter-1", [taskDef("chart/job")]);
    try {
      for (const outcome of ["succeeded", "failed", "succeeded"]) {
        const run = await call(server, "POST", "/v1/runs", { task: "chart/job", input: { outcome } });
        const a = await worker.claim(run.id);
        await worker.complete(a, outcome, outcome === "failed" ? { error: "chart job failed on purpose", retryable: false } : { output: { ok: true } });
      }
      const cancelled = await call(server, "POST", "/v1/runs", { task: "chart/job", input: { outcome: "cancelled" } });
      await call(server, "POST", `/v1/runs/${cancelled.id}/cancel`);
      const waiting = await call(server, "POST", "/v1/runs", { task: "chart/job", input: { outcome: "waits" }, priority: 8 });

      const totalsOf = (o) => {
        const t = { succeeded: 0, failed: 0, cancelled: 0 };
        for (const m of o.minutes) for (const k of Object.keys(t)) t[k] += m[k];
        return { ...t, total: t.succeeded + t.failed + t.cancelled };
      };
      const first = await call(server, "GET", "/v1/overview");
      assert.equal(first.schema_version, 1);
      assert.equal(first.minutes.length, 60);
      const seen = totalsOf(first);
      assert.ok(seen.succeeded >= 2 && seen.failed >= 1 && seen.cancelled >= 1, `the seeded runs are counted: ${JSON.stringify(seen)}`);
      assert.ok(first.queued.some((q) => q.task === "chart/job" && q.priority === 8 && q.count === 1), JSON.stringify(first.queued));

      // In India (UTC+05:30) the minutes on the axis are not the UTC ones.
      const { page, context, problems } = await newPage(server, { timezoneId: "Asia/Kolkata" });
      await page.goto(`${server.url}/#/overview`);
      await page.locator("#minutes-chart").waitFor();
      // The summary states the totals /v1/overview answers (read again each time: both go on).
      const shownTotals = () => page.$eval("#chart-summary", (p) => ({
        succeeded: Number(p.dataset.succeeded), failed: Number(p.dataset.failed), cancelled: Number(p.dataset.cancelled), total: Number(p.dataset.total),
      }));
      const api = await eventually("the chart's totals to be the API's", async () => {
        const o = await call(server, "GET", "/v1/overview");
        return JSON.stringify(await shownTotals()) === JSON.stringify(totalsOf(o)) ? o : null;
      });
      const t = totalsOf(api);
      const summary = await page.locator("#chart-summary").innerText();
      assert.match(summary, new RegExp(`^${t.total} runs finished in the last hour: ${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled\\. ` +
        "The busiest minute was \\d\\d:\\d\\d, with \\d+ runs?\\.$"));
      // The chart is an image named by that summary; its legend names each colour with its total.
      const chart = page.locator("#minutes-chart");
      assert.equal(await chart.getAttribute("role"), "img");
      assert.equal(await chart.getAttribute("aria-labelledby"), "chart-summary");
      assert.equal(await page.getByRole("img", { name: /runs finished in the last hour/ }).count(), 1);
      assert.deepEqual((await page.locator("#chart-legend li").allTextContents()).slice(0, 3),
        [`Succeeded: ${t.succeeded}`, `Failed: ${t.failed}`, `Cancelled: ${t.cancelled}`]);
      // One bar per minute, oldest first, the last one the minute under way; each bar's height is
      // its share of the axis, and its parts add up to the minute's runs.
      const bars = await page.$$eval("#minutes-chart g.minute", (gs) => gs.map((g) => ({
        minute: g.dataset.minute, total: Number(g.dataset.total), current: g.classList.contains("current"),
        parts: [...g.querySelectorAll("rect.bar")].map((r) => [r.getAttribute("class"), Number(r.getAttribute("height"))]),
      })));
      assert.equal(bars.length, 60);
      assert.deepEqual(bars.map((b) => b.minute), api.minutes.map((m) => m.minute));
      assert.deepEqual(bars.map((b) => b.total), api.minutes.map((m) => m.succeeded + m.failed + m.cancelled));
      assert.deepEqual(bars.map((b) => b.current), bars.map((_, i) => i === 59));
      const busiest = bars.reduce((a, b) => (b.total > a.total ? b : a));
      const height = (b) => b.parts.reduce((a, [, hgt]) => a + hgt, 0);
      for (const b of bars) {
        const m = api.minutes.find((x) => x.minute === b.minute);
        assert.deepEqual(b.parts.map(([cls]) => cls), ["succeeded", "failed", "cancelled"].filter((k) => m[k] > 0).map((k) => `bar bar-${k}`));
        if (b.total) assert.ok(Math.abs(height(b) / height(busiest) - b.total / busiest.total) < 0.02, `bar ${b.minute}`);
      }
      // Axis labels: counts from 0 up to at least the busiest minute, times in Kolkata, titles.
      const ticks = await page.locator("#minutes-chart text.tick").allTextContents();
      const counts = ticks.filter((x) => /^\d+$/.test(x)).map(Number);
      assert.equal(counts[0], 0);
      assert.ok(counts.at(-1) >= busiest.total, `${counts} reach ${busiest.total}`);
      const kolkataHhmm = (iso) => new Date(Date.parse(iso) + 5.5 * 3600_000).toISOString().slice(11, 16);
      assert.ok(ticks.includes(`${kolkataHhmm(api.minutes[59].minute)} now`), `${ticks} end with the minute under way`);
      for (const x of ticks.filter((v) => /^\d\d:\d\d$/.test(v))) assert.match(x, /^\d\d:[0-5]0$/, "the time axis is marked every ten minutes");
      const titles = await page.locator("#minutes-chart text.axis-title").allTextContents();
      assert.equal(titles[0], "Runs finished");
      assert.match(titles[1], /^Minute they finished \(Asia\/(Kolkata|Calcutta) time\)$/);
      // Drawn with attributes only: nothing the page's policy would block.
      assert.equal(await page.locator("#ov-chart [style]").count(), 0);

      // The same numbers as a table, opened by keyboard; it stays open through live refreshes.
      const toggle = page.locator("#ov-chart details summary");
      await toggle.focus();
      await page.keyboard.press("Enter");
      await page.locator("#minutes-table").waitFor();
      const rowsOf = (o) => o.minutes.filter((m) => m.succeeded + m.failed + m.cancelled > 0)
        .map((m) => [kolkataHhmm(m.minute), String(m.succeeded), String(m.failed), String(m.cancelled), String(m.succeeded + m.failed + m.cancelled)]);
      const tableRows = () => page.$$eval("#minutes-table tbody tr", (trs) => trs.map((tr) =>
        [tr.querySelector("time").textContent, ...[...tr.querySelectorAll("td")].map((td) => td.textContent)]));
      await eventually("the table to list the API's minutes", async () => {
        const o = await call(server, "GET", "/v1/overview");
        return JSON.stringify(await tableRows()) === JSON.stringify(rowsOf(o));
      });
      const foot = await page.$$eval("#minutes-total td", (tds) => tds.map((td) => [td.dataset.outcome, td.textContent]));
      const now = totalsOf(await call(server, "GET", "/v1/overview"));
      assert.deepEqual(foot, [["succeeded", String(now.succeeded)], ["failed", String(now.failed)], ["cancelled", String(now.cancelled)], ["total", String(now.total)]]);
      const updated = await page.locator("#updated").innerText();
      await page.waitForFunction((u) => document.querySelector("#updated").textContent !== u && document.querySelector("#minutes-table"), updated);
      assert.equal(await page.locator("#ov-chart details").getAttribute("open"), "", "still open after a refresh");
      assert.equal(await page.evaluate(() => document.activeElement?.tagName), "SUMMARY", "and still focused");

      // What waits: this tenant's runs by task and priority, as /v1/overview counts them.
      await eventually("the queue table to be the API's", async () => {
        const o = await call(server, "GET", "/v1/overview");
        const rows = await page.$$eval("#queue-table tbody tr", (trs) => trs.map((tr) => [tr.dataset.task, Number(tr.dataset.priority), Number(tr.dataset.count)]));
        const want = o.queued.map((q) => [q.task, q.priority, q.count]);
        const key = (r) => JSON.stringify([...r].sort());
        return key(rows) === key(want);
      });
      const row = page.locator("#queue-table tr[data-task='chart/job'][data-priority='8']");
      assert.match(await row.innerText(), /^chart\/job\s+8\s+1$/);
      assert.equal(await row.locator("a").getAttribute("href"), `#/runs?task=${encodeURIComponent("chart/job")}&status=queued`);
      await page.locator("#ov-chart").scrollIntoViewIfNeeded();
      await shot(page, "overview-chart");
      await call(server, "POST", `/v1/runs/${waiting.id}/cancel`);
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      await worker.close();
    }
  });

  test("the crons page shows each schedule's next three ticks, in both time zones, and a link to the run of its last tick with its status", { timeout: TEST_TIMEOUT }, async () => {
    // A schedule that fires every second, declared by a worker of this test in Tokyo's time zone.
    const worker = await ownWorker(server, "ticker-1", [taskDef("ops/heartbeat", { cron: "* * * * * *", timezone: "Asia/Tokyo" })]);
    const id = "task:ops/heartbeat";
    const cronOf = async (cid = id) => (await call(server, "GET", "/v1/crons")).find((c) => c.id === cid);
    try {
      // Through the API first: it fired, its last run exists, and its next ticks are a second apart.
      const fired = await eventually(`cron ${id} to fire`, async () => { const c = await cronOf(); return c?.last_run ? c : null; });
      const firedRun = await call(server, "GET", `/v1/runs/${fired.last_run.id}`);
      assert.equal(firedRun.task, "ops/heartbeat");
      assert.equal(fired.next_ticks.length, 3);
      assert.deepEqual(fired.next_ticks.slice(1).map((t, i) => Date.parse(t) - Date.parse(fired.next_ticks[i])), [1000, 1000]);
      const ny = (await call(server, "GET", "/v1/crons")).find((c) => c.expr === "30 9 * * 1-5");
      assert.equal(ny.next_ticks.length, 3);
      assert.equal(ny.last_run, undefined, "it never fired");

      const { page, context, problems } = await newPage(server, { timezoneId: "Asia/Kolkata" });
      await page.goto(`${server.url}/#/crons`);
      const kolkata = (iso) => new Date(Date.parse(iso) + 5.5 * 3600_000).toISOString().slice(0, 19).replace("T", " ");
      const tickTexts = (cid) => page.$$eval(`tr[data-cron="${cid}"] ol.ticks li`, (lis) => lis.map((li) => ({
        at: li.querySelector("time").getAttribute("datetime"), local: li.querySelector("time > span").textContent, own: li.querySelector(".zone-time")?.textContent,
      })));

      // A weekday schedule in New York: three ticks at 09:30 there, shown at Kolkata's time too.
      const nyRow = page.locator(`tr[data-cron="${ny.id}"]`);
      await nyRow.waitFor();
      const nyTicks = await eventually("the New York schedule's ticks to be the API's", async () => {
        const want = (await cronOf(ny.id)).next_ticks;
        const got = await tickTexts(ny.id);
        return JSON.stringify(got.map((x) => x.at)) === JSON.stringify(want) ? got : null;
      });
      assert.equal(nyTicks.length, 3);
      for (const x of nyTicks) {
        assert.equal(x.local, kolkata(x.at), "in the browser's time zone");
        assert.match(x.own, /^(Mon|Tue|Wed|Thu|Fri) \d{4}-\d\d-\d\d 09:30:00 America\/New_York$/, "in the schedule's own");
      }
      assert.match(await nyRow.locator("td.cron-last").innerText(), /^never$/);
      assert.equal(await nyRow.locator("ol.ticks").getAttribute("aria-label"), "Next 3 ticks");

      // The every-second schedule: its ticks, and the run of its last tick as the API lists it
      // (both move on each second: read the API again until the page shows what it answers).
      const row = page.locator(`tr[data-cron="${id}"]`);
      await row.waitFor();
      await eventually("the page's last run to be the API's", async () => {
        const c = await cronOf();
        const shown = await row.locator(".last-run").getAttribute("data-run", { timeout: 1000 });
        return c.last_run && shown === c.last_run.id ? c.last_run : null;
      });
      const ticks = await tickTexts(id);
      assert.equal(ticks.length, 3);
      for (const x of ticks) {
        assert.equal(x.local, kolkata(x.at));
        assert.match(x.own, /^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d Asia\/Tokyo$/);
      }
      assert.deepEqual(ticks.slice(1).map((x, i) => Date.parse(x.at) - Date.parse(ticks[i].at)), [1000, 1000]);
      assert.match(await row.locator("td.cron-last time").getAttribute("datetime"), /^\d{4}-/);
      await shot(page, "crons-ticks");

      // Paused, it has no next tick and its last run holds still: the link and its badge are the
      // API's, and lead to the run.
      await call(server, "POST", `/v1/crons/${encodeURIComponent(id)}/pause`);
      const paused = await eventually("the cron paused", async () => { const c = await cronOf(); return c.paused_at ? c : null; });
      assert.equal(paused.next_ticks, undefined);
      const run = await call(server, "GET", `/v1/runs/${paused.last_run.id}`);
      assert.equal(run.status, paused.last_run.status);
      assert.ok(Math.abs(Date.parse(run.run_at) - Date.parse(paused.last_tick)) < 1000, `run ${run.id} is the one of tick ${paused.last_tick}`);
      assert.ok(Date.parse(paused.last_tick) >= Date.parse(fired.last_tick));
      await page.waitForFunction(([cid, rid]) => {
        const r = document.querySelector(`tr[data-cron="${CSS.escape(cid)}"]`);
        return r?.dataset.paused === "true" && r.querySelector(".last-run")?.dataset.run === rid;
      }, [id, paused.last_run.id]);
      assert.match(await row.locator("td.cron-next").innerText(), /^none while paused$/);
      const lastRun = row.locator(".last-run");
      assert.equal(await lastRun.locator(".badge").innerText(), paused.last_run.status);
      const link = lastRun.getByRole("link", { name: `Last run, ${paused.last_run.status}: ${paused.last_run.id}` });
      assert.equal(await link.getAttribute("href"), `#/runs/${paused.last_run.id}`);
      assert.equal(await link.innerText(), paused.last_run.id);
      // By keyboard, from the heading to the link, and into the run.
      await page.locator("#page-title").focus();
      await tabUntil(page, (rid) => document.activeElement?.closest(".last-run")?.dataset.run === rid, paused.last_run.id, { max: 200 });
      await page.keyboard.press("Enter");
      await page.waitForFunction((rid) => document.querySelector("#run-id")?.textContent === rid && document.querySelector("#run-detail"), paused.last_run.id);
      assert.match(await page.locator("#run-detail dl.facts").innerText(), /ops\/heartbeat/);
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      // It fires nothing more for the tests after this one.
      await call(server, "POST", `/v1/crons/${encodeURIComponent(id)}/pause`).catch(() => {});
      await worker.close();
    }
  });
});

// -------------------------------------------------------------------------------------------------
// Without authentication

describe("the dashboard of an --insecure-dev server", { timeout: 5 * TEST_TIMEOUT }, () => {
  let server;
  let ownBrowser;

  before(async () => {
    ownBrowser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
      timeout: START_DEADLINE,
    });
    server = await startServer({ insecure: true });
  });

  after(async () => {
    await ownBrowser?.close();
    await server?.stop();
  });

  test("asks for no token", { timeout: TEST_TIMEOUT }, async () => {
    const context = await ownBrowser.newContext({ viewport: { width: 1366, height: 900 } });
    context.setDefaultTimeout(DEADLINE);
    const page = await context.newPage();
    await page.goto(server.url);
    await page.locator("#runs-empty").waitFor();
    assert.match(await page.locator("#auth-state").innerText(), /Authentication is off/);
    assert.equal(await page.locator("#token").count(), 0);
    assert.equal(await page.locator("#sign-out").isVisible(), false);
    await page.click("nav >> text=Workers");
    await page.locator("#workers-empty").waitFor();
    await shot(page, "insecure-dev");
    await context.close();
  });
});
