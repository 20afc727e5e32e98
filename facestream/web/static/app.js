// The operators' page: camera tiles, live feed (server-sent events), charts, gallery, dead letters.
"use strict";

const state = { csrf: "", header: "x-csrf-token", history: [], source: null, deadTotal: -1,
                groups: new Set() };
const MAX_FEED = 200;
const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers[state.header] = state.csrf;
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok && response.status !== 422) throw new Error(body?.error || response.statusText);
  return { status: response.status, body };
}

function time(ms) { return new Date(ms).toLocaleTimeString(); }
function faceLabel(face) {
  return face.identity ? `${face.identity} (${face.similarity.toFixed(2)})` : "unknown";
}
function faceTitle(face) {
  const parts = [face.identity || "unknown"];
  if (face.similarity !== null) parts.push(`similarity ${face.similarity.toFixed(3)}`);
  parts.push(`detection ${face.score.toFixed(2)}`);
  parts.push(`track ${face.track ?? "–"}`);
  if (face.source) parts.push(`from ${face.source}`);  // model, the track's vote, or the cache
  if (face.visitor) parts.push(`visitor ${face.visitor}`);
  return parts.join(" · ");
}

// ---- camera tiles --------------------------------------------------------------------------

function renderCameras(cameras) {
  const grid = $("#cameras");
  if (!cameras.length) return;
  $(".muted", grid)?.remove();
  for (const camera of cameras) {
    let tile = grid.querySelector(`[data-camera="${CSS.escape(camera.camera)}"]`);
    if (!tile) {
      tile = el("article", { class: "tile", "data-camera": camera.camera },
        el("header", {}, el("strong", { text: camera.camera }),
          el("span", { class: "muted", text: camera.group || "" }), el("span", { class: "badge state" })),
        el("div", { class: "frame" }, el("img", { alt: `latest frame of ${camera.camera}` }),
          el("svg:svg", { preserveAspectRatio: "xMidYMid meet" })),
        el("p", { class: "names" }), el("p", { class: "health" }));
      grid.append(tile);
    }
    updateTile(tile, camera);
  }
}

function updateTile(tile, camera) {
  const health = camera.health, latest = camera.latest, badge = $(".state", tile);
  badge.textContent = health ? health.state : "no agent";
  badge.className = `badge state ${health?.state === "streaming" ? "ok" : health ? "bad" : ""}`;
  $(".health", tile).textContent = health
    ? `in ${health.fps_in.toFixed(1)}/s · out ${health.fps_out.toFixed(1)}/s · dropped ${health.dropped}` +
      ` · reconnects ${health.reconnects}${health.last_error ? ` · ${health.last_error}` : ""}`
    : "no health report (a replay or an agent without health)";
  if (!latest || tile.dataset.frame === latest.frame_id) return;
  tile.dataset.frame = latest.frame_id;
  const img = $("img", tile), svg = $("svg", tile);
  // Names, boxes and picture change together, once the frame has loaded (or is gone).
  img.onload = () => { drawFaces(svg, img, latest.faces); nameFaces(tile, latest); };
  img.onerror = () => { svg.replaceChildren(); nameFaces(tile, latest); };
  img.src = latest.frame_url;
}

function nameFaces(tile, latest) {
  const names = $(".names", tile);
  names.textContent = latest.faces.length ? latest.faces.map(faceLabel).join(", ") : "no face";
  names.title = `frame ${latest.frame_id} · seq ${latest.seq} · ${time(latest.ts)}`;
}

function drawFaces(svg, img, faces) {
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  const size = Math.max(12, Math.round(img.naturalHeight / 16));  // labels scale with the frame
  svg.replaceChildren(...faces.map(face => {
    const [x, y, w, h] = face.box;
    return el("svg:g", {},
      el("svg:title", { text: faceTitle(face) }),
      el("svg:rect", { x, y, width: w, height: h, class: face.identity ? "known" : "unknown" }),
      el("svg:text", { x, y: Math.max(y - size / 4, size), "font-size": size,
                       "stroke-width": size / 6, text: face.identity || "unknown" }));
  }));
}

// ---- live feed -----------------------------------------------------------------------------

function connect() {
  state.source?.close();
  const filters = new URLSearchParams(new FormData($("#filters")));
  for (const [key, value] of [...filters]) if (!value) filters.delete(key);
  $("#feed").replaceChildren();
  const source = new EventSource(`/api/stream?${filters}`);
  state.source = source;
  source.addEventListener("open", () => setConnection("live", "ok"));
  source.addEventListener("error", () => setConnection("reconnecting…", "warn"));
  source.addEventListener("recognition", event => addFeedItem(JSON.parse(event.data)));
  source.addEventListener("event", event => addVisitItem(JSON.parse(event.data)));
  source.addEventListener("status", event => onStatus(JSON.parse(event.data)));
}

function setConnection(text, kind) {
  const badge = $("#connection");
  badge.textContent = text;
  badge.className = `badge ${kind}`;
}

function addFeedItem(item) {
  const faces = item.faces.length ? item.faces : null;
  prependToFeed(el("li", { "data-id": item.id, "data-kind": item.kind, title: `frame ${item.frame_id}` },
    el("span", { text: time(item.ts) }),
    el("span", { text: `${item.group}/${item.camera} #${item.seq}` }),
    el("span", { class: "who", text: faces ? faces.map(faceLabel).join(", ") : "no face" }),
    el("span", { class: "muted", text: `${item.cached ? "cache" : "model"} ${Math.round(item.latency_ms.e2e ?? 0)} ms` })));
}

// A visit event: a track appeared, was identified, left; a person seen (once per cooldown).
function addVisitItem(item) {
  const who = item.identity
    ? `${item.identity}${item.similarity === null ? "" : ` (${item.similarity.toFixed(2)})`}` : "unknown";
  const details = item.type === "left"
    ? `${((item.dwell_ms ?? 0) / 1000).toFixed(1)} s · ${item.frames ?? 0} frames` : "";
  const line = el("li", { "data-id": item.id, "data-kind": item.kind, class: "event",
                          title: `frame ${item.frame_id} · track ${item.track}` },
    el("span", { text: time(item.ts) }),
    el("span", { text: `${item.group}/${item.camera}` }),
    el("span", { class: "who", text: `${item.type} ${who}` }),
    el("span", { class: "muted", text: [`track ${item.track}`, details].filter(Boolean).join(" · ") }));
  if (item.snapshot) {
    // Snapshots expire: an expired one (404) leaves the line without a picture.
    line.prepend(el("img", { class: "snapshot", src: item.snapshot, alt: `snapshot of track ${item.track}`,
                             onerror: event => event.target.remove() }));
  }
  prependToFeed(line);
}

function prependToFeed(line) {
  const feed = $("#feed");
  feed.prepend(line);
  while (feed.children.length > MAX_FEED) feed.lastElementChild.remove();
}

// ---- status: summary, tiles, charts --------------------------------------------------------

function onStatus(status) {
  renderCameras(status.cameras);
  const select = $("#filters select[name=group]");
  for (const group of status.groups) {
    if (state.groups.has(group.group)) continue;
    state.groups.add(group.group);
    select.append(el("option", { value: group.group, text: group.group }));
  }
  const pending = status.groups.reduce((sum, g) => sum + g.pending, 0);
  $("#summary").textContent = status.error ? `Redis: ${status.error}` :
    `${status.groups.length} group(s) · ${status.cameras.length} camera(s) · pending ${pending} · ` +
    `gallery v${status.gallery_version} (${status.gallery_size})`;
  if (status.sample && (!state.history.length || state.history.at(-1).t < status.sample.t)) {
    state.history.push(status.sample);
    if (state.history.length > 2000) state.history.shift();
    drawCharts();
  }
  const dead = status.groups.reduce((sum, g) => sum + g.dead, 0);
  if (dead !== state.deadTotal) { state.deadTotal = dead; loadDead(); }
  if ($("#gallery-version").dataset.version !== String(status.gallery_version)) loadGallery();
}

function perGroup(field) {
  const groups = [...new Set(state.history.flatMap(s => Object.keys(s.groups)))];
  return groups.map(group => ({ label: `${group} ${field}`,
    points: state.history.map(s => [s.t, s.groups[group]?.[field] ?? null]) }));
}

function drawCharts() {
  drawChart($("#chart-throughput"), perGroup("results_per_s"));
  drawChart($("#chart-backlog"), [...perGroup("lag"), ...perGroup("pending")]);
  drawChart($("#chart-dead"), perGroup("dead"));
  const stages = [...new Set(state.history.flatMap(s => Object.keys(s.latency_ms)))].sort();
  drawChart($("#chart-latency"), stages.map(stage => ({ label: stage,
    points: state.history.map(s => [s.t, s.latency_ms[stage] ?? null]) })));
}

// ---- gallery -------------------------------------------------------------------------------

async function loadGallery() {
  const { body } = await api("/api/gallery");
  const version = $("#gallery-version");
  version.dataset.version = body.version;
  version.textContent = `version ${body.version} · ${body.identities.length} identities`;
  $("#gallery").replaceChildren(...body.identities.map(identity => {
    const initials = el("span", { class: "thumb", text: identity.name.slice(0, 2).toUpperCase() });
    const thumb = identity.thumbnail
      ? el("img", { class: "thumb", alt: identity.name,
                    src: `/api/gallery/${encodeURIComponent(identity.name)}/thumbnail`,
                    onerror: event => event.target.replaceWith(initials) })
      : initials;
    return el("li", { "data-identity": identity.name }, thumb,
      el("span", { class: "who" }, el("strong", { text: identity.name }),
        el("br"), el("span", { class: "muted", text: `${identity.photos} photo(s) · ${time(identity.enrolled_at)}` })),
      el("button", { type: "button", text: "Remove", onclick: () => removeIdentity(identity.name, false) }),
      el("button", { type: "button", class: "danger", text: "Erase", onclick: () => removeIdentity(identity.name, true) }));
  }));
}

async function removeIdentity(name, erase) {
  const what = erase ? `Erase ${name} and purge every cached recognition of that face?` : `Remove ${name}?`;
  if (!confirm(what)) return;
  const path = `/api/gallery/${encodeURIComponent(name)}`;
  await api(erase ? `${path}/erase` : path, { method: erase ? "POST" : "DELETE" });
  await loadGallery();
}

async function enrol(event) {
  event.preventDefault();
  const form = event.target, result = $("#enrol-result"), button = $("button", form);
  button.disabled = true;
  result.replaceChildren(el("p", { class: "muted", text: "embedding…" }));
  try {
    const { status, body } = await api("/api/gallery", { method: "POST", body: new FormData(form) });
    if (status === 422) {
      result.replaceChildren(el("ul", { class: "error" },
        ...(body.errors || [{ file: "", error: body.error }]).map(e =>
          el("li", { text: e.file ? `${e.file}: ${e.error}` : e.error }))));
    } else {
      result.replaceChildren(el("p", { text: `enrolled ${body.enrolled} from ${body.photos} photo(s); gallery version ${body.version}` }));
      form.reset();
      await loadGallery();
    }
  } catch (error) {
    result.replaceChildren(el("p", { class: "error", text: error.message }));
  } finally {
    button.disabled = false;
  }
}

// ---- dead letters --------------------------------------------------------------------------

async function loadDead() {
  const { body } = await api("/api/dead");
  $("#dead-groups").replaceChildren(...Object.entries(body.total).filter(([, n]) => n).map(([group, n]) =>
    el("button", { type: "button", class: "danger", text: `Purge all ${n} of ${group}`,
                   onclick: () => deadAction(`/api/dead/${encodeURIComponent(group)}/purge`, `Purge every dead letter of ${group}?`) })));
  const none = el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No dead letters." }));
  $("#dead tbody").replaceChildren(...(body.letters.length ? [] : [none]), ...body.letters.map(letter => el("tr", { "data-id": letter.id },
    el("td", { text: letter.group }), el("td", { text: letter.id }), el("td", { text: letter.frame_id }),
    el("td", { text: letter.camera }), el("td", { text: letter.deliveries }), el("td", { text: letter.reason }),
    el("td", {},
      el("button", { type: "button", text: "Retry", onclick: () => deadAction(deadPath(letter, "retry")) }),
      el("button", { type: "button", class: "danger", text: "Purge", onclick: () => deadAction(deadPath(letter, "purge")) })))));
}

// Both come from Redis: encoded, so neither can add a path segment of its own.
function deadPath(letter, action) {
  return `/api/dead/${encodeURIComponent(letter.group)}/${encodeURIComponent(letter.id)}/${action}`;
}

async function deadAction(path, question) {
  if (question && !confirm(question)) return;
  try {
    await api(path, { method: "POST" });
  } catch (error) {
    alert(error.message);
  }
  await loadDead();
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  const { body } = await api("/api/session");
  state.csrf = body.csrf;
  state.header = body.header;
  state.history = (await api("/api/history")).body;
  drawCharts();
  $("#filters").addEventListener("submit", event => { event.preventDefault(); connect(); });
  $("#enrol").addEventListener("submit", enrol);
  $("#logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" }).catch(() => null);
    location.href = "/login";
  });
  await Promise.all([loadGallery(), loadDead()]);
  connect();
}

start();
