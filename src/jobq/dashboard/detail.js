// jobq dashboard, a job's panel: why it waits, its overview (dependencies, group), its timeline
// grouped by attempt (GET /api/jobs/{id}/events) with each failed attempt's error and traceback,
// its result and payload, cancel and retry. Then the Groups and Schedules cards (issue 13):
// shown only when the hub has their routes, hidden again if they answer 404.
"use strict";

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
    const view = { ...job, payload: undefined, result: undefined };
    if (state.jobs.has(id)) state.jobs.set(id, { ...state.jobs.get(id), ...view });
    if (page.rows.has(id)) page.rows.set(id, { ...page.rows.get(id), ...view });
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

// Progress as a person reads it: a finished job does not say "100.0 halfway".
function progressText(job) {
  if (job.progress == null || job.state === "completed") return null;
  const text = num(job.progress) + "%" + (job.progress_message ? " · " + job.progress_message : "");
  return ENDED.includes(job.state) ? "stopped at " + text : text;
}

const jobLink = (id) => `<button class="link-btn" type="button" data-open-job="${esc(id)}">#${esc(id)}</button>`;

function renderDetail(job, explain) {
  $("#d-title").textContent = `Job ${job.id} · ${job.service}`;
  const badge = $("#d-status");
  badge.textContent = job.state;
  badge.className = "badge " + job.state;
  $("#btn-cancel").disabled = ENDED.includes(job.state);
  $("#btn-retry").disabled = !["failed", "cancelled", "quarantined"].includes(job.state);
  const group = job.group ?? job.group_id;
  const rows = [
    ["priority", esc(job.priority ?? 0)], ["customer", esc(job.customer_id)], ["isolation", esc(job.isolation)],
    ["attempts", esc(`${job.attempts ?? 0} of ${job.max_attempts ?? 3}`)], ["worker", esc(job.worker)],
    ["after", (job.after || []).length ? job.after.map(jobLink).join(" ") : null],
    ["group", group != null ? `<button class="link-btn" type="button" data-open-group="${esc(group)}">${esc(group)}</button>` : null],
    ["submitted", clock(job.submitted_at)], ["runs at", job.run_at ? clock(job.run_at) : null],
    ["started", job.started_at ? clock(job.started_at) : null],
    ["finished", job.finished_at ? clock(job.finished_at) : null],
    ["progress", progressText(job) && esc(progressText(job))],
    ["timeout", job.timeout ? esc(job.timeout + " s") : null], ["error", job.error && esc(job.error)],
    ["requires", Object.keys(job.requires || {}).length ? esc(flatten(job.requires).map(([k, v]) => `${k}=${v}`).join(", ")) : null],
    ["idempotency key", job.idempotency_key && esc(job.idempotency_key)], ["content type", job.content_type && esc(job.content_type)],
  ].filter(([, v]) => v != null && v !== "");
  $("#d-overview").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("");
  const inel = Object.entries(explain.ineligible || {});
  $("#d-explain").innerHTML = `<b>${esc(explain.summary)}</b>`
    + (explain.position ? `<div class="muted">place in line: ${explain.position}`
      + (explain.estimated_start ? ` · expected to start ${clock(explain.estimated_start)}` : "") + "</div>" : "")
    + (explain.eligible && explain.eligible.length
      ? `<div class="muted">can run it: ${explain.eligible.map(esc).join(", ")}</div>` : "")
    + (inel.length ? `<ul>${inel.map(([w, why]) => `<li><b>${esc(w)}</b>: ${esc(why)}</li>`).join("")}</ul>` : "");
  renderTimeline(job);
  $("#d-result").textContent = job.state === "completed" ? show(job.result, job.result_encoding) : (job.error || "—");
  $("#d-payload").textContent = show(job.payload, job.payload_encoding);
  const failures = job.attempt_errors || [];
  $("#d-failures").hidden = !failures.length;
  $("#d-traceback").textContent = job.traceback || "— (none: a timeout, or a failure raised on purpose)";
}

// The events in groups: what happened before the first attempt (and between attempts), then
// each attempt with its worker, its events, and when it failed its error and traceback.
function timelineGroups(job) {
  const groups = [];
  const attempts = new Map();
  for (const e of state.detailEvents) {
    const n = e.attempt || 0;
    let group = n > 0 ? attempts.get(n) : null;
    if (!group) {
      const last = groups[groups.length - 1];
      if (n === 0 && last && last.attempt === 0) group = last;
      else {
        group = { attempt: n, events: [], worker: null, failure: null };
        groups.push(group);
        if (n > 0) attempts.set(n, group);
      }
    }
    group.events.push(e);
    group.worker = group.worker || e.worker || null;
  }
  for (const f of job.attempt_errors || []) {
    let group = attempts.get(f.attempt);
    if (!group) {
      group = { attempt: f.attempt, events: [], worker: f.worker || null, failure: null };
      attempts.set(f.attempt, group);
      groups.push(group);
    }
    group.failure = f;
  }
  return groups;
}

function outcomeOf(group, job) {
  if (group.failure) return "failed";
  const ends = group.events.filter((e) => ENDED.includes(e.state) || e.kind === "retry");
  if (ends.length) return ends[ends.length - 1].state;
  return group.attempt === job.attempts && !ENDED.includes(job.state) ? job.state : "";
}

function renderTimeline(job) {
  const groups = timelineGroups(job);
  $("#d-timeline").innerHTML = groups.map((g) => {
    const outcome = g.attempt ? outcomeOf(g, job) : "";
    const head = g.attempt
      ? `<b>Attempt ${g.attempt}</b>${g.worker ? ` · ${esc(g.worker)}` : ""}${outcome ? ` <span class="badge ${esc(outcome)}">${esc(outcome)}</span>` : ""}`
      : "<b>Queue</b>";
    const events = g.events.map((e) => `<li data-c="${COLORS[e.state] || "#4f46e5"}">
      <b>${esc(e.kind)}</b>${e.progress != null && e.kind === "progress" ? ` · ${esc(num(e.progress))}%` : ""}${e.message && e.kind === "progress" ? ` · ${esc(e.message)}` : ""}${e.error && e.error !== e.kind ? ` · ${esc(e.error)}` : ""}
      <span class="when">${clock(e.at)}</span></li>`).join("");
    const f = g.failure;
    const failure = f ? `<div class="attempt-error">${esc(f.error)} <span class="when">${clock(f.at)}</span></div>`
      + (f.traceback ? `<details class="attempt-tb"><summary>traceback</summary><pre class="code">${esc(f.traceback)}</pre></details>` : "") : "";
    return `<li class="attempt-group" data-attempt="${g.attempt}"><div class="attempt-head">${head}</div>
      ${events ? `<ol class="timeline">${events}</ol>` : ""}${failure}</li>`;
  }).join("") || "<li>—</li>";
  paint($("#d-timeline"));
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

function closeDetail() {
  $("#detail").hidden = true;
  state.selected = null;
  renderJobs();
}

// ------------------------------------------------------------------ groups and schedules

function startExtras() {
  $("#groups-card").hidden = !hasRoute("/api/groups/{}");
  $("#schedules-card").hidden = !has("/api/schedules");
  if (!$("#schedules-card").hidden) { loadSchedules(); setInterval(loadSchedules, 30_000); }
}

async function openGroup(text) {
  const id = String(text).trim();
  if (!id) return;
  $("#groups-card").hidden = false;
  $("#group-id").value = id;
  const view = $("#group-view");
  try {
    const [group, members] = await Promise.all([
      api(`/api/groups/${encodeURIComponent(id)}`),
      api(`/api/groups/${encodeURIComponent(id)}/members`).catch(() => null),
    ]);
    view.innerHTML = renderGroup(group, members);
    paint(view);
  } catch (err) {
    if (err.status === 404 && state.routes && !hasRoute("/api/groups/{}")) { $("#groups-card").hidden = true; return; }
    view.innerHTML = `<p class="notice">${esc(err.status === 404 ? `No group ${id}.` : err.message)}</p>`;
  }
  $("#groups-card").scrollIntoView({ block: "nearest" });
}

function renderGroup(g, members) {
  const counts = Object.entries(g.counts || {}).filter(([, n]) => n);
  const list = Array.isArray(members) ? members : (members && (members.members || members.jobs)) || [];
  const jobs = list.map((m) => (typeof m === "object" ? m : { id: m }));
  const pct = g.progress != null ? Math.max(0, Math.min(100, g.progress)) : null; // percent of members ended
  // The finalize job's id once submitted (a link), else the policy.
  const finalize = typeof g.finalize === "number" ? `finalize ${jobLink(g.finalize)}`
    : g.policy ? `finalize ${esc(g.policy)}` : null;
  return `<div class="group-head"><b>Group ${esc(g.id)}</b> <span class="badge ${esc(g.state)}">${esc(g.state)}</span>
      <span class="muted">${fmt(g.total)} jobs${pct != null ? ` · ${num(pct)}% done` : ""}${finalize ? ` · ${finalize}` : ""}${g.reason ? ` · ${esc(g.reason)}` : ""}</span></div>
    ${pct != null ? `<div class="bar"><i data-w="${pct}" data-bg="${COLORS.completed}"></i></div>` : ""}
    <div class="counts">${counts.map(([st, n]) => `<span><i class="dot" data-bg="${COLORS[st] || COLORS.queued}"></i>${esc(st)} ${fmt(n)}</span>`).join("")}</div>
    ${jobs.length ? `<table class="table compact"><thead><tr><th>#</th><th>Status</th><th>Service</th><th>Worker</th></tr></thead><tbody>
      ${jobs.map((j) => `<tr data-job-id="${esc(j.id)}"><td>${jobLink(j.id)}</td>
        <td>${j.state ? `<span class="badge ${esc(j.state)}">${esc(j.state)}</span>` : ""}</td>
        <td>${esc(j.service || "")}</td><td>${esc(j.worker || "")}</td></tr>`).join("")}</tbody></table>` : ""}`;
}

async function loadSchedules() {
  let list;
  try {
    list = await api("/api/schedules");
  } catch (err) {
    if (err.status === 404) $("#schedules-card").hidden = true;
    return;
  }
  const items = Array.isArray(list) ? list : list.schedules || [];
  $("#schedules-empty").hidden = items.length > 0;
  $("#schedules tbody").innerHTML = items.map((s) => `<tr data-schedule="${esc(s.name)}">
    <td>${esc(s.name)}</td><td><code>${esc(s.cron)}</code></td><td>${esc(s.timezone || "UTC")}</td><td>${esc(s.service || "")}</td>
    <td>${s.paused ? '<span class="badge drained">paused</span>' : '<span class="badge completed">active</span>'}</td>
    <td>${s.next ? `${esc(new Date(s.next * 1000).toLocaleString())}` : "–"}</td></tr>`).join("");
}
