// jobq dashboard, the charts (uPlot, vendored and served by the hub): throughput, queue depth,
// wait and run time. They load the hub's history (GET /api/history?minutes=60) when the page
// opens, so a reload keeps them, and extend it every 10 s (?minutes=1, merged by bucket).
// A hub without /api/history: the charts show what the live stream brought since the page
// opened (one point a second). Each chart's element says how many points it has (data-points)
// and the sum of its values (data-sum).
"use strict";

const HISTORY_MINUTES = 60;
const POLL_MS = 10_000;
const LIVE_WINDOW = 120;   // points kept in live mode

const charts = {
  mode: "none",            // "history", "live", or "none" (no uPlot: the files are missing)
  bucket: 10,
  points: new Map(),       // t → history point
  live: [],                // live mode: samples from system_stats
  plots: {},
  timer: null,
};

const CHARTS = {
  throughput: {
    el: "#chart-throughput",
    series: [["submitted", COLORS.queued], ["completed", COLORS.completed], ["failed", COLORS.failed]],
    value: num,
  },
  depth: { el: "#chart-depth", series: [["queued", COLORS.scheduled]], value: num, joined: true, dots: true },
  latency: {
    el: "#chart-latency",
    series: [["wait p50", COLORS.scheduled], ["wait p95", COLORS.scheduled, true],
      ["run p50", COLORS.running], ["run p95", COLORS.running, true]],
    value: millis,
    dots: true,
  },
};

function chartsAvailable() {
  if (typeof uPlot !== "undefined") return true;
  for (const spec of Object.values(CHARTS)) {
    $(spec.el).innerHTML = '<p class="notice">The charts need uPlot, which this hub does not have: '
      + "run <code>make install</code> (tools/vendor_assets.py) and restart the hub.</p>";
  }
  return false;
}

async function startHistory() {
  if (charts.mode !== "none" || !chartsAvailable()) return;
  charts.mode = has("/api/history") ? "history" : "live";
  if (charts.mode === "history" && !(await loadHistory(HISTORY_MINUTES))) charts.mode = "live";
  $("#charts-note").textContent = charts.mode === "history"
    ? `last ${HISTORY_MINUTES} minutes, ${charts.bucket} s buckets`
    : "since this page opened (this hub keeps no history)";
  drawCharts();
  if (charts.mode === "history") {
    charts.timer = setInterval(async () => { if (await loadHistory(1)) drawCharts(); }, POLL_MS);
  }
}

// Merge the hub's buckets (a later answer for a bucket replaces an earlier, partial one).
async function loadHistory(minutes) {
  let body;
  try {
    body = await api(`/api/history?minutes=${minutes}`);
  } catch (err) {
    if (err.status === 404) return false;
    toast("Could not load the history: " + err.message);
    return minutes !== HISTORY_MINUTES;
  }
  charts.bucket = body.bucket || charts.bucket;
  for (const p of body.points || []) charts.points.set(p.t, p);
  const oldest = (body.until || Date.now() / 1000) - HISTORY_MINUTES * 60;
  for (const t of charts.points.keys()) if (t < oldest) charts.points.delete(t);
  return true;
}

// Live mode: one sample per system_stats (rates per second, latency in seconds).
function liveSample(s) {
  if (charts.mode !== "live") return;
  const by = (s.jobs && s.jobs.by_state) || {};
  const ms = (v) => (v == null ? null : v * 1000);
  charts.live.push({
    t: s.at || Date.now() / 1000,
    submitted: s.rates.submitted, completed: s.rates.completed, failed: s.rates.failed,
    depth: (by.queued || 0) + (by.scheduled || 0),
    wait_ms: { p50: ms(s.latency.queue_wait.p50), p95: ms(s.latency.queue_wait.p95) },
    run_ms: { p50: ms(s.latency.run_time.p50), p95: ms(s.latency.run_time.p95) },
  });
  if (charts.live.length > LIVE_WINDOW) charts.live.shift();
  drawCharts();
}

function chartData() {
  const points = charts.mode === "history"
    ? [...charts.points.values()].sort((a, b) => a.t - b.t) : charts.live;
  const col = (f) => points.map((p) => { const v = f(p); return v == null ? null : v; });
  const q = (key, pct) => col((p) => (p[key] ? p[key][pct] : null));
  return {
    throughput: [col((p) => p.t), col((p) => p.submitted), col((p) => p.completed), col((p) => p.failed)],
    depth: [col((p) => p.t), col((p) => p.depth)],
    latency: [col((p) => p.t), q("wait_ms", "p50"), q("wait_ms", "p95"), q("run_ms", "p50"), q("run_ms", "p95")],
  };
}

function plotOptions(spec, width) {
  return {
    width, height: 170,
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: "#6b7285", grid: { stroke: "#eef0f5" } },
      { stroke: "#6b7285", grid: { stroke: "#eef0f5" }, size: 66,
        values: (u, ticks) => ticks.map(spec.value) },
    ],
    // A gap (null) is a bucket with nothing to measure: lines break there, except the queue
    // depth, sampled now and then, whose samples are joined. Both draw each point as a dot, so a
// lone bucket shows (the throughput has no gaps: every bucket counts, zero or not).
    series: [{ value: (u, t) => clock(t) }, ...spec.series.map(([label, stroke, dash]) => ({
      label, stroke, width: dash ? 1.5 : 2, dash: dash ? [5, 4] : undefined, spanGaps: Boolean(spec.joined),
      points: spec.dots ? { show: true, size: 4, fill: stroke } : { show: false },
      value: (u, v) => spec.value(v),
    }))],
  };
}

function drawCharts() {
  if (charts.mode === "none") return;
  const data = chartData();
  for (const [name, spec] of Object.entries(CHARTS)) {
    const el = $(spec.el);
    el.dataset.points = String(data[name][0].length);
    el.dataset.sum = String(data[name].slice(1).flat().reduce((a, v) => a + (v || 0), 0));
    const plot = charts.plots[name];
    if (plot) { plot.setData(data[name]); continue; }
    el.textContent = "";
    charts.plots[name] = new uPlot(plotOptions(spec, el.clientWidth || 400), data[name], el);
  }
}

function resizeCharts() {
  for (const [name, plot] of Object.entries(charts.plots)) {
    plot.setSize({ width: $(CHARTS[name].el).clientWidth, height: 170 });
  }
}
