// jobq dashboard, the wiring: events of the page's controls, the timers, and the start.
"use strict";

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("#login-token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login").hidden = true;
  start();
});

$("#jobs tbody").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-job-id]");
  if (row) openDetail(Number(row.dataset.jobId));
});
$("#workers").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-act]");
  const card = button && button.closest("[data-worker-id]");
  if (card) workerAct(card.dataset.workerId, button.dataset.act);
});
$("#services").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-svc-act]");
  const card = button && button.closest("[data-service]");
  if (card) serviceAct(card.dataset.service, button.dataset.svcAct);
});
// Links to a job or a group, in the job panel and the groups card.
document.addEventListener("click", (e) => {
  const job = e.target.closest("[data-open-job]");
  if (job) { e.preventDefault(); openDetail(Number(job.dataset.openJob)); return; }
  const group = e.target.closest("[data-open-group]");
  if (group) { e.preventDefault(); openGroup(group.dataset.openGroup); }
});
$("#group-view").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-job-id]");
  if (row && !e.target.closest("[data-open-job]")) openDetail(Number(row.dataset.jobId));
});
$("#group-form").addEventListener("submit", (e) => { e.preventDefault(); openGroup($("#group-id").value); });

$("#btn-close").addEventListener("click", closeDetail);
$("#btn-cancel").addEventListener("click", () => act("cancel"));
$("#btn-retry").addEventListener("click", () => act("retry"));

const refilter = () => { $("#bulk-result").textContent = ""; newest(); };
for (const id of ["#f-status", "#f-service", "#f-blocked"]) $(id).addEventListener("change", refilter);
let typing = null;
$("#f-customer").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 300); });
$("#f-clear").addEventListener("click", () => {
  $("#f-status").value = ""; $("#f-service").value = ""; $("#f-customer").value = ""; $("#f-blocked").checked = false;
  refilter();
});
$("#page-older").addEventListener("click", older);
$("#page-newest").addEventListener("click", newest);
$("#bulk-retry").addEventListener("click", () => bulk("retry"));
$("#bulk-cancel").addEventListener("click", () => bulk("cancel"));

// Search: Enter opens the job at once; typing an id opens it after a short pause.
let searching = null;
$("#search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(searching); search($("#search").value); });
$("#search").addEventListener("input", () => {
  clearTimeout(searching);
  const text = $("#search").value;
  if (/^#?\d+$/.test(text.trim())) searching = setTimeout(() => search(text), 600);
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("#confirm").open) closeDetail();
  if (e.key === "/" && document.activeElement === document.body) { e.preventDefault(); $("#search").focus(); }
});
window.addEventListener("resize", resizeCharts);
setInterval(() => { renderJobs(); renderWorkers(); }, 5000); // ages move on
setInterval(() => { // once this tab may look: an older or blocked page refreshed, services paused or not
  if (!state.started) return;
  if (serverPaged()) loadPage();
  loadServices();
}, 5000);
start();
