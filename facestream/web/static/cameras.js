// Camera tiles: newest frame with boxes and names, its age, stale marks; a tile opens full size.
"use strict";

const STALE_MS = 10_000;  // a tile whose newest frame is older than this is marked stale
const cameraState = { clockOffset: 0 };  // server clock minus browser clock, from each status

function renderCameras(cameras, serverNow) {
  const grid = $("#cameras");
  if (serverNow) cameraState.clockOffset = serverNow - Date.now();
  if (!cameras.length) return;
  $(".placeholder", grid)?.remove();
  for (const camera of cameras) {
    let tile = grid.querySelector(`[data-camera="${CSS.escape(camera.camera)}"]`);
    if (!tile) {
      tile = el("article", { class: "tile", "data-camera": camera.camera },
        el("header", {}, el("strong", { text: camera.camera }),
          el("span", { class: "muted", text: camera.group || "" }),
          el("span", { class: "age muted" }), el("span", { class: "badge state" })),
        el("div", { class: "frame", title: "open full size", role: "button", tabindex: "0",
                    onclick: () => openViewer(tile), onkeydown: e => e.key === "Enter" && openViewer(tile) },
          el("img", { alt: `latest frame of ${camera.camera}` }),
          el("svg:svg", { preserveAspectRatio: "xMidYMid meet" }),
          el("p", { class: "no-frame", text: "no frame since the page opened" })),
        el("p", { class: "names" }), el("p", { class: "health" }));
      grid.append(tile);
    }
    updateTile(tile, camera);
  }
  ageTiles();
}

function updateTile(tile, camera) {
  const health = camera.health, latest = camera.latest, badge = $(".state", tile);
  badge.textContent = health ? health.state : "no agent";
  badge.className = `badge state ${health?.state === "streaming" ? "ok" : health ? "bad" : ""}`;
  $(".health", tile).textContent = health
    ? `in ${health.fps_in.toFixed(1)}/s · out ${health.fps_out.toFixed(1)}/s · dropped ${health.dropped}` +
      ` · reconnects ${health.reconnects}${health.last_error ? ` · ${health.last_error}` : ""}`
    : "no health report (a replay or an agent without health)";
  tile.dataset.health = health?.state || "";
  if (!latest || tile.dataset.frame === latest.frame_id) return;
  tile.dataset.frame = latest.frame_id;
  tile.dataset.ts = latest.ts;
  tile.latest = latest;
  tile.classList.add("has-frame");
  const img = $("img", tile), svg = $("svg", tile);
  // Names, boxes and picture change together, once the frame has loaded (or is gone).
  img.onload = () => { drawFaces(svg, img, latest.faces); nameFaces(tile, latest); };
  img.onerror = () => { svg.replaceChildren(); nameFaces(tile, latest); };
  img.src = latest.frame_url;
}

// Each second: how old every tile's frame is (capture time against the server's clock).
function ageTiles() {
  const now = Date.now() + cameraState.clockOffset;
  for (const tile of document.querySelectorAll("#cameras .tile")) {
    const ts = Number(tile.dataset.ts || 0), age = $(".age", tile);
    const stale = ts ? now - ts > STALE_MS : tile.dataset.health !== "streaming";
    age.textContent = ts ? `frame ${ago(now - ts)}` : "";
    tile.classList.toggle("stale", stale);
    age.classList.toggle("error", stale && Boolean(ts));
  }
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function nameFaces(tile, latest) {
  const names = $(".names", tile);
  names.textContent = latest.faces.length ? summariseFaces(latest.faces) : "no face";
  names.title = `frame ${latest.frame_id} · seq ${latest.seq} · ${time(latest.ts)}`;
}

// Names once each, strangers counted: "obama (0.71), 3 unknown", never a row of "unknown".
function summariseFaces(faces) {
  const known = faces.filter(face => face.identity).map(faceLabel);
  const unknown = faces.length - known.length;
  return [...known, ...(unknown ? [`${unknown} unknown`] : [])].join(", ");
}

function drawFaces(svg, img, faces) {
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  const size = Math.max(12, Math.round(img.naturalHeight / 16));  // labels scale with the frame
  const spots = placeLabels(faces, size, img.naturalWidth, img.naturalHeight);
  svg.replaceChildren(...faces.map((face, i) => {
    const [x, y, w, h] = face.box;
    return el("svg:g", {},
      el("svg:title", { text: faceTitle(face) }),
      el("svg:rect", { x, y, width: w, height: h, class: face.identity ? "known" : "unknown" }),
      el("svg:text", { x: spots[i].x, y: spots[i].y + size * 0.85, "font-size": size,
                       "stroke-width": size / 6, text: face.identity || "unknown" }));
  }));
}

// Labels of close faces must not cover each other: each goes above its box, else below it,
// else further up or down until it overlaps no label placed before it (largest faces first).
function placeLabels(faces, size, width, height) {
  const placed = [], spots = new Array(faces.length);
  const order = faces.map((face, i) => i).sort((a, b) => faces[b].box[2] - faces[a].box[2]);
  for (const i of order) {
    const [x, y, w, h] = faces[i].box, label = faces[i].identity || "unknown";
    const lw = label.length * size * 0.6, lh = size * 1.1;
    const left = Math.min(Math.max(x, 0), Math.max(width - lw, 0));
    const candidates = [y - lh, y + h];
    for (let step = 1; step <= 8; step++) candidates.push(y - lh * (1 + step), y + h + lh * step);
    let spot = null;
    for (const top of candidates) {
      if (top < 0 || top + lh > height) continue;
      const box = { x: left, y: top, w: lw, h: lh };
      if (!placed.some(other => overlaps(box, other))) { spot = box; break; }
    }
    spot ??= { x: left, y: Math.max(y - lh, 0), w: lw, h: lh };  // no free place: above its box
    placed.push(spot);
    spots[i] = spot;
  }
  return spots;
}

function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

// ---- full size ----------------------------------------------------------------------------

function openViewer(tile) {
  const latest = tile.latest, dialog = $("#viewer");
  if (!latest) return;
  const img = $("img", dialog), svg = $("svg", dialog);
  $("h3", dialog).textContent = `${tile.dataset.camera} · ${time(latest.ts)} · frame ${latest.frame_id}`;
  $(".faces", dialog).replaceChildren(...latest.faces.map(face =>
    el("li", { text: faceTitle(face) })));
  svg.replaceChildren();
  img.onload = () => drawFaces(svg, img, latest.faces);
  img.onerror = () => { $(".faces", dialog).prepend(el("li", { class: "error", text: "the frame is no longer kept" })); };
  img.src = latest.frame_url;
  if (!dialog.open) dialog.showModal();
}

function setUpViewer() {
  const dialog = $("#viewer");
  $("button", dialog).addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", event => { if (event.target === dialog) dialog.close(); });
  setInterval(ageTiles, 1000);
}
