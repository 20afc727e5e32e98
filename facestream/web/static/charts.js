// Small line charts on <canvas>: no library, enough for a few series over the last minutes.
"use strict";

const PALETTE = ["#2452c4", "#d97706", "#16794c", "#b42318", "#7c3aed", "#0e7490", "#be185d"];

// series: [{label, points: [[epochMs, value], ...]}]; values may be null (gaps).
function drawChart(canvas, series) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 44, right = 8, top = 8, bottom = 34;
  ctx.clearRect(0, 0, W, H);
  const all = series.flatMap(s => s.points.filter(p => p[1] !== null));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  if (!all.length) { ctx.fillText("no data yet", W / 2 - 30, H / 2); return; }
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(t0 + 1, ...all.map(p => p[0]));
  const vmax = Math.max(1, ...all.map(p => p[1])) * 1.1;
  const x = t => left + (t - t0) / (t1 - t0) * (W - left - right);
  const y = v => top + (1 - v / vmax) * (H - top - bottom);
  ctx.strokeStyle = "#e5e7eb";
  ctx.beginPath();
  for (const frac of [0, 0.5, 1]) {
    ctx.moveTo(left, y(vmax * frac)); ctx.lineTo(W - right, y(vmax * frac));
    ctx.fillText(formatValue(vmax * frac), 2, y(vmax * frac) + 4);
  }
  ctx.stroke();
  ctx.fillText(`${Math.round((t1 - t0) / 1000)} s`, W - right - 30, H - bottom + 12);
  series.forEach((s, i) => {
    ctx.strokeStyle = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null) { pen = false; continue; }
      pen ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v));
      pen = true;
    }
    ctx.stroke();
    ctx.fillStyle = PALETTE[i % PALETTE.length];
    ctx.fillText(s.label, left + (i % 4) * ((W - left) / 4), H - 18 + 12 * Math.floor(i / 4));
  });
}

function formatValue(v) {
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v >= 10 ? v.toFixed(0) : v.toFixed(1);
}
