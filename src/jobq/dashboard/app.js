// jobq dashboard: one page, live over /ws/monitor (event batches), details and actions over REST.
// A hub started with --auth answers 401 until the page has a token: it asks for one (a small
// form), keeps it in sessionStorage for this tab, sends it as "Authorization: Bearer" on REST
// and as the first message of the WebSocket. No inline script or style (the hub's CSP).
"use strict";

const ENDED = ["completed", "failed", "cancelled", "quarantined"];
const STATES = ["queued", "scheduled", "running", "completed", "failed", "cancelled", "quarantined"];
const COLORS = {
  queued: "#3b82f6", scheduled: "#8b5cf6", running: "#f59e0b",
  completed: "#10b981", failed: "#ef4444", cancelled: "#9ca3af", quarantined: "#7c3aed",
};
const KEEP_JOBS = 500;     // jobs kept in the page (newest first)
const SHOWN_JOBS = 150;    // rows rendered
const WINDOW = 120;        // chart points (one per system_stats, i.e. per second)

const state = {
  hub: "", heartbeat: 1,
  jobs: new Map(),          // job_id → job view (as the REST API shows it)
  workers: new Map(),       // worker_id → worker view
  stats: null,
  series: { submitted: [], completed: [], failed: [], qwait50: [], qwait95: [], run50: [], run95: [] },
  selected: null,
  detail: null,
  detailEvents: [],
};

const $ = (sel) => document.querySelector(sel);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (n) => (n == null ? "–" : n >= 10000 ? (n / 1000).toFixed(1) + "k" : String(n));

function age(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const seconds = (v) => (v == null ? "–" : v < 1 ? (v * 1000).toFixed(1) + " ms" : v.toFixed(2) + " s");

// ------------------------------------------------------------------ the token

const TOKEN_KEY = "jobq.token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";

function authHeaders(extra = {}) {
  return token ? { ...extra, Authorization: "Bearer " + token } : { ...extra };
}

function askToken(reason) {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  setConn(false);
  $("#login").hidden = false;
  $("#login-error").hidden = !reason;
  $("#login-error").textContent = reason || "";
  $("#login-token").value = "";
  $("#login-token").focus();
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("#login-token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login").hidden = true;
  start();
});

// Ask the hub whether this tab may look (REST, with the token if there is one), then go live.
async function start() {
  let res;
  try {
    res = await fetch("/api/stats", { headers: authHeaders() });
  } catch (err) {
    setTimeout(start, 2000);
    return;
  }
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}));
    askToken(token || res.status === 403 ? body.message || res.statusText : "");
    return;
  }
  connect();
}

// ------------------------------------------------------------------ live stream

let socket = null;
let retry = 500;

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/monitor?batch=1";
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => {
    retry = 500;
    if (token) ws.send(JSON.stringify({ type: "auth", token }));
    ws.send(JSON.stringify({ type: "request_full_state", jobs_limit: 200 }));
  };
  ws.onmessage = (msg) => handle(JSON.parse(msg.data));
  ws.onclose = (e) => {
    if (socket !== ws) return;
    socket = null;
    if (e.code === 4401 || e.code === 4403) return askToken(e.reason);
    setConn(false);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

function setConn(live) {
  const el = $("#conn");
  el.textContent = live ? "live" : "reconnecting…";
  el.className = "pill " + (live ? "pill-live" : "pill-wait");
}

function handle(msg) {
  switch (msg.type) {
    case "full_state_snapshot": return snapshot(msg);
    case "event_batch": msg.events.forEach(jobEvent); return schedule();
    case "system_stats": return systemStats(msg);
    case "worker_connected":
    case "worker_status_changed": state.workers.set(msg.worker.worker_id, msg.worker); return schedule();
    case "worker_disconnected": state.workers.delete(msg.worker_id); return schedule();
    case "worker_drained":
    case "worker_resumed":
    case "worker_evicted": return workerNotice(msg);
    case "resync_required": return toast("The dashboard fell behind and resynced.");
    case "connection_established":
      state.hub = msg.hub;
      setConn(true);
      $("#who").textContent = token ? `${msg.principal} (${msg.role})` : "";
      return;
    default:
      if (msg.job_id != null) { jobEvent(msg); schedule(); }
  }
}

function snapshot(msg) {
  state.hub = msg.hub;
  state.heartbeat = msg.heartbeat || 1;
  $("#hub-name").textContent = msg.hub;
  state.workers = new Map(msg.workers.map((w) => [w.worker_id, w]));
  if (!filtersActive()) state.jobs = new Map(msg.jobs.map((j) => [j.job_id, j]));
  else loadJobs();
  systemStats(msg.stats, false);
  schedule();
}

function jobEvent(e) {
  let job = state.jobs.get(e.job_id);
  if (!job) {
    job = { job_id: e.job_id, service: e.service, customer_id: e.customer_id, priority: 0,
      attempts: 0, created_at: e.at };
    state.jobs.set(e.job_id, job);
    trim();
  }
  job.status = e.status;
  if (e.worker_id) job.worker_id = e.worker_id;
  if (e.attempt) job.attempts = e.attempt;
  if (e.progress != null) job.progress = e.progress;
  if (e.message != null) job.progress_message = e.message;
  if (e.error) job.error = e.error;
  if (e.event === "started") job.started_at = e.at;
  if (ENDED.includes(e.status)) job.finished_at = e.at;
  if (state.selected === e.job_id) {
    state.detailEvents.push({ event: e.event, status: e.status, at: e.at, attempt: e.attempt,
      worker_id: e.worker_id, progress: e.progress, message: e.message, error: e.error });
    refreshDetail();
  }
}

function trim() {
  if (state.jobs.size <= KEEP_JOBS) return;
  const ids = [...state.jobs.keys()].sort((a, b) => a - b);
  for (const id of ids.slice(0, state.jobs.size - KEEP_JOBS)) if (id !== state.selected) state.jobs.delete(id);
}

function systemStats(s, push = true) {
  state.stats = s;
  for (const [id, seen] of Object.entries(s.worker_seen || {})) {
    const w = state.workers.get(id);
    if (w && seen > w.last_seen) w.last_seen = seen;
  }
  if (push) {
    const add = (key, v) => { const arr = state.series[key]; arr.push(v); if (arr.length > WINDOW) arr.shift(); };
    add("submitted", s.rates.submitted); add("completed", s.rates.completed); add("failed", s.rates.failed);
    add("qwait50", s.latency.queue_wait.p50); add("qwait95", s.latency.queue_wait.p95);
    add("run50", s.latency.run_time.p50); add("run95", s.latency.run_time.p95);
  }
  schedule();
}

// ------------------------------------------------------------------ rendering

// Widths and colours from data-* attributes, set through the CSSOM (the CSP forbids style="").
function paint(root) {
  for (const el of root.querySelectorAll("[data-w], [data-bg], [data-c]")) {
    if (el.dataset.w != null) el.style.width = el.dataset.w + "%";
    if (el.dataset.bg) el.style.background = el.dataset.bg;
    if (el.dataset.c) el.style.setProperty("--c", el.dataset.c);
  }
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; render(); }, 200);
}

function render() {
  renderKpis();
  renderQueues();
  renderWorkers();
  renderJobs();
  drawCharts();
}

function renderKpis() {
  const s = state.stats;
  if (!s) return;
  const by = s.jobs.by_state;
  $("#kpi-queued").textContent = fmt((by.queued || 0) + (by.scheduled || 0));
  $("#kpi-running").textContent = fmt(by.running || 0);
  $("#kpi-completed").textContent = fmt(by.completed || 0);
  $("#kpi-failed").textContent = fmt(by.failed || 0);
  $("#kpi-workers").textContent = fmt(s.workers);
  $("#kpi-slots").textContent = `${s.slots_free}/${s.slots}`;
  $("#uptime").textContent = "up " + age(Date.now() / 1000 - s.uptime);
}

function renderQueues() {
  const s = state.stats;
  if (!s) return;
  const services = Object.entries(s.jobs.by_service).sort(([a], [b]) => a.localeCompare(b));
  $("#services").innerHTML = services.map(([name, counts]) => `
    <div class="service"><b>${esc(name)}</b><div class="counts">${["queued", "running", "completed", "failed"]
      .map((st) => `<span><i class="dot" data-bg="${COLORS[st]}"></i>${fmt(counts[st] || 0)}</span>`)
      .join("")}</div></div>`).join("");
  const select = $("#f-service");
  const known = new Set([...select.options].map((o) => o.value));
  for (const [name] of services) if (!known.has(name)) select.add(new Option(name, name));
  const rows = s.queues || [];
  const max = Math.max(1, ...rows.map((r) => r.queued));
  $("#queues tbody").innerHTML = rows.map((r) => `<tr><td>${esc(r.service)}</td><td>${r.priority}</td>
    <td class="num">${fmt(r.queued)}</td><td><div class="bar"><i data-w="${(100 * r.queued) / max}"></i></div></td></tr>`)
    .join("");
  paint($("#services"));
  paint($("#queues tbody"));
  $("#queues-empty").hidden = rows.length > 0;
  $("#queues-note").textContent = s.queues_sampled ? "by service and priority (newest 5000 queued)" : "by service and priority";
}

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + ".", out);
    else out.push([prefix + k, Array.isArray(v) ? v.join(",") : v]);
  }
  return out;
}

function renderWorkers() {
  const workers = [...state.workers.values()].sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  $("#workers-empty").hidden = workers.length > 0;
  $("#workers-note").textContent = workers.length ? `${workers.length} connected` : "";
  $("#workers").innerHTML = workers.map((w) => {
    const caps = flatten(w.capabilities).slice(0, 8);
    const m = w.metrics || {};
    const load = [m.cpu_percent != null ? `cpu ${m.cpu_percent.toFixed(0)}%` : "",
      m.memory_percent != null ? `mem ${m.memory_percent.toFixed(0)}%` : ""].filter(Boolean).join(" · ");
    return `<div class="worker" data-worker-id="${esc(w.worker_id)}">
      <div><div class="name"><i class="dot health-${esc(w.health)}" title="${esc(w.health)}"></i>${esc(w.name || w.worker_id)}</div>
        <div class="meta">${esc(w.worker_id)} · ${esc(w.door)} · seen ${age(w.last_seen)} ago${load ? " · " + load : ""}</div></div>
      <div><div class="meta">${w.running}/${w.slots} slots busy</div>
        <div class="bar"><i data-w="${w.slots ? (100 * w.running) / w.slots : 0}" data-bg="${COLORS.running}"></i></div></div>
      <div class="worker-actions">${w.drained
          ? `<span class="badge drained" title="${esc(w.drained)}">drained</span>
             <button class="btn small" type="button" data-act="resume">Resume</button>`
          : `<button class="btn small ghost" type="button" data-act="drain">Drain</button>`}
        <button class="btn small danger" type="button" data-act="evict">Evict</button></div>
      ${w.drained ? `<div class="meta drained-why">drained: ${esc(w.drained)}</div>` : ""}
      <div class="chips">${w.services.map((s) => (w.unhealthy || {})[s]
          ? `<span class="chip svc down" title="${esc(w.unhealthy[s])}">${esc(s)}: unhealthy</span>`
          : `<span class="chip svc">${esc(s)}</span>`).join("")}
        ${caps.map(([k, v]) => `<span class="chip">${esc(k)}=${esc(v)}</span>`).join("")}</div>
    </div>`;
  }).join("");
  paint($("#workers"));
}

function filters() {
  return { status: $("#f-status").value, service: $("#f-service").value, customer: $("#f-customer").value.trim() };
}
const filtersActive = () => Object.values(filters()).some(Boolean);

function matches(job, f) {
  return (!f.status || job.status === f.status) && (!f.service || job.service === f.service)
    && (!f.customer || job.customer_id === f.customer);
}

function renderJobs() {
  const f = filters();
  const jobs = [...state.jobs.values()].filter((j) => matches(j, f)).sort((a, b) => b.job_id - a.job_id)
    .slice(0, SHOWN_JOBS);
  $("#jobs-empty").hidden = jobs.length > 0;
  $("#jobs tbody").innerHTML = jobs.map((j) => {
    const pct = j.status === "completed" ? 100 : j.progress != null ? Math.max(0, Math.min(100, j.progress)) : 0;
    return `<tr data-job-id="${j.job_id}" class="${j.job_id === state.selected ? "selected" : ""}">
      <td>${j.job_id}</td><td>${esc(j.service)}</td>
      <td class="status"><span class="badge ${esc(j.status)}">${esc(j.status)}</span></td>
      <td class="num">${j.priority ?? 0}</td><td>${esc(j.customer_id || "")}</td><td>${esc(j.worker_id || "")}</td>
      <td class="num">${j.attempts || 0}${j.max_attempts ? "/" + j.max_attempts : ""}</td>
      <td><div class="bar progress"><i data-w="${pct}" data-bg="${COLORS[j.status] || COLORS.queued}"></i></div></td>
      <td class="num">${age(j.created_at)}</td></tr>`;
  }).join("");
  paint($("#jobs tbody"));
}

// ------------------------------------------------------------------ charts (plain canvas)

function drawChart(canvas, lines, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight || 170;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 10, t: 22, b: 18 };
  const values = lines.flatMap((l) => l.data.filter((v) => v != null));
  const max = niceMax(Math.max(unit === "s" ? 0.001 : 1, ...values));
  const x = (i) => pad.l + ((w - pad.l - pad.r) * i) / (WINDOW - 1);
  const y = (v) => h - pad.b - ((h - pad.t - pad.b) * v) / max;
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#e5e8f0"; ctx.fillStyle = "#6b7285"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(unit === "s" ? seconds(v) : v.toFixed(v < 10 ? 1 : 0), 2, yy + 4);
  }
  let lx = pad.l;
  for (const line of lines) {
    const offset = WINDOW - line.data.length;
    ctx.strokeStyle = line.color; ctx.lineWidth = line.dash ? 1.5 : 2; ctx.setLineDash(line.dash ? [5, 4] : []);
    ctx.beginPath();
    let open = false;
    line.data.forEach((v, i) => {
      if (v == null) { open = false; return; }
      if (open) ctx.lineTo(x(i + offset), y(v)); else { ctx.moveTo(x(i + offset), y(v)); open = true; }
    });
    ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = line.color; ctx.fillRect(lx, 6, 10, 3);
    ctx.fillStyle = "#3a4054"; ctx.fillText(line.label, lx + 14, 11);
    lx += ctx.measureText(line.label).width + 30;
  }
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawCharts() {
  const s = state.series;
  drawChart($("#chart-throughput"), [
    { label: "submitted", color: COLORS.queued, data: s.submitted },
    { label: "completed", color: COLORS.completed, data: s.completed },
    { label: "failed", color: COLORS.failed, data: s.failed },
  ], "/s");
  drawChart($("#chart-latency"), [
    { label: "queue wait p50", color: COLORS.scheduled, data: s.qwait50 },
    { label: "p95", color: COLORS.scheduled, data: s.qwait95, dash: true },
    { label: "run time p50", color: COLORS.running, data: s.run50 },
    { label: "p95", color: COLORS.running, data: s.run95, dash: true },
  ], "s");
}

// ------------------------------------------------------------------ REST: lists, details, actions

async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  // State-changing requests say they are JSON: the hub refuses any other type (CSRF).
  const headers = authHeaders(method === "GET" ? {} : { "Content-Type": "application/json" });
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) askToken(body.message || res.statusText);
  if (!res.ok && res.status !== 202) throw new Error(body.message || res.statusText);
  return body;
}

async function loadJobs() {
  const f = filters();
  const q = new URLSearchParams({ limit: "200" });
  if (f.status) q.set("status", f.status);
  if (f.service) q.set("service", f.service);
  if (f.customer) q.set("customer_id", f.customer);
  try {
    const body = await api("/api/jobs?" + q);
    for (const j of body.jobs) state.jobs.set(j.job_id, { ...state.jobs.get(j.job_id), ...j });
    trim();
    schedule();
  } catch (err) { toast("Could not load jobs: " + err.message); }
}

async function openDetail(id) {
  state.selected = id;
  state.detail = null;
  state.detailEvents = [];
  $("#detail").hidden = false;
  $("#d-message").hidden = true;
  renderJobs();
  await refreshDetail(true);
}

async function refreshDetail(full = false) {
  const id = state.selected;
  if (id == null) return;
  try {
    const [job, explain, events] = await Promise.all([
      api(`/api/jobs/${id}`), api(`/api/jobs/${id}/explain`),
      full ? api(`/api/jobs/${id}/events`) : Promise.resolve(null),
    ]);
    if (id !== state.selected) return;
    state.detail = job;
    state.jobs.set(id, { ...state.jobs.get(id), ...job, payload: undefined, result: undefined });
    if (events) state.detailEvents = events.events;
    renderDetail(job, explain);
  } catch (err) {
    $("#d-message").hidden = false;
    $("#d-message").textContent = err.message;
  }
}

function show(value, encoding) {
  if (value == null || (Array.isArray(value) && value.length === 0)) return "—"; // none, or not shown to a monitor
  if (encoding === "json") return JSON.stringify(value, null, 2);
  if (encoding === "base64") return "(base64) " + (Array.isArray(value) ? value.join("\n") : value);
  return String(value);
}

function renderDetail(job, explain) {
  $("#d-title").textContent = `Job ${job.job_id} · ${job.service}`;
  const badge = $("#d-status");
  badge.textContent = job.status;
  badge.className = "badge " + job.status;
  $("#btn-cancel").disabled = ENDED.includes(job.status);
  $("#btn-retry").disabled = !["failed", "cancelled", "quarantined"].includes(job.status);
  const rows = [
    ["priority", job.priority ?? 0], ["customer", job.customer_id], ["isolation", job.isolation],
    ["attempts", `${job.attempts ?? 0} of ${job.max_attempts ?? 3}`], ["worker", job.worker_id],
    ["submitted", clock(job.created_at)], ["runs at", job.run_at ? clock(job.run_at) : null],
    ["started", job.started_at ? clock(job.started_at) : null],
    ["finished", job.finished_at ? clock(job.finished_at) : null],
    ["progress", job.progress != null ? `${job.progress}${job.progress_message ? " · " + job.progress_message : ""}` : null],
    ["timeout", job.timeout ? job.timeout + " s" : null], ["error", job.error],
    ["requires", Object.keys(job.requires || {}).length ? flatten(job.requires).map(([k, v]) => `${k}=${v}`).join(", ") : null],
    ["idempotency key", job.idempotency_key], ["content type", job.content_type],
  ].filter(([, v]) => v != null && v !== "");
  $("#d-overview").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
  const inel = Object.entries(explain.ineligible || {});
  $("#d-explain").innerHTML = `<b>${esc(explain.summary)}</b>`
    + (explain.position ? `<div class="muted">place in line: ${explain.position}`
      + (explain.estimated_start ? ` · expected to start ${clock(explain.estimated_start)}` : "") + "</div>" : "")
    + (explain.eligible && explain.eligible.length
      ? `<div class="muted">can run it: ${explain.eligible.map(esc).join(", ")}</div>` : "")
    + (inel.length ? `<ul>${inel.map(([w, why]) => `<li><b>${esc(w)}</b>: ${esc(why)}</li>`).join("")}</ul>` : "");
  $("#d-events").innerHTML = state.detailEvents.map((e) => `<li data-c="${COLORS[e.status] || "#4f46e5"}">
    <b>${esc(e.event)}</b>${e.attempt ? ` · attempt ${e.attempt}` : ""}${e.worker_id ? ` · ${esc(e.worker_id)}` : ""}
    ${e.progress != null && e.event === "progress" ? ` · ${esc(e.progress)}` : ""}${e.error && e.error !== e.event ? ` · ${esc(e.error)}` : ""}
    <span class="when">${clock(e.at)}</span></li>`).join("") || "<li>—</li>";
  paint($("#d-events"));
  $("#d-result").textContent = job.status === "completed" ? show(job.result, job.result_encoding) : (job.error || "—");
  $("#d-payload").textContent = show(job.payload, job.payload_encoding);
  // The last failed attempt's traceback, and each kept failed attempt (text only: escaped).
  const failures = job.attempt_errors || [];
  $("#d-failures").hidden = !failures.length;
  $("#d-traceback").textContent = job.traceback || "— (none: a timeout, or a failure raised on purpose)";
  $("#d-attempts").innerHTML = failures.map((f) => `<li><b>attempt ${esc(f.attempt)}</b>`
    + `${f.worker ? ` · ${esc(f.worker)}` : ""} · ${esc(f.error)} <span class="when">${clock(f.at)}</span>`
    + (f.traceback ? `<details><summary>traceback</summary><pre class="code">${esc(f.traceback)}</pre></details>` : "")
    + "</li>").join("");
}

async function act(kind) {
  const id = state.selected;
  try {
    const job = kind === "cancel"
      ? await api(`/api/jobs/${id}`, { method: "DELETE" })
      : await api(`/api/jobs/${id}/retry`, { method: "POST" });
    state.jobs.set(id, { ...state.jobs.get(id), ...job });
    toast(`Job ${id} ${kind === "cancel" ? "cancelled" : "queued again"}.`);
    schedule();
    await refreshDetail(true);
  } catch (err) {
    $("#d-message").hidden = false;
    $("#d-message").textContent = err.message;
  }
}

// Drain, resume or evict a worker (admin only: the hub answers 403 to any other token).
async function workerAct(workerId, kind) {
  if (kind === "evict" && !confirm(`Evict ${workerId}? Its running jobs go back to the queue.`)) return;
  try {
    const done = await api(`/api/workers/${encodeURIComponent(workerId)}/${kind}`, { method: "POST" });
    workerNotice({ type: "worker_" + done.action, worker_id: done.worker_id, drained: done.drained });
  } catch (err) { toast(`Could not ${kind} ${workerId}: ${err.message}`); }
}

// A worker drained (by an operator or automatically), resumed or evicted.
function workerNotice(msg) {
  const w = state.workers.get(msg.worker_id);
  if (w) w.drained = msg.drained || undefined;
  const what = { worker_drained: "drained", worker_resumed: "resumed", worker_evicted: "evicted" }[msg.type];
  toast(`Worker ${msg.worker_id} ${what}${msg.type === "worker_drained" && msg.drained ? ": " + msg.drained : ""}.`);
  schedule();
}

let toastTimer = null;
function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 3000);
}

// ------------------------------------------------------------------ wiring

$("#jobs tbody").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-job-id]");
  if (row) openDetail(Number(row.dataset.jobId));
});
$("#workers").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-act]");
  const card = button && button.closest("[data-worker-id]");
  if (card) workerAct(card.dataset.workerId, button.dataset.act);
});
$("#btn-close").addEventListener("click", () => {
  $("#detail").hidden = true;
  state.selected = null;
  renderJobs();
});
$("#btn-cancel").addEventListener("click", () => act("cancel"));
$("#btn-retry").addEventListener("click", () => act("retry"));
for (const id of ["#f-status", "#f-service"]) $(id).addEventListener("change", () => { renderJobs(); loadJobs(); });
let typing = null;
$("#f-customer").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { renderJobs(); loadJobs(); }, 300); });
$("#f-clear").addEventListener("click", () => {
  $("#f-status").value = ""; $("#f-service").value = ""; $("#f-customer").value = "";
  renderJobs();
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("#btn-close").click(); });
window.addEventListener("resize", drawCharts);
setInterval(() => { renderJobs(); renderWorkers(); }, 5000); // ages move on
start();
