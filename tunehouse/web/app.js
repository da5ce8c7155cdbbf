// The tunehouse dashboard: plain ES module, no build step. It talks to the same /v1 API as the SDK,
// with the key entered once in this browser (sent as Bearer), so it shows only that project's objects.

const view = document.getElementById("view");
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
let pageTimers = [];       // polling timers of the current page, cleared on navigation
let pageAborts = [];       // streams of the current page, aborted on navigation

// --- API -------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.param = error.param;
    this.code = error.code;
  }
}

function authHeaders() {
  const key = localStorage.getItem("tunehouse.key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, { method = "GET", body, form, signal } = {}) {
  const headers = authHeaders();
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const response = await fetch(`/v1${path}`, { method, headers, body: payload, signal });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return data;
}

// A job's events, newest first: all of them, or with `known` (a Map by id) only back to the first one already
// seen, so a refresh gets every event since the last one however many a fast job wrote in between.
async function allEvents(jobId, known = null) {
  const events = [];
  let after = null;
  for (let page = 0; page < 50; page++) {
    const limit = known ? 200 : 1000;  // a refresh usually needs only its first, small page
    const data = await api(`/fine_tuning/jobs/${jobId}/events?limit=${limit}${after ? `&after=${after}` : ""}`);
    events.push(...data.data);
    if (!data.has_more || (known && data.data.some((event) => known.has(event.id)))) break;
    after = data.data[data.data.length - 1].id;
  }
  return events;
}

// --- DOM helpers -----------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const svg = (tag, attrs = {}) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
};

function every(ms, fn) {
  fn();
  const timer = setInterval(fn, ms);
  pageTimers.push(timer);
  return timer;
}

function badge(status) { return h("span", { class: `badge ${status}`, "data-status": status }, status.replace("_", " ")); }

function alertBox(kind, title, text) { return h("div", { class: `alert ${kind}`, role: "alert" }, h("strong", {}, title), text || ""); }

// --- formatting ------------------------------------------------------------------------------------------

function ago(seconds) {
  const delta = Date.now() / 1000 - seconds;
  if (delta < 60) return "just now";
  if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
  if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function jobDuration(job) {
  const end = job.finished_at || (TERMINAL.has(job.status) ? null : Date.now() / 1000);
  return end ? duration(end - job.created_at) : "–";
}

const number = (value, digits = 0) => value === null || value === undefined ? "–"
  : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
const bytes = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`;
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// --- chart -----------------------------------------------------------------------------------------------

// A line chart in SVG: series = [{name, color, points: [[x, y], ...], dots}]. Hovering shows the values at
// the nearest step.
function lineChart(series, { yLabel = "", percent = false } = {}) {
  const box = h("div", { class: "chart" });
  const withData = series.filter((s) => s.points.length);
  box.append(h("div", { class: "legend" }, series.map((s) => h("span", { style: `--c:${s.color}` }, s.name))));
  if (!withData.length) {
    box.append(h("div", { class: "empty" }, "Points appear here as the job trains"));
    return box;
  }
  const W = 560, H = 240, L = 46, R = 12, T = 10, B = 28;
  const xs = withData.flatMap((s) => s.points.map((p) => p[0]));
  const ys = withData.flatMap((s) => s.points.map((p) => p[1]));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (percent) { y0 = Math.max(0, y0 - 0.05); y1 = Math.min(1, y1 + 0.05); }
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 1;
  y0 = percent ? y0 : Math.max(0, y0 - pad); y1 += percent ? 0 : pad;
  if (y0 === y1) y1 = y0 + 1;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": yLabel });
  const axis = svg("g", { class: "axis" });
  for (const tick of ticks(y0, y1, 5)) {
    axis.append(svg("line", { class: "grid-line", x1: L, x2: W - R, y1: sy(tick), y2: sy(tick) }));
    const label = svg("text", { x: L - 8, y: sy(tick) + 4, "text-anchor": "end" });
    label.textContent = percent ? `${Math.round(tick * 100)}%` : +tick.toFixed(3);
    axis.append(label);
  }
  for (const tick of ticks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
    const label = svg("text", { x: sx(tick), y: H - 8, "text-anchor": "middle" });
    label.textContent = tick;
    axis.append(label);
  }
  chart.append(axis);
  for (const s of withData) {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    chart.append(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": s.thin ? 1 : s.dots ? 1.5 : 2, "stroke-linejoin": "round",
      "vector-effect": "non-scaling-stroke", "data-series": s.name, "data-points": points.length }));
    if (s.dots || points.length === 1) {
      for (const p of points) chart.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3.5, fill: s.color }));
    }
  }
  const cursor = svg("line", { y1: T, y2: H - B, stroke: "#9aa0b8", "stroke-dasharray": "3 3", visibility: "hidden" });
  chart.append(cursor);
  const tip = h("div", { class: "tip", hidden: true });
  chart.addEventListener("mousemove", (event) => {
    const rect = chart.getBoundingClientRect();
    const x = x0 + ((event.clientX - rect.left) / rect.width * W - L) / (W - L - R) * (x1 - x0);
    const lines = [];
    let shownX = null;
    for (const s of withData) {
      const nearest = s.points.reduce((best, p) => Math.abs(p[0] - x) < Math.abs(best[0] - x) ? p : best);
      shownX = shownX ?? nearest[0];
      lines.push(`${s.name}: ${percent ? (nearest[1] * 100).toFixed(1) + "%" : nearest[1].toFixed(4)} (step ${nearest[0]})`);
    }
    cursor.setAttribute("x1", sx(shownX)); cursor.setAttribute("x2", sx(shownX)); cursor.setAttribute("visibility", "visible");
    tip.textContent = lines.join("  ·  ");
    tip.style.left = `${(sx(shownX) / W) * rect.width}px`;
    tip.style.top = "24px";
    tip.hidden = false;
  });
  chart.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); });
  box.append(chart, tip);
  return box;
}

// An exponential moving average, as loss curves are usually read (a batch's loss alone is noisy).
function smooth(points) {
  const weight = Math.min(0.97, Math.max(0.6, 1 - 10 / points.length));  // longer runs, smoother curves
  const sorted = [...points].sort((a, b) => a[0] - b[0]);
  let value = null;
  return sorted.map(([x, y]) => [x, value = value === null ? y : value * weight + y * (1 - weight)]);
}

function ticks(lo, hi, count) {
  const step = niceStep((hi - lo) / count);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toFixed(10));
  return out;
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

// --- key -------------------------------------------------------------------------------------------------

const keyDialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");

function showKeyState() {
  const key = localStorage.getItem("tunehouse.key");
  document.getElementById("key-button").textContent = key ? `Key …${key.slice(-4)}` : "API key";
}

function askForKey(reason) {
  if (keyDialog.open) return;
  document.getElementById("key-reason").textContent = reason
    ? `${reason} Enter a key of your project; it is kept in this browser only.`
    : "The key is kept in this browser only and sent as a Bearer token. Leave it empty for a server in open local mode.";
  keyInput.value = localStorage.getItem("tunehouse.key") || "";
  keyDialog.showModal();
}

document.getElementById("key-button").addEventListener("click", () => askForKey());
keyDialog.addEventListener("close", () => {
  if (keyDialog.returnValue !== "save") return;
  const key = keyInput.value.trim();
  key ? localStorage.setItem("tunehouse.key", key) : localStorage.removeItem("tunehouse.key");
  showKeyState();
  route();
});

// --- pages: jobs -----------------------------------------------------------------------------------------

async function jobsPage() {
  const table = h("tbody");
  const card = h("div", { class: "card flush" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Status", "Job", "Base model", "Fine-tuned model", "Created", "Duration"].map((t) => h("th", {}, t)))),
    table));
  const empty = h("div", { class: "card empty-state", hidden: true },
    h("h2", {}, "No fine-tuning jobs yet"),
    h("p", {}, "Drop a JSONL dataset on the Files page, then start a job on it."),
    h("div", { class: "row", style: "justify-content:center" },
      h("a", { class: "button", href: "#/files" }, "Upload a dataset"), h("a", { class: "button primary", href: "#/new" }, "New job")));
  view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Fine-tuning jobs"), h("span", { class: "spacer" }),
      h("a", { class: "button primary", href: "#/new" }, "+ New job")),
    card, empty);
  every(3000, async () => {
    const jobs = (await api("/fine_tuning/jobs?limit=100")).data;
    empty.hidden = jobs.length > 0;
    card.hidden = jobs.length === 0;
    table.replaceChildren(...jobs.map((job) => h("tr", { class: "link", "data-job": job.id, onclick: () => { location.hash = `#/jobs/${job.id}`; } },
      h("td", {}, badge(job.status)),
      h("td", {}, h("div", { class: "mono" }, job.id), job.user_provided_suffix ? h("div", { class: "muted small" }, job.user_provided_suffix) : null),
      h("td", {}, job.model),
      h("td", {}, job.fine_tuned_model ? h("span", { class: "mono truncate", title: job.fine_tuned_model }, job.fine_tuned_model) : h("span", { class: "muted" }, "–")),
      h("td", { title: new Date(job.created_at * 1000).toLocaleString() }, ago(job.created_at)),
      h("td", {}, jobDuration(job)))));
  });
}

async function jobPage(jobId) {
  const events = new Map();          // id -> event (newest pages merged in as they come)
  let arrival = 0;                   // events carry no sequence number: remember the API's order
  const merge = (newestFirst) => [...newestFirst].reverse().forEach((e) => {
    if (!events.has(e.id)) events.set(e.id, { ...e, order: arrival++ });
  });
  let job = await api(`/fine_tuning/jobs/${jobId}`);
  let checkpoints = [];

  const head = h("div", { class: "page-head" });
  const errorSlot = h("div");
  const progress = h("div", { class: "card", id: "progress" });
  const statsGrid = h("div", { class: "grid stats", style: "margin-top:16px" });
  const lossChart = h("div", { id: "loss-chart" });
  const accuracyChart = h("div", { id: "accuracy-chart" });
  const charts = h("div", { class: "grid two", style: "margin-top:16px" },
    h("div", { class: "card" }, h("h2", {}, "Loss"), lossChart),
    h("div", { class: "card" }, h("h2", {}, "Token accuracy"), accuracyChart));
  const checkpointBody = h("tbody");
  const checkpointCard = h("div", { class: "card flush" }, h("div", { style: "padding:16px 20px 4px" }, h("h2", {}, "Checkpoints")),
    h("table", {}, h("thead", {}, h("tr", {}, ["Step", "Train loss", "Validation loss", "Token accuracy", "Model", ""].map((t) => h("th", {}, t)))), checkpointBody));
  const eventList = h("div", { class: "events", id: "events" });
  const eventCard = h("div", { class: "card flush" }, h("div", { style: "padding:16px 20px 4px" }, h("h2", {}, "Events")), eventList);
  view.replaceChildren(head, errorSlot, progress, statsGrid, charts, checkpointCard, eventCard);

  const act = async (what) => {
    try { job = await api(`/fine_tuning/jobs/${jobId}/${what}`, { method: "POST" }); render(); }
    catch (error) { errorSlot.replaceChildren(alertBox("error", `Could not ${what} the job`, error.message)); }
  };

  function latestMetrics() {
    let latest = null;
    for (const event of events.values()) {
      if (event.type === "metrics" && event.data && "train_loss" in event.data && event.data.tokens_per_second !== undefined) {
        if (!latest || event.data.step >= latest.step) latest = event.data;
      }
    }
    return latest;
  }

  function render() {
    const title = job.fine_tuned_model || job.user_provided_suffix || job.id;
    head.replaceChildren(...[
      h("div", {}, h("div", { class: "row" }, h("h1", { class: "mono", style: "font-size:19px" }, title), badge(job.status)),
        h("div", { class: "muted small", style: "margin-top:4px" }, `${job.id} · ${job.model} · created ${ago(job.created_at)}`)),
      h("span", { class: "spacer" }),
      h("div", { class: "row" },
        job.status === "succeeded" ? h("a", { class: "button", href: `#/playground?right=${encodeURIComponent(job.fine_tuned_model)}&left=${encodeURIComponent(job.model)}` }, "Compare in playground") : null,
        h("button", { id: "pause", disabled: !["running", "queued", "validating_files"].includes(job.status), onclick: () => act("pause") }, "Pause"),
        h("button", { id: "resume", disabled: job.status !== "paused", onclick: () => act("resume") }, "Resume"),
        h("button", { id: "cancel", class: "danger", disabled: TERMINAL.has(job.status), onclick: () => act("cancel") }, "Cancel")),
    ].filter(Boolean));
    if (job.error && job.status === "failed") {
      errorSlot.replaceChildren(alertBox("error", `Failed${job.error.code ? ` (${job.error.code})` : ""}`, job.error.message));
    }

    const metrics = latestMetrics();
    const done = job.status === "succeeded";
    const step = metrics ? metrics.step : 0;
    const total = metrics ? metrics.total_steps : null;
    const fraction = done ? 1 : total ? step / total : 0;
    const eta = job.estimated_finish && !TERMINAL.has(job.status) ? job.estimated_finish - Date.now() / 1000 : null;
    progress.replaceChildren(
      h("div", { class: "row", style: "justify-content:space-between;margin-bottom:10px" },
        h("strong", {}, done ? "Training complete" : job.status === "running" ? "Training" : job.status === "paused" ? "Paused" : TERMINAL.has(job.status) ? `Job ${job.status}` : "Waiting to train"),
        h("span", { class: "muted", id: "step" }, total ? `step ${step} of ${total}` : "")),
      h("div", { class: "progress" }, h("div", { style: `width:${(fraction * 100).toFixed(1)}%` })),
      h("div", { class: "progress-meta" },
        h("span", {}, `${Math.round(fraction * 100)}%`),
        h("span", {}, metrics ? `${number(metrics.tokens_per_second)} tokens/s` : ""),
        h("span", {}, eta !== null ? `about ${duration(eta)} left` : done ? `took ${jobDuration(job)}` : "")));

    const hp = job.hyperparameters || {};
    const hpValue = (value) => value === "auto" || value === undefined ? h("span", {}, "auto", h("span", { class: "auto" }, "resolved at start")) : String(value);
    const stat = (label, value, small) => h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: `value${small ? " small" : ""}` }, value));
    statsGrid.replaceChildren(
      stat("Trained tokens", job.trained_tokens ? number(job.trained_tokens) : metrics ? "training…" : "–"),
      stat("Tokens / second", metrics ? number(metrics.tokens_per_second) : "–"),
      stat("Epochs", hpValue(hp.n_epochs)),
      stat("Batch size", hpValue(hp.batch_size)),
      stat("Learning rate multiplier", hpValue(hp.learning_rate_multiplier)),
      stat("Method", hp.training === "full" ? "full fine-tuning" : "LoRA"),
      stat("Training file", h("a", { href: `#/files/${job.training_file}`, class: "mono" }, job.training_file), true),
      stat("Validation file", job.validation_file ? h("a", { href: `#/files/${job.validation_file}`, class: "mono" }, job.validation_file) : "none", true),
      stat("Seed", String(job.seed)),
      stat("Duration", jobDuration(job)));

    const train = [], trainAccuracy = [], valid = [], validAccuracy = [];
    const byStep = new Map();
    for (const event of events.values()) {
      if (event.type !== "metrics" || !event.data) continue;
      const key = `${event.data.step}:${"valid_loss" in event.data ? "v" : "t"}`;
      const seen = byStep.get(key);
      if (!seen || seen.order <= event.order) byStep.set(key, event);
    }
    for (const { data } of byStep.values()) {
      if ("train_loss" in data && data.tokens_per_second !== undefined) {
        train.push([data.step, data.train_loss]);
        trainAccuracy.push([data.step, data.train_mean_token_accuracy]);
      }
      if ("valid_loss" in data) {
        valid.push([data.step, data.valid_loss]);
        validAccuracy.push([data.step, data.valid_mean_token_accuracy]);
      }
    }
    lossChart.replaceChildren(lineChart([
      { name: "training loss (raw)", color: "#c7c9f7", points: train, thin: true },
      { name: "training loss (smoothed)", color: "var(--train)", points: smooth(train) },
      { name: "validation loss", color: "var(--valid)", points: valid, dots: true }], { yLabel: "loss" }));
    accuracyChart.replaceChildren(lineChart([
      { name: "training (raw)", color: "#c7c9f7", points: trainAccuracy, thin: true },
      { name: "training (smoothed)", color: "var(--train)", points: smooth(trainAccuracy) },
      { name: "validation", color: "var(--valid)", points: validAccuracy, dots: true }], { yLabel: "token accuracy", percent: true }));

    checkpointBody.replaceChildren(...(checkpoints.length ? checkpoints.map((c) => h("tr", {},
      h("td", {}, c.step_number),
      h("td", {}, number(c.metrics.train_loss, 4)),
      h("td", {}, number(c.metrics.valid_loss ?? c.metrics.full_valid_loss, 4)),
      h("td", {}, c.metrics.full_valid_mean_token_accuracy != null ? `${(c.metrics.full_valid_mean_token_accuracy * 100).toFixed(1)}%`
        : c.metrics.train_mean_token_accuracy != null ? `${(c.metrics.train_mean_token_accuracy * 100).toFixed(1)}% (train)` : "–"),
      h("td", {}, h("span", { class: "mono truncate", title: c.fine_tuned_model_checkpoint }, c.fine_tuned_model_checkpoint)),
      h("td", {}, h("a", { href: `#/playground?right=${encodeURIComponent(c.fine_tuned_model_checkpoint)}&left=${encodeURIComponent(job.model)}` }, "Try"))))
      : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "A checkpoint is saved at the end of each epoch."))]));

    const ordered = [...events.values()].sort((a, b) => b.order - a.order);
    const shown = ordered.filter((e) => e.type !== "metrics" || "valid_loss" in (e.data || {})).slice(0, 200);
    eventList.replaceChildren(...shown.map((e) => h("div", { class: `event ${e.level} ${e.type}` },
      h("time", {}, clock(e.created_at)), h("span", {}, e.message))));
  }

  render();
  merge(await allEvents(jobId));
  render();
  let finalRefreshes = 1;
  every(1500, async () => {
    if (TERMINAL.has(job.status) && finalRefreshes-- <= 0) return;
    const [fresh, newest, ckpts] = await Promise.all([
      api(`/fine_tuning/jobs/${jobId}`),
      allEvents(jobId, events),
      api(`/fine_tuning/jobs/${jobId}/checkpoints?limit=100`)]);
    job = fresh;
    merge(newest);
    checkpoints = ckpts.data;
    render();
  });
}

// --- pages: files ----------------------------------------------------------------------------------------

async function filesPage(selectedId) {
  const input = h("input", { type: "file", accept: ".jsonl,.json,.txt", hidden: true, id: "file-input" });
  const status = h("div", { id: "upload-status" });
  const drop = h("div", { class: "dropzone", id: "dropzone", onclick: () => input.click() },
    h("strong", {}, "Drop a JSONL dataset here"),
    h("span", { class: "muted" }, "or click to choose one · chat messages or prompt/completion pairs, one example per line"));
  const list = h("tbody");
  const report = h("div", { id: "report" });
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Files")), drop, input, status,
    h("div", { class: "card flush", style: "margin-top:16px" }, h("table", {},
      h("thead", {}, h("tr", {}, ["File", "Size", "Purpose", "Created", ""].map((t) => h("th", {}, t)))), list)),
    report);

  const upload = async (file) => {
    status.replaceChildren(alertBox("warn", `Uploading ${file.name}…`, bytes(file.size)));
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", file, file.name);
    try {
      const created = await api("/files", { method: "POST", form });
      status.replaceChildren();
      location.hash = `#/files/${created.id}`;
    } catch (error) {
      status.replaceChildren(alertBox("error", `${file.name} was not uploaded`, error.message));
    }
  };
  input.addEventListener("change", () => input.files[0] && upload(input.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) upload(event.dataTransfer.files[0]);
  });

  const files = (await api("/files?purpose=fine-tune&order=desc")).data;
  list.replaceChildren(...(files.length ? files.map((f) => h("tr", { class: `link${f.id === selectedId ? " selected" : ""}`, "data-file": f.id, onclick: () => { location.hash = `#/files/${f.id}`; } },
    h("td", {}, h("div", {}, f.filename), h("div", { class: "mono muted small" }, f.id)),
    h("td", {}, bytes(f.bytes)), h("td", {}, f.purpose), h("td", {}, ago(f.created_at)),
    h("td", { style: "text-align:right" }, h("button", { class: "ghost danger", onclick: async (event) => {
      event.stopPropagation();
      if (!confirm(`Delete ${f.filename}?`)) return;
      await api(`/files/${f.id}`, { method: "DELETE" });
      if (location.hash === "#/files") route();
      else location.hash = "#/files";  // the hashchange renders the page once
    } }, "Delete"))))
    : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No datasets uploaded yet."))]));
  if (selectedId) await fileReport(selectedId, report);
}

async function fileReport(fileId, slot) {
  slot.replaceChildren(h("div", { class: "card muted", style: "margin-top:16px" }, "Checking the file as a job would…"));
  let data;
  try { data = await api(`/files/${fileId}/report?preview=3`); }
  catch (error) { slot.replaceChildren(alertBox("error", "Could not check the file", error.message)); return; }
  const parts = [];
  if (data.valid) {
    parts.push(alertBox("ok", "Ready to fine-tune", data.summary));
  } else {
    parts.push(alertBox("error", `${number(data.problem_count)} problem${data.problem_count === 1 ? "" : "s"} found`, data.summary));
    parts.push(h("div", { class: "card flush" }, h("table", { class: "problems", id: "problems" },
      h("thead", {}, h("tr", {}, ["Line", "Problem", "What is wrong"].map((t) => h("th", {}, t)))),
      h("tbody", {}, data.problems.map((p) => h("tr", {}, h("td", {}, `line ${p.line}`), h("td", {}, h("code", {}, p.code)), h("td", {}, p.message)))))));
  }
  for (const warning of data.warnings) parts.push(alertBox("warn", "Warning", warning));
  if (data.stats) {
    const s = data.stats;
    const stat = (label, value) => h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
    parts.push(h("div", { class: "card" }, h("h2", {}, `Statistics with ${data.model}'s tokenizer`), h("div", { class: "grid stats", id: "stats" },
      stat("Format", s.format), stat("Examples", number(s.examples)),
      stat("Tokens per example", `${s.tokens_min} / ${number(s.tokens_mean)} / ${s.tokens_max}`),
      stat("Tokens learned per epoch", number(s.loss_tokens)),
      stat(`Over the context (${s.context_length})`, number(s.examples_over_context)),
      stat("Epochs (auto)", s.n_epochs), stat("Billable tokens", number(s.billable_tokens)),
      stat("Estimated time on CPU", duration(s.estimated_seconds))),
      h("div", { class: "row", style: "margin-top:16px" }, h("a", { class: "button primary", href: `#/new?training_file=${data.file_id}` }, "Fine-tune on this file"))));
  }
  if (data.preview.length) {
    parts.push(h("div", { class: "card" }, h("h2", {}, "Preview: what training sees"),
      h("p", { class: "muted small" }, "Highlighted text carries the loss: it is what the model learns to write."),
      data.preview.map((example) => h("div", {}, h("div", { class: "muted small", style: "margin-top:12px" }, `line ${example.line} · ${example.tokens} tokens, ${example.learned_tokens} learned`),
        h("div", { class: "preview" }, example.pieces.map((p) => p.learned ? h("mark", {}, p.text) : p.text))))));
  } else if (data.first_lines.length) {
    parts.push(h("div", { class: "card" }, h("h2", {}, "First lines"), h("pre", { class: "lines" }, data.first_lines.map((line, i) => `${i + 1}  ${line}\n`).join(""))));
  }
  slot.replaceChildren(h("div", { style: "margin-top:16px" }, ...parts));
}

// --- pages: new job --------------------------------------------------------------------------------------

async function newJobPage(params) {
  const [files, models] = await Promise.all([api("/files?purpose=fine-tune&order=desc"), api("/models")]);
  const bases = models.data.filter((m) => !m.parent && !m.alias_for);
  const aliases = models.data.filter((m) => m.alias_for);
  const fileOption = (f) => h("option", { value: f.id }, `${f.filename} · ${f.id}`);
  const training = h("select", { name: "training_file", id: "training_file", required: true },
    files.data.length ? null : h("option", { value: "" }, "Upload a dataset first"), files.data.map(fileOption));
  if (params.get("training_file")) training.value = params.get("training_file");
  const validation = h("select", { name: "validation_file" }, h("option", { value: "" }, "none"), files.data.map(fileOption));
  const model = h("select", { name: "model", id: "model" },
    h("optgroup", { label: "Base models" }, bases.map((m) => h("option", { value: m.id }, m.id))),
    aliases.length ? h("optgroup", { label: "OpenAI names (aliases)" }, aliases.map((m) => h("option", { value: m.id }, `${m.id} → ${m.alias_for}`))) : null);
  const auto = (name, placeholder, attrs = {}) => h("input", { name, placeholder, inputmode: "decimal", ...attrs });
  const fields = {
    n_epochs: auto("n_epochs", "auto", { type: "number", min: 1, max: 50, step: 1 }),
    batch_size: auto("batch_size", "auto", { type: "number", min: 1, max: 256, step: 1 }),
    learning_rate_multiplier: auto("learning_rate_multiplier", "auto", { type: "number", min: 0, step: "any" }),
  };
  const method = h("select", { name: "training" }, h("option", { value: "lora" }, "LoRA (fast, small files)"), h("option", { value: "full" }, "Full fine-tuning"));
  const suffix = h("input", { name: "suffix", placeholder: "optional, e.g. support-bot", maxlength: 64 });
  const seed = h("input", { name: "seed", type: "number", placeholder: "random" });
  const errors = h("div");
  const submit = h("button", { class: "primary", type: "submit", id: "start" }, "Start fine-tuning");
  const field = (label, control, hint) => h("label", { class: "field" }, label, control, hint ? h("span", { class: "hint" }, hint) : null);
  const form = h("form", { class: "stack card", id: "new-job" },
    h("div", { class: "fields" }, field("Training file", training), field("Validation file", validation, "optional: a held-out loss each epoch"), field("Base model", model)),
    h("h3", {}, "Hyperparameters"),
    h("div", { class: "fields" },
      field("Epochs", fields.n_epochs, "auto: picked from the dataset size"),
      field("Batch size", fields.batch_size, "auto: about 1/16 of the examples, 1–8"),
      field("Learning rate multiplier", fields.learning_rate_multiplier, "auto: 1.0"),
      field("Method", method)),
    h("div", { class: "fields" }, field("Suffix", suffix, "part of the fine-tuned model's name"), field("Seed", seed, "same seed, same result")),
    errors,
    h("div", { class: "row end" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".invalid").forEach((node) => node.classList.remove("invalid"));
    const hyperparameters = { training: method.value };
    for (const [name, input] of Object.entries(fields)) if (input.value !== "") hyperparameters[name] = Number(input.value);
    const body = { training_file: training.value, model: model.value, hyperparameters };
    if (validation.value) body.validation_file = validation.value;
    if (suffix.value) body.suffix = suffix.value;
    if (seed.value !== "") body.seed = Number(seed.value);
    submit.disabled = true;
    try {
      const job = await api("/fine_tuning/jobs", { method: "POST", body });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      const name = (error.param || "").split(".").pop();
      form.querySelector(`[name="${name}"]`)?.classList.add("invalid");
      errors.replaceChildren(alertBox("error", "The job was not created", error.message));
      submit.disabled = false;
    }
  });
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "New fine-tuning job")), form);
}

// --- pages: playground -----------------------------------------------------------------------------------

async function playgroundPage(params) {
  const models = (await api("/models")).data;
  const jobs = (await api("/fine_tuning/jobs?limit=100")).data;
  const latest = jobs.find((j) => j.status === "succeeded");
  const choose = (id, preferred) => {
    const select = h("select", { id }, models.map((m) => h("option", { value: m.id }, m.id)));
    select.value = preferred && models.some((m) => m.id === preferred) ? preferred : models[0]?.id;
    return select;
  };
  const left = choose("left-model", params.get("left") || (latest ? latest.model : "smollm2-135m-instruct"));
  const right = choose("right-model", params.get("right") || (latest ? latest.fine_tuned_model : models[0]?.id));
  const system = h("input", { id: "system", placeholder: "System message (optional)" });
  const prompt = h("textarea", { id: "prompt", placeholder: "Ask both models the same thing…" });
  const temperature = h("input", { type: "number", min: 0, max: 2, step: 0.1, value: 0, id: "temperature" });
  const maxTokens = h("input", { type: "number", min: 1, max: 2048, value: 128, id: "max-tokens" });
  const send = h("button", { class: "primary", type: "submit", id: "send" }, "Send to both");
  const column = (select, id) => {
    const text = h("div", { class: "text", id: `${id}-answer` });
    const meta = h("div", { class: "meta", id: `${id}-meta` });
    return { select, text, meta, card: h("div", { class: "card answer" }, select, text, meta) };
  };
  const columns = [column(left, "left"), column(right, "right")];
  const form = h("form", { class: "card stack", id: "playground" }, system, prompt,
    h("div", { class: "row" },
      h("label", { class: "row small muted" }, "Temperature", h("span", { style: "width:80px" }, temperature)),
      h("label", { class: "row small muted" }, "Max tokens", h("span", { style: "width:90px" }, maxTokens)),
      h("span", { style: "flex:1" }), send));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!prompt.value.trim()) { prompt.focus(); return; }
    pageAborts.forEach((c) => c.abort());
    pageAborts = [];
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push({ role: "user", content: prompt.value });
    send.disabled = true;
    await Promise.all(columns.map((c) => streamAnswer(c, { model: c.select.value, messages,
      temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) })));
    send.disabled = false;
  });
  prompt.addEventListener("keydown", (event) => { if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) form.requestSubmit(); });
  view.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Playground"), h("span", { class: "muted" }, "one prompt, two models, answers streamed side by side")),
    form, h("div", { class: "answers" }, columns.map((c) => c.card)));
}

async function streamAnswer(column, body) {
  const controller = new AbortController();
  pageAborts.push(controller);
  column.text.textContent = "";
  column.text.classList.add("waiting");
  column.meta.textContent = "";
  const started = performance.now();
  let firstAt = null, tokens = 0, finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(response.status, data);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) {
            firstAt = firstAt ?? performance.now();
            column.text.textContent += choice.delta.content;
          }
          finish = choice.finish_reason || finish;
        }
      }
    }
    const decoding = firstAt && tokens > 1 ? (tokens - 1) / ((performance.now() - firstAt) / 1000) : null;
    column.meta.textContent = [`${tokens} tokens`, `first token ${firstAt ? Math.round(firstAt - started) : "–"} ms`,
      decoding ? `${decoding.toFixed(1)} tokens/s` : null, finish].filter(Boolean).join(" · ");
  } catch (error) {
    if (error.name === "AbortError") return;
    column.text.replaceChildren(alertBox("error", "No answer", error.message));
  } finally {
    column.text.classList.remove("waiting");
  }
}

// --- router ----------------------------------------------------------------------------------------------

async function route() {
  pageTimers.forEach(clearInterval);
  pageTimers = [];
  pageAborts.forEach((c) => c.abort());
  pageAborts = [];
  const [path, query] = (location.hash.slice(1) || "/jobs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0]));
  try {
    if (parts[0] === "jobs" && parts[1]) await jobPage(parts[1]);
    else if (parts[0] === "files") await filesPage(parts[1]);
    else if (parts[0] === "new") await newJobPage(params);
    else if (parts[0] === "playground") await playgroundPage(params);
    else await jobsPage();
  } catch (error) {
    view.replaceChildren(alertBox("error", error.status === 404 ? "Not found" : "Something went wrong", error.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof ApiError) event.preventDefault();  // shown where it happened (or as the key dialog)
});
showKeyState();
route();
