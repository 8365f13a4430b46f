// OwlClaw Tasks dashboard: a single page in plain JavaScript (no framework, no build step), served
// by the engine itself. Every piece of data comes from the HTTP API (/v1/... and /metrics); the
// page keeps nothing but the API token (in sessionStorage, for this tab only) and whether live
// updates are paused. Text from the API is always set as text, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "owlclaw.dashboard.token";
  const LIVE_KEY = "owlclaw.dashboard.live";
  const REFRESH_MS = 2000;
  const OVERVIEW_REFRESH_MS = 5000;
  const CHILDREN_SHOWN = 100;
  const PLAN_CACHE_MS = 15000;
  const STATUSES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
  const CANCELLABLE = ["scheduled", "queued", "running"];
  const RETRYABLE = ["failed", "cancelled"];
  /** Counts on the runs page stop here (GET /v1/runs/count?max=): beyond, "10,000+". */
  const COUNT_MAX = 10000;

  /** The filters of GET /v1/runs, /v1/runs/count and the bulk actions (besides limit and cursor). */
  const FILTER_KEYS = ["status", "task", "owner", "parent_id", "created_after", "created_before"];

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    authOff: false,
    live: sessionStorage.getItem(LIVE_KEY) !== "off",
    gen: 0, // bumped at each navigation: answers for an older page are dropped
    timer: null,
    current: null, // {page, route, body, gen}
    lastKey: null,
    samples: [], // metrics samples for rates: {t, values}
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------------
  // DOM helpers

  /** Creates an element: h("a", {href: "#/runs"}, "Runs", child, ...). Strings become text. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  /** The SVG namespace: a name, nothing is loaded from it. */
  const SVG_NS = "http://www.w3.org/2000/svg";

  /** Creates an SVG element: svg("rect", {x: 0, class: "bar"}, child, ...). Attributes are set
   * with setAttribute (which the page's policy allows; a style attribute it would not), strings
   * become text. */
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function announce(text) {
    const el = $("announce");
    el.textContent = "";
    // A fresh text node, so that screen readers announce a repeated message again.
    window.setTimeout(() => { el.textContent = text; }, 30);
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting

  function pad(n, w = 2) { return String(n).padStart(w, "0"); }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  /** An RFC 3339 time as the value of a datetime-local input, in this browser's time zone. */
  function toLocalInput(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  /** A datetime-local value (local time, no zone) as RFC 3339 in UTC; "" when empty. */
  function fromLocalInput(value) {
    if (!value) return "";
    const d = new Date(value); // a date-time without an offset is local time
    return Number.isNaN(d.getTime()) ? "" : d.toISOString();
  }

  function localZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    } catch (_) {
      return "local time";
    }
  }

  function plural(n, one, many = `${one}s`) {
    return `${fmtNumber(n)} ${n === 1 ? one : many}`;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
    const neg = ms < 0;
    ms = Math.abs(ms);
    let s;
    if (ms < 1000) s = `${Math.round(ms)} ms`;
    else if (ms < 60000) s = ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    else if (ms < 3600000) { const t = Math.round(ms / 1000); s = `${Math.floor(t / 60)} min ${t % 60} s`; }
    else if (ms < 86400000) { const t = Math.round(ms / 60000); s = `${Math.floor(t / 60)} h ${t % 60} min`; }
    else { const t = Math.round(ms / 3600000); s = `${Math.floor(t / 24)} d ${t % 24} h`; }
    return neg ? `-${s}` : s;
  }

  function relative(iso) {
    const t = new Date(iso).getTime();
    if (Number.isNaN(t)) return "";
    const diff = t - Date.now();
    if (Math.abs(diff) < 1000) return "now";
    return diff < 0 ? `${fmtDuration(-diff)} ago` : `in ${fmtDuration(diff)}`;
  }

  /** A <time> element: the local time, and how long ago (kept current by a ticker). */
  function timeEl(iso, opts = {}) {
    if (!iso) return h("span", { class: "muted" }, opts.empty || "—");
    // The space between them outside both: "(3 min ago)" may go under the time in a narrow cell.
    const rel = h("span", { class: "muted nowrap", "data-rel": iso }, `(${relative(iso)})`);
    return h("time", { datetime: iso, title: iso }, h("span", { class: "nowrap" }, fmtTime(iso)), opts.noRel ? null : [" ", rel]);
  }

  /** The wall-clock time of `iso` in the IANA time zone `tz` (a cron's own), or "" if unknown. */
  function fmtTimeIn(iso, tz) {
    if (!iso || !tz) return "";
    try {
      const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
        timeZone: tz, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
      return `${parts.weekday} ${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${tz}`;
    } catch (_) {
      return "";
    }
  }

  function tickRelativeTimes() {
    for (const el of document.querySelectorAll("[data-rel]")) {
      el.textContent = `(${relative(el.getAttribute("data-rel"))})`;
    }
  }

  function badge(status) {
    return h("span", { class: `badge st-${status}` }, status);
  }

  function json(value) {
    if (value === null || value === undefined) return h("span", { class: "muted" }, "none");
    return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
  }

  function runLink(id, text) {
    return h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono", "data-key": `run-${id}` }, text || id);
  }

  function fmtNumber(n) {
    if (!Number.isFinite(n)) return String(n);
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    return n.toLocaleString("en-US", { maximumFractionDigits: 3 });
  }

  // ---------------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, detail) {
      super(message);
      this.status = status;
      this.code = code;
      this.detail = detail || {};
    }
  }

  async function request(path, { method = "GET", body, token = state.token, text = false } = {}) {
    const headers = { Accept: text ? "text/plain" : "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      throw new ApiError(0, "network", `could not reach the server: ${e.message}`);
    }
    const raw = await res.text();
    if (!res.ok) {
      let detail = null;
      try { detail = JSON.parse(raw).error; } catch (_) { detail = null; }
      const err = detail && typeof detail === "object"
        ? new ApiError(res.status, detail.code || `http_${res.status}`, detail.message || res.statusText, detail)
        : new ApiError(res.status, `http_${res.status}`, raw.trim().slice(0, 500) || res.statusText || "request failed");
      throw err;
    }
    if (text) return raw;
    if (!raw) return null;
    try {
      return JSON.parse(raw);
    } catch (_) {
      throw new ApiError(res.status, "bad_response", `the server answered ${path} with something that is not JSON`);
    }
  }

  /** A data call: on 401 the token is dropped and the sign-in form shown. */
  async function api(path, opts) {
    try {
      return await request(path, opts);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) showSignIn(e);
      throw e;
    }
  }

  /** Awaits every promise; throws the first error in the order given (not in time), so that the
   * error shown does not depend on which answer came first. */
  async function inOrder(promises) {
    const out = await Promise.allSettled(promises);
    for (const r of out) if (r.status === "rejected") throw r.reason;
    return out.map((r) => r.value);
  }

  function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
    const s = p.toString();
    return s ? `?${s}` : "";
  }

  /** An API error as the user sees it: what was asked, the code, the message and its fields. */
  function errorBox(err, what) {
    if (!(err instanceof ApiError)) err = new ApiError(0, "error", String(err && err.message || err));
    const head = err.status ? `${err.status} ${err.code}` : err.code;
    const extra = Object.entries(err.detail || {}).filter(([k]) => k !== "code" && k !== "message");
    return h("div", { class: "error", role: "alert" },
      h("strong", {}, what ? `${what} failed: ` : "Error: "),
      h("span", { class: "mono" }, head), " — ", h("span", { class: "message" }, err.message),
      extra.length
        ? h("dl", { class: "facts" }, extra.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))]))
        : null);
  }

  // ---------------------------------------------------------------------------------------------
  // Prometheus text

  /** Parses Prometheus text format 0.0.4 into [{name, labels, value}]. */
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split("\n")) {
      const l = line.trim();
      if (!l || l.startsWith("#")) continue;
      let i = 0;
      while (i < l.length && /[A-Za-z0-9_:]/.test(l[i])) i++;
      const name = l.slice(0, i);
      const labels = {};
      if (l[i] === "{") {
        i++;
        while (i < l.length && l[i] !== "}") {
          let j = i;
          while (j < l.length && l[j] !== "=") j++;
          const key = l.slice(i, j).trim();
          j++; // '='
          if (l[j] !== '"') break;
          j++;
          let val = "";
          while (j < l.length && l[j] !== '"') {
            if (l[j] === "\\" && j + 1 < l.length) {
              const c = l[j + 1];
              val += c === "n" ? "\n" : c;
              j += 2;
            } else {
              val += l[j++];
            }
          }
          j++; // closing quote
          labels[key] = val;
          while (j < l.length && (l[j] === "," || l[j] === " ")) j++;
          i = j;
        }
        i++; // '}'
      }
      const rest = l.slice(i).trim().split(/\s+/);
      const v = rest[0];
      const value = v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v);
      if (name) out.push({ name, labels, value });
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Sign-in

  function setAuthState() {
    const s = $("auth-state");
    const out = $("sign-out");
    if (state.token) {
      s.textContent = `Signed in with token …${state.token.slice(-4)}`;
      out.hidden = false;
    } else if (state.authOff) {
      s.textContent = "Authentication is off on this server (--insecure-dev)";
      out.hidden = true;
    } else {
      s.textContent = "";
      out.hidden = true;
    }
  }

  function showSignIn(err) {
    stopTimer();
    state.gen++;
    for (const d of document.querySelectorAll("dialog[open]")) d.close();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    document.body.classList.add("signed-out");
    setAuthState();
    $("updated").textContent = "";
    const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", spellcheck: "false", "aria-describedby": "token-help" });
    const errors = h("div", { id: "signin-error" });
    if (err) errors.append(errorBox(err, "The last request"));
    const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
    const form = h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const token = input.value.trim();
        errors.replaceChildren();
        if (!token) {
          errors.append(errorBox(new ApiError(0, "missing_token", "type the API token first"), "Sign-in"));
          input.focus();
          return;
        }
        submit.disabled = true;
        submit.textContent = "Signing in…";
        try {
          await request("/v1/workers", { token });
        } catch (e) {
          submit.disabled = false;
          submit.textContent = "Sign in";
          errors.append(errorBox(e, "Sign-in"));
          input.focus();
          input.select();
          return;
        }
        state.token = token;
        sessionStorage.setItem(TOKEN_KEY, token);
        document.body.classList.remove("signed-out");
        setAuthState();
        announce("Signed in.");
        state.focusHeading = true; // the form is gone: the new page's heading takes the focus
        render();
      },
    },
    h("label", { for: "token" }, "API token", input),
    h("p", { id: "token-help", class: "muted" },
      "This server asks for an API token (one made by ", h("code", {}, "owlclaw token create --tenant NAME"),
      "). It is kept in this browser tab only and sent as ", h("code", {}, "Authorization: Bearer"), " with each call."),
    submit, errors);
    $("main").replaceChildren(h("section", { class: "signin panel" }, h("h1", { tabindex: "-1", id: "page-title" }, "Sign in"), form));
    document.title = "Sign in · OwlClaw Tasks";
    input.focus();
  }

  function signOut() {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    announce("Signed out.");
    showSignIn();
  }

  // ---------------------------------------------------------------------------------------------
  // Routing and refresh

  function parseRoute() {
    const raw = location.hash.replace(/^#/, "") || "/runs";
    const [path, query = ""] = raw.split("?");
    const params = new URLSearchParams(query);
    const parts = path.split("/").filter(Boolean);
    if (parts.length === 0) return { page: "runs", params };
    if (parts[0] === "runs" && parts.length >= 2) return { page: "run", id: decodeURIComponent(parts[1]), params };
    return { page: parts[0], params };
  }

  function stopTimer() {
    if (state.timer) window.clearTimeout(state.timer);
    state.timer = null;
  }

  function setLive(on) {
    state.live = on;
    sessionStorage.setItem(LIVE_KEY, on ? "on" : "off");
    const b = $("live-toggle");
    b.setAttribute("aria-pressed", on ? "true" : "false");
    b.textContent = on ? "Live updates on" : "Live updates paused";
    b.title = on ? "Refreshing every 2 s: press to pause" : "Paused: press to refresh every 2 s again";
    stopTimer();
    if (on && state.current) refresh(state.current.gen);
  }

  /** Draws a page from scratch: its heading, its fixed parts (forms), then its data. */
  async function render() {
    if (!state.token && !state.authOff) {
      showSignIn();
      return;
    }
    stopTimer();
    const gen = ++state.gen;
    const route = parseRoute();
    const page = PAGES[route.page] || NOT_FOUND;
    for (const a of document.querySelectorAll("#nav a")) {
      const current = a.dataset.page === (route.page === "run" ? "runs" : route.page);
      if (current) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const title = page.title(route);
    document.title = `${title} · OwlClaw Tasks`;
    const heading = h("h1", { tabindex: "-1", id: "page-title" }, title);
    const body = h("div", { id: "page-body", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
    const fixed = page.setup ? page.setup(route) : null;
    $("main").replaceChildren(...[heading, fixed, body].filter(Boolean));
    state.current = { page, route, body, gen };
    state.lastKey = null;
    if (state.focusHeading) heading.focus();
    state.focusHeading = true;
    await refresh(gen);
  }

  /** Loads the current page's data and redraws its data part if it changed; then plans the next. */
  async function refresh(gen) {
    const cur = state.current;
    if (!cur || gen !== state.gen) return;
    stopTimer();
    let data, error;
    try {
      data = await cur.page.load(cur.route);
    } catch (e) {
      error = e;
    }
    if (gen !== state.gen) return; // navigated away (or signed out) meanwhile
    if (error && error.status === 401) return;
    const key = error ? `error:${error.status}:${error.message}` : JSON.stringify(data);
    if (key !== state.lastKey) {
      state.lastKey = key;
      const view = error ? errorBox(error, `Loading ${cur.page.title(cur.route).toLowerCase()}`) : cur.page.view(data, cur.route);
      paint(cur.body, view);
    }
    cur.body.setAttribute("aria-busy", "false");
    $("updated").textContent = `Updated ${fmtTime(new Date().toISOString()).slice(11)}`;
    if (state.live && cur.page.live !== false) {
      state.timer = window.setTimeout(() => refresh(gen), cur.page.interval || REFRESH_MS);
    }
  }

  /** Replaces `container`'s content, keeping focus and open <details> where the new content has
   * the same elements (by data-key). */
  function paint(container, view) {
    const active = document.activeElement;
    const activeKey = active && container.contains(active) ? active.getAttribute("data-key") : null;
    const open = new Set([...container.querySelectorAll("details[open][data-key]")].map((d) => d.getAttribute("data-key")));
    container.replaceChildren(view);
    for (const d of container.querySelectorAll("details[data-key]")) {
      if (open.has(d.getAttribute("data-key"))) d.open = true;
    }
    if (activeKey) {
      const again = container.querySelector(`[data-key="${CSS.escape(activeKey)}"]`);
      if (again) again.focus();
    }
  }

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  // ---------------------------------------------------------------------------------------------
  // Confirmation dialog

  /** Asks before an action; runs `action` on yes and keeps the dialog open with the error if the
   * API refuses. Escape or "No" closes it without acting. `detail` (elements) goes under the
   * text; `yesClass` styles the yes button ("danger" unless told). */
  function confirmAction({ title, text, detail = null, yes, yesClass = "danger", doing, action, opener }) {
    const dlg = $("confirm");
    const yesBtn = $("confirm-yes");
    const noBtn = $("confirm-no");
    const errors = $("confirm-error");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-detail").replaceChildren(...(detail ? [detail].flat() : []));
    yesBtn.textContent = yes;
    yesBtn.className = yesClass;
    yesBtn.disabled = false;
    errors.replaceChildren();
    stopTimer(); // no redraw under the dialog
    const close = () => { if (dlg.open) dlg.close(); };
    const onYes = async () => {
      yesBtn.disabled = true;
      errors.replaceChildren();
      try {
        await action();
      } catch (e) {
        yesBtn.disabled = false;
        errors.append(errorBox(e, doing));
        noBtn.focus();
        return;
      }
      close();
    };
    const onNo = () => close();
    yesBtn.onclick = onYes;
    noBtn.onclick = onNo;
    dlg.addEventListener("close", () => {
      yesBtn.onclick = null;
      noBtn.onclick = null;
      // Redraw at once (the action changed the run), then put focus back on the button that
      // opened the dialog (or the one drawn in its place, by data-key), or on the heading when
      // the redraw removed it.
      const refocus = () => {
        const key = opener && opener.getAttribute("data-key");
        const again = opener && !opener.isConnected && key ? $("main").querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
        if (opener && opener.isConnected) opener.focus();
        else if (again) again.focus();
        else $("page-title")?.focus();
      };
      if (state.current) refresh(state.current.gen).then(refocus);
      else refocus();
    }, { once: true });
    dlg.showModal();
    noBtn.focus();
  }

  // ---------------------------------------------------------------------------------------------
  // Bulk actions: cancel or retry every run a filter matches

  const BULK = {
    cancel: {
      path: "/v1/runs/cancel",
      title: "Cancel all matching runs?",
      verb: "cancel",
      did: "Cancelled",
      doing: "Cancelling",
      eligible: CANCELLABLE,
      eligibleText: "scheduled, queued or running",
      note: "Runs already finished are left as they are; a running run stops at its worker's next heartbeat. " +
        "Cancelled runs can be retried later.",
      yesClass: "danger",
    },
    retry: {
      path: "/v1/runs/retry",
      title: "Retry all matching runs?",
      verb: "retry",
      did: "Retried",
      doing: "Retrying",
      eligible: RETRYABLE,
      eligibleText: "failed or cancelled",
      note: "Only failed and cancelled runs change: each is queued again as a new attempt, with its retries " +
        "granted anew; its completed durable steps are not run again.",
      yesClass: "primary",
    },
  };

  /** The filter part of `f` (no limit, no cursor, no empty field), as the API takes it. */
  function filterOnly(f) {
    const out = {};
    for (const k of FILTER_KEYS) if (f[k]) out[k] = f[k];
    return out;
  }

  function hasFilter(f) {
    return FILTER_KEYS.some((k) => f[k]);
  }

  /** "status queued, task send-email, created after 2026-11-02 10:00:00" */
  function describeFilter(f) {
    return [
      f.status && `status ${f.status}`,
      f.task && `task ${f.task}`,
      f.owner && `owner ${f.owner}`,
      f.parent_id && `scheduled by run ${f.parent_id}`,
      f.created_after && `created at or after ${fmtTime(f.created_after)}`,
      f.created_before && `created before ${fmtTime(f.created_before)}`,
    ].filter(Boolean).join(", ");
  }

  /** Counts the runs `filter` matches and those of them the action can change, asks, then acts on
   * them one page (one transaction) at a time, showing the progress; "Stop" or Escape stops after
   * the current page, an API error stops it too, and either can be resumed from where it stopped. */
  async function bulkAction(kind, filter, opener) {
    const k = BULK[kind];
    const dlg = $("bulk");
    const yes = $("bulk-yes");
    const no = $("bulk-no");
    const text = $("bulk-text");
    const detail = $("bulk-detail");
    const wrap = $("bulk-progress-wrap");
    const bar = $("bulk-progress");
    const status = $("bulk-status");
    const result = $("bulk-result");
    const errors = $("bulk-error");
    const what = describeFilter(filter);
    $("bulk-title").textContent = k.title;
    text.textContent = `Counting the runs with ${what}…`;
    detail.textContent = "";
    result.textContent = "";
    status.textContent = "";
    errors.replaceChildren();
    wrap.hidden = true;
    yes.hidden = false;
    yes.disabled = true;
    yes.className = k.yesClass;
    yes.textContent = `Yes, ${k.verb} them`;
    no.textContent = "No, go back";
    stopTimer(); // no redraw under the dialog
    const run = { cursor: null, matched: 0, changed: 0, pages: 0, total: 0, running: false, stop: false, done: false };

    const showProgress = () => {
      wrap.hidden = false;
      bar.max = Math.max(run.total, run.changed, 1);
      bar.value = run.changed;
      status.textContent = `${k.did} ${fmtNumber(run.changed)} of ${fmtNumber(run.total)}` +
        (run.pages ? ` (${plural(run.pages, "page")}, ${plural(run.matched, "run")} matched so far)` : "");
    };

    const finish = (how) => {
      run.running = false;
      no.textContent = "Close";
      const unchanged = run.matched - run.changed;
      if (how === "done") {
        run.done = true;
        yes.hidden = true;
        result.textContent = `Done: ${k.did.toLowerCase()} ${plural(run.changed, "run")} of the ${plural(run.matched, "run")} that matched` +
          (unchanged ? `; the other ${fmtNumber(unchanged)} ${unchanged === 1 ? "was" : "were"} not ${k.eligibleText}.` : ".");
      } else {
        yes.disabled = false;
        yes.textContent = "Continue from where it stopped";
        result.textContent = `${how === "stopped" ? "Stopped" : "Interrupted"}: ${k.did.toLowerCase()} ${plural(run.changed, "run")} of the ${plural(run.matched, "run")} matched so far.`;
      }
      announce(result.textContent);
      no.focus();
    };

    const loop = async () => {
      run.running = true;
      run.stop = false;
      yes.disabled = true;
      no.textContent = "Stop after this page";
      errors.replaceChildren();
      result.textContent = "";
      showProgress();
      for (;;) {
        let out;
        try {
          out = await api(k.path, { method: "POST", body: run.cursor ? { ...filter, cursor: run.cursor } : { ...filter } });
        } catch (e) {
          errors.append(errorBox(e, `${k.doing} page ${run.pages + 1}`));
          finish("error");
          return;
        }
        run.pages++;
        run.matched += out.matched;
        run.changed += out.changed;
        run.cursor = out.next_cursor || null;
        showProgress();
        if (!run.cursor) {
          finish("done");
          return;
        }
        if (run.stop || !dlg.open) {
          finish("stopped");
          return;
        }
      }
    };

    const requestStop = () => {
      run.stop = true;
      no.textContent = "Stopping after this page…";
    };
    const onCancel = (ev) => {
      if (run.running) {
        ev.preventDefault(); // Escape while acting: stop after this page, keep the dialog
        requestStop();
      }
    };
    yes.onclick = () => { if (!run.running) loop(); };
    no.onclick = () => {
      if (run.running) requestStop();
      else dlg.close();
    };
    dlg.addEventListener("cancel", onCancel);
    dlg.addEventListener("close", () => {
      dlg.removeEventListener("cancel", onCancel);
      yes.onclick = null;
      no.onclick = null;
      const refocus = () => {
        if (opener && opener.isConnected) opener.focus();
        else $("page-title")?.focus();
      };
      if (state.current) refresh(state.current.gen).then(refocus);
      else refocus();
    }, { once: true });
    dlg.showModal();
    no.focus();

    // The exact count first: of the runs matching, and of those the action can change.
    try {
      const count = (s) => api(`/v1/runs/count${qs({ ...filter, status: s })}`).then((c) => c.count);
      const matching = await count(filter.status);
      let eligible;
      if (filter.status) eligible = k.eligible.includes(filter.status) ? matching : 0;
      else eligible = (await inOrder(k.eligible.map((s) => count(s)))).reduce((a, n) => a + n, 0);
      if (!dlg.open) return;
      run.total = eligible;
      text.textContent = `${plural(matching, "run")} ${matching === 1 ? "matches" : "match"} ${what}` +
        (filter.status ? "." : `; ${fmtNumber(eligible)} of them ${eligible === 1 ? "is" : "are"} ${k.eligibleText}.`) +
        (eligible ? ` ${k.verb[0].toUpperCase()}${k.verb.slice(1)} ${eligible === 1 ? "it" : `all ${fmtNumber(eligible)}`}?` : ` None can be ${k.verb === "cancel" ? "cancelled" : "retried"}: there is nothing to do.`);
      text.dataset.matching = String(matching);
      text.dataset.eligible = String(eligible);
      detail.textContent = `${k.note} The runs are changed 1,000 at a time, each page in one transaction, newest first.`;
      if (eligible) {
        yes.disabled = false;
        yes.textContent = `Yes, ${k.verb} ${eligible === 1 ? "it" : `all ${fmtNumber(eligible)}`}`;
      } else {
        no.textContent = "Close";
      }
    } catch (e) {
      text.textContent = `Could not count the runs with ${what}.`;
      errors.append(errorBox(e, "Counting the runs"));
      no.textContent = "Close";
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Pages

  const NOT_FOUND = {
    title: () => "Page not found",
    live: false,
    load: async () => null,
    view: () => h("p", {}, "No such page. ", h("a", { href: "#/runs" }, "Go to the runs.")),
  };

  // Runs -----------------------------------------------------------------------------------------

  function runsFilter(route) {
    const p = route.params;
    return {
      status: p.get("status") || "",
      task: p.get("task") || "",
      owner: p.get("owner") || "",
      parent_id: p.get("parent_id") || "",
      created_after: p.get("created_after") || "",
      created_before: p.get("created_before") || "",
      limit: p.get("limit") || "50",
      cursor: p.get("cursor") || "",
    };
  }

  function runsHash(f) {
    return `#/runs${qs({ ...filterOnly(f), limit: f.limit === "50" ? "" : f.limit, cursor: f.cursor })}`;
  }

  const RUNS = {
    title: () => "Runs",
    setup(route) {
      const f = runsFilter(route);
      const status = h("select", { id: "f-status", name: "status" },
        h("option", { value: "" }, "any status"),
        STATUSES.map((s) => h("option", { value: s, selected: s === f.status }, s)));
      const task = h("input", { id: "f-task", name: "task", value: f.task, placeholder: "e.g. send-email", size: 14 });
      const owner = h("input", { id: "f-owner", name: "owner", value: f.owner, placeholder: "user", size: 10 });
      const parent = h("input", { id: "f-parent", name: "parent_id", value: f.parent_id, placeholder: "run id", size: 14, class: "mono", autocomplete: "off" });
      const after = h("input", { id: "f-after", name: "created_after", type: "datetime-local", step: 1, value: toLocalInput(f.created_after) });
      const before = h("input", { id: "f-before", name: "created_before", type: "datetime-local", step: 1, value: toLocalInput(f.created_before) });
      const limit = h("select", { id: "f-limit", name: "limit" },
        ["25", "50", "100", "250"].map((n) => h("option", { value: n, selected: n === f.limit }, n)));
      const filter = h("form", {
        role: "search",
        "aria-label": "Filter runs",
        onsubmit: (ev) => {
          ev.preventDefault();
          go(runsHash({
            status: status.value, task: task.value.trim(), owner: owner.value.trim(), parent_id: parent.value.trim(),
            created_after: fromLocalInput(after.value), created_before: fromLocalInput(before.value), limit: limit.value, cursor: "",
          }));
        },
      },
      h("label", { for: "f-status" }, "Status", status),
      h("label", { for: "f-task" }, "Task", task),
      h("label", { for: "f-owner" }, "Owner", owner),
      h("label", { for: "f-parent" }, "Scheduled by run", parent),
      h("fieldset", { class: "range" },
        h("legend", {}, "Created ", h("span", { id: "f-zone" }, /^(Etc\/)?(UTC|GMT)$/.test(localZone()) ? "(UTC)" : `(${localZone()} time, sent in UTC)`)),
        h("label", { for: "f-after" }, "at or after", after),
        h("label", { for: "f-before" }, "before", before)),
      h("label", { for: "f-limit" }, "Per page", limit),
      h("button", { type: "submit", class: "primary" }, "Filter"),
      h("button", { type: "button", onclick: () => go("#/runs") }, "Clear"));
      const idInput = h("input", { id: "f-id", name: "id", placeholder: "run id (UUID)", size: 38, class: "mono", autocomplete: "off" });
      const idError = h("div", { id: "f-id-error" });
      const search = h("form", {
        role: "search",
        "aria-label": "Open a run by id",
        onsubmit: (ev) => {
          ev.preventDefault();
          const id = idInput.value.trim();
          idError.replaceChildren();
          if (!id) {
            idError.append(errorBox(new ApiError(0, "missing_id", "type a run id first"), "Search"));
            idInput.focus();
            return;
          }
          go(`#/runs/${encodeURIComponent(id)}`);
        },
      },
      h("label", { for: "f-id" }, "Run id", idInput),
      h("button", { type: "submit" }, "Open run"));
      // Bulk actions apply to the filter applied (the address), not to what is typed but not sent.
      const applied = filterOnly(f);
      const active = hasFilter(f);
      const bulkButton = (kind, id, label, cls) => h("button", {
        type: "button", id, class: cls, disabled: !active, "aria-describedby": "bulk-hint",
        onclick: (ev) => bulkAction(kind, applied, ev.currentTarget),
      }, label);
      const bulk = h("div", { class: "bulkbar", role: "group", "aria-labelledby": "bulk-label" },
        h("span", { id: "bulk-label", class: "label" }, "Bulk actions"),
        bulkButton("cancel", "bulk-cancel", "Cancel all matching…", "danger"),
        bulkButton("retry", "bulk-retry", "Retry all matching…", "primary"),
        h("span", { id: "bulk-hint", class: "muted" }, active
          ? `On every run with ${describeFilter(f)}, on every page; the dialog says how many first.`
          : "Set a filter first (status, task, owner, scheduling run or creation time): a bulk action never applies to every run."));
      return h("div", {}, h("div", { class: "toolbar" }, filter, h("span", { class: "sep", "aria-hidden": "true" }), search), idError, bulk);
    },
    async load(route) {
      const f = runsFilter(route);
      const filter = filterOnly(f);
      const [page, count] = await inOrder([
        api(`/v1/runs${qs({ ...filter, limit: f.limit, cursor: f.cursor })}`),
        // Counted up to COUNT_MAX: a bounded cost on a large store ("10,000+" beyond).
        api(`/v1/runs/count${qs({ ...filter, max: COUNT_MAX })}`),
      ]);
      return { page, count: count.count, capped: !!count.capped };
    },
    view({ page, count, capped }, route) {
      const f = runsFilter(route);
      const what = describeFilter(f);
      const matching = h("p", { id: "runs-count", "data-count": count, class: "count-line" },
        h("strong", {}, capped ? `${count.toLocaleString("en-US")}+ runs` : plural(count, "run")), what ? ` with ${what}` : " in all", ".");
      const caption = `${page.runs.length} run${page.runs.length === 1 ? "" : "s"}${what ? ` with ${what}` : ""}, newest first${f.cursor ? " (a later page)" : ""}`;
      const pager = h("div", { class: "pager" },
        f.cursor ? h("a", { href: runsHash({ ...f, cursor: "" }), "data-key": "first-page" }, "← Newest runs") : null,
        page.next_cursor
          ? h("a", { href: runsHash({ ...f, cursor: page.next_cursor }), "data-key": "next-page", id: "next-page" }, "Next page →")
          : h("span", { class: "muted" }, "No more runs."));
      if (page.runs.length === 0) {
        return h("div", {}, matching, h("p", { class: "panel", id: "runs-empty" }, `No runs${what ? ` with ${what}` : ""}${f.cursor ? " on this page" : ""}.`), pager);
      }
      const now = Date.now();
      const rows = page.runs.map((r) => {
        const end = r.finished_at ? new Date(r.finished_at).getTime() : r.started_at && r.status === "running" ? now : null;
        const took = r.started_at && end ? fmtDuration(end - new Date(r.started_at).getTime()) : "";
        return h("tr", { "data-run": r.id, "data-status": r.status },
          h("td", { class: "nowrap" }, runLink(r.id)),
          h("td", { class: "nowrap" }, r.task),
          h("td", {}, badge(r.status)),
          h("td", { class: "num" }, `${r.attempt} / ${r.max_attempts}`),
          h("td", { class: "num" }, r.priority),
          h("td", {}, r.owner || h("span", { class: "muted" }, "—")),
          h("td", {}, timeEl(r.created_at)),
          h("td", {}, r.status === "scheduled" ? h("span", {}, "due ", timeEl(r.run_at)) : timeEl(r.started_at, { noRel: true })),
          h("td", { class: "num" }, took));
      });
      return h("div", {},
        matching,
        h("div", { class: "table-wrap" },
          h("table", { id: "runs-table" },
            h("caption", {}, caption),
            h("thead", {}, h("tr", {},
              h("th", { scope: "col" }, "Run"), h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "Status"),
              h("th", { scope: "col", class: "num" }, "Attempt"), h("th", { scope: "col", class: "num" }, "Priority"),
              h("th", { scope: "col" }, "Owner"), h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Started"),
              h("th", { scope: "col", class: "num" }, "Took"))),
            h("tbody", {}, rows))),
        pager);
    },
  };

  // Run detail ---------------------------------------------------------------------------------

  /** The run's workflow tasks, or null when it is not a workflow run (remembered for the page:
   * a run's task does not change), or {error}. */
  async function workflowTasks(route) {
    const c = route.cache;
    if (c.notWorkflow) return null;
    try {
      return await api(`/v1/runs/${encodeURIComponent(route.id)}/tasks`);
    } catch (e) {
      // 404 for a run that is not a workflow run (the run itself was just read).
      if (e instanceof ApiError && e.status === 404 && e.code === "not_found") {
        c.notWorkflow = true;
        return null;
      }
      if (e instanceof ApiError && e.status === 401) throw e;
      return { error: e };
    }
  }

  /** A workflow's plan (stages, expected durations, critical path), kept a few seconds: it only
   * changes when a task run succeeds. */
  async function workflowPlan(route, name) {
    const c = route.cache;
    if (c.plan && c.plan.name === name && Date.now() - c.plan.at < PLAN_CACHE_MS) return c.plan.value;
    let value;
    try {
      value = await api(`/v1/workflows/${encodeURIComponent(name)}/plan`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw e;
      value = { error: e };
    }
    c.plan = { name, at: Date.now(), value };
    return value;
  }

  /** The columns of the task graph: the plan's stages when they hold exactly the run's tasks,
   * else levels computed from the run's own parents (the workflow changed since, or no plan). */
  function stagesOf(tasks, plan) {
    const names = new Set(tasks.map((t) => t.task));
    if (plan && !plan.error) {
      const planned = plan.stages.flat();
      if (planned.length === names.size && planned.every((n) => names.has(n))) return plan.stages;
    }
    const byName = new Map(tasks.map((t) => [t.task, t]));
    const level = new Map();
    const levelOf = (name, seen) => {
      if (level.has(name)) return level.get(name);
      const t = byName.get(name);
      if (!t || seen.has(name)) return 0;
      seen.add(name);
      const l = t.parents.length ? 1 + Math.max(...t.parents.map((p) => levelOf(p, seen))) : 0;
      level.set(name, l);
      return l;
    };
    const stages = [];
    for (const t of tasks) (stages[levelOf(t.task, new Set())] ||= []).push(t.task);
    return stages.filter(Boolean);
  }

  /** One task of a workflow run as a box: its name (a link to its run, once it has one), its
   * status, why it is pending or skipped, and its timing. */
  function taskBox(t, { plan, critical, onFailure = false }) {
    const planned = plan && !plan.error ? plan.tasks.find((p) => p.name === t.task) : null;
    const tags = [];
    if (onFailure) tags.push("on failure");
    if (plan && !plan.error && plan.output === t.task) tags.push("output");
    if (critical.has(t.task)) tags.push("critical path");
    let timing = null;
    if (t.started_at && t.finished_at) timing = `took ${fmtDuration(new Date(t.finished_at) - new Date(t.started_at))}`;
    else if (t.started_at) timing = `running for ${fmtDuration(Date.now() - new Date(t.started_at).getTime())}`;
    return h("li", { class: "wf-task", "data-task": t.task, "data-status": t.status, "data-parents": JSON.stringify(t.parents || []) },
      h("div", { class: "wf-name" }, t.run_id
        ? h("a", { href: `#/runs/${encodeURIComponent(t.run_id)}`, class: "mono", "data-key": `wf-task-${t.task}` }, t.task)
        : h("span", { class: "mono" }, t.task)),
      h("div", {}, badge(t.status), tags.map((x) => [" ", h("span", { class: "chip" }, x)])),
      t.reason ? h("p", { class: "wf-reason" }, t.reason) : null,
      t.parents && t.parents.length ? h("p", { class: "muted" }, `after ${t.parents.join(", ")}`) : null,
      timing || planned?.expected_ms != null
        ? h("p", { class: "muted" }, [timing, planned?.expected_ms != null ? `usually ${fmtDuration(planned.expected_ms)}` : null].filter(Boolean).join("; "))
        : null);
  }

  /** Draws the edges of a task graph (parent → task) once its boxes are laid out, and again
   * whenever its size changes. Decoration only: each box also names its parents as text. */
  function drawEdges(graph) {
    const layer = graph.querySelector("svg.wf-edges");
    if (!layer) return;
    const origin = graph.getBoundingClientRect();
    layer.setAttribute("width", String(graph.scrollWidth));
    layer.setAttribute("height", String(graph.scrollHeight));
    const paths = [];
    const boxes = new Map([...graph.querySelectorAll(".wf-task")].map((el) => [el.dataset.task, el]));
    for (const el of boxes.values()) {
      let parents = [];
      try { parents = JSON.parse(el.dataset.parents || "[]"); } catch (_) { parents = []; }
      const to = el.getBoundingClientRect();
      for (const p of parents) {
        const from = boxes.get(p)?.getBoundingClientRect();
        if (!from) continue;
        const x1 = from.right - origin.left;
        const y1 = from.top + from.height / 2 - origin.top;
        const x2 = to.left - origin.left;
        const y2 = to.top + to.height / 2 - origin.top;
        const dx = Math.max(16, (x2 - x1) / 2);
        paths.push(svg("path", {
          d: `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`,
          class: `edge from-${boxes.get(p).dataset.status}`,
        }));
      }
    }
    layer.replaceChildren(...paths);
  }

  function workflowGraph(wf, plan) {
    if (wf.error) return errorBox(wf.error, "Loading the workflow's tasks");
    const critical = new Set(plan && !plan.error ? plan.critical_path : []);
    const byName = new Map(wf.tasks.map((t) => [t.task, t]));
    const stages = stagesOf(wf.tasks, plan);
    const columns = stages.map((names, i) => h("li", { class: "wf-stage" },
      h("h3", { class: "muted" }, `Stage ${i + 1}`),
      h("ul", {}, names.filter((n) => byName.has(n)).map((n) => taskBox(byName.get(n), { plan, critical })))));
    if (wf.on_failure) {
      columns.push(h("li", { class: "wf-stage wf-on-failure" },
        h("h3", { class: "muted" }, "On failure"),
        h("ul", {}, taskBox({ ...wf.on_failure, parents: [] }, { plan, critical, onFailure: true }))));
    }
    const edges = svg("svg", { class: "wf-edges", "aria-hidden": "true", focusable: "false" });
    const graph = h("div", { class: "wf-graph", id: "wf-graph" }, edges,
      h("ol", { class: "wf-stages", "aria-label": `Tasks of ${wf.workflow}, by stage: the tasks of a stage can run in parallel` }, columns));
    if (typeof ResizeObserver === "function") {
      const ro = new ResizeObserver(() => {
        if (!graph.isConnected) {
          ro.disconnect();
          return;
        }
        drawEdges(graph);
      });
      ro.observe(graph);
    }
    let path = null;
    if (plan && plan.error) {
      path = h("p", { class: "muted", id: "critical-path" }, "No plan: ", h("span", { class: "message" }, plan.error.message));
    } else if (plan) {
      const expected = new Map(plan.tasks.map((t) => [t.name, t.expected_ms]));
      path = h("p", { id: "critical-path", class: "critical-path" },
        h("strong", {}, "Critical path: "),
        plan.critical_path.map((n, i) => [i ? " → " : "", h("span", { class: "mono" }, n),
          ` (${expected.get(n) == null ? "no history" : fmtDuration(expected.get(n))})`]),
        `: ${fmtDuration(plan.critical_path_ms)} expected`,
        h("span", { class: "muted" }, " (each task's median of its last succeeded runs; no history counts as 0)"));
    }
    return h("div", {}, h("div", { class: "wf-scroll" }, graph), path);
  }

  /** "step 1 "render-pdf"" */
  function stepLabel(s) {
    return `step ${s.position} "${s.name}"`;
  }

  /** The children a run's spawn steps recorded (their outputs name them), in step order. */
  function spawnedBy(steps) {
    return steps.filter((s) => s.name.startsWith("spawn:") && s.output && typeof s.output.run_id === "string")
      .map((s) => s.output.run_id);
  }

  /** A step row's replay action: on the first step of each name (the API replays from the first
   * step of the name it is given); a later step of the same name points to that one. */
  function replayCell(run, step, route) {
    const first = run.steps.find((s) => s.name === step.name);
    if (first !== step) {
      return h("span", { class: "muted" }, `Same name as step ${first.position}: a replay of this name starts there.`);
    }
    return h("button", {
      type: "button", class: "replay-step", id: `replay-step-${step.position}`, "data-key": `replay-step-${step.position}`,
      "aria-describedby": `step-name-${step.position}`,
      onclick: (ev) => replayDialog(run, step, route, ev.currentTarget),
    }, "Replay from this step…");
  }

  /** Asks before replaying `run` from `step`, saying which steps run again, which are kept and
   * which children are started afresh; the page then says how the new attempt goes. */
  function replayDialog(run, step, route, opener) {
    const kept = run.steps.filter((s) => s.position < step.position);
    const again = run.steps.filter((s) => s.position >= step.position);
    const keptKids = spawnedBy(kept);
    const freshKids = spawnedBy(again);
    const next = run.attempt + 1;
    const names = (list) => list.map((s) => `${s.position} ${s.name}`).join(", ");
    const later = again.length - 1;
    const detail = h("ul", { id: "replay-detail", class: "replay-detail" },
      h("li", { "data-part": "again" }, h("strong", {}, "Runs again: "),
        `${stepLabel(step)}${later ? ` and the ${plural(later, "step")} after it (${names(again.slice(1))})` : ""}, ` +
        `and any step the task reaches after ${later ? "them" : "it"}, as attempt ${next}.`),
      h("li", { "data-part": "kept" }, h("strong", {}, "Kept: "),
        kept.length
          ? `the ${plural(kept.length, "step")} before it (${names(kept)}) keep${kept.length === 1 ? "s" : ""} ${kept.length === 1 ? "its output" : "their outputs"} and ${kept.length === 1 ? "is" : "are"} not run again` +
            (keptKids.length ? `; the ${plural(keptKids.length, "child run")} spawned before it ${keptKids.length === 1 ? "is" : "are"} kept (${keptKids.join(", ")}).` : "; any child spawned before it is kept.")
          : "no step: this is the first one, so every step runs again.",
        " The history of the earlier attempts (errors, events) is kept."),
      h("li", { "data-part": "fresh" }, h("strong", {}, "Started afresh: "),
        freshKids.length
          ? `the ${plural(freshKids.length, "child run")} spawned from ${stepLabel(step)} on (${freshKids.join(", ")}) ${freshKids.length === 1 ? "is" : "are"} not reused: ` +
            "the task starts new ones; the old runs are left as they are."
          : `any child spawned from ${stepLabel(step)} on is started afresh, not found again.`));
    confirmAction({
      title: "Replay this run from this step?",
      text: `Run ${run.id} (${run.task}) is ${run.status}. Replaying it from ${stepLabel(step)} queues it again as a new attempt, ` +
        "with its retries granted anew:",
      detail,
      yes: `Yes, replay from ${stepLabel(step)}`,
      yesClass: "primary",
      doing: "Replaying the run",
      opener,
      action: async () => {
        const after = await api(`/v1/runs/${encodeURIComponent(run.id)}/replay`, { method: "POST", body: { from_step: step.name } });
        route.cache.replayed = { position: step.position, name: step.name, attempt: after.attempt + 1, kept: kept.length };
        announce(`Run ${run.id} replayed from ${stepLabel(step)}: it is now ${after.status}, for attempt ${after.attempt + 1}.`);
      },
    });
  }

  /** What became of the replay made from this page: the new attempt and how it goes. */
  function replayNotice(run, r) {
    const started = run.attempt >= r.attempt;
    return h("div", { class: "notice", id: "run-replayed", "data-attempt": r.attempt },
      h("strong", {}, "Replayed "), `from ${stepLabel(r)} as attempt ${r.attempt} of ${run.max_attempts}: `,
      started
        ? h("span", {}, `attempt ${run.attempt} is `, badge(run.status))
        : h("span", {}, "it is ", badge(run.status), CANCELLABLE.includes(run.status) ? `, waiting for attempt ${r.attempt} to start` : ""),
      `. ${r.kept ? `The ${plural(r.kept, "step")} before it kept ${r.kept === 1 ? "its output" : "their outputs"}.` : "Every step runs again."}`);
  }

  const RUN = {
    title: () => "Run",
    setup(route) {
      return h("p", {}, h("a", { href: "#/runs" }, "← All runs"), " · ", h("span", { class: "mono", id: "run-id" }, route.id));
    },
    async load(route) {
      const id = encodeURIComponent(route.id);
      route.cache ||= {};
      const [run, events, kids, kidCount, wf] = await inOrder([
        api(`/v1/runs/${id}`),
        api(`/v1/runs/${id}/events`),
        api(`/v1/runs${qs({ parent_id: route.id, limit: CHILDREN_SHOWN })}`),
        api(`/v1/runs/count${qs({ parent_id: route.id })}`),
        workflowTasks(route),
      ]);
      const plan = wf && !wf.error ? await workflowPlan(route, wf.workflow) : null;
      const replayed = route.cache.replayed || null;
      return { run, events, children: { runs: kids.runs, count: kidCount.count }, wf, plan, replayed };
    },
    view({ run, events, children, wf, plan, replayed }, route) {
      const waitsForNext = (run.status === "queued" || run.status === "scheduled") && run.attempt > 0 && run.attempt < run.max_attempts;
      const facts = [
        ["Status", badge(run.status)],
        ["Task", h("span", {}, h("span", { class: "mono" }, run.task), wf ? h("span", { class: "muted" }, " (a workflow)") : null)],
        ["Attempt", h("span", { id: "run-attempt" }, `${run.attempt} of ${run.max_attempts}`,
          waitsForNext ? h("span", { class: "muted" }, `; attempt ${run.attempt + 1} is next`) : null)],
        run.replays > 0 ? ["Replays", h("span", { id: "run-replays" }, `${fmtNumber(run.replays)} (replayed from a step)`)] : null,
        ["Priority", String(run.priority)],
        ["Owner", run.owner || h("span", { class: "muted" }, "—")],
        ["Worker", run.worker || h("span", { class: "muted" }, wf ? "— (the engine runs a workflow's tasks)" : "—")],
        ["Created", timeEl(run.created_at)],
        ["Due", timeEl(run.run_at)],
        ["Started", timeEl(run.started_at, { empty: "not yet" })],
        ["Finished", timeEl(run.finished_at, { empty: "not yet" })],
        ["Ran for", run.started_at
          ? fmtDuration((run.finished_at ? new Date(run.finished_at) : new Date()).getTime() - new Date(run.started_at).getTime()) + (run.finished_at ? "" : " so far")
          : h("span", { class: "muted" }, "—")],
        ["Timeout", fmtDuration(run.timeout_ms) + " per attempt"],
        ["Parent", run.parent_id ? runLink(run.parent_id) : h("span", { class: "muted" }, "none")],
        ["Idempotency key", run.idempotency_key ? h("span", { class: "mono" }, run.idempotency_key) : h("span", { class: "muted" }, "none")],
        run.limit_key != null ? ["Limit key", h("span", { class: "mono", id: "run-limit-key" }, run.limit_key === "" ? "(empty key)" : run.limit_key)] : null,
      ].filter(Boolean);
      const actions = [];
      if (CANCELLABLE.includes(run.status)) {
        actions.push(h("button", {
          type: "button", class: "danger", id: "cancel-run", "data-key": "cancel-run",
          onclick: (ev) => confirmAction({
            title: "Cancel this run?",
            text: `Run ${run.id} (${run.task}) is ${run.status}. Cancelling it marks it cancelled at once${run.status === "running" ? "; its worker stops the task at its next heartbeat" : ""}. A cancelled run can be retried later.`,
            yes: "Yes, cancel the run",
            doing: "Cancelling the run",
            opener: ev.currentTarget,
            action: async () => {
              const after = await api(`/v1/runs/${encodeURIComponent(run.id)}/cancel`, { method: "POST" });
              announce(`Run ${run.id} is now ${after.status}.`);
            },
          }),
        }, "Cancel run…"));
      }
      if (RETRYABLE.includes(run.status)) {
        actions.push(h("button", {
          type: "button", class: "primary", id: "retry-run", "data-key": "retry-run",
          onclick: (ev) => confirmAction({
            title: "Retry this run?",
            text: `Run ${run.id} (${run.task}) is ${run.status}. Retrying queues it again as a new attempt, with its retries granted anew; its completed durable steps are not run again.`,
            yes: "Yes, retry the run",
            doing: "Retrying the run",
            opener: ev.currentTarget,
            action: async () => {
              const after = await api(`/v1/runs/${encodeURIComponent(run.id)}/retry`, { method: "POST" });
              announce(`Run ${run.id} is now ${after.status}.`);
            },
          }),
        }, "Retry run…"));
      }
      const allChildren = `#/runs${qs({ parent_id: run.id })}`;
      const replayable = RETRYABLE.includes(run.status) && run.steps && run.steps.length > 0;
      return h("div", { id: "run-detail", "data-status": run.status },
        h("section", { class: "panel", "aria-labelledby": "sum-h" },
          h("h2", { id: "sum-h", class: "hidden" }, "Summary"),
          h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
          actions.length
            ? h("div", { class: "actions" }, actions)
            : h("p", { class: "muted" }, `No action applies to a ${run.status} run.`)),
        replayed ? replayNotice(run, replayed) : null,
        run.waiting ? h("div", { class: "notice", id: "run-waiting" }, h("strong", {}, "Waiting: "), run.waiting) : null,
        run.error ? h("section", { "aria-labelledby": "err-h" }, h("h2", { id: "err-h" }, "Error"), h("pre", { id: "run-error" }, run.error)) : null,
        wf
          ? h("section", { "aria-labelledby": "wf-h", id: "run-workflow" },
            h("h2", { id: "wf-h" }, wf.workflow ? `Workflow ${wf.workflow}: its tasks` : "Workflow tasks"),
            workflowGraph(wf, plan))
          : null,
        run.errors && run.errors.length
          ? h("section", { "aria-labelledby": "att-h" }, h("h2", { id: "att-h" }, "Failed attempts"),
            h("div", { class: "table-wrap" }, h("table", {},
              h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Attempt"), h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Error"))),
              h("tbody", {}, run.errors.map((e) => h("tr", {}, h("td", { class: "num" }, e.attempt), h("td", {}, timeEl(e.at)), h("td", {}, h("pre", {}, e.error))))))))
          : null,
        h("div", { class: "grid2" },
          h("section", { "aria-labelledby": "in-h" }, h("h2", { id: "in-h" }, "Input"), h("div", { id: "run-input" }, json(run.input))),
          h("section", { "aria-labelledby": "out-h" }, h("h2", { id: "out-h" }, "Output"), h("div", { id: "run-output" }, json(run.output)))),
        run.metadata ? h("section", { "aria-labelledby": "meta-h" }, h("h2", { id: "meta-h" }, "Metadata"), json(run.metadata)) : null,
        h("section", { "aria-labelledby": "steps-h" }, h("h2", { id: "steps-h" }, "Durable steps"),
          run.steps && run.steps.length
            ? h("div", { class: "table-wrap" }, h("table", { id: "steps-table" },
              replayable ? h("caption", {}, `This run is ${run.status}: it can be replayed from one of its steps (that step and the later ones run again; the earlier ones keep their outputs)`) : null,
              h("thead", {}, h("tr", {},
                h("th", { scope: "col", class: "num" }, "#"), h("th", { scope: "col" }, "Step"), h("th", { scope: "col" }, "Status"),
                h("th", { scope: "col", class: "num" }, "Attempt"), h("th", { scope: "col" }, "Started"), h("th", { scope: "col", class: "num" }, "Took"),
                h("th", { scope: "col" }, "Output or error"),
                replayable ? h("th", { scope: "col" }, "Replay") : null)),
              h("tbody", {}, run.steps.map((s) => h("tr", { "data-step": s.position, "data-name": s.name },
                h("td", { class: "num" }, s.position),
                h("td", { class: "mono", id: `step-name-${s.position}` }, s.name),
                h("td", {}, badge(s.status)),
                h("td", { class: "num" }, s.attempt),
                h("td", {}, timeEl(s.started_at, { noRel: true })),
                h("td", { class: "num" }, s.finished_at ? fmtDuration(new Date(s.finished_at) - new Date(s.started_at)) : ""),
                h("td", {}, s.error
                  ? h("pre", {}, s.error)
                  : h("details", { "data-key": `step-${s.position}` }, h("summary", {}, "output"), json(s.output))),
                replayable ? h("td", {}, replayCell(run, s, route)) : null)))))
            : h("p", { class: "muted" }, "This run has no durable steps.")),
        h("section", { "aria-labelledby": "kids-h" }, h("h2", { id: "kids-h" }, `Children (${fmtNumber(children.count)})`),
          children.count
            ? [h("div", { class: "table-wrap" }, h("table", { id: "run-children", "data-count": children.count },
              h("caption", {}, children.count > children.runs.length
                ? `The newest ${fmtNumber(children.runs.length)} of the ${plural(children.count, "run")} this run scheduled`
                : `The ${plural(children.count, "run")} this run scheduled, newest first`),
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Run"), h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "Status"),
                h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Finished"))),
              h("tbody", {}, children.runs.map((c) => h("tr", { "data-run": c.id, "data-status": c.status },
                h("td", { class: "nowrap" }, runLink(c.id)),
                h("td", { class: "mono" }, c.task),
                h("td", {}, badge(c.status)),
                h("td", {}, timeEl(c.created_at, { noRel: true })),
                h("td", {}, timeEl(c.finished_at, { noRel: true, empty: "not yet" }))))))),
            h("p", {}, h("a", { href: allChildren, id: "all-children", "data-key": "all-children" },
              children.count > children.runs.length ? `All ${plural(children.count, "child run")} in the runs list →` : "These runs in the runs list (filter, bulk actions) →"))]
            : h("p", { class: "muted", id: "no-children" }, "This run scheduled no other run.")),
        h("section", { "aria-labelledby": "ev-h" }, h("h2", { id: "ev-h" }, `Events (${events.length})`),
          h("ol", { class: "timeline", id: "run-events" }, events.map((e) => h("li", {},
            h("span", { class: "when" }, timeEl(e.at, { noRel: true })),
            e.from ? badge(e.from) : h("span", { class: "muted" }, "created"), " → ", badge(e.to),
            h("span", { class: "muted" }, ` attempt ${e.attempt}${e.worker ? `, worker ${e.worker}` : ""}`),
            h("span", { class: "reason" }, e.reason))))));
    },
  };

  // Workers --------------------------------------------------------------------------------------

  const WORKERS = {
    title: () => "Workers",
    load: () => api("/v1/workers"),
    view(workers) {
      if (!workers.length) {
        return h("p", { class: "panel", id: "workers-empty" }, "No live worker. A worker is listed while its last heartbeat is within the engine's lease.");
      }
      return h("div", { class: "table-wrap" }, h("table", { id: "workers-table" },
        h("caption", {}, `${workers.length} live worker${workers.length === 1 ? "" : "s"}`),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Labels"), h("th", { scope: "col" }, "Tasks"),
          h("th", { scope: "col" }, "Slots in use"), h("th", { scope: "col" }, "Runs held"),
          h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Last heartbeat"))),
        h("tbody", {}, workers.map((w) => h("tr", { "data-worker": w.name },
          h("td", {}, h("strong", {}, w.name), h("br"), h("span", { class: "muted mono" }, w.id)),
          h("td", {}, Object.keys(w.labels || {}).length
            ? Object.entries(w.labels).map(([k, v]) => h("span", { class: "chip" }, v === "" ? k : `${k}=${v}`))
            : h("span", { class: "muted" }, "none")),
          h("td", {}, w.tasks.map((t) => h("span", { class: "chip" }, t))),
          h("td", { class: "nowrap" }, h("meter", { min: 0, max: w.slots, value: w.held_runs.length, "aria-label": `${w.held_runs.length} of ${w.slots} slots in use` }),
            ` ${w.held_runs.length} of ${w.slots}`),
          h("td", {}, w.held_runs.length ? w.held_runs.map((id) => h("div", {}, runLink(id))) : h("span", { class: "muted" }, "none")),
          h("td", {}, timeEl(w.started_at)),
          h("td", {}, timeEl(w.last_heartbeat)))))));
    },
  };

  // Crons ----------------------------------------------------------------------------------------

  /** "cron task:nightly-cleanup (nightly-cleanup, 0 3 * * * in Europe/Paris)" */
  function cronLabel(c) {
    return `cron ${c.id} (${c.task}, ${c.expr} in ${c.timezone})`;
  }

  function cronPath(c, action) {
    // Ids may hold ':' and '/': one path segment, percent-encoded.
    return `/v1/crons/${encodeURIComponent(c.id)}/${action}`;
  }

  /** Pause or Resume (whichever applies) and Trigger now, each after a confirmation. */
  function cronActions(c, i, route) {
    const paused = Boolean(c.paused_at);
    const toggle = paused
      ? h("button", {
        type: "button", class: "cron-resume", "data-action": "resume", "data-key": `toggle-${c.id}`, "aria-describedby": `cron-id-${i}`,
        onclick: (ev) => confirmAction({
          title: "Resume this cron schedule?",
          text: `The ${cronLabel(c)} has been paused since ${fmtTime(c.paused_at)}. Resumed, it fires again from its next tick; ` +
            "the ticks missed while it was paused are not fired.",
          yes: "Yes, resume it",
          yesClass: "primary",
          doing: "Resuming the cron schedule",
          opener: ev.currentTarget,
          action: async () => {
            const after = await api(cronPath(c, "resume"), { method: "POST" });
            announce(`Cron ${c.id} resumed${after.next_tick ? `: its next tick is ${fmtTime(after.next_tick)}` : ""}.`);
          },
        }),
      }, "Resume…")
      : h("button", {
        type: "button", class: "cron-pause", "data-action": "pause", "data-key": `toggle-${c.id}`, "aria-describedby": `cron-id-${i}`,
        onclick: (ev) => confirmAction({
          title: "Pause this cron schedule?",
          text: `Paused, the ${cronLabel(c)} fires nothing until it is resumed${c.next_tick ? ` (its next tick is ${fmtTime(c.next_tick)})` : ""}, ` +
            "and the ticks due meanwhile are not fired later. Runs it already started go on; Trigger now still starts one.",
          yes: "Yes, pause it",
          doing: "Pausing the cron schedule",
          opener: ev.currentTarget,
          action: async () => {
            await api(cronPath(c, "pause"), { method: "POST" });
            announce(`Cron ${c.id} paused.`);
          },
        }),
      }, "Pause…");
    const trigger = h("button", {
      type: "button", class: "cron-trigger", "data-action": "trigger", "data-key": `trigger-${c.id}`, "aria-describedby": `cron-id-${i}`,
      onclick: (ev) => confirmAction({
        title: "Trigger this cron schedule now?",
        text: `This starts one run of ${c.task} now, with the schedule's input ` +
          `${c.input === null || c.input === undefined ? "(none)" : JSON.stringify(c.input)} and the metadata ` +
          `${JSON.stringify({ cron: c.id, trigger: "manual" })}. The schedule itself is unchanged` +
          `${paused ? ": it stays paused." : ": it still fires at its next tick."}`,
        yes: "Yes, start a run now",
        yesClass: "primary",
        doing: "Triggering the cron schedule",
        opener: ev.currentTarget,
        action: async () => {
          const run = await api(cronPath(c, "trigger"), { method: "POST" });
          route.cache.triggered[c.id] = { id: run.id, at: run.created_at };
          announce(`Cron ${c.id} started run ${run.id}.`);
        },
      }),
    }, "Trigger now…");
    const started = route.cache.triggered[c.id];
    return h("div", {},
      h("div", { class: "row-actions" }, toggle, trigger),
      started
        ? h("p", { class: "triggered", "data-run": started.id }, "Started run ", runLink(started.id), " ", timeEl(started.at))
        : null);
  }

  /** A schedule's next ticks (three, as listed), each in this browser's time zone and in the
   * schedule's own; "none while paused". */
  function nextTicks(c) {
    const ticks = c.next_ticks && c.next_ticks.length ? c.next_ticks : c.next_tick ? [c.next_tick] : [];
    if (!ticks.length) return h("span", { class: "muted" }, c.paused_at ? "none while paused" : "none");
    return h("ol", { class: "ticks", "aria-label": `Next ${ticks.length === 1 ? "tick" : `${ticks.length} ticks`}` },
      ticks.map((t, i) => h("li", { "data-tick": t }, timeEl(t, { noRel: i > 0 }),
        fmtTimeIn(t, c.timezone) ? h("div", { class: "muted zone-time" }, fmtTimeIn(t, c.timezone)) : null)));
  }

  /** A schedule's last tick and the run it fired, with that run's status. */
  function lastTick(c) {
    const run = c.last_run;
    return [timeEl(c.last_tick, { empty: "never" }),
      run
        ? h("div", { class: "last-run", "data-run": run.id, "data-status": run.status },
          badge(run.status), " ",
          h("a", { href: `#/runs/${encodeURIComponent(run.id)}`, class: "mono run-id", "data-key": `last-run-${c.id}`, "aria-label": `Last run, ${run.status}: ${run.id}` }, run.id))
        : c.last_tick ? h("div", { class: "muted" }, "its run is no longer kept") : null];
  }

  const CRONS = {
    title: () => "Crons",
    async load(route) {
      route.cache ||= { triggered: {} };
      const crons = await api("/v1/crons");
      // The runs started from this page are part of what is drawn.
      return { crons, triggered: { ...route.cache.triggered } };
    },
    view({ crons }, route) {
      if (!crons.length) {
        return h("p", { class: "panel", id: "crons-empty" }, "No cron schedule. Tasks declared with #[task(cron = ...)] and schedules made with POST /v1/crons appear here.");
      }
      const paused = crons.filter((c) => c.paused_at).length;
      return h("div", { class: "table-wrap" }, h("table", { id: "crons-table" },
        h("caption", {}, `${crons.length} cron schedule${crons.length === 1 ? "" : "s"}${paused ? `, ${fmtNumber(paused)} paused` : ""}; ` +
          "each expression in its time zone; times in this browser's time zone, the next ticks also in the schedule's own"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "Schedule"),
          h("th", { scope: "col" }, "Next ticks"), h("th", { scope: "col" }, "Last tick and its run"), h("th", { scope: "col" }, "Paused"),
          h("th", { scope: "col" }, "Input"), h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Actions"))),
        h("tbody", {}, crons.map((c, i) => h("tr", { "data-cron": c.id, "data-paused": c.paused_at ? "true" : "false" },
          h("td", {}, h("a", { href: `#/runs${qs({ task: c.task })}` }, c.task),
            h("div", { class: "muted mono cron-id", id: `cron-id-${i}`, title: "The schedule's id" }, c.id)),
          h("td", {}, h("code", { class: "nowrap" }, c.expr), h("div", {}, c.timezone),
            h("div", { class: "muted cron-policies", title: "Overlap policy / catch-up policy" },
              `overlap ${c.overlap || "allow"}, catch-up ${c.catch_up || "latest"}`)),
          h("td", { class: "cron-next" }, nextTicks(c)),
          h("td", { class: "cron-last" }, lastTick(c)),
          h("td", { class: "cron-paused" }, c.paused_at
            ? [h("span", { class: "badge st-paused" }, "paused"), h("div", {}, "since ", timeEl(c.paused_at))]
            : h("span", { class: "muted" }, "no")),
          h("td", {}, c.input === null || c.input === undefined ? h("span", { class: "muted" }, "none") : h("code", { class: "cron-input" }, JSON.stringify(c.input))),
          h("td", {}, timeEl(c.created_at, { noRel: true })),
          h("td", {}, cronActions(c, i, route)))))));
    },
  };

  // Rate limits ----------------------------------------------------------------------------------

  function perMs(per) {
    const m = /^(\d+)(ms|s|m|h|d)$/.exec(String(per));
    if (!m) return null;
    const unit = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 }[m[2]];
    return Number(m[1]) * unit;
  }

  const RATE_LIMITS = {
    title: () => "Rate limits",
    load: () => api("/v1/rate-limits"),
    view(limits) {
      if (!limits.length) {
        return h("p", { class: "panel", id: "ratelimits-empty" }, "No rate limit is defined. Define one with owlclaw ratelimit set NAME --limit N --per 1s, or POST /v1/rate-limits.");
      }
      return h("div", { class: "table-wrap" }, h("table", { id: "ratelimits-table" },
        h("caption", {}, "Token buckets: the limit is both the burst and the units regained per period"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "num" }, "Limit"),
          h("th", { scope: "col" }, "Per"), h("th", { scope: "col", class: "num" }, "Units per second"))),
        h("tbody", {}, limits.map((l) => {
          const ms = perMs(l.per);
          return h("tr", { "data-limit": l.name },
            h("td", { class: "mono" }, l.name),
            h("td", { class: "num" }, fmtNumber(l.limit)),
            h("td", {}, l.per),
            h("td", { class: "num" }, ms ? fmtNumber(Math.round((l.limit * 1000 / ms) * 1000) / 1000) : "—"));
        }))));
    },
  };

  // Overview -------------------------------------------------------------------------------------

  const COUNTERS = [
    ["owlclaw_runs_scheduled_total", "Runs scheduled"],
    ["owlclaw_runs_claimed_total", "Runs handed to workers"],
    ["owlclaw_runs_succeeded_total", "Attempts succeeded"],
    ["owlclaw_attempts_failed_total", "Attempts failed"],
    ["owlclaw_attempts_timed_out_total", "Attempts timed out"],
    ["owlclaw_runs_handed_back_total", "Runs handed back"],
    ["owlclaw_runs_suspended_total", "Runs suspended"],
    ["owlclaw_lease_expiries_total", "Leases expired"],
    ["owlclaw_cron_ticks_total", "Cron ticks"],
  ];

  /** Rates over the samples of the last hour taken while this page was open. */
  function rates(values) {
    const now = Date.now();
    state.samples.push({ t: now, values });
    state.samples = state.samples.filter((s) => now - s.t <= 3600000);
    const first = state.samples[0];
    const span = (now - first.t) / 1000;
    const out = {};
    for (const [name] of COUNTERS) {
      out[name] = span >= 1 && values[name] !== undefined && first.values[name] !== undefined
        ? Math.max(0, values[name] - first.values[name]) / span
        : null;
    }
    return { out, span };
  }

  /** Mean and an upper bound of the 95th percentile of each histogram, by task. */
  function histograms(samples, base) {
    const byTask = new Map();
    for (const s of samples) {
      if (!s.name.startsWith(base)) continue;
      const key = `${s.labels.tenant}\u0000${s.labels.task}`;
      if (!byTask.has(key)) byTask.set(key, { tenant: s.labels.tenant, task: s.labels.task, buckets: [], sum: 0, count: 0 });
      const e = byTask.get(key);
      if (s.name === `${base}_bucket`) e.buckets.push([Number(s.labels.le === "+Inf" ? Infinity : s.labels.le), s.value]);
      else if (s.name === `${base}_sum`) e.sum = s.value;
      else if (s.name === `${base}_count`) e.count = s.value;
    }
    const rows = [];
    for (const e of byTask.values()) {
      if (!e.count) continue;
      e.buckets.sort((a, b) => a[0] - b[0]);
      const target = e.count * 0.95;
      const p95 = (e.buckets.find(([, c]) => c >= target) || [Infinity])[0];
      rows.push({ ...e, mean: e.sum / e.count, p95 });
    }
    return rows.sort((a, b) => a.task.localeCompare(b.task));
  }

  function section(id, title, content) {
    return h("section", { "aria-labelledby": `${id}-h`, id }, h("h2", { id: `${id}-h` }, title), content);
  }

  /** The outcomes of the chart, bottom to top of each stacked bar. */
  const OUTCOMES = [["succeeded", "Succeeded"], ["failed", "Failed"], ["cancelled", "Cancelled"]];

  function hhmm(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  /** The top of a count axis and its step: whole numbers, 1, 2 or 5 times a power of ten, at
   * most five steps. */
  function countScale(max) {
    if (max <= 0) return { top: 1, step: 1 };
    for (let p = 1; ; p *= 10) {
      for (const m of [1, 2, 5]) {
        const step = m * p;
        if (Math.ceil(max / step) <= 5) return { top: Math.ceil(max / step) * step, step };
      }
    }
  }

  /** Totals of `minutes` by outcome, and the busiest minute. */
  function minuteTotals(minutes) {
    const totals = { succeeded: 0, failed: 0, cancelled: 0, all: 0 };
    let busiest = null;
    for (const m of minutes) {
      const n = m.succeeded + m.failed + m.cancelled;
      for (const [k] of OUTCOMES) totals[k] += m[k];
      totals.all += n;
      if (n > 0 && (!busiest || n >= busiest.n)) busiest = { minute: m.minute, n };
    }
    return { totals, busiest };
  }

  /** Runs finished per minute over the last hour as a stacked bar chart (SVG), with its legend,
   * a summary in words (which names the chart for screen readers) and the numbers as a table. */
  function minutesChart(minutes) {
    const { totals, busiest } = minuteTotals(minutes);
    const zone = localZone();
    const W = 960;
    const H = 270;
    const left = 58;
    const right = 14;
    const top = 12;
    const bottom = 50;
    const plotW = W - left - right;
    const plotH = H - top - bottom;
    const slot = plotW / Math.max(minutes.length, 1);
    const barW = Math.max(2, slot * 0.72);
    const max = Math.max(0, ...minutes.map((m) => m.succeeded + m.failed + m.cancelled));
    const { top: yTop, step } = countScale(max);
    const y = (n) => top + plotH - (n / yTop) * plotH;
    const r = (n) => Math.round(n * 10) / 10;

    const grid = [];
    for (let v = 0; v <= yTop; v += step) {
      grid.push(svg("line", { class: v === 0 ? "axis" : "grid", x1: left, x2: W - right, y1: r(y(v)), y2: r(y(v)) }),
        svg("text", { class: "tick", x: left - 8, y: r(y(v)), "text-anchor": "end", "dominant-baseline": "middle" }, fmtNumber(v)));
    }
    const xTicks = [];
    const bars = minutes.map((m, i) => {
      const x = left + i * slot;
      const d = new Date(m.minute);
      const last = i === minutes.length - 1;
      // A mark every ten minutes, and one at the minute under way (none too close to it).
      if ((d.getMinutes() % 10 === 0 && i < minutes.length - 7) || last) {
        const cx = r(x + slot / 2);
        xTicks.push(svg("line", { class: "axis", x1: cx, x2: cx, y1: top + plotH, y2: top + plotH + 5 }),
          svg("text", { class: "tick", x: cx, y: top + plotH + 18, "text-anchor": last ? "end" : "middle" }, last ? `${hhmm(m.minute)} now` : hhmm(m.minute)));
      }
      let base = 0;
      const n = m.succeeded + m.failed + m.cancelled;
      const rects = [];
      for (const [k] of OUTCOMES) {
        if (!m[k]) continue;
        const y1 = y(base + m[k]);
        rects.push(svg("rect", { class: `bar bar-${k}`, x: r(x + (slot - barW) / 2), y: r(y1), width: r(barW), height: r(y(base) - y1) }));
        base += m[k];
      }
      return svg("g", { class: last ? "minute current" : "minute", "data-minute": m.minute, "data-total": n },
        svg("title", {}, `${hhmm(m.minute)}${last ? " (under way)" : ""}: ${n ? OUTCOMES.map(([k]) => `${fmtNumber(m[k])} ${k}`).join(", ") : "no run finished"}`),
        rects);
    });
    const chart = svg("svg", {
      class: "chart", id: "minutes-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-labelledby": "chart-summary", preserveAspectRatio: "xMinYMin meet",
    },
    svg("defs", {}, svg("pattern", { id: "hatch-failed", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      svg("rect", { class: "hatch-bg", width: 6, height: 6 }), svg("line", { class: "hatch", x1: 0, y1: 0, x2: 0, y2: 6 }))),
    grid, xTicks, bars,
    svg("text", { class: "axis-title", x: -(top + plotH / 2), y: 16, transform: "rotate(-90)", "text-anchor": "middle" }, "Runs finished"),
    svg("text", { class: "axis-title", x: left + plotW / 2, y: H - 8, "text-anchor": "middle" },
      `Minute they finished (${/^(Etc\/)?(UTC|GMT)$/.test(zone) ? "UTC" : `${zone} time`})`));

    const legend = h("ul", { class: "legend", id: "chart-legend", "aria-label": "Legend" },
      OUTCOMES.map(([k, label]) => h("li", { "data-outcome": k },
        h("span", { class: `swatch sw-${k}`, "aria-hidden": "true" }), `${label}: `, h("strong", {}, fmtNumber(totals[k])))),
      h("li", { class: "muted" }, h("span", { class: "swatch sw-current", "aria-hidden": "true" }), "The last bar is the minute under way"));
    const summary = h("p", {
      id: "chart-summary", class: "chart-summary",
      "data-succeeded": totals.succeeded, "data-failed": totals.failed, "data-cancelled": totals.cancelled, "data-total": totals.all,
    },
    totals.all
      ? `${plural(totals.all, "run")} finished in the last hour: ${fmtNumber(totals.succeeded)} succeeded, ` +
        `${fmtNumber(totals.failed)} failed, ${fmtNumber(totals.cancelled)} cancelled. ` +
        `The busiest minute was ${hhmm(busiest.minute)}, with ${plural(busiest.n, "run")}.`
      : "No run finished in the last hour.");
    const busy = minutes.filter((m) => m.succeeded + m.failed + m.cancelled > 0);
    const table = busy.length
      ? h("details", { class: "chart-table", "data-key": "chart-table" },
        h("summary", { "data-key": "chart-table-summary" }, "The numbers as a table"),
        h("div", { class: "table-wrap" }, h("table", { id: "minutes-table" },
          h("caption", {}, `The ${plural(busy.length, "minute")} of the last hour in which runs finished, oldest first (the other minutes had none); ` +
            `times in ${/^(Etc\/)?(UTC|GMT)$/.test(zone) ? "UTC" : `${zone} time`}`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Minute"),
            OUTCOMES.map(([, label]) => h("th", { scope: "col", class: "num" }, label)), h("th", { scope: "col", class: "num" }, "Total"))),
          h("tbody", {}, busy.map((m) => h("tr", { "data-minute": m.minute },
            h("th", { scope: "row" }, h("time", { datetime: m.minute }, hhmm(m.minute)),
              m === minutes[minutes.length - 1] ? h("span", { class: "muted" }, " (under way)") : null),
            OUTCOMES.map(([k]) => h("td", { class: "num" }, fmtNumber(m[k]))),
            h("td", { class: "num" }, fmtNumber(m.succeeded + m.failed + m.cancelled))))),
          h("tfoot", {}, h("tr", { id: "minutes-total" }, h("th", { scope: "row" }, "Last hour"),
            OUTCOMES.map(([k]) => h("td", { class: "num", "data-outcome": k }, fmtNumber(totals[k]))),
            h("td", { class: "num", "data-outcome": "total" }, fmtNumber(totals.all)))))))
      : null;
    return h("div", { class: "panel chart-panel" }, summary, legend, h("div", { class: "chart-wrap" }, chart), table);
  }

  /** The tenant's runs ready to start, by task and priority (GET /v1/overview), the most first. */
  function queueTable(queued) {
    const rows = [...queued].sort((a, b) => b.count - a.count || a.task.localeCompare(b.task) || b.priority - a.priority);
    const total = rows.reduce((a, q) => a + q.count, 0);
    return section("ov-queue", `Queue depth: ${fmtNumber(total)} run${total === 1 ? "" : "s"} ready to start`,
      rows.length
        ? h("div", { class: "table-wrap" }, h("table", { id: "queue-table", "data-total": total },
          h("caption", {}, "This tenant's runs waiting for a worker, by task and priority, the most first"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Task"),
            h("th", { scope: "col", class: "num" }, "Priority"), h("th", { scope: "col", class: "num" }, "Ready"))),
          h("tbody", {}, rows.map((q) => h("tr", { "data-task": q.task, "data-priority": q.priority, "data-count": q.count },
            h("td", {}, h("a", { href: `#/runs${qs({ task: q.task, status: "queued" })}` }, q.task)),
            h("td", { class: "num" }, String(q.priority)), h("td", { class: "num" }, fmtNumber(q.count)))))))
        : h("p", { class: "muted", id: "queue-empty" }, "No run is waiting for a worker."));
  }

  const OVERVIEW = {
    title: () => "Overview",
    interval: OVERVIEW_REFRESH_MS,
    async load() {
      const counts = inOrder(STATUSES.map((s) => api(`/v1/runs/count${qs({ status: s })}`).then((c) => [s, c.count])));
      const [c, o, m, w] = await Promise.allSettled([counts, api("/v1/overview"), request("/metrics", { text: true }), api("/v1/workers")]);
      if (c.status === "rejected" && c.reason.status === 401) throw c.reason;
      let metrics;
      if (m.status === "fulfilled") {
        const samples = parseMetrics(m.value);
        const values = {};
        for (const [name] of COUNTERS) {
          const s = samples.find((x) => x.name === name);
          if (s) values[name] = s.value;
        }
        metrics = { samples, values, ...rates(values) };
      } else {
        metrics = { error: m.reason };
      }
      return {
        counts: c.status === "fulfilled" ? c.value : { error: c.reason },
        overview: o.status === "fulfilled" ? o.value : { error: o.reason },
        metrics,
        workers: w.status === "fulfilled" ? w.value : { error: w.reason },
      };
    },
    view({ counts, overview, metrics, workers }) {
      const parts = [];
      // Runs by status.
      parts.push(section("ov-status", "Runs by status",
        counts.error
          ? errorBox(counts.error, "Counting runs")
          : h("div", {},
            h("div", { class: "cards" }, counts.map(([s, n]) => h("a", { class: "card", href: `#/runs${qs({ status: s })}`, "data-status": s, "data-key": `count-${s}` },
              badge(s), h("span", { class: "count", "data-count": s }, fmtNumber(n))))),
            h("p", { class: "muted", id: "ov-total" }, `${plural(counts.reduce((a, [, n]) => a + n, 0), "run")} in all (exact counts, from /v1/runs/count).`))));
      // Runs finished per minute, and what waits: this tenant's own.
      if (overview.error) {
        parts.push(section("ov-chart", "Runs finished per minute, last hour", errorBox(overview.error, "Reading /v1/overview")));
        parts.push(section("ov-queue", "Queue depth", errorBox(overview.error, "Reading /v1/overview")));
      } else {
        parts.push(section("ov-chart", "Runs finished per minute, last hour", minutesChart(overview.minutes)));
        parts.push(queueTable(overview.queued));
      }
      // Workers.
      parts.push(section("ov-workers", "Workers",
        workers.error
          ? errorBox(workers.error, "Listing workers")
          : (() => {
            const slots = workers.reduce((a, w) => a + w.slots, 0);
            const busy = workers.reduce((a, w) => a + w.held_runs.length, 0);
            return h("p", { class: "panel" }, h("a", { href: "#/workers" }, `${workers.length} live worker${workers.length === 1 ? "" : "s"}`),
              `, ${busy} of ${slots} slots in use.`);
          })()));
      if (metrics.error) {
        parts.push(section("ov-metrics", "Engine metrics", errorBox(metrics.error, "Reading /metrics")));
        return h("div", {}, parts);
      }
      const { samples, values, out: perSec, span } = metrics;
      // Counters and rates.
      parts.push(section("ov-counters", "This engine since it started",
        h("div", { class: "table-wrap" }, h("table", { id: "counters-table" },
          h("caption", {}, span >= 1
            ? `Rates over the last ${fmtDuration(span * 1000)} this page has been open (the engine keeps no history; a longer window needs Prometheus)`
            : "Rates appear at the next refresh (they are measured while this page is open)"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Counter"), h("th", { scope: "col", class: "num" }, "Total"), h("th", { scope: "col", class: "num" }, "Per second"))),
          h("tbody", {}, COUNTERS.map(([name, label]) => h("tr", {},
            h("td", {}, label, " ", h("span", { class: "muted mono" }, name)),
            h("td", { class: "num" }, values[name] === undefined ? "—" : fmtNumber(values[name])),
            h("td", { class: "num" }, perSec[name] === null || perSec[name] === undefined ? "—" : perSec[name].toFixed(2)))))))));
      // Outcomes by task.
      const outcomes = samples.filter((s) => s.name === "owlclaw_attempt_outcomes_total");
      if (outcomes.length) {
        const kinds = [...new Set(outcomes.map((s) => s.labels.outcome))].sort();
        const byTask = new Map();
        for (const s of outcomes) {
          const k = `${s.labels.tenant}\u0000${s.labels.task}`;
          if (!byTask.has(k)) byTask.set(k, { tenant: s.labels.tenant, task: s.labels.task, n: {} });
          byTask.get(k).n[s.labels.outcome] = s.value;
        }
        parts.push(section("ov-outcomes", "Attempt outcomes by task",
          h("div", { class: "table-wrap" }, h("table", {},
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Tenant"), h("th", { scope: "col" }, "Task"),
              kinds.map((k) => h("th", { scope: "col", class: "num" }, k.replace(/_/g, " "))))),
            h("tbody", {}, [...byTask.values()].map((r) => h("tr", {},
              h("td", {}, r.tenant), h("td", {}, r.task), kinds.map((k) => h("td", { class: "num" }, fmtNumber(r.n[k] || 0))))))))));
      }
      // Latency histograms.
      const wait = histograms(samples, "owlclaw_queue_wait_seconds");
      const dur = histograms(samples, "owlclaw_run_duration_seconds");
      if (wait.length || dur.length) {
        const rows = [];
        for (const [what, list] of [["queue wait", wait], ["run duration", dur]]) {
          for (const r of list) {
            rows.push(h("tr", {}, h("td", {}, what), h("td", {}, r.tenant), h("td", {}, r.task),
              h("td", { class: "num" }, fmtNumber(r.count)),
              h("td", { class: "num" }, fmtDuration(r.mean * 1000)),
              h("td", { class: "num" }, Number.isFinite(r.p95) ? `≤ ${fmtDuration(r.p95 * 1000)}` : "beyond the last bucket")));
          }
        }
        parts.push(section("ov-latency", "Queue waits and run durations",
          h("div", { class: "table-wrap" }, h("table", {},
            h("caption", {}, "From the histograms of /metrics; the 95th percentile is the bucket bound it falls under"),
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "What"), h("th", { scope: "col" }, "Tenant"), h("th", { scope: "col" }, "Task"),
              h("th", { scope: "col", class: "num" }, "Count"), h("th", { scope: "col", class: "num" }, "Mean"), h("th", { scope: "col", class: "num" }, "95th percentile"))),
            h("tbody", {}, rows)))));
      }
      return h("div", {}, parts);
    },
  };

  const PAGES = {
    overview: OVERVIEW,
    runs: RUNS,
    run: RUN,
    workers: WORKERS,
    crons: CRONS,
    "rate-limits": RATE_LIMITS,
  };

  // ---------------------------------------------------------------------------------------------
  // Start

  async function boot() {
    $("skip").addEventListener("click", () => ($("page-title") || $("main")).focus());
    $("live-toggle").addEventListener("click", () => {
      setLive(!state.live);
      announce(state.live ? "Live updates on." : "Live updates paused.");
    });
    $("refresh-now").addEventListener("click", () => {
      if (state.current) refresh(state.current.gen);
    });
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", () => {
      if (!state.token && !state.authOff) return;
      render();
    });
    window.setInterval(tickRelativeTimes, 5000);
    setLive(state.live);
    state.focusHeading = false;
    if (!state.token) {
      // Does this server want a token? A call without one answers 401 if so.
      try {
        await request("/v1/workers");
        state.authOff = true;
      } catch (e) {
        if (e.status === 401) {
          showSignIn();
          return;
        }
        $("main").replaceChildren(h("h1", { tabindex: "-1", id: "page-title" }, "OwlClaw Tasks"), errorBox(e, "Reaching the API"),
          h("button", { type: "button", onclick: () => location.reload() }, "Try again"));
        return;
      }
    }
    document.body.classList.remove("signed-out");
    setAuthState();
    render();
  }

  boot();
})();
