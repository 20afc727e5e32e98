// The operators' page: live feed of visits (server-sent events), charts, gallery, dead letters.
"use strict";

const state = { csrf: "", header: "x-csrf-token", history: [], source: null, deadTotal: -1,
                groups: new Set(), status: null, streamUp: false };
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

// ---- live feed: visits first ---------------------------------------------------------------

function connect() {
  state.source?.close();
  const filters = new URLSearchParams(new FormData($("#filters")));
  for (const [key, value] of [...filters]) if (!value || key === "frames" || key === "unknown") filters.delete(key);
  $("#feed").replaceChildren();
  const source = new EventSource(`/api/stream?${filters}`);
  state.source = source;
  source.addEventListener("open", () => { state.streamUp = true; showState(); });
  source.addEventListener("error", () => { state.streamUp = false; showState(); });
  source.addEventListener("recognition", event => addFeedItem(JSON.parse(event.data)));
  source.addEventListener("event", event => addVisitItem(JSON.parse(event.data)));
  source.addEventListener("status", event => onStatus(JSON.parse(event.data)));
}

// The feed shows per-frame rows only when asked, unknowns only when asked (CSS does the hiding,
// so a toggle needs no reconnect and loses nothing).
function applyFeedToggles() {
  const form = $("#filters"), feed = $("#feed");
  feed.classList.toggle("show-frames", form.elements.frames.checked);
  feed.classList.toggle("unknown-only", form.elements.unknown.checked);
}

function addFeedItem(item) {
  const known = item.faces.some(face => face.identity);
  prependToFeed(el("li", { "data-id": item.id, "data-kind": item.kind, "data-known": String(known),
                           title: `frame ${item.frame_id}` },
    el("span", { text: time(item.ts) }),
    el("span", { text: `${item.group}/${item.camera} #${item.seq}` }),
    el("span", { class: "who", text: item.faces.length ? summariseFaces(item.faces) : "no face" }),
    el("span", { class: "muted", text: `${item.cached ? "cache" : "model"} ${Math.round(item.latency_ms.e2e ?? 0)} ms` })), "recognition");
}

// A visit is one line per track, updated by its events: appeared, identified, left (with its
// dwell); a site-wide `seen` gets a line of its own.
function addVisitItem(item) {
  const key = item.type === "seen" ? null : `${item.group}/${item.track}`;
  const old = key && $(`#feed li[data-visit="${CSS.escape(key)}"]`);
  const visit = { ...(old?.visit || {}), ...Object.fromEntries(Object.entries(item).filter(([, v]) => v !== null)) };
  if (item.type === "identified" || item.type === "left") {
    visit.identity = item.identity;  // a track's identity may go back to unknown
    visit.similarity = item.similarity;
  }
  visit.first_ts = Math.min(old?.visit?.first_ts ?? Infinity, item.first_ts ?? item.ts, item.ts);
  const similarity = visit.identity && visit.similarity != null ? ` (${visit.similarity.toFixed(2)})` : "";
  const stay = item.type === "left" ? dwell(item.dwell_ms) : `${dwell(item.ts - visit.first_ts)} so far`;
  const line = el("li", { "data-id": item.id, "data-kind": item.kind, "data-type": item.type,
                          "data-known": String(Boolean(visit.identity)), class: `event ${item.type}`,
                          title: `frame ${item.frame_id} · track ${item.track}` },
    visit.snapshot
      ? el("img", { class: "snapshot", src: visit.snapshot, alt: `snapshot of track ${item.track}`,
                    // Snapshots expire: an expired one (404) leaves the line without a picture.
                    onerror: event => event.target.replaceWith(el("span", { class: "snapshot none" })) })
      : el("span", { class: "snapshot none" }),
    el("span", { class: "who" }, `${item.type} `, visit.identity ? personLink(visit.identity) : "unknown", similarity),
    el("span", { text: `${item.group}/${item.camera}` }),
    el("span", { class: "dwell", text: item.type === "seen" ? "site-wide" : stay }),
    el("span", { class: "time", text: time(item.ts) }),
    el("span", { class: "muted", text: `track ${item.track}` }));
  line.visit = visit;
  if (key) line.dataset.visit = key;
  old?.remove();
  prependToFeed(line, "event");
}

function prependToFeed(line, kind) {
  const feed = $("#feed");
  feed.prepend(line);
  const rows = feed.querySelectorAll(`li[data-kind="${kind}"]`);
  for (let i = MAX_FEED; i < rows.length; i++) rows[i].remove();
}

// ---- status: honest state, tiles, charts ---------------------------------------------------

// What the page knows about its own connection: the event stream, and Redis behind it.
function showState() {
  const badge = $("#connection"), banner = $("#banner"), status = state.status;
  let text = "connecting…", kind = "";
  if (!state.streamUp) {
    [text, kind] = state.status ? ["page server unreachable, retrying…", "bad"] : ["connecting…", "warn"];
  } else if (status?.error) {
    [text, kind] = ["Redis unreachable", "bad"];
  } else if (status?.sampled) {
    [text, kind] = ["live", "ok"];
  } else if (status) {
    [text, kind] = ["waiting for Redis…", "warn"];
  }
  badge.textContent = text;
  badge.className = `badge ${kind}`;
  const down = state.streamUp && status?.error;
  banner.hidden = !(down || (!state.streamUp && state.status));
  if (down) {
    const since = status.error_since ? ` since ${time(status.error_since)}` : "";
    banner.textContent = `Redis is unreachable${since}: ${status.error.replace(/\.+$/, "")}. ` +
      "Workers cannot be seen; tiles and charts show what the page last saw.";
  } else if (!state.streamUp && state.status) {
    banner.textContent = "The page's server does not answer; the browser keeps retrying.";
  }
  const placeholder = $("#cameras .placeholder");
  if (placeholder) {
    placeholder.textContent = !status ? "Waiting for the first status sample…"
      : status.error ? "Cameras unknown: Redis is unreachable." : "No camera has sent a frame or a health report yet.";
  }
}

function onStatus(status) {
  state.status = status;
  showState();
  renderCameras(status.cameras, status.now);
  const select = $("#filters select[name=group]");
  for (const group of status.groups) {
    if (state.groups.has(group.group)) continue;
    state.groups.add(group.group);
    select.append(el("option", { value: group.group, text: group.group }));
  }
  const pending = status.groups.reduce((sum, g) => sum + g.pending, 0);
  $("#summary").textContent = status.error ? "" :
    `${status.groups.length} group(s) · ${status.cameras.length} camera(s) · pending ${pending} · ` +
    `gallery v${status.gallery_version} (${status.gallery_size})`;
  if (status.sample && (!state.history.length || state.history.at(-1).t < status.sample.t)) {
    state.history.push(status.sample);
    if (state.history.length > 2000) state.history.shift();
    drawCharts();
  }
  if (status.error) return;  // nothing below can be read now
  const dead = status.groups.reduce((sum, g) => sum + g.dead, 0);
  if (dead !== state.deadTotal) { state.deadTotal = dead; loadDead(); }
  if ($("#gallery-version").dataset.version !== String(status.gallery_version)) loadGallery();
}

function perGroup(field, label = field) {
  const groups = [...new Set(state.history.flatMap(s => Object.keys(s.groups)))];
  return groups.map(group => ({ label: `${group} ${label}`,
    points: state.history.map(s => [s.t, s.groups[group]?.[field] ?? null]) }));
}

function drawCharts() {
  drawChart($("#chart-throughput"), perGroup("results_per_s", "results/s"));
  drawChart($("#chart-backlog"), [...perGroup("lag"), ...perGroup("pending")], { integer: true });
  drawChart($("#chart-dead"), perGroup("dead"), { integer: true });
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
  $("#identities").replaceChildren(...body.identities.map(i => el("option", { value: i.name })));
  $("#gallery").replaceChildren(...body.identities.map(identity => {
    const initials = el("span", { class: "thumb", text: identity.name.slice(0, 2).toUpperCase() });
    const thumb = identity.thumbnail
      ? el("img", { class: "thumb", alt: identity.name,
                    src: `/api/gallery/${encodeURIComponent(identity.name)}/thumbnail`,
                    onerror: event => event.target.replaceWith(initials) })
      : initials;
    return el("li", { "data-identity": identity.name }, thumb,
      el("span", { class: "who" }, el("strong", {}, personLink(identity.name)),
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
  setUpViewer();
  setUpPeople();
  state.history = (await api("/api/history")).body;
  drawCharts();
  $("#filters").addEventListener("submit", event => { event.preventDefault(); connect(); });
  $("#filters").addEventListener("change", event => {
    if (event.target.type === "checkbox") applyFeedToggles();
  });
  applyFeedToggles();
  $("#enrol").addEventListener("submit", enrol);
  $("#logout").addEventListener("click", async () => {
    await api("/logout", { method: "POST" }).catch(() => null);
    location.href = "/login";
  });
  connect();
  await Promise.all([loadGallery(), loadDead()]).catch(() => null);  // Redis may be down now
}

// After every script has run: cameras.js and people.js define what start() calls.
document.addEventListener("DOMContentLoaded", start);
