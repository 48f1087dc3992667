// The sandbox dashboard's script: polls /sandbox/ui/state once a second and draws it;
// the controls POST to the sandbox's admin routes. Every request carries the admin token
// (from this page's URL fragment) in the X-Sandbox-Token header.
//
// Task fields are user input (author, domainName, callBackUrl): they only ever reach the
// page as text (textContent, attributes), never as HTML.
"use strict";

const TOKEN_HEADER = "X-Sandbox-Token";
const TOKEN_KEY = "suno-mp4-sandbox-token";
const POLL_MS = 1000;

const token = readToken();
const rows = new Map(); // task id -> the row's elements
let busy = 0; // control POSTs in flight: the controls are not redrawn meanwhile
let lastState = null;

function readToken() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl); // survives a reload of the bare URL
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

class HttpError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, body) {
  const init = { headers: { [TOKEN_HEADER]: token }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const answer = await resp.json().catch(() => ({}));
    throw new HttpError(resp.status, typeof answer.error === "string" ? answer.error : "");
  }
  return resp.json();
}

// Elements

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setText(node, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function fullTime(seconds) {
  return seconds === null || seconds === undefined ? "" : new Date(seconds * 1000).toISOString();
}

// The callback URL without its secret: the SDK's listener puts one in the last path part.
function callbackTarget(url) {
  try {
    const parsed = new URL(url);
    const parts = parsed.pathname.split("/");
    const last = parts.pop();
    parts.push(last.length > 12 ? last.slice(0, 4) + "…" : last);
    return parsed.host + parts.join("/");
  } catch {
    return "(not a URL)";
  }
}

// Tasks

function taskRow(task) {
  const tr = el("tr");
  tr.dataset.taskId = task.task_id;
  const cells = {};
  for (const name of ["task", "state", "created", "completed", "render", "author", "music", "callbacks", "video"]) {
    cells[name] = tr.appendChild(el("td", name));
  }
  cells.task.append(el("code", "id", task.task_id), el("div", "target"));
  cells.state.append(el("span", "badge"), el("div", "error"));
  cells.author.append(el("div", "author-name"), el("div", "domain"));
  cells.music.append(el("code", "music-task"), el("code", "audio"));
  cells.callbacks.append(el("ol", "events"));
  return { tr, cells, eventsKey: "", video: null };
}

function drawTask(row, task) {
  const { cells } = row;
  setText(cells.task.querySelector(".target"), "→ " + callbackTarget(task.callback_url));
  const badge = cells.state.querySelector(".badge");
  setText(badge, task.status);
  badge.className = "badge " + task.status.toLowerCase();
  setText(cells.state.querySelector(".error"), task.error_message);
  setText(cells.created, clock(task.created_at));
  cells.created.title = fullTime(task.created_at);
  setText(cells.completed, clock(task.completed_at));
  cells.completed.title = fullTime(task.completed_at);
  const took = task.completed_at === null ? null : task.completed_at - task.created_at;
  setText(cells.render, took === null ? "…" : took.toFixed(2) + " s");
  setText(cells.author.querySelector(".author-name"), task.author ?? "—");
  setText(cells.author.querySelector(".domain"), task.domain_name ?? "");
  setText(cells.music.querySelector(".music-task"), task.music_task_id);
  setText(cells.music.querySelector(".audio"), `${task.audio_id} (#${task.music_index})`);
  drawCallbacks(row, task.callbacks, task.completed_at);
  drawVideo(row, task);
}

function drawCallbacks(row, events, completedAt) {
  const key = JSON.stringify(events);
  if (key === row.eventsKey) return;
  row.eventsKey = key;
  const list = row.cells.callbacks.querySelector(".events");
  list.replaceChildren();
  for (const event of events) {
    const kind = event.attempt === null ? "note" : event.delivered ? "ok" : "failed";
    const label = event.attempt === null ? event.outcome : `#${event.attempt} ${event.outcome}`;
    const item = list.appendChild(el("li", "event " + kind, label));
    if (completedAt !== null) item.title = `+${(event.at - completedAt).toFixed(2)} s after completion`;
  }
}

function drawVideo(row, task) {
  const cell = row.cells.video;
  if (task.video === null) {
    if (row.video !== null) row.video.remove();
    row.video = null;
    setText(cell, task.expired ? "expired" : "");
    return;
  }
  if (row.video !== null) return; // a playing video is left alone
  const video = el("video");
  video.src = task.video;
  video.muted = true; // browsers autoplay only muted videos
  video.loop = true;
  video.autoplay = true;
  video.controls = true;
  video.playsInline = true;
  video.preload = "auto";
  cell.replaceChildren(video);
  row.video = video;
}

function drawTasks(state) {
  const body = document.getElementById("task-rows");
  const seen = new Set();
  state.tasks.forEach((task, index) => {
    seen.add(task.task_id);
    let row = rows.get(task.task_id);
    if (row === undefined) {
      row = taskRow(task);
      rows.set(task.task_id, row);
    }
    drawTask(row, task);
    const here = body.children[index] ?? null;
    if (here !== row.tr) body.insertBefore(row.tr, here); // new tasks come in on top
  });
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  document.getElementById("empty").hidden = state.tasks.length > 0;
}

// Sandbox-wide state

function drawControls(state) {
  const faults = state.faults;
  for (const name of ["drop", "duplicate"]) {
    const rate = faults["callback_" + name];
    document.getElementById("callback-" + name).checked = rate > 0;
    setText(document.getElementById(`callback-${name}-rate`), rate > 0 && rate < 1 ? `(${Math.round(rate * 100)} %)` : "");
  }
  const delay = document.getElementById("callback-delay");
  if (document.activeElement !== delay) delay.value = String(faults.callback_delay);
  const until = faults.rate_limit_storm_until;
  const left = until === null ? 0 : until - state.now;
  setText(document.getElementById("storm-state"), left > 0 ? `answering 429 for ${Math.ceil(left)} s more` : "");
  document.getElementById("maintenance").checked = state.maintenance;
  setText(document.getElementById("credits"), state.credits.toLocaleString());
  drawFaultTable(faults);
}

function drawFaultTable(faults) {
  const body = document.getElementById("fault-rows");
  for (const [name, value] of Object.entries(faults)) {
    let tr = body.querySelector(`tr[data-fault="${CSS.escape(name)}"]`);
    if (tr === null) {
      tr = body.appendChild(el("tr"));
      tr.dataset.fault = name;
      tr.append(el("th", "", name), el("td", "value"));
      const input = el("input");
      input.type = "text";
      input.size = 8;
      input.setAttribute("aria-label", name);
      const set = el("button", "", "Set");
      set.type = "button";
      set.addEventListener("click", () => {
        const text = input.value.trim();
        const parsed = text === "" || text === "none" ? null : Number(text);
        if (Number.isNaN(parsed)) showMessage(`${name}: "${text}" is not a number`);
        else control("/sandbox/faults", { [name]: parsed });
      });
      const td = tr.appendChild(el("td"));
      td.append(input, set);
    }
    setText(tr.querySelector(".value"), value === null ? "none" : value);
  }
}

function drawStats(state) {
  const s = state.stats;
  const answers = Object.entries(s.answers).map(([code, n]) => `${code}×${n}`).join(" ") || "none";
  const shown = state.tasks.length < state.total_tasks ? ` (newest ${state.tasks.length} shown)` : "";
  setText(
    document.getElementById("stats"),
    `${state.total_tasks} tasks${shown} · ${s.submits_accepted} submits accepted · callbacks: ` +
      `${s.callbacks_sent} delivered, ${s.callbacks_failed} failed, ${s.callbacks_dropped} dropped, ` +
      `${s.callbacks_duplicated} duplicated, ${s.callback_attempts} POSTs · answers: ${answers}`,
  );
}

function draw(state) {
  lastState = state;
  if (busy === 0) drawControls(state);
  drawStats(state);
  drawTasks(state);
}

function setStatus(text, ok) {
  const status = document.getElementById("status");
  setText(status, text);
  status.classList.toggle("down", !ok);
}

function showMessage(text) {
  const message = document.getElementById("message");
  setText(message, text);
  message.hidden = !text;
}

// Polling: the next fetch starts a second after the last one ended, so a slow sandbox is
// never asked twice at once.

let timer = null;

async function refresh() {
  clearTimeout(timer);
  try {
    draw(await api("/sandbox/ui/state"));
    setStatus(`live · ${clock(Date.now() / 1000)}`, true);
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) {
      setStatus("admin token missing or wrong: open the URL the sandbox printed (it ends in #token=…)", false);
    } else {
      setStatus(`sandbox not reachable (${err.message}); retrying`, false);
    }
  } finally {
    timer = setTimeout(refresh, POLL_MS);
  }
}

async function control(path, body) {
  busy += 1;
  try {
    await api(path, body);
    showMessage("");
  } catch (err) {
    showMessage(`${path}: ${err.message}`);
  } finally {
    busy -= 1;
  }
  await refresh();
}

function wire() {
  for (const name of ["drop", "duplicate"]) {
    const box = document.getElementById("callback-" + name);
    box.addEventListener("change", () => control("/sandbox/faults", { ["callback_" + name]: box.checked ? 1 : 0 }));
  }
  const delay = document.getElementById("callback-delay");
  delay.addEventListener("change", () => control("/sandbox/faults", { callback_delay: Number(delay.value) || 0 }));
  document.getElementById("storm-start").addEventListener("click", () => {
    const seconds = Number(document.getElementById("storm-seconds").value) || 10;
    const now = lastState === null ? Date.now() / 1000 : lastState.now;
    control("/sandbox/faults", { rate_limit_storm_until: now + seconds });
  });
  document.getElementById("storm-stop").addEventListener("click", () =>
    control("/sandbox/faults", { rate_limit_storm_until: null }),
  );
  const maintenance = document.getElementById("maintenance");
  maintenance.addEventListener("change", () => control("/sandbox/maintenance", { on: maintenance.checked }));
  const credits = document.getElementById("credits-input");
  document.getElementById("credits-set").addEventListener("click", () => {
    if (credits.value !== "") control("/sandbox/credits", { credits: Number(credits.value) });
  });
  document.getElementById("credits-zero").addEventListener("click", () => control("/sandbox/credits", { credits: 0 }));
  refresh();
}

wire();
