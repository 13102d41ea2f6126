// mysimbdp console: a tenant's apps, batch jobs and streams, read from the same /v1 API the
// CLI uses, refreshed every two seconds.
//
// Security rules of this file (host/tests/console.rs checks the first two):
// - every value from the API is put in the page with textContent, never parsed as HTML
//   (no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval or Function);
// - the token lives in sessionStorage and travels in the Authorization header only, never in
//   an address; signing out forgets it;
// - the page loads nothing but its own files (the Content-Security-Policy says so too).
"use strict";

const TOKEN_KEY = "mysimbdp.token";
const REFRESH_MS = 2000;
let timer = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Calls the API with the tenant's token; resolves to the parsed JSON, or throws an Error
// whose message is the API's own.
async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

// Replaces the rows of table `id` with one row per item, `columns` giving each cell's text.
function fill(id, items, columns, empty) {
  const body = document.querySelector("#" + id + " tbody");
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const value = column(item);
      tr.appendChild(Array.isArray(value) ? cell(value[0], value[1]) : cell(value));
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty, "empty");
    td.colSpan = columns.length;
    tr.appendChild(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function short(version) {
  return version ? version.slice(0, 12) : "-";
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [apps, jobs, streams] = await Promise.all([
      api("/v1/apps"),
      api("/v1/batch/jobs"),
      api("/v1/streams"),
    ]);
    fill("apps", apps, [
      (a) => a.name,
      (a) => a.kind,
      (a) => short(a.active),
      (a) => a.updated_at,
    ], "no apps yet: upload one with mysimbdp app upload");
    fill("jobs", jobs, [
      (j) => j.id,
      (j) => [j.status, "st-" + j.status],
      (j) => j.attempts,
      (j) => j.app,
      (j) => j.file,
      (j) => j.error || "",
    ], "no batch jobs yet");
    fill("streams", streams, [
      (s) => s.name,
      (s) => s.app,
      (s) => [s.status, "st-" + s.status],
      (s) => s.running_consumers + " / " + s.consumers,
      (s) => (s.throttled ? "yes" : "no"),
      (s) => s.collection,
    ], "no streams yet");
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      signOut("signed out: " + error.message);
      return;
    }
    status.textContent = "could not refresh: " + error.message;
  }
}

async function showTenant() {
  const me = await api("/v1/tenant");
  document.getElementById("who").textContent = "tenant " + me.id;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("tenant").hidden = false;
  document.getElementById("sign-out").hidden = false;
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer !== null) clearInterval(timer);
  timer = null;
  document.getElementById("who").textContent = "";
  document.getElementById("tenant").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = reason || "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    try {
      await showTenant();
      document.getElementById("sign-in-error").textContent = "";
    } catch (error) {
      signOut("sign-in failed: " + error.message);
    }
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut(""));
  if (token()) {
    showTenant().catch((error) => signOut("signed out: " + error.message));
  }
});
