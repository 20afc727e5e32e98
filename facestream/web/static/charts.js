// Small line charts on <canvas>: no library, enough for a few series over the last minutes.
"use strict";

const PALETTE = ["#2452c4", "#d97706", "#16794c", "#b42318", "#7c3aed", "#0e7490", "#be185d",
                 "#4d7c0f", "#92400e", "#475569"];

// series: [{label, points: [[epochMs, value], ...]}]; values may be null (gaps).
// options.integer: the values are counts, so the value axis has whole-number ticks only.
// The legend is HTML (the figure's `ul.legend`): readable, wraps, and can be copied.
function drawChart(canvas, series, options = {}) {
  const scale = window.devicePixelRatio || 1, W = canvas.clientWidth || canvas.width, H = W * 200 / 460;
  if (canvas.width !== Math.round(W * scale)) { canvas.width = Math.round(W * scale); canvas.height = Math.round(H * scale); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  const left = 48, right = 12, top = 10, bottom = 24;
  ctx.clearRect(0, 0, W, H);
  drawLegend(canvas.parentElement.querySelector(".legend"), series);
  const all = series.flatMap(s => s.points.filter(p => p[1] !== null));
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#4b5563";
  if (!all.length) { ctx.fillText("no data yet", W / 2 - 30, H / 2); return; }
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(t0 + 1000, ...all.map(p => p[0]));
  const ticks = valueTicks(Math.max(...all.map(p => p[1])), options.integer);
  const vmax = ticks.at(-1);
  const x = t => left + (t - t0) / (t1 - t0) * (W - left - right);
  const y = v => top + (1 - v / vmax) * (H - top - bottom);
  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.textAlign = "right";
  for (const v of ticks) {
    ctx.moveTo(left, y(v)); ctx.lineTo(W - right, y(v));
    ctx.fillText(formatValue(v), left - 6, y(v) + 4);
  }
  ctx.textAlign = "center";
  for (const t of timeTicks(t0, t1, Math.max(2, Math.floor((W - left - right) / 90)))) {
    ctx.moveTo(x(t), top); ctx.lineTo(x(t), H - bottom);
    const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    const half = ctx.measureText(label).width / 2;  // kept inside the canvas at both ends
    ctx.fillText(label, Math.min(Math.max(x(t), half), W - half), H - bottom + 15);
  }
  ctx.stroke();
  ctx.textAlign = "left";
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 1.8;
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null) { pen = false; continue; }
      pen ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v));
      pen = true;
    }
    ctx.stroke();
  });
}

function drawLegend(list, series) {
  if (!list) return;
  list.replaceChildren(...series.map((s, i) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = PALETTE[i % PALETTE.length];  // CSSOM: allowed by the CSP
    const last = s.points.filter(p => p[1] !== null).at(-1);
    return el("li", {}, swatch, el("span", { text: s.label }),
              el("span", { class: "muted", text: last ? ` ${formatValue(last[1])}` : "" }));
  }));
}

// 3–6 round steps from 0 to at least `max`; whole numbers only for counts.
function valueTicks(max, integer) {
  const top = Math.max(max, integer ? 1 : 0.1);
  let step = 10 ** Math.floor(Math.log10(top / 4));
  for (const factor of [1, 2, 5, 10]) if (top / (step * factor) <= 5) { step *= factor; break; }
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let v = 0; v < top + step; v += step) {
    ticks.push(Number(v.toFixed(6)));
    if (v >= top) break;
  }
  return ticks;
}

// Round moments between t0 and t1 (every 10 s, 30 s, 1 min, …), at most `most` of them.
function timeTicks(t0, t1, most) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map(s => s * 1000);
  const step = steps.find(s => (t1 - t0) / s <= most) ?? 3600_000;
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

function formatValue(v) {
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : Number.isInteger(v) ? String(v) : v >= 10 ? v.toFixed(0) : v.toFixed(1);
}
