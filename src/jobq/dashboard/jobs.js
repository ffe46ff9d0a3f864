// jobq dashboard, the jobs list: filters (status, service, customer, blocked), pages of 50
// (the newest page is live; "Older →" asks GET /api/jobs?...&before=ID, which answers the next
// cursor), search by id, and bulk retry/cancel of the filtered selection (POST /api/jobs/bulk).
"use strict";

const PAGE = 50;

const page = {
  index: 0,                // 0: the newest page
  cursors: [],             // the `before` of each older page shown (index - 1)
  rows: new Map(),         // an older (or server-filtered) page: id → job view
  next: null,              // the hub's cursor for the page after this one (null: no more)
  offsets: false,          // the hub answers no cursor: pages by offset instead
  timer: null,
};

const pageJob = (id) => page.rows.get(id);

function filters() {
  return {
    status: $("#f-status").value, service: $("#f-service").value,
    customer: $("#f-customer").value.trim(), blocked: $("#f-blocked").checked,
  };
}
const filtersActive = () => Object.values(filters()).some(Boolean);
// Pages the live stream cannot tell: an older one, or "blocked" (the hub decides what is).
const serverPaged = () => page.index > 0 || filters().blocked;

function matches(job, f) {
  return (!f.status || job.state === f.status) && (!f.service || job.service === f.service)
    && (!f.customer || job.customer_id === f.customer);
}

function query(extra = {}) {
  const f = filters();
  const q = new URLSearchParams({ limit: String(PAGE), ...extra });
  if (f.status) q.set("state", f.status);
  if (f.service) q.set("service", f.service);
  if (f.customer) q.set("customer_id", f.customer);
  if (f.blocked) q.set("blocked", "true");
  return q;
}

// The newest page with filters: the hub's newest matching jobs join the live ones.
async function loadJobs() {
  if (serverPaged()) return loadPage();
  try {
    const body = await api("/api/jobs?" + query());
    for (const j of body.jobs) state.jobs.set(j.id, { ...state.jobs.get(j.id), ...j });
    trim();
    schedule();
  } catch (err) { toast("Could not load jobs: " + err.message); }
}

async function loadPage() {
  const before = page.index > 0 ? page.cursors[page.index - 1] : null;
  const extra = page.offsets ? { offset: String(page.index * PAGE) }
    : before != null ? { before: String(before) } : {};
  try {
    const body = await api("/api/jobs?" + query(extra));
    page.offsets = page.offsets || !("next" in body);
    page.rows = new Map(body.jobs.map((j) => [j.id, j]));
    page.next = page.offsets ? (body.jobs.length === PAGE ? (page.index + 1) * PAGE : null) : body.next ?? null;
    renderJobs();
  } catch (err) { toast("Could not load jobs: " + err.message); }
}

function shownJobs() {
  if (serverPaged()) return [...page.rows.values()].sort((a, b) => b.id - a.id);
  const f = filters();
  return [...state.jobs.values()].filter((j) => matches(j, f)).sort((a, b) => b.id - a.id).slice(0, PAGE);
}

// How many jobs the filters match, when the hub's counts tell it (not for customer or blocked).
function matchingTotal() {
  const s = state.stats;
  const f = filters();
  if (!s || f.customer || f.blocked) return null;
  const sum = (counts) => Object.values(counts || {}).reduce((a, b) => a + b, 0);
  if (f.service) {
    const counts = s.jobs.by_service[f.service] || {};
    return f.status ? counts[f.status] || 0 : sum(counts);
  }
  return f.status ? s.jobs.by_state[f.status] || 0 : sum(s.jobs.by_state);
}

// A finished job's bar is full (completed) or where it stopped; a running one shows its progress.
function progressOf(j) {
  if (j.state === "completed") return 100;
  return j.progress != null ? Math.max(0, Math.min(100, j.progress)) : 0;
}

function renderJobs() {
  const jobs = shownJobs();
  $("#jobs-empty").hidden = jobs.length > 0;
  $("#jobs tbody").innerHTML = jobs.map((j) => `<tr data-job-id="${j.id}" class="${j.id === state.selected ? "selected" : ""}">
      <td>${j.id}</td><td>${esc(j.service)}</td>
      <td class="status"><span class="badge ${esc(j.state)}">${esc(j.state)}</span></td>
      <td class="num">${j.priority ?? 0}</td><td>${esc(j.customer_id || "")}</td><td>${esc(j.worker || "")}</td>
      <td class="num">${j.attempts || 0}${j.max_attempts ? "/" + j.max_attempts : ""}</td>
      <td><div class="bar progress"><i data-w="${progressOf(j)}" data-bg="${COLORS[j.state] || COLORS.queued}"></i></div></td>
      <td class="num">${age(j.submitted_at)}</td></tr>`).join("");
  paint($("#jobs tbody"));
  const first = page.index * PAGE + 1;
  const total = matchingTotal();
  $("#jobs-count").textContent = !jobs.length ? ""
    : `${first}–${first + jobs.length - 1}${total != null ? ` of ${fmt(Math.max(total, first + jobs.length - 1))}` : ""}`;
  $("#page-newest").disabled = page.index === 0;
  $("#page-older").disabled = serverPaged() ? page.next == null : jobs.length < PAGE;
  renderBulk();
}

function older() {
  const jobs = shownJobs();
  if (!jobs.length) return;
  const cursor = serverPaged() ? page.next : jobs[jobs.length - 1].id;
  if (cursor == null) return;
  page.cursors[page.index] = cursor;
  page.index += 1;
  loadPage();
}

function newest() {
  page.index = 0;
  page.cursors = [];
  page.rows = new Map();
  page.next = null;
  if (filters().blocked) loadPage(); else { renderJobs(); loadJobs(); }
}

// ------------------------------------------------------------------ search by id

async function search(text) {
  const id = Number(text.trim().replace(/^#/, ""));
  if (!Number.isInteger(id) || id <= 0) return;
  try {
    await api(`/api/jobs/${id}`);
  } catch (err) {
    toast(err.status === 404 ? `No job ${id}.` : `Could not open job ${id}: ${err.message}`);
    return;
  }
  openDetail(id);
}

// ------------------------------------------------------------------ bulk actions

function bulkScope() {
  const f = filters();
  const body = {};
  if (f.status) body.state = f.status;
  if (f.service) body.service = f.service;
  if (f.customer) body.customer_id = f.customer;
  if (f.blocked) body.blocked = true;
  return body;
}

function renderBulk() {
  const shown = has("/api/jobs/bulk");
  $("#bulk").hidden = !shown;
  if (!shown) return;
  const f = filters();
  const why = !filtersActive() ? "Choose a status, a service, a customer or blocked first." : "";
  for (const button of [$("#bulk-retry"), $("#bulk-cancel")]) { button.disabled = Boolean(why); button.title = why; }
}

async function bulk(action) {
  const scope = bulkScope();
  const label = (k) => (k === "state" ? "status" : k.replace("_id", "")); // as the filters say it
  const words = Object.entries(scope).map(([k, v]) => (v === true ? k : `${label(k)} ${v}`)).join(", ");
  const total = matchingTotal();
  const what = action === "retry" ? "Retry the failed, cancelled or quarantined jobs" : "Cancel the unfinished jobs";
  const text = `${what} of this selection (${words})?${total != null ? ` ${fmt(total)} jobs match it.` : ""}`;
  if (!(await ask(text, action === "retry" ? "Retry them" : "Cancel them"))) return;
  try {
    const done = await api("/api/jobs/bulk", { method: "POST", body: JSON.stringify({ action, ...scope }) });
    const skipped = Array.isArray(done.skipped) ? done.skipped.length : done.skipped;
    $("#bulk-result").textContent = `${action === "retry" ? "Retried" : "Cancelled"} ${done.done} of `
      + `${done.matched} matching jobs${skipped ? ` (${skipped} skipped)` : ""}.`;
  } catch (err) { $("#bulk-result").textContent = `Could not ${action} them: ${err.message}`; }
  if (serverPaged()) loadPage(); else loadJobs();
}
