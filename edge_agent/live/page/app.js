// The live page: polls /api/state twice a second, refreshes the frame when there is a new one,
// and draws what the kind of task has (bars, plots, lists). No library, no build step.
"use strict";

const POLL_MS = 500;
const $ = (id) => document.getElementById(id);
let frameLoading = false;
let shownVersion = -1;

function text(id, value) {
  const el = $(id);
  if (el) el.textContent = value === null || value === undefined ? "–" : String(value);
}

function pct(x) { return (100 * Math.max(0, Math.min(1, x || 0))).toFixed(1) + "%"; }

function clockTime(ts) { return new Date(ts * 1000).toLocaleTimeString(); }

function bars(top) {
  const box = $("bars");
  box.replaceChildren();
  for (const item of top || []) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.textContent = item.label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = pct(item.score);
    track.append(fill);
    const value = document.createElement("span");
    value.textContent = (item.score || 0).toFixed(2);
    row.append(name, track, value);
    box.append(row);
  }
}

function list(id, items, render) {
  const box = $(id);
  box.replaceChildren();
  for (const item of items || []) {
    const li = document.createElement("li");
    li.textContent = render(item);
    if (item.published) li.className = "sent";
    box.append(li);
  }
}

function plot(canvas, series, yMin, yMax, spanS) {
  // series: [{points: [[t, y], ...], color, width}] with t in seconds (negative: before now)
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const x = (t) => w * (1 + t / spanS);
  const y = (v) => h - (h * (v - yMin)) / (yMax - yMin || 1);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
  }
}

const COLORS = ["#2f6fde", "#d1495b", "#1a7f37", "#b35900", "#7d3cbd", "#00798c"];

function image(state) {
  $("image").hidden = false;
  const cur = state.current || {};
  text("frame-index", cur.frame);
  if (state.frame_version !== shownVersion && !frameLoading && state.frame_version > 0) {
    frameLoading = true;
    const img = $("frame");
    const version = state.frame_version;
    img.onload = img.onerror = () => { frameLoading = false; shownVersion = version; };
    img.src = "frame.jpg?v=" + version;
  }
}

function voice(state) {
  $("voice").hidden = false;
  const hist = state.history || [];
  plot($("voice-plot"), [
    { points: hist.map((p) => [p.t, Math.max(0, (p.level_db + 80) / 80)]), color: "#9aa4b2" },
    { points: hist.map((p) => [p.t, p.threshold]), color: "#b35900", width: 1 },
    { points: hist.map((p) => [p.t, p.score]), color: "#2f6fde", width: 2 },
  ], 0, 1, 8);
  list("commands", state.commands, (c) => `${clockTime(c.ts)}  ${c.label}  ${c.score.toFixed(2)}`);
}

function series(state) {
  $("series").hidden = false;
  const win = state.window || [];
  let lo = Infinity, hi = -Infinity;
  for (const ch of win) for (const v of ch) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  plot($("window-plot"), win.map((ch, c) => ({
    points: ch.map((v, i) => [-1 + i / Math.max(1, ch.length - 1), v]), color: COLORS[c % COLORS.length],
  })), lo, hi, 1);
  text("channels", (state.channels || []).map((c, i) => `${c} (${COLORS[i % COLORS.length]})`).join("  "));
  const hist = state.history || [];
  const top = Math.max(1e-9, ...hist.map((p) => Math.max(p.score, p.threshold)));
  plot($("score-plot"), [
    { points: hist.map((p) => [p.t, p.threshold]), color: "#b35900", width: 1 },
    { points: hist.map((p) => [p.t, p.score]), color: "#2f6fde", width: 2 },
  ], 0, top * 1.1, 8);
}

function health(state) {
  const h = state.health || {}, m = state.model || {}, lat = h.latency_ms || {};
  const rows = [
    ["fps", h.fps], ["latency p50 / p95", lat.p50 !== undefined ? `${lat.p50} / ${lat.p95} ms` : null],
    ["source", h.source], ["publisher", h.publisher], ["spool depth", h.spool_depth],
    ["dropped", h.frames_dropped],
    ["change gate", h.frames_gated === undefined ? null : h.frames_gated + " frames not inferred (no change)"],
    ["CPU temperature", h.cpu_temp_c !== undefined && h.cpu_temp_c !== null ?
      h.cpu_temp_c + " °C" : null], ["throttled", h.throttled === null || h.throttled === undefined ? "n/a" :
      "0x" + h.throttled.toString(16)],
    ["model", m.model ? `${m.model.name} (${m.model.sha256})` : null],
    ["backend", m.backend ? `${m.backend.name} ${m.backend.version}, ${m.backend.delegate}` : null],
    ["version", m.version],
  ];
  const dl = $("health");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v === null || v === undefined ? "–" : String(v);
    dl.append(dt, dd);
  }
  const mm = state.model || {};
  text("model", mm.model ? `${mm.model.name} · ${mm.device}` : "");
}

function render(state) {
  const cur = state.current || {};
  text("task", state.task);
  text("label", cur.label || "…");
  text("score", cur.score !== undefined && cur.score !== null ?
    cur.score.toFixed(3) + (cur.threshold !== undefined && cur.threshold !== null ? ` / ${cur.threshold}` : "") : "");
  text("item", state.items);
  text("published", cur.published ? "(published)" : "");
  bars(cur.top);
  document.body.dataset.kind = state.kind;
  if (state.kind === "image") image(state);
  else if (state.kind === "audio") voice(state);
  else if (state.kind === "series") series(state);
  list("timeline", state.timeline, (e) =>
    `${clockTime(e.ts)}  ${e.label}${e.score !== null && e.score !== undefined ? "  " + e.score : ""}`);
  health(state);
}

async function poll() {
  try {
    const response = await fetch("api/state", { cache: "no-store", credentials: "same-origin" });
    if (response.ok) {
      render(await response.json());
      document.body.dataset.live = "yes";
    } else {
      text("label", response.status === 401 ? "not signed in (use the link from the agent's log)" : "error");
    }
  } catch (e) {
    document.body.dataset.live = "no";
    text("label", "agent not reachable");
  }
  setTimeout(poll, POLL_MS);
}

poll();
