// jobq dashboard, the core: state, the token, the live stream (/ws/monitor, event batches),
// the figures, queues and services (pause/resume), workers. charts.js (history), jobs.js (the
// list: paging, search, bulk actions), detail.js (a job's panel, groups, schedules) and main.js
// (wiring, start) share these globals: classic scripts, loaded in that order.
// A hub started with --auth answers 401 until the page has a token: it asks for one (a small
// form), keeps it in sessionStorage for this tab, sends it as "Authorization: Bearer" on REST
// and as the first message of the WebSocket. No inline script or style (the hub's CSP).
"use strict";

const ENDED = ["completed", "failed", "cancelled", "quarantined"];
const STATES = ["queued", "scheduled", "waiting", "running", "completed", "failed", "cancelled", "quarantined"];
const COLORS = {
  queued: "#3b82f6", scheduled: "#8b5cf6", waiting: "#0ea5e9", running: "#f59e0b",
  completed: "#10b981", failed: "#ef4444", cancelled: "#9ca3af", quarantined: "#7c3aed",
};
const KEEP_JOBS = 500;     // live jobs kept in the page (newest first)

const state = {
  hub: "", heartbeat: 1, live: false, started: false,
  jobs: new Map(),          // id → job view (as the REST API shows it), the live page
  workers: new Map(),       // id → worker view
  services: new Map(),      // name → GET /api/services item (paused, workers, queued, ...)
  stats: null,
  routes: null,             // the hub's REST paths (from /openapi.json): which features it has
  selected: null,
  detail: null,
  detailEvents: [],
};

const $ = (sel) => document.querySelector(sel);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (n) => (n == null ? "–" : n >= 10000 ? (n / 1000).toFixed(1) + "k" : String(n));
// A number as short as it is exact: 0.25 stays 0.25 (never "0.3"), 1234.5 → 1235.
const num = (v) => (v == null || !isFinite(v) ? "–"
  : Math.abs(v) >= 100 ? String(Math.round(v)) : String(+v.toPrecision(3)));
const millis = (ms) => (ms == null ? "–" : ms < 1000 ? num(ms) + " ms" : num(ms / 1000) + " s");

function age(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const has = (path) => state.routes == null || state.routes.has(path);
// A route with path parameters, whatever they are named: hasRoute("/api/services/{}/pause").
const hasRoute = (pattern) => state.routes == null
  || [...state.routes].some((p) => p.replace(/\{[^}]*\}/g, "{}") === pattern);

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
  state.started = true;
  await loadRoutes();
  connect();
  startHistory();       // charts.js
  loadServices();
  startExtras();        // detail.js: groups and schedules, when the hub has them
}

// Which features this hub has: the paths of its OpenAPI document (open, no data in it).
async function loadRoutes() {
  if (state.routes) return;
  try {
    const doc = await (await fetch("/openapi.json")).json();
    state.routes = new Set(Object.keys(doc.paths || {}));
  } catch (err) { state.routes = null; } // unknown: try everything, hide what answers 404
}

// ------------------------------------------------------------------ REST

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  // State-changing requests say they are JSON: the hub refuses any other type (CSRF).
  const headers = authHeaders(method === "GET" ? {} : { "Content-Type": "application/json" });
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) askToken(body.message || res.statusText);
  if (!res.ok && res.status !== 202) throw new HttpError(res.status, body.message || res.statusText);
  return body;
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

// Disconnected: the figures and workers are as last seen, and shown so (greyed out).
function setConn(live) {
  state.live = live;
  const el = $("#conn");
  el.textContent = live ? "live" : "reconnecting…";
  el.className = "pill " + (live ? "pill-live" : "pill-wait");
  document.body.classList.toggle("offline", !live);
  renderWorkers();
}

function handle(msg) {
  switch (msg.type) {
    case "full_state_snapshot": return snapshot(msg);
    case "event_batch": msg.events.forEach(jobEvent); return schedule();
    case "system_stats": return systemStats(msg);
    case "worker_connected":
    case "worker_status_changed": state.workers.set(msg.worker.id, msg.worker); return schedule();
    case "worker_disconnected": state.workers.delete(msg.worker); return schedule();
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
      if (msg.id != null && msg.kind != null) { jobEvent(msg); schedule(); }
  }
}

function snapshot(msg) {
  state.hub = msg.hub;
  state.heartbeat = msg.heartbeat || 1;
  $("#hub-name").textContent = msg.hub;
  state.workers = new Map(msg.workers.map((w) => [w.id, w]));
  if (!filtersActive()) state.jobs = new Map(msg.jobs.map((j) => [j.id, j]));
  else loadJobs();
  systemStats(msg.stats, false);
  schedule();
}

function applyEvent(job, e) {
  job.state = e.state;
  if (e.worker) job.worker = e.worker;
  if (e.attempt) job.attempts = e.attempt;
  if (e.progress != null) job.progress = e.progress;
  if (e.message != null) job.progress_message = e.message;
  if (e.error) job.error = e.error;
  if (e.kind === "started") job.started_at = e.at;
  if (ENDED.includes(e.state)) job.finished_at = e.at;
}

// A group's own event (group_submitted, group_progress, group_finalizing, group_ended: it has
// group_id, never job_id): the group shown in the Groups card is read again, at most once a second.
let groupRefresh = null;
function groupEvent(e) {
  const shown = $("#group-id");
  if (groupRefresh || !shown || $("#groups-card").hidden || shown.value.trim() !== String(e.group_id)) return;
  groupRefresh = setTimeout(() => { groupRefresh = null; openGroup(shown.value); }, 1000);
}

function jobEvent(e) {
  if (e.group_id != null) return groupEvent(e);
  let job = state.jobs.get(e.id);
  if (!job) {
    job = { id: e.id, service: e.service, customer_id: e.customer_id, priority: 0,
      attempts: 0, submitted_at: e.at };
    state.jobs.set(e.id, job);
    trim();
  }
  applyEvent(job, e);
  const paged = pageJob(e.id); // jobs.js: a job on an older page shown now
  if (paged && paged !== job) applyEvent(paged, e);
  if (state.selected === e.id) {
    state.detailEvents.push({ kind: e.kind, state: e.state, at: e.at, attempt: e.attempt,
      worker: e.worker, progress: e.progress, message: e.message, error: e.error });
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
  if (push) liveSample(s); // charts.js: the live series, when the hub keeps no history
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
}

function renderKpis() {
  const s = state.stats;
  if (!s) return;
  const by = s.jobs.by_state;
  $("#kpi-queued").textContent = fmt((by.queued || 0) + (by.scheduled || 0) + (by.waiting || 0));
  $("#kpi-running").textContent = fmt(by.running || 0);
  $("#kpi-completed").textContent = fmt(by.completed || 0);
  $("#kpi-failed").textContent = fmt(by.failed || 0);
  $("#kpi-workers").textContent = fmt(s.workers);
  $("#kpi-slots").textContent = `${s.slots_free}/${s.slots}`;
  $("#uptime").textContent = "up " + age(Date.now() / 1000 - s.uptime);
}

// The services (chips with pause/resume) and the queued jobs by priority. Both come from the
// same system_stats message, but the breakdown is sampled every few seconds: a service whose
// chip says nothing waits shows no priority rows.
function renderQueues() {
  const s = state.stats;
  if (!s) return;
  const names = new Set([...Object.keys(s.jobs.by_service), ...state.services.keys()]);
  const services = [...names].sort((a, b) => a.localeCompare(b));
  const admin = hasRoute("/api/services/{}/pause");
  $("#services").innerHTML = services.map((name) => {
    const counts = s.jobs.by_service[name] || {};
    const info = state.services.get(name) || {};
    return `<div class="service${info.paused ? " paused" : ""}" data-service="${esc(name)}">
      <div class="service-head"><b>${esc(name)}</b>${info.paused ? '<span class="badge drained">paused</span>' : ""}
      ${admin ? `<button class="btn small ${info.paused ? "" : "ghost"}" type="button" data-svc-act="${info.paused ? "resume" : "pause"}">${info.paused ? "Resume" : "Pause"}</button>` : ""}</div>
      <div class="counts">${["queued", "running", "completed", "failed"]
      .map((st) => `<span title="${st}"><i class="dot" data-bg="${COLORS[st]}"></i>${fmt(counts[st] || 0)}</span>`)
      .join("")}</div></div>`;
  }).join("");
  const select = $("#f-service");
  const known = new Set([...select.options].map((o) => o.value));
  for (const name of services) if (!known.has(name)) select.add(new Option(name, name));
  const waiting = (name) => (s.jobs.by_service[name] || {}).queued || 0;
  const rows = (s.queues || []).filter((r) => waiting(r.service) > 0);
  const max = Math.max(1, ...rows.map((r) => r.queued));
  $("#queues tbody").innerHTML = rows.map((r) => `<tr><td>${esc(r.service)}</td><td>${r.priority}</td>
    <td class="num">${fmt(r.queued)}</td><td><div class="bar"><i data-w="${(100 * r.queued) / max}"></i></div></td></tr>`)
    .join("");
  paint($("#services"));
  paint($("#queues tbody"));
  $("#queues-empty").hidden = rows.length > 0;
  $("#queues-note").textContent = s.queues_sampled ? "by service and priority (newest 5000 queued)" : "by service and priority";
}

async function loadServices() {
  if (!has("/api/services")) return;
  try {
    const list = await api("/api/services");
    state.services = new Map(list.map((item) => [item.name, item]));
    schedule();
  } catch (err) { /* the chips keep the stats' counts */ }
}

// Pause or resume a service's queue (admin only: the hub answers 403 to any other token).
async function serviceAct(name, kind) {
  try {
    await api(`/api/services/${encodeURIComponent(name)}/${kind}`, { method: "POST" });
    toast(`Service ${name} ${kind === "pause" ? "paused" : "resumed"}.`);
  } catch (err) { toast(`Could not ${kind} ${name}: ${err.message}`); }
  await loadServices();
}

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + ".", out);
    else out.push([prefix + k, Array.isArray(v) ? v.join(",") : v]);
  }
  return out;
}

// A card's title is the worker's name; when several share it (the default name is the host's,
// "vm" for every worker of a machine), its id, which adds the process and a tag to the name.
function workerTitle(w, workers) {
  if (!w.name) return w.id;
  return workers.filter((o) => o.name === w.name).length > 1 ? w.id : w.name;
}

function renderWorkers() {
  const workers = [...state.workers.values()].sort((a, b) => a.id.localeCompare(b.id));
  $("#workers-empty").hidden = workers.length > 0;
  $("#workers-note").textContent = !workers.length ? ""
    : state.live ? `${workers.length} connected` : `${workers.length} as last seen (not live)`;
  $("#workers").classList.toggle("stale", !state.live);
  $("#workers").innerHTML = workers.map((w) => {
    const caps = flatten(w.capabilities).slice(0, 8);
    const m = w.metrics || {};
    const load = [m.cpu_percent != null ? `cpu ${m.cpu_percent.toFixed(0)}%` : "",
      m.memory_percent != null ? `mem ${m.memory_percent.toFixed(0)}%` : ""].filter(Boolean).join(" · ");
    const health = state.live ? w.health : "unknown";
    const title = workerTitle(w, workers);
    return `<div class="worker" data-worker-id="${esc(w.id)}">
      <div><div class="name"><i class="dot health-${esc(health)}" title="${esc(health)}"></i>${esc(title)}</div>
        <div class="meta">${title !== w.id ? esc(w.id) + " · " : ""}${esc(w.door)} · seen ${age(w.last_seen)} ago${load ? " · " + load : ""}</div></div>
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

// Drain, resume or evict a worker (admin only: the hub answers 403 to any other token).
async function workerAct(workerId, kind) {
  if (kind === "evict" && !(await ask(`Evict ${workerId}? Its running jobs go back to the queue.`, "Evict"))) return;
  try {
    const done = await api(`/api/workers/${encodeURIComponent(workerId)}/${kind}`, { method: "POST" });
    workerNotice({ type: "worker_" + done.action, worker: done.worker, drained: done.drained });
  } catch (err) { toast(`Could not ${kind} ${workerId}: ${err.message}`); }
}

// A worker drained (by an operator or automatically), resumed or evicted.
function workerNotice(msg) {
  const w = state.workers.get(msg.worker);
  if (w) w.drained = msg.drained || undefined;
  const what = { worker_drained: "drained", worker_resumed: "resumed", worker_evicted: "evicted" }[msg.type];
  toast(`Worker ${msg.worker} ${what}${msg.type === "worker_drained" && msg.drained ? ": " + msg.drained : ""}.`);
  schedule();
}

let toastTimer = null;
function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// A confirm dialog of the page's own (a <dialog>): resolves true when the action is confirmed.
function ask(text, action = "OK") {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
