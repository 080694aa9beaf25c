/* Operator dashboard for the AI orchestration gateway.
 *
 * Plain ES2020, no build. Every value that comes from the server is treated as
 * hostile text: it only ever reaches the DOM through textContent, attributes set
 * by setAttribute/dataset, or class names picked from fixed allow-lists.
 */
(() => {
  "use strict";

  const TOKEN_KEY = "aio-admin-token";
  const API = "/ai-orchestration";
  const POLL_MS = 2000;
  const LIMITS_MS = 5000; // the users' quotas and limits are costlier: at most this often
  const PAGE_SIZE = 20;
  const MAX_ALERTS = 200;
  const ALERTS_PAGE = 200; // asked for at most per poll
  const MAX_POINTS = 360;
  const FETCH_TIMEOUT_MS = 10000;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- formatting
  const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const usdFmt = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const DASH = "—";

  const fmtInt = (v) => (isNum(v) ? intFmt.format(v) : DASH);
  const fmtUsd = (v) => (isNum(v) ? "$" + usdFmt.format(v) : DASH);
  const fmtPct = (v) => (isNum(v) ? (v * 100).toFixed(1) + "%" : DASH);
  const fmtMs = (v) => (isNum(v) ? v.toFixed(1) : DASH);
  const fmtIdle = (ms) => (!isNum(ms) ? DASH : ms < 1000 ? ms.toFixed(0) + " ms" : ms < 120000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min");
  const fmtTime = (d) => d.toLocaleTimeString([], { hour12: false });
  const text = (v) => (v === null || v === undefined || v === "" ? DASH : String(v));

  // Class names derived from server values come only from these lists.
  const BREAKER_STATES = ["closed", "open", "half_open"];
  const HEALTH_STATES = ["healthy", "degraded", "down", "unknown"];
  function setStateClass(el, prefix, value, allowed) {
    for (const s of allowed) el.classList.remove(prefix + s);
    if (allowed.includes(value)) el.classList.add(prefix + value);
  }

  // ---------------------------------------------------------------- HTTP
  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(message, path) {
      super(message);
      this.path = path;
    }
  }

  /** Calls the admin API with the session's token; throws AuthError on 401 so that any
   *  caller's failure sends the operator back to the login form. */
  async function api(path, method = "GET", body = undefined) {
    const headers = { Accept: "application/json", Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") };
    const init = { method, headers, cache: "no-store", credentials: "same-origin", redirect: "error" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body ?? {});
    }
    if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) init.signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(err && err.name === "TimeoutError" ? "timed out" : String((err && err.message) || err), path);
    }
    let data = null;
    try {
      data = await res.json();
    } catch (_) {} // not JSON (a proxy's error page...): the status is all we say
    if (!res.ok) {
      const msg = (data && data.error && typeof data.error.message === "string" && data.error.message) || "HTTP " + res.status;
      throw res.status === 401 ? new AuthError(msg) : new ApiError(msg, path);
    }
    return data;
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, cls, content) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }

  function setText(id, value) {
    const e = $(id);
    if (e.textContent !== value) e.textContent = value;
  }

  function setCell(tr, cls, value) {
    const td = tr.querySelector("." + cls);
    if (td.textContent !== value) td.textContent = value;
    return td;
  }

  /** A row whose cells carry the given classes; cells named in `numeric` right-align. */
  function makeRow(classes, numeric) {
    const tr = document.createElement("tr");
    for (const c of classes) tr.append(el("td", numeric.includes(c) ? c + " num" : c));
    return tr;
  }

  function actionButton(action, label, key, value) {
    const b = el("button", "small", label);
    b.type = "button";
    b.dataset.action = action;
    b.dataset[key] = value;
    return b;
  }

  /** Updates tbody in place from items: rows are kept by key, reordered, created or
   *  removed, so a poll does not rebuild the table (and keeps focus/hover stable). */
  function syncRows(tbody, items, keyOf, build, update) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.dataset.key, tr);
    let prev = null;
    for (const item of items) {
      const key = keyOf(item);
      let tr = old.get(key);
      if (tr) old.delete(key);
      else {
        tr = build(item);
        tr.dataset.key = key;
      }
      update(tr, item);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (tr !== want) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
  }

  /** A 0–100 % bar plus a label, the bar's width set through the CSSOM (CSP allows it). */
  function setUse(td, share, label) {
    let bar = td.querySelector(".bar");
    if (!bar) {
      bar = el("span", "bar");
      bar.append(el("span", "fill"));
      td.append(bar, el("span", "use-text"));
    }
    const fill = bar.firstChild;
    const known = isNum(share);
    bar.hidden = !known;
    if (known) {
      fill.style.width = Math.min(100, Math.max(0, share * 100)).toFixed(1) + "%";
      fill.className = "fill " + (share >= 0.9 ? "hot" : share >= 0.7 ? "warm" : "ok");
    }
    td.querySelector(".use-text").textContent = label;
  }

  // ---------------------------------------------------------------- status lines
  function showStatus(message) {
    const s = $("status");
    s.hidden = !message;
    s.textContent = message || "";
  }

  function showResult(message, isError) {
    const r = $("action-result");
    r.textContent = message;
    r.classList.toggle("error", !!isError);
    r.hidden = false;
  }

  // ---------------------------------------------------------------- providers
  function renderProviders(stats, health, breakers, recent) {
    const byStats = (stats && stats.providers) || {};
    const byRecent = new Map((recent || []).map((p) => [String(p.provider), p]));
    const byHealth = new Map(((health && health.providers) || []).map((p) => [String(p.provider), p]));
    const byBreaker = new Map(((breakers && breakers.circuit_breakers) || []).map((b) => [String(b.provider), b]));
    const names = new Set([...Object.keys(byStats), ...byHealth.keys(), ...byBreaker.keys()]);
    const rows = [...names].sort().map((name) => ({
      name,
      r: byRecent.get(name) || { calls: 0, errors: 0, error_rate: null, p50_ms: null, p95_ms: null },
      s: byStats[name] || {},
      h: byHealth.get(name) || {},
      b: byBreaker.get(name) || {},
    }));
    syncRows($("providers-table").tBodies[0], rows, (r) => r.name, buildProviderRow, updateProviderRow);
  }

  function buildProviderRow(r) {
    const tr = makeRow(["name", "health", "p50", "p95", "error-rate", "calls", "breaker", "why", "actions"], ["p50", "p95", "error-rate", "calls"]);
    tr.dataset.provider = r.name;
    tr.querySelector(".actions").append(
      actionButton("breaker-reset", "Reset", "provider", r.name),
      actionButton("breaker-open", "Force open", "provider", r.name)
    );
    return tr;
  }

  /** Latency, errors and calls of the last five minutes (the timeline's), not since
   *  the numbers began: a provider failing now shows now. */
  function updateProviderRow(tr, { name, r, s, h, b }) {
    const status = h.status || s.health || "unknown";
    const state = b.state || s.breaker || "";
    setCell(tr, "name", name);
    setStateClass(setCell(tr, "health", String(status)), "health-", status, HEALTH_STATES);
    setCell(tr, "p50", fmtMs(r.p50_ms));
    setCell(tr, "p95", fmtMs(r.p95_ms));
    setCell(tr, "error-rate", r.calls ? fmtPct(r.error_rate) : DASH);
    setCell(tr, "calls", fmtInt(r.calls));
    const cell = setCell(tr, "breaker", String(state));
    setStateClass(cell, "state-", state, BREAKER_STATES);
    // Extra breaker facts go in a tooltip so the cell's text stays exactly the state.
    const notes = [];
    if (b.forced_open) notes.push("forced open");
    if (b.key_invalid) notes.push("API key invalid");
    if (isNum(b.open_until_ms)) notes.push("open until " + new Date(b.open_until_ms).toLocaleString());
    cell.title = notes.join("; ");
    setCell(tr, "why", String(b.reason || h.why || ""));
  }

  // ---------------------------------------------------------------- traffic charts
  const charts = {};

  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  /** One uPlot per container, created once and resized with its box (phones included). */
  function makeChart(id, series, dots) {
    const box = $(id);
    const axis = { stroke: cssVar("--muted", "#666"), grid: { stroke: cssVar("--grid", "#eee"), width: 1 }, ticks: { stroke: cssVar("--grid", "#eee"), width: 1 } };
    const opts = {
      width: Math.max(200, box.clientWidth),
      height: 180,
      scales: { x: { time: true } },
      axes: [{ ...axis }, { ...axis, size: 48 }],
      series: [{}, ...series.map(([label, color]) => ({ label, stroke: cssVar(color, "#36c"), width: 1.5, spanGaps: false, points: dots ? { show: true, size: 4 } : {} }))],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    const chart = new uPlot(opts, [[], ...series.map(() => [])], box);
    let lastWidth = 0;
    new ResizeObserver(() => {
      const w = Math.floor(box.clientWidth);
      if (w > 0 && w !== lastWidth) {
        lastWidth = w;
        chart.setSize({ width: w, height: 180 });
      }
    }).observe(box);
    return chart;
  }

  // The hour is read whole once a minute; in between only its last minute, merged in
  // here (a step can still grow while its requests finish; older ones hardly change).
  const timeline = { points: new Map(), step: 10, fullAt: 0, nowS: 0, providers: null };
  const FULL_MS = 60000;

  function timelinePath() {
    const full = Date.now() - timeline.fullAt >= FULL_MS;
    return "/monitoring/timeline?minutes=" + (full ? 60 : 1);
  }

  function takeTimeline(tl, path) {
    const got = (tl && Array.isArray(tl.points) && tl.points) || [];
    if (path.endsWith("=60")) {
      timeline.points.clear();
      timeline.fullAt = Date.now();
    }
    if (isNum(tl && tl.step_s) && tl.step_s > 0) timeline.step = tl.step_s;
    if (isNum(tl && tl.now_ms)) timeline.nowS = tl.now_ms / 1000;
    if (tl && Array.isArray(tl.providers)) timeline.providers = tl.providers;
    for (const p of got) if (isNum(p.t)) timeline.points.set(p.t, p);
    const newest = Math.max(0, ...timeline.points.keys());
    for (const t of timeline.points.keys()) if (t <= newest - MAX_POINTS * timeline.step) timeline.points.delete(t);
  }

  function renderTimeline() {
    if (typeof uPlot === "undefined") return; // vendor script failed: keep the rest working
    if (!charts.rps) {
      charts.rps = makeChart("chart-rps", [["req/s", "--blue"], ["errors/s", "--red"]]);
      // Dots: a step with requests between empty ones (null, not 0) is no line at all.
      charts.latency = makeChart("chart-latency", [["p50 ms", "--blue"], ["p95 ms", "--amber"]], true);
    }
    const step = timeline.step;
    const points = [...timeline.points.values()].sort((a, b) => a.t - b.t).slice(-MAX_POINTS);
    const num = (v) => (isNum(v) ? v : null);
    const x = points.map((p) => p.t);
    // The current step has run only part of its seconds: per second of those.
    const seconds = (p) => (timeline.nowS ? Math.max(1, Math.min(step, timeline.nowS - p.t)) : step);
    const perSecond = (p, v) => (isNum(v) ? v / seconds(p) : null);
    charts.rps.setData([x, points.map((p) => perSecond(p, p.requests)), points.map((p) => perSecond(p, p.errors))]);
    charts.latency.setData([x, points.map((p) => num(p.p50_ms)), points.map((p) => num(p.p95_ms))]);
    // What the charts hold, for a test (and a curious operator) to read.
    $("chart-rps").dataset.requests = String(points.reduce((sum, p) => sum + (isNum(p.requests) ? p.requests : 0), 0));
    $("chart-latency").dataset.points = String(points.filter((p) => isNum(p.p50_ms)).length);
  }

  // ---------------------------------------------------------------- stats cards
  function renderStats(stats) {
    const req = stats.requests || {};
    setText("requests-total", fmtInt(req.total));
    setText("requests-failed", fmtInt(req.failed || 0)); // an outcome not seen yet: none
    setText("requests-fallback", fmtInt(req.fallback || 0));
    setText("requests-dead", fmtInt(stats.dead_letters));

    const tokens = stats.tokens || {};
    setText("cost-total", fmtUsd(stats.cost_usd));
    setText("tokens-in", fmtInt(tokens.input));
    setText("tokens-out", fmtInt(tokens.output));
    syncRows(
      $("models").tBodies[0],
      Array.isArray(stats.models) ? stats.models : [],
      (m) => m.provider + "\u0000" + m.model,
      () => makeRow(["provider", "model", "requests", "input", "output", "cost"], ["requests", "input", "output", "cost"]),
      (tr, m) => {
        setCell(tr, "provider", text(m.provider));
        setCell(tr, "model", text(m.model));
        setCell(tr, "requests", fmtInt(m.requests));
        setCell(tr, "input", fmtInt(m.input_tokens));
        setCell(tr, "output", fmtInt(m.output_tokens));
        setCell(tr, "cost", fmtUsd(m.cost_usd));
      }
    );

    const cache = stats.cache || {};
    const hits = cache.hits || {};
    const rates = cache.hit_rate_by_level || {};
    setText("cache-hit-rate", fmtPct(cache.hit_rate));
    setText("cache-saved", fmtUsd(cache.saved_usd));
    setText("cache-saved-tokens", fmtInt(cache.saved_tokens));
    const levels = [...new Set([...Object.keys(hits), ...Object.keys(rates)])];
    syncRows(
      $("cache-levels").tBodies[0],
      levels,
      (l) => l,
      () => makeRow(["level", "hits", "rate"], ["hits", "rate"]),
      (tr, l) => {
        setCell(tr, "level", l);
        setCell(tr, "hits", fmtInt(hits[l]));
        setCell(tr, "rate", fmtPct(rates[l]));
      }
    );

    renderRejections(stats.rejections || {});
  }

  function renderRejections(rej) {
    const items = [];
    for (const [kind, byLimit] of Object.entries(rej)) {
      for (const [limit, count] of Object.entries(byLimit || {})) {
        const li = el("li");
        li.append(el("span", "kind", kind + " · " + limit), el("span", "num", fmtInt(count)));
        items.push(li);
      }
    }
    if (!items.length) items.push(el("li", "muted", "none"));
    $("rejections").replaceChildren(...items); // small and bounded by the number of limit kinds
  }

  // ---------------------------------------------------------------- users
  const users = { period: "daily", sort: "cost", offset: 0, total: 0, list: [], limitsAt: 0, limitsKey: "" };
  const limitsCache = new Map(); // user -> {quota, limit}, oldest first, bounded
  const LIMITS_KEPT = 100;

  function usersKey() {
    return new URLSearchParams({ period: users.period, sort: users.sort, offset: String(users.offset), limit: String(PAGE_SIZE) });
  }

  /** The page, with its users' quotas and rate limits (one call for all of them) when
   *  the page changed, one of its users is not known, or LIMITS_MS have passed. */
  function usersPath() {
    const q = usersKey();
    const known = users.list.every((u) => limitsCache.has(String(u.user_id)));
    if (q.toString() !== users.limitsKey || !known || Date.now() - users.limitsAt >= LIMITS_MS) q.set("limits", "true");
    return "/users?" + q;
  }

  /** The highest share used among rows with a numeric limit, as [share, label]. */
  function highestUse(rows, typeKey) {
    let best = null;
    for (const r of rows || []) {
      if (!isNum(r.limit) || !isNum(r.used)) continue;
      const share = r.limit > 0 ? r.used / r.limit : 1;
      if (!best || share > best[0]) best = [share, String(r[typeKey])];
    }
    return best;
  }

  /** Remembers the quota and limit use that came with a page asked with limits=true;
   *  a user whose limits could not be read gets "?" in its cells. */
  function takeLimits(page) {
    const list = (page && page.users) || [];
    if (!list.length || !("quotas" in list[0])) return; // asked without them
    const now = Date.now();
    for (const u of list) {
      const user = String(u.user_id);
      limitsCache.delete(user); // re-insert so the Map stays ordered oldest first
      limitsCache.set(user, {
        quota: Array.isArray(u.quotas) ? highestUse(u.quotas, "quota_type") : undefined,
        limit: Array.isArray(u.rate_limits) ? highestUse(u.rate_limits, "limit_type") : undefined,
      });
    }
    users.limitsAt = now;
    users.limitsKey = usersKey().toString();
    // Kept across pages so paging back and forth shows the last known use at once.
    const shown = new Set(list.map((u) => String(u.user_id)));
    for (const k of limitsCache.keys()) {
      if (limitsCache.size <= LIMITS_KEPT) break;
      if (!shown.has(k)) limitsCache.delete(k);
    }
  }

  function useLabel(use) {
    if (use === undefined) return [null, "?"]; // the call failed
    if (use === null) return [null, DASH]; // no limit set
    return [use[0], Math.round(use[0] * 100) + "% " + use[1]];
  }

  function renderUsers(page) {
    users.total = isNum(page.total) ? page.total : 0;
    users.list = Array.isArray(page.users) ? page.users : [];
    const offset = isNum(page.offset) ? page.offset : users.offset;
    setText("users-label", page.label ? String(page.label) : "");
    setText("users-page", users.list.length ? offset + 1 + "–" + (offset + users.list.length) + " of " + users.total : "0 of " + users.total);
    $("users-prev").disabled = users.offset <= 0;
    $("users-next").disabled = users.offset + PAGE_SIZE >= users.total;
    syncRows($("users-table").tBodies[0], users.list, (u) => String(u.user_id), buildUserRow, updateUserRow);
    if (!users.list.length && users.offset > 0 && users.total > 0) {
      // The list shrank under the page shown: go to its last page.
      users.offset = Math.floor((users.total - 1) / PAGE_SIZE) * PAGE_SIZE;
      refreshNow();
    }
  }

  function buildUserRow(u) {
    const tr = makeRow(["user", "requests", "tokens", "cost", "rejections", "quota-use", "limit-use", "actions"], ["requests", "tokens", "cost", "rejections"]);
    const id = String(u.user_id);
    tr.dataset.user = id;
    tr.querySelector(".actions").append(
      actionButton("quota-reset", "Reset quotas", "user", id),
      actionButton("limits-reset", "Reset limits", "user", id)
    );
    return tr;
  }

  function updateUserRow(tr, u) {
    const id = String(u.user_id);
    setCell(tr, "user", id);
    setCell(tr, "requests", fmtInt(u.requests));
    setCell(tr, "tokens", fmtInt(u.tokens));
    setCell(tr, "cost", fmtUsd(u.cost_usd));
    setCell(tr, "rejections", fmtInt(u.rejections));
    const cached = limitsCache.get(id);
    const [qs, ql] = cached ? useLabel(cached.quota) : [null, "…"];
    const [ls, ll] = cached ? useLabel(cached.limit) : [null, "…"];
    setUse(tr.querySelector(".quota-use"), qs, ql);
    setUse(tr.querySelector(".limit-use"), ls, ll);
  }

  // ---------------------------------------------------------------- alerts
  const alerts = { lastId: null, seen: new Set() };

  function alertTime(a) {
    const d = a.data || {};
    if (isNum(d.ts_ms)) return new Date(d.ts_ms);
    if (typeof d.ts === "string" && !Number.isNaN(Date.parse(d.ts))) return new Date(d.ts);
    const ms = Number(String(a.id || "").split("-")[0]); // stream ids start with epoch ms
    return Number.isFinite(ms) && ms > 0 ? new Date(ms) : null;
  }

  function alertSummary(a) {
    if (a.error) return "could not be read: " + String(a.error);
    const d = a.data || {};
    const parts = [];
    if (d.provider !== undefined) parts.push(String(d.provider));
    if (d.user_id !== undefined) parts.push(String(d.user_id));
    const kind = d.quota_type ?? d.limit_type;
    if (kind !== undefined) parts.push(String(kind));
    if (d.current !== undefined || d.limit !== undefined) parts.push(text(d.current) + "/" + text(d.limit));
    if (d.reason) parts.push(String(d.reason));
    if (parts.length) return parts.join(" · ");
    return JSON.stringify(d).slice(0, 200); // unknown alert kind: show what it carries
  }

  function renderAlerts(res) {
    const feed = $("alerts-feed");
    for (const a of (res && res.alerts) || []) {
      const id = String(a.id);
      if (alerts.seen.has(id)) continue;
      alerts.seen.add(id);
      const type = String(a.type || "");
      const li = el("li", /(open|exceed|down|fail|dead)/.test(type) ? "bad" : "");
      li.dataset.type = type;
      li.dataset.id = id;
      const t = alertTime(a);
      const time = el("time", "", t ? fmtTime(t) : DASH);
      if (t) time.dateTime = t.toISOString();
      li.append(time, el("span", "type", type), el("span", "summary", alertSummary(a)));
      feed.prepend(li); // alerts come oldest first: prepending each leaves the newest on top
    }
    while (feed.children.length > MAX_ALERTS) {
      const last = feed.lastElementChild;
      alerts.seen.delete(last.dataset.id);
      last.remove();
    }
    if (alerts.seen.size > MAX_ALERTS * 4) alerts.seen = new Set(Array.from(alerts.seen).slice(-MAX_ALERTS * 2));
    if (res && res.last_id) alerts.lastId = String(res.last_id);
    // A full page: more are waiting (a storm). Read on at once instead of falling
    // further behind every two seconds.
    if (((res && res.alerts) || []).length >= ALERTS_PAGE) poll.again = true;
  }

  function alertsPath() {
    const q = new URLSearchParams({ limit: String(ALERTS_PAGE) });
    if (alerts.lastId) q.set("after", alerts.lastId);
    return "/alerts?" + q;
  }

  // ---------------------------------------------------------------- bus
  function renderBus(bus) {
    const rows = [];
    for (const s of (bus && bus.streams) || []) {
      const groups = Array.isArray(s.groups) && s.groups.length ? s.groups : [null];
      for (const g of groups) rows.push({ s, g });
    }
    syncRows(
      $("bus-streams").tBodies[0],
      rows,
      (r) => r.s.stream + "\u0000" + (r.g ? r.g.group : ""),
      () => makeRow(["stream", "length", "group", "consumers", "pending", "lag", "idle"], ["length", "consumers", "pending", "lag", "idle"]),
      (tr, { s, g }) => {
        g = g || {};
        setCell(tr, "stream", text(s.stream));
        setCell(tr, "length", fmtInt(s.length));
        setCell(tr, "group", text(g.group));
        setCell(tr, "consumers", fmtInt(g.consumers));
        setCell(tr, "pending", fmtInt(g.pending));
        setCell(tr, "lag", fmtInt(g.lag));
        setCell(tr, "idle", fmtIdle(g.idle_ms));
      }
    );
    const dead = (bus && bus.dead_letters) || {};
    setText("dead-count", fmtInt(dead.count));
    const items = ((Array.isArray(dead.latest) && dead.latest) || []).slice(0, 50).map((d) => {
      const li = el("li");
      li.append(el("span", "where", text(d.stream) + " · " + text(d.group)), el("span", "reason", text(d.reason)));
      return li;
    });
    $("dead-latest").replaceChildren(...items);
  }

  // ---------------------------------------------------------------- polling
  const poll = { timer: null, busy: false, again: false, session: 0, active: false };

  /** One refresh: everything fetched in parallel, rendered when all came. A section
   *  whose call failed keeps what it showed (the others go on) and the failure is
   *  named in the status line; a 401 anywhere ends the session. */
  async function refresh() {
    const failed = [];
    const soft = (path) =>
      api(path).catch((err) => {
        if (err instanceof AuthError) throw err;
        failed.push(path.split("?")[0] + ": " + err.message);
        return null;
      });
    const stepsPath = timelinePath();
    const [stats, health, breakers, steps, page, alertRes, bus] = await Promise.all([
      soft("/stats"),
      soft("/health"),
      soft("/circuit-breakers"),
      soft(stepsPath),
      soft(usersPath()),
      soft(alertsPath()),
      soft("/bus"),
    ]);
    return () => {
      if (steps) takeTimeline(steps, stepsPath);
      if (stats || health || breakers) renderProviders(stats, health, breakers, timeline.providers);
      if (stats) renderStats(stats);
      renderTimeline();
      if (page) {
        takeLimits(page);
        renderUsers(page);
      }
      if (alertRes) renderAlerts(alertRes);
      if (bus) renderBus(bus);
      return failed;
    };
  }

  async function tick() {
    poll.timer = null;
    if (poll.busy || !poll.active) return;
    poll.busy = true;
    const session = poll.session;
    try {
      const render = await refresh();
      if (session !== poll.session) return; // logged out meanwhile: drop the answers
      const failed = render();
      showStatus(failed.length ? "Not updated: " + failed.join("; ") : "");
      setText("updated", "Updated " + fmtTime(new Date()));
      document.body.dataset.loaded = "1";
    } catch (err) {
      if (session !== poll.session) return;
      if (err instanceof AuthError) return logout(err.message);
      showStatus("Update failed" + (err.path ? " (" + err.path.split("?")[0] + ")" : "") + ": " + err.message);
    } finally {
      if (session === poll.session) {
        poll.busy = false;
        if (poll.active) schedule(poll.again ? 0 : POLL_MS);
        poll.again = false;
      }
    }
  }

  function schedule(delay) {
    clearTimeout(poll.timer);
    poll.timer = null;
    // A hidden tab asks nothing (a forgotten one would cost the deployment a poll
    // every two seconds); it refreshes as soon as it is seen again.
    if (!document.hidden) poll.timer = setTimeout(tick, delay);
  }

  /** Refresh as soon as possible without ever running two polls at once. */
  function refreshNow() {
    if (poll.busy) poll.again = true;
    else if (poll.active) schedule(0);
  }

  // ---------------------------------------------------------------- login
  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function startApp() {
    $("login").hidden = true;
    $("login-error").textContent = "";
    $("app").hidden = false;
    Object.assign(poll, { session: poll.session + 1, busy: false, again: false, active: true });
    schedule(0);
  }

  /** Forget the token and everything shown with it; back to the form. */
  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(poll, { session: poll.session + 1, busy: false, again: false, active: false });
    clearTimeout(poll.timer);
    delete document.body.dataset.loaded;
    $("alerts-feed").replaceChildren();
    alerts.lastId = null;
    alerts.seen.clear();
    timeline.points.clear();
    timeline.fullAt = 0;
    timeline.providers = null;
    limitsCache.clear();
    $("action-result").hidden = true;
    showStatus("");
    showLogin(message);
  }

  async function tryToken(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await api("/circuit-breakers");
      startApp();
    } catch (err) {
      if (err instanceof AuthError) logout(err.message);
      else showLogin("Could not reach the gateway: " + err.message);
    }
  }

  // ---------------------------------------------------------------- actions
  /** Asks in the one modal dialog; resolves true on Yes, false on Cancel or Escape. */
  function confirmAction(question) {
    const dlg = $("confirm");
    $("confirm-text").textContent = question;
    return new Promise((resolve) => {
      const yes = $("confirm-yes");
      const no = $("confirm-no");
      const done = (answer) => {
        yes.removeEventListener("click", onYes);
        no.removeEventListener("click", onNo);
        dlg.removeEventListener("cancel", onCancel);
        dlg.removeEventListener("close", onClose);
        if (dlg.open) dlg.close();
        resolve(answer);
      };
      const onYes = () => done(true);
      const onNo = () => done(false);
      const onCancel = (e) => (e.preventDefault(), done(false)); // Escape = no
      const onClose = () => done(false);
      yes.addEventListener("click", onYes);
      no.addEventListener("click", onNo);
      dlg.addEventListener("cancel", onCancel);
      dlg.addEventListener("close", onClose);
      dlg.showModal();
    });
  }

  const ACTIONS = {
    "breaker-reset": (b) => ({
      ask: "Reset the circuit breaker of " + b.dataset.provider + "? It closes and requests go to it again.",
      path: "/circuit-breakers/" + encodeURIComponent(b.dataset.provider) + "/reset",
      done: (r) => "Breaker " + b.dataset.provider + " reset: " + text(r && r.state),
    }),
    "breaker-open": (b) => ({
      ask: "Force the circuit breaker of " + b.dataset.provider + " open? No requests go to it until it is reset.",
      path: "/circuit-breakers/" + encodeURIComponent(b.dataset.provider) + "/open",
      done: (r) => "Breaker " + b.dataset.provider + " forced open: " + text(r && r.state),
    }),
    "quota-reset": (b) => ({
      ask: "Reset the quota usage of user " + b.dataset.user + "?",
      path: "/quotas/" + encodeURIComponent(b.dataset.user) + "/reset",
      done: () => "Quotas of " + b.dataset.user + " reset",
      user: b.dataset.user,
    }),
    "limits-reset": (b) => ({
      ask: "Reset the rate-limit counters of user " + b.dataset.user + "?",
      path: "/rate-limits/" + encodeURIComponent(b.dataset.user) + "/reset",
      done: () => "Rate limits of " + b.dataset.user + " reset",
      user: b.dataset.user,
    }),
    "cache-clear": () => ({
      ask: "Clear the whole response cache (every user and model)?",
      path: "/cache/clear",
      done: (r) => "Cache cleared" + (r && isNum(r.cleared) ? ": " + fmtInt(r.cleared) + " entries removed" : ""),
    }),
  };

  async function runAction(button) {
    const spec = ACTIONS[button.dataset.action](button);
    if (!(await confirmAction(spec.ask))) return;
    button.disabled = true;
    try {
      const res = await api(spec.path, "POST", {});
      showResult(spec.done(res), false);
      if (spec.user) limitsCache.delete(spec.user); // show the reset at once, not 5 s later
    } catch (err) {
      if (err instanceof AuthError) return logout(err.message);
      showResult(err.message, true);
    } finally {
      button.disabled = false;
    }
    refreshNow();
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    $("login").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) return showLogin("Enter the admin token.");
      tryToken(token);
    });
    $("logout").addEventListener("click", () => logout(""));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && poll.active && !poll.busy && !poll.timer) schedule(0);
    });

    // One delegated listener: rows are created and dropped by polls.
    document.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-action]");
      if (b && ACTIONS[b.dataset.action] && !b.disabled) runAction(b);
    });

    const onFilter = () => {
      users.period = $("users-period").value;
      users.sort = $("users-sort").value;
      users.offset = 0;
      refreshNow();
    };
    $("users-period").addEventListener("change", onFilter);
    $("users-sort").addEventListener("change", onFilter);
    $("users-prev").addEventListener("click", () => {
      users.offset = Math.max(0, users.offset - PAGE_SIZE);
      refreshNow();
    });
    $("users-next").addEventListener("click", () => {
      if (users.offset + PAGE_SIZE < users.total) users.offset += PAGE_SIZE;
      refreshNow();
    });

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) tryToken(saved);
    else showLogin("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
