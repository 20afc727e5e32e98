// A person's page (#person=NAME): last seen where and when, visits over a time range, snapshots.
"use strict";

function personLink(name) {
  return el("a", { href: `#person=${encodeURIComponent(name)}`, class: "person", text: name });
}

function localInput(ms) {  // a datetime-local value in the browser's time zone
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function dwell(ms) {
  const s = Math.round((ms ?? 0) / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function when(ms) { return new Date(ms).toLocaleString(); }

async function showPerson(name, range) {
  const form = $("#person-search");
  form.elements.identity.value = name;
  const to = range?.to ?? Date.now(), from = range?.from ?? to - 24 * 3600 * 1000;
  if (!range) { form.elements.from.value = localInput(from); form.elements.to.value = ""; }
  const out = $("#person");
  out.replaceChildren(el("p", { class: "muted", text: "searching…" }));
  const query = new URLSearchParams({ from: String(Math.round(from)) });
  if (range?.to) query.set("to", String(Math.round(to)));
  let body;
  try {
    ({ body } = await api(`/api/people/${encodeURIComponent(name)}?${query}`));
  } catch (error) {
    out.replaceChildren(el("p", { class: "error", text: error.message }));
    return;
  }
  if (body.error) { out.replaceChildren(el("p", { class: "error", text: body.error })); return; }
  const last = body.last_seen;
  out.replaceChildren(
    el("h3", { text: body.name },
      el("span", { class: "muted", text: body.enrolled ? ` · enrolled from ${body.photos} photo(s)` : " · not in the gallery" })),
    el("p", { class: "last-seen" }, last
      ? `Last seen at ${last.group}/${last.camera}, ${when(last.last_ts)} (${ago(Date.now() - last.last_ts)}), for ${dwell(last.dwell_ms)}.`
      : "Not seen while the events streams keep their history."),
    el("div", { class: "snapshots" }, ...body.snapshots.slice(0, 24).map(url =>
      el("img", { class: "snapshot", src: url, alt: `snapshot of ${body.name}`, onerror: e => e.target.remove() }))),
    el("h4", { text: `${body.visits.length}${body.truncated ? "+" : ""} visit(s) from ${when(from)}${range?.to ? ` to ${when(to)}` : ""}` }),
    body.visits.length ? visitTable(body.visits) : el("p", { class: "muted", text: "No visit in this range." }));
}

function visitTable(visits) {
  return el("table", { class: "visits" },
    el("thead", {}, el("tr", {}, ...["", "camera", "from", "to", "dwell", "frames", ""].map(t => el("th", { text: t })))),
    el("tbody", {}, ...visits.map(v => el("tr", { "data-track": v.track },
      el("td", {}, v.snapshot ? el("img", { class: "snapshot", src: v.snapshot, alt: "", onerror: e => e.target.remove() }) : ""),
      el("td", { text: `${v.group}/${v.camera}` }), el("td", { text: when(v.first_ts) }),
      el("td", { text: when(v.last_ts) }), el("td", { text: dwell(v.dwell_ms) }),
      el("td", { text: v.frames ?? "–" }), el("td", { class: "muted", text: v.left ? "left" : "still there" })))));
}

function onPersonSearch(event) {
  event.preventDefault();
  const form = event.target, name = form.elements.identity.value.trim();
  if (!name) return;
  const from = form.elements.from.value ? new Date(form.elements.from.value).getTime() : undefined;
  const to = form.elements.to.value ? new Date(form.elements.to.value).getTime() : undefined;
  const hash = `#person=${encodeURIComponent(name)}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
  document.body.dataset.view = "person";
  showPerson(name, { from: from ?? Date.now() - 24 * 3600 * 1000, to });
}

// The view follows the address: #person=NAME shows that person, anything else the live page.
function route() {
  const match = location.hash.match(/^#person=(.+)$/);
  document.body.dataset.view = match ? "person" : "live";
  if (match) showPerson(decodeURIComponent(match[1]));
  else if (location.hash === "#people") document.body.dataset.view = "person";
}

function setUpPeople() {
  $("#person-search").addEventListener("submit", onPersonSearch);
  window.addEventListener("hashchange", route);
  route();
}
