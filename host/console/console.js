// mysimbdp console: a tenant's usage, apps, batch jobs, streams (with plots of their reports)
// and documents, or the operator's tenants, hosts and platform figures; read from and driven
// through the same /v1 API the CLI uses, the open view refreshed every two seconds.
//
// Security rules of this file (host/tests/console.rs checks the first two):
// - every value from the API is put in the page with textContent or as an SVG attribute,
//   never parsed as HTML (no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval
//   or Function);
// - the token lives in sessionStorage and travels in the Authorization header only, never in
//   an address (the address's #fragment names the view, nothing else); signing out forgets it;
// - the page loads nothing but its own files (the Content-Security-Policy says so too).
"use strict";

const TOKEN_KEY = "mysimbdp.token";
const ROLE_KEY = "mysimbdp.role";
const REFRESH_MS = 2000;
const VIEWS = {
  tenant: ["usage", "apps", "jobs", "streams", "stream", "data"],
  operator: ["tenants", "hosts", "platform"],
};
let timer = null;
let refreshing = false;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function role() {
  return sessionStorage.getItem(ROLE_KEY) || "tenant";
}

function byId(id) {
  return document.getElementById(id);
}

// An Error carrying the API's message and status.
function apiError(status, body, fallback) {
  const message = body && body.error ? body.error.message : fallback;
  const error = new Error(message || "HTTP " + status);
  error.status = status;
  return error;
}

// Calls the API with the signed-in token; resolves to the parsed JSON (null for no content),
// or throws an Error whose message is the API's own.
async function api(path, options = {}) {
  const init = {
    method: options.method || "GET",
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
  };
  if (options.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw apiError(response.status, body, response.statusText);
  return body;
}

// Sends a multipart form with upload progress shown on `progress` (fetch reports none).
function upload(method, path, form, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(method, path);
    request.setRequestHeader("Authorization", "Bearer " + token());
    request.setRequestHeader("Accept", "application/json");
    request.responseType = "json";
    progress.value = 0;
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        progress.max = event.total;
        progress.value = event.loaded;
      }
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        progress.value = progress.max;
        resolve(request.response);
      } else {
        reject(apiError(request.status, request.response, request.statusText));
      }
    });
    request.addEventListener("error", () => reject(new Error("the upload did not reach the host")));
    request.send(form);
  });
}

// ---- rendering: text only ----

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function element(name, content, className) {
  const node = document.createElement(name);
  node.textContent = text(content);
  if (className) node.className = className;
  return node;
}

function button(label, action) {
  const node = element("button", label);
  node.type = "button";
  node.addEventListener("click", action);
  return node;
}

function link(label, hash) {
  const node = element("a", label);
  node.href = "#" + hash;
  return node;
}

// A cell: a string, a [string, class] pair, or a node (a button, a link, a <pre>).
function cell(value) {
  const td = document.createElement("td");
  if (value instanceof Node) {
    td.appendChild(value);
  } else if (Array.isArray(value)) {
    td.textContent = text(value[0]);
    if (value[1]) td.className = value[1];
  } else {
    td.textContent = text(value);
  }
  return td;
}

// Replaces the rows of table `id` with one row per item, `columns` giving each cell.
function fill(id, items, columns, empty) {
  const body = document.querySelector("#" + id + " tbody");
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const column of columns) tr.appendChild(cell(column(item)));
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell([empty, "empty"]);
    td.colSpan = columns.length;
    tr.appendChild(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

// A two-column table of `[label, value]` pairs.
function facts(id, pairs) {
  fill(id, pairs, [(p) => [p[0], "label"], (p) => p[1]], "");
}

function say(id, message, failed) {
  const node = byId(id);
  node.textContent = text(message);
  node.classList.toggle("error", Boolean(failed));
}

function short(version) {
  return version ? version.slice(0, 12) : "-";
}

function pretty(value) {
  return element("pre", JSON.stringify(value, null, 2), "json");
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function meter(used, limit) {
  const bar = document.createElement("progress");
  bar.max = Math.max(1, limit);
  bar.value = Math.min(used, limit);
  bar.title = limit ? ((100 * used) / limit).toFixed(1) + " %" : "";
  return bar;
}

// "name=value" lines as an object.
function params(textareaId) {
  const out = {};
  for (const line of byId(textareaId).value.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return out;
}

// ---- plots (SVG drawn element by element: no library, nothing parsed) ----

const SVG_NS = "http://www.w3.org/2000/svg";

function shape(name, attributes, tooltip) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (tooltip !== undefined) {
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = text(tooltip);
    node.appendChild(title);
  }
  return node;
}

function number(value) {
  if (value >= 100) return Math.round(value).toString();
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2).replace(/\.?0+$/, "") || "0";
}

// Draws `lines` ({className, label, values: [[ms, y]]}) over [from, to] (ms) into svg `id`,
// with `marks` ([ms, tooltip]) as vertical lines and `spans` ([fromMs, toMs]) shaded. Each
// point is a circle, so a test (or a person hovering) finds exactly what was drawn.
function plot(id, from, to, lines, marks = [], spans = []) {
  const width = 560, height = 170, left = 46, right = 10, top = 10, bottom = 24;
  const svg = byId(id);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  const highest = Math.max(0, ...lines.flatMap((line) => line.values.map((v) => v[1])));
  const ceiling = highest > 0 ? highest * 1.1 : 1;
  const x = (ms) => left + ((ms - from) / Math.max(1, to - from)) * (width - left - right);
  const y = (value) => top + (1 - value / ceiling) * (height - top - bottom);
  const nodes = [
    shape("rect", { class: "frame", x: left, y: top, width: width - left - right, height: height - top - bottom }),
    shape("text", { class: "tick", x: left - 4, y: top + 10, "text-anchor": "end" }, undefined),
    shape("text", { class: "tick", x: left - 4, y: height - bottom, "text-anchor": "end" }),
    shape("text", { class: "tick", x: left, y: height - 6 }),
    shape("text", { class: "tick", x: width - right, y: height - 6, "text-anchor": "end" }),
  ];
  nodes[1].textContent = number(ceiling);
  nodes[2].textContent = "0";
  nodes[3].textContent = new Date(from).toLocaleTimeString();
  nodes[4].textContent = new Date(to).toLocaleTimeString();
  for (const [start, end] of spans) {
    const x0 = Math.max(left, x(start));
    const x1 = Math.min(width - right, x(end));
    if (x1 > x0) {
      nodes.push(shape("rect", { class: "throttled", x: x0, y: top, width: x1 - x0, height: height - top - bottom },
        "paused over the quota"));
    }
  }
  for (const [ms, tooltip] of marks) {
    if (ms < from || ms > to) continue;
    nodes.push(shape("line", { class: "event", x1: x(ms), x2: x(ms), y1: top, y2: height - bottom }, tooltip));
  }
  let drawn = 0;
  for (const line of lines) {
    const inside = line.values.filter((v) => v[0] >= from && v[0] <= to);
    const points = inside.map((v) => x(v[0]).toFixed(1) + "," + y(v[1]).toFixed(1)).join(" ");
    if (inside.length > 1) nodes.push(shape("polyline", { class: "line " + line.className, points }));
    for (const [ms, value] of inside) {
      nodes.push(shape("circle", { class: "pt " + line.className, cx: x(ms), cy: y(value), r: 2.5 },
        line.label + " " + number(value) + " at " + new Date(ms).toLocaleTimeString()));
      drawn += 1;
    }
  }
  if (drawn === 0) {
    const empty = shape("text", { class: "tick", x: width / 2, y: height / 2, "text-anchor": "middle" });
    empty.textContent = "no reports in this window";
    nodes.push(empty);
  }
  svg.replaceChildren(...nodes);
  svg.dataset.points = String(drawn);
}

// ---- tenant views ----

async function showUsage() {
  const [usage, me] = await Promise.all([api("/v1/usage"), api("/v1/tenant")]);
  const span = usage.stream_window_secs + " s window";
  const rows = [
    ["batch uploads today (" + usage.day + ")", usage.batch, bytes],
    ["daas writes today (" + usage.day + ")", usage.daas, bytes],
    ["stream messages, this " + span, usage.stream_messages, (n) => Number(n).toLocaleString()],
    ["stream bytes, this " + span, usage.stream_bytes, bytes],
  ];
  fill("quotas", rows, [
    (r) => r[0],
    (r) => (r[1] ? r[2](r[1].used) : "unknown: the quota counter is unreachable"),
    (r) => (r[1] ? r[2](r[1].limit) : ""),
    (r) => (r[1] ? meter(r[1].used, r[1].limit) : ""),
  ], "");
  const body = document.querySelector("#quotas tbody");
  for (const [label, count] of [["apps", usage.apps], ["streams", usage.streams]]) {
    const tr = document.createElement("tr");
    for (const value of [label, count, "", ""]) tr.appendChild(cell(value));
    body.appendChild(tr);
  }
  byId("limits").textContent = JSON.stringify({ limits: me.limits, profile: me.profile }, null, 2);
}

async function showApps(name) {
  const apps = await api("/v1/apps");
  fill("apps", apps, [
    (a) => link(a.name, "apps/" + a.name),
    (a) => a.kind,
    (a) => short(a.active),
    (a) => short(a.previous),
    (a) => when(a.updated_at),
    (a) => (a.previous ? button("Roll back", () => act("app-action-result",
      "/v1/apps/" + encodeURIComponent(a.name) + "/rollback", "rolled back " + a.name)) : ""),
  ], "no apps yet: upload one above, or with mysimbdp app upload");
  byId("app-detail").hidden = !name;
  if (!name) return;
  const detail = await api("/v1/apps/" + encodeURIComponent(name));
  byId("app-detail-name").textContent = detail.app.name;
  fill("versions", detail.versions, [
    (v) => [short(v.version) + (v.active ? " (active)" : ""), v.active ? "st-running" : ""],
    (v) => when(v.uploaded_at),
    (v) => v.preset || "default",
    (v) => bytes(v.size),
    (v) => v.compile_ms.toFixed(0) + " ms",
    (v) => v.probe_fuel,
    (v) => (v.active ? "" : button("Activate", () => act("app-action-result",
      "/v1/apps/" + encodeURIComponent(name) + "/activate", "activated " + short(v.version),
      { version: v.version }))),
  ], "no versions");
}

// POSTs `json` to `path`, then says `done` (or the API's refusal) in `resultId` and refreshes.
async function act(resultId, path, done, json) {
  try {
    const answer = await api(path, { method: "POST", json });
    say(resultId, typeof done === "function" ? done(answer) : done, false);
  } catch (error) {
    say(resultId, error.message, true);
  }
  await refresh();
}

async function uploadApp(event) {
  event.preventDefault();
  const name = byId("app-name").value.trim();
  const form = new FormData();
  form.append("component", byId("app-file").files[0], "app.wasm");
  if (byId("app-sample").files.length > 0) form.append("sample", byId("app-sample").files[0]);
  const query = new URLSearchParams();
  const preset = byId("app-preset").value.trim();
  if (preset) query.set("preset", preset);
  query.set("activate", byId("app-activate").checked ? "true" : "false");
  say("app-upload-result", "uploading…", false);
  try {
    const answer = await upload("PUT", "/v1/apps/" + encodeURIComponent(name) + "?" + query,
      form, byId("app-progress"));
    say("app-upload-result", (answer.created ? "new version " : "already a version: ") +
      short(answer.version.version) + " of " + answer.app.name +
      (answer.version.active ? " (active)" : ""), false);
    location.hash = "apps/" + answer.app.name;
  } catch (error) {
    say("app-upload-result", "refused: " + error.message, true);
  }
  await refresh();
}

async function dryRun(event) {
  event.preventDefault();
  const name = currentArgument();
  say("dry-result", "running…", false);
  byId("dry-documents").textContent = "";
  try {
    const run = await api("/v1/apps/" + encodeURIComponent(name) + "/dry-run", {
      method: "POST",
      json: { input: byId("dry-input").value, params: params("dry-params") },
    });
    const failure = run.failure ? " — " + run.failure.class + ": " + run.failure.message : "";
    const refused = run.messages.filter((m) => m).map((m) => m.class + ": " + m.message);
    say("dry-result", (run.ok ? "ok" : "failed") + ", " + run.documents_total + " documents, " +
      run.usage.fuel + " fuel, " + run.usage.duration_ms.toFixed(1) + " ms" + failure +
      (refused.length ? " — refused: " + refused.join("; ") : ""), !run.ok);
    byId("dry-documents").textContent = JSON.stringify(run.documents, null, 2);
  } catch (error) {
    say("dry-result", error.message, true);
  }
}

async function showJobs(id) {
  const [jobs, apps] = await Promise.all([api("/v1/batch/jobs"), api("/v1/apps")]);
  fill("jobs", jobs, [
    (j) => link(j.id, "jobs/" + j.id),
    (j) => [j.status, "st-" + j.status],
    (j) => j.attempts,
    (j) => j.app,
    (j) => j.file,
    (j) => j.error || "",
  ], "no batch jobs yet");
  const select = byId("job-app");
  const names = apps.filter((a) => a.kind === "batch").map((a) => a.name);
  if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => {
      const option = element("option", n);
      option.value = n;
      return option;
    }));
    if (names.includes(chosen)) select.value = chosen;
  }
  byId("job-detail").hidden = !id;
  if (!id) return;
  const job = await api("/v1/batch/jobs/" + encodeURIComponent(id));
  byId("job-detail-id").textContent = job.id;
  byId("job-replay").disabled = !["failed", "dead"].includes(job.status);
  facts("job-fields", [
    ["status", [job.status, "st-" + job.status]],
    ["attempts", job.attempts],
    ["file", job.file + " (" + bytes(job.size) + ")"],
    ["app", job.app + " " + short(job.version)],
    ["documents", job.documents],
    ["rejected", job.rejected],
    ["failure class", job.error_class || ""],
    ["reason", job.error || ""],
    ["quality", job.quality ? pretty(job.quality) : ""],
  ]);
}

async function uploadFiles(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("app", byId("job-app").value);
  for (const [name, value] of Object.entries(params("job-params"))) form.append("param", name + "=" + value);
  for (const file of byId("job-files").files) form.append("file", file, file.name);
  say("job-upload-result", "uploading…", false);
  try {
    const queued = await upload("POST", "/v1/batch/files", form, byId("job-progress"));
    say("job-upload-result", "queued " + queued.files.map((f) => f.file + " as " + f.job).join(", ") +
      " (" + queued.app + " " + short(queued.version) + ")", false);
  } catch (error) {
    say("job-upload-result", "refused: " + error.message, true);
  }
  await refresh();
}

async function showStreams() {
  const streams = await api("/v1/streams");
  fill("streams", streams, [
    (s) => link(s.name, "stream/" + s.name),
    (s) => s.app,
    (s) => [s.status, "st-" + s.status],
    (s) => s.running_consumers + " / " + s.consumers,
    (s) => (s.throttled ? "yes" : "no"),
    (s) => s.collection,
    (s) => Object.entries(s.params).map(([k, v]) => k + "=" + v).join(", "),
  ], "no streams yet: create one with mysimbdp stream create");
}

async function showStream(name) {
  const path = "/v1/streams/" + encodeURIComponent(name);
  const [stream, series] = await Promise.all([
    api(path),
    api(path + "/series?window_secs=" + byId("window").value),
  ]);
  byId("stream-name").textContent = stream.name;
  facts("stream-facts", [
    ["status", [stream.status, "st-" + stream.status]],
    ["app", stream.app + " " + short(stream.version)],
    ["consumers", stream.running_consumers + " running of " + stream.consumers + " wanted"],
    ["throttled", stream.throttled ? "yes: paused over the quota" : "no"],
    ["collection", stream.collection],
    ["params", Object.entries(stream.params).map(([k, v]) => k + "=" + v).join(", ")],
    ["queue", stream.queue + " (dead letters: " + stream.dead_letter_queue + ")"],
  ]);
  const from = Date.parse(series.from);
  const to = Date.parse(series.to);
  const step = series.step_secs * 1000;
  const at = (p) => Date.parse(p.at) + step / 2;
  const values = (f) => series.points.map((p) => [at(p), f(p)]);
  const marks = series.events.map((e) => [Date.parse(e.at),
    e.kind + (e.to !== null ? " " + e.from + "→" + e.to : "") + ": " + e.reason]);
  const spans = series.points.filter((p) => p.throttled).map((p) => [Date.parse(p.at), Date.parse(p.at) + step]);
  plot("chart-rate", from, to, [{ className: "l-rate", label: "msg/s", values: values((p) => p.messages_per_sec) }], marks, spans);
  plot("chart-latency", from, to, [
    { className: "l-p99", label: "p99 ms", values: values((p) => p.latency_p99_ms) },
    { className: "l-mean", label: "mean ms", values: values((p) => p.latency_avg_ms) },
  ], marks, spans);
  plot("chart-depth", from, to, [{ className: "l-depth", label: "waiting", values: values((p) => p.queue_depth) }], marks, spans);
  plot("chart-consumers", from, to, [{ className: "l-consumers", label: "consumers", values: values((p) => p.consumers) }], marks, spans);
  byId("series-note").textContent = series.points.length + " points of " + series.step_secs + " s";
  fill("events", series.events.slice().reverse(), [
    (e) => when(e.at),
    (e) => e.kind,
    (e) => (e.to !== null ? e.from + " → " + e.to : ""),
    (e) => e.reason,
    (e) => e.host,
  ], "no decisions in this window");
}

async function inspectDeadLetters() {
  const name = currentArgument();
  try {
    const letters = await api("/v1/streams/" + encodeURIComponent(name) + "/dead-letters?limit=100");
    fill("dead-letters", letters, [
      (d) => d.message_id || "",
      (d) => d.class || "",
      (d) => d.error || "",
      (d) => d.deliveries,
      (d) => short(d.app_version),
      (d) => when(d.dead_lettered_at),
      (d) => element("pre", (d.base64 ? "(base64) " : "") + d.payload, "body"),
    ], "no dead letters");
    say("dl-result", letters.length + " dead letter(s) shown (at most 100; they stay queued)", false);
  } catch (error) {
    say("dl-result", error.message, true);
  }
}

async function replayDeadLetters() {
  const name = currentArgument();
  let outcome;
  try {
    const answer = await api("/v1/streams/" + encodeURIComponent(name) + "/dead-letters/replay", { method: "POST" });
    outcome = [answer.replayed + " dead letter(s) sent back through the stream", false];
  } catch (error) {
    outcome = [error.message, true];
  }
  await inspectDeadLetters();
  say("dl-result", outcome[0], outcome[1]);
}

let dataCursor = null;

async function readData(event, next) {
  if (event) event.preventDefault();
  if (!next) dataCursor = null;
  const query = new URLSearchParams();
  const filter = byId("data-filter").value.trim();
  if (filter) query.set("filter", filter);
  query.set("limit", byId("data-limit").value || "20");
  if (dataCursor) query.set("cursor", dataCursor);
  const collection = byId("data-collection").value.trim();
  try {
    const page = await api("/v1/data/" + encodeURIComponent(collection) + "?" + query);
    fill("documents", page.documents, [(d) => pretty(d)], "no documents");
    dataCursor = page.next_cursor || null;
    byId("data-next").hidden = !dataCursor;
    say("data-result", page.documents.length + " document(s) of " + collection, false);
  } catch (error) {
    say("data-result", error.message, true);
  }
}

async function showData() {
  // Collections the tenant's streams write to, offered as suggestions.
  const streams = await api("/v1/streams");
  const names = [...new Set(streams.map((s) => s.collection))];
  byId("collections").replaceChildren(...names.map((n) => {
    const option = document.createElement("option");
    option.value = n;
    return option;
  }));
}

// ---- operator views ----

async function showTenants(id) {
  const tenants = await api("/v1/admin/tenants");
  fill("tenants", tenants, [
    (t) => link(t.id, "tenants/" + t.id),
    (t) => [t.status, "st-" + t.status],
    (t) => t.suspended_reason || "",
    (t) => "v" + t.profile_version,
    (t) => when(t.created_at),
    (t) => (t.status === "suspended"
      ? button("Resume", () => act("tenant-action-result", "/v1/admin/tenants/" + t.id + "/resume", "resumed " + t.id))
      : button("Suspend", () => act("tenant-action-result", "/v1/admin/tenants/" + t.id + "/suspend",
        "suspended " + t.id, { reason: "suspended from the console" }))),
  ], "no tenants yet");
  byId("tenant-detail").hidden = !id;
  if (!id) return;
  const versions = await api("/v1/admin/tenants/" + encodeURIComponent(id) + "/profile/versions");
  byId("tenant-detail-id").textContent = id;
  fill("profiles", versions.slice().reverse(), [
    (v) => "v" + v.version,
    (v) => when(v.created_at),
    (v) => pretty(v.profile),
  ], "no profile versions");
}

async function createTenant(event) {
  event.preventDefault();
  const id = byId("tenant-id").value.trim();
  try {
    const created = await api("/v1/admin/tenants", { method: "POST", json: { id } });
    say("tenant-created", "created " + created.tenant.id + "; its token (shown once): " + created.token, false);
    byId("tenant-id").value = "";
  } catch (error) {
    say("tenant-created", error.message, true);
  }
  await refresh();
}

async function showHosts() {
  const hosts = await api("/v1/admin/hosts");
  fill("hosts", hosts, [
    (h) => h.id,
    (h) => h.roles.join(", "),
    (h) => h.address,
    (h) => when(h.started_at),
    (h) => h.version,
  ], "no live hosts");
}

async function showPlatform() {
  const [series, usage, stats] = await Promise.all([
    api("/v1/admin/series?window_secs=" + byId("platform-window").value),
    api("/v1/admin/usage"),
    api("/v1/admin/stats"),
  ]);
  const from = Date.parse(series.from);
  const to = Date.parse(series.to);
  const step = series.step_secs * 1000;
  // A step holds stream figures, batch endings or both: each plot draws only the steps that
  // have its kind of figure, so a step without any is a gap rather than a zero.
  const streams = series.points.filter((p) => p.stream_reports > 0);
  const batches = series.points.filter((p) => p.batch_done + p.batch_failed > 0);
  const values = (points, f) => points.map((p) => [Date.parse(p.at) + step / 2, f(p)]);
  plot("chart-platform-rate", from, to, [{ className: "l-rate", label: "msg/s", values: values(streams, (p) => p.stream_messages_per_sec) }]);
  plot("chart-platform-batch", from, to, [
    { className: "l-done", label: "done", values: values(batches, (p) => p.batch_done) },
    { className: "l-failed", label: "failed", values: values(batches, (p) => p.batch_failed) },
  ]);
  plot("chart-platform-errors", from, to, [
    { className: "l-dead", label: "dead-lettered", values: values(streams, (p) => p.stream_dead_lettered) },
    { className: "l-errors", label: "errors", values: values(streams, (p) => p.stream_errors) },
  ]);
  const share = (u) => (u ? bytes(u.used) + " of " + bytes(u.limit) : "unknown");
  fill("tenant-usage", usage, [
    (u) => u.tenant,
    (u) => share(u.batch),
    (u) => share(u.daas),
    (u) => (u.stream_messages ? u.stream_messages.used + " of " + u.stream_messages.limit + " messages" : "unknown"),
    (u) => u.apps,
    (u) => u.streams,
    (u) => (stats[u.tenant] ? stats[u.tenant].done + " / " + (stats[u.tenant].failed + stats[u.tenant].dead) : "0 / 0"),
    (u) => (stats[u.tenant] ? stats[u.tenant].documents : 0),
  ], "no tenants");
}

// ---- navigation ----

function currentView() {
  const [view] = location.hash.slice(1).split("/");
  const views = VIEWS[role()];
  return views.includes(view) ? view : views[0];
}

function currentArgument() {
  const [, argument] = location.hash.slice(1).split("/");
  return argument ? decodeURIComponent(argument) : "";
}

const SHOW = {
  usage: showUsage,
  apps: showApps,
  jobs: showJobs,
  streams: showStreams,
  stream: showStream,
  data: showData,
  tenants: showTenants,
  hosts: showHosts,
  platform: showPlatform,
};

// Shows the view the address names and refreshes it.
function route() {
  const view = currentView();
  for (const section of document.querySelectorAll("section.view")) {
    section.hidden = section.id !== "view-" + view;
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === "#" + (view === "stream" ? "streams" : view));
  }
  if (view === "stream") byId("dead-letters").querySelector("tbody").replaceChildren();
  refresh();
}

async function refresh() {
  // The data view reads on request only: a page being read is not replaced under the reader.
  if (refreshing || !token()) return;
  refreshing = true;
  const status = byId("status");
  try {
    const view = currentView();
    const argument = currentArgument();
    if (view !== "data" || !byId("collections").options.length) await SHOW[view](argument);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.classList.remove("error");
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      signOut("signed out: " + error.message);
      return;
    }
    status.textContent = "could not refresh: " + error.message;
    status.classList.add("error");
  } finally {
    refreshing = false;
  }
}

async function signIn() {
  const who = role() === "operator"
    ? await api("/v1/admin/hosts").then(() => "operator")
    : await api("/v1/tenant").then((me) => "tenant " + me.id);
  byId("who").textContent = who;
  byId("sign-in").hidden = true;
  byId("status").hidden = false;
  byId("sign-out").hidden = false;
  byId("nav-tenant").hidden = role() !== "tenant";
  byId("nav-operator").hidden = role() !== "operator";
  route();
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROLE_KEY);
  if (timer !== null) clearInterval(timer);
  timer = null;
  byId("who").textContent = "";
  for (const section of document.querySelectorAll("section.view")) section.hidden = true;
  for (const table of document.querySelectorAll("tbody")) table.replaceChildren();
  byId("status").hidden = true;
  byId("sign-out").hidden = true;
  byId("nav-tenant").hidden = true;
  byId("nav-operator").hidden = true;
  byId("sign-in").hidden = false;
  byId("sign-in-error").textContent = reason || "";
}

document.addEventListener("DOMContentLoaded", () => {
  byId("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    sessionStorage.setItem(ROLE_KEY, document.querySelector("input[name=role]:checked").value);
    input.value = "";
    try {
      await signIn();
      byId("sign-in-error").textContent = "";
    } catch (error) {
      signOut("sign-in failed: " + error.message);
    }
  });
  byId("sign-out").addEventListener("click", () => signOut(""));
  byId("app-upload-form").addEventListener("submit", uploadApp);
  byId("dry-run-form").addEventListener("submit", dryRun);
  byId("job-upload-form").addEventListener("submit", uploadFiles);
  byId("job-replay").addEventListener("click", () => act("job-action-result",
    "/v1/batch/jobs/" + encodeURIComponent(currentArgument()) + "/replay", "queued again"));
  byId("stream-start").addEventListener("click", () => act("stream-action-result",
    "/v1/streams/" + encodeURIComponent(currentArgument()) + "/start", "started"));
  byId("stream-stop").addEventListener("click", () => act("stream-action-result",
    "/v1/streams/" + encodeURIComponent(currentArgument()) + "/stop", "stopped"));
  byId("window").addEventListener("change", refresh);
  byId("platform-window").addEventListener("change", refresh);
  byId("dl-inspect").addEventListener("click", inspectDeadLetters);
  byId("dl-replay").addEventListener("click", replayDeadLetters);
  byId("data-form").addEventListener("submit", (event) => readData(event, false));
  byId("data-next").addEventListener("click", () => readData(null, true));
  byId("tenant-create-form").addEventListener("submit", createTenant);
  window.addEventListener("hashchange", route);
  if (token()) signIn().catch((error) => signOut("signed out: " + error.message));
});
