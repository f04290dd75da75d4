// The inspector's page: a live flows table fed by /api/flows and then /api/events (server-sent
// events), a filter, and the detail of the clicked flow from /api/flows/ID.
//
// Everything a flow carries (URLs, headers, bodies) came from the network, so it only ever reaches
// the DOM through textContent and attributes, never as HTML.
"use strict";

// The page keeps at most this many rows (the proxy's ring is usually smaller), so a page left open
// for a day stays light.
const MAX_ROWS = 5000;

const rows = document.getElementById("rows");
const filterBox = document.getElementById("filter");
const count = document.getElementById("count");
const live = document.getElementById("live");
const empty = document.getElementById("empty");
const list = document.getElementById("list");
const detail = document.getElementById("detail");
const detailTitle = document.getElementById("detail-title");
const detailBody = document.getElementById("detail-body");

/** Row elements by flow id. */
const byId = new Map();
let selected = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function size(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / 1024 / 1024).toFixed(1) + " MiB";
}

function duration(ms) {
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return (ms / 1000).toFixed(2) + " s";
}

function statusClass(status) {
  return status === null ? "status-none" : "status-" + String(status)[0];
}

/** The text the filter box matches against. */
function haystack(flow) {
  return [flow.method, flow.url, flow.status === null ? "" : flow.status, flow.kind, flow.error || ""]
    .join(" ")
    .toLowerCase();
}

function matches(row) {
  const needle = filterBox.value.trim().toLowerCase();
  return needle === "" || row.dataset.search.includes(needle);
}

function row(flow) {
  const tr = el(
    "tr",
    { class: "flow" + (flow.error ? " error" : ""), "data-id": flow.id, "data-url": flow.url },
    el("td", { class: "num muted" }, flow.id),
    el("td", {}, flow.method),
    el("td", { class: "url", title: flow.error ? flow.url + "\n" + flow.error : flow.url }, flow.url),
    el("td", { class: "num " + statusClass(flow.status) }, flow.status === null ? "—" : flow.status),
    el("td", {}, el("span", { class: "kind kind-" + flow.kind }, flow.kind)),
    el("td", { class: "num" }, size(flow.size)),
    el("td", { class: "num" }, duration(flow.duration_ms)),
  );
  tr.dataset.search = haystack(flow);
  tr.hidden = !matches(tr);
  tr.addEventListener("click", () => select(flow.id));
  return tr;
}

/** Adds a flow in id order (events may arrive slightly out of order); ignores one already shown. */
function add(flow) {
  if (byId.has(flow.id)) return;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const tr = row(flow);
  let after = rows.lastElementChild;
  while (after && Number(after.dataset.id) > flow.id) after = after.previousElementSibling;
  if (after) after.after(tr);
  else rows.prepend(tr);
  byId.set(flow.id, tr);
  while (byId.size > MAX_ROWS) {
    const oldest = rows.firstElementChild;
    byId.delete(Number(oldest.dataset.id));
    oldest.remove();
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function updateCount() {
  let shown = 0;
  for (const tr of byId.values()) if (!tr.hidden) shown++;
  const total = byId.size;
  count.textContent = shown === total ? total + (total === 1 ? " flow" : " flows") : shown + " of " + total + " flows";
  empty.hidden = total > 0;
}

async function loadFlows() {
  const answer = await fetch("api/flows", { cache: "no-store" });
  if (!answer.ok) throw new Error("GET /api/flows: " + answer.status);
  for (const flow of await answer.json()) add(flow);
  updateCount();
}

function listen() {
  // Subscribed before the snapshot is fetched, so no flow falls between the two; add() drops
  // the duplicates.
  const events = new EventSource("api/events");
  events.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.remove("off");
  });
  events.addEventListener("error", () => {
    live.textContent = "reconnecting";
    live.classList.add("off");
  });
  events.addEventListener("flow", (e) => {
    add(JSON.parse(e.data));
    updateCount();
  });
  // This page fell behind the proxy: take the whole list again.
  events.addEventListener("lagged", () => loadFlows().catch(console.error));
}

// ---- the detail pane ----

function headersTable(headers) {
  if (headers.length === 0) return el("p", { class: "muted" }, "none");
  return el(
    "table",
    { class: "headers" },
    el("tbody", {}, ...headers.map((h) => el("tr", {}, el("td", {}, h.name), el("td", {}, h.value)))),
  );
}

function bodyView(body) {
  const parts = [];
  const facts = [size(body.size) + " sent"];
  if (body.encoding) facts.push(body.encoding + ", " + size(body.shown_size) + " decoded");
  if (body.truncated) facts.push("truncated");
  parts.push(el("p", { class: "muted" }, facts.join(" · ")));
  if (body.note) parts.push(el("p", { class: "note" }, body.note));
  if (body.text !== null && body.text !== "") parts.push(el("pre", {}, prettyJson(body.text)));
  else if (body.hex !== null) parts.push(el("pre", { class: "hex" }, body.hex));
  return parts;
}

/** JSON bodies indented, anything else as it is. */
function prettyJson(text) {
  const t = text.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return text;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return text;
  }
}

function wsView(messages, total) {
  const items = messages.map((m) =>
    el(
      "div",
      { class: "ws " + m.direction },
      el(
        "div",
        { class: "meta" },
        (m.direction === "up" ? "↑ sent " : "↓ received ") + m.opcode + " · " + size(m.len) + " · +" + duration(m.at_ms) +
          (m.truncated ? " · truncated" : ""),
      ),
      m.text !== null ? el("pre", {}, m.text) : el("pre", { class: "hex" }, m.hex),
    ),
  );
  if (total > messages.length) items.push(el("p", { class: "note" }, "showing " + messages.length + " of " + total + " messages"));
  return items;
}

function fact(name, value) {
  return value === null || value === undefined || value === "" ? [] : [el("dt", {}, name), el("dd", {}, value)];
}

function renderDetail(f) {
  detailTitle.textContent = f.method + " " + f.url;
  const facts = el(
    "dl",
    { class: "facts" },
    ...fact("Status", f.status === null ? "no answer" : f.status + " " + f.reason),
    ...fact("Kind", f.kind),
    ...fact("Error", f.error),
    ...fact("Client", f.client),
    ...fact("Started", f.started),
    ...fact("Duration", duration(f.duration_ms)),
    ...fact("Wait", f.wait_ms === null ? null : duration(f.wait_ms)),
    ...fact("Version", f.http_version),
    ...fact("Bytes", "↑ " + size(f.bytes_up) + "  ↓ " + size(f.bytes_down)),
  );
  const sections = [facts];
  if (f.kind !== "tunnelled") {
    sections.push(el("h3", {}, "Request headers"), headersTable(f.request.headers));
    if (f.request.body.size > 0) sections.push(el("h3", {}, "Request body"), ...bodyView(f.request.body));
    sections.push(el("h3", {}, "Response headers"), headersTable(f.response.headers));
    if (f.response.body.size > 0) sections.push(el("h3", {}, "Response body"), ...bodyView(f.response.body));
  } else {
    sections.push(el("p", { class: "muted" }, "A tunnel the proxy relayed without looking inside: only its bytes are known."));
  }
  if (f.websocket_total > 0) sections.push(el("h3", {}, "WebSocket messages"), ...wsView(f.websocket, f.websocket_total));
  detailBody.replaceChildren(...sections);
}

async function select(id) {
  if (selected !== null && byId.has(selected)) byId.get(selected).classList.remove("selected");
  selected = id;
  byId.get(id)?.classList.add("selected");
  detail.hidden = false;
  // The address names the open flow, so a reload or a shared link opens it again.
  history.replaceState(null, "", "#" + id);
  detailTitle.textContent = "Loading flow " + id + "…";
  detailBody.replaceChildren();
  const answer = await fetch("api/flows/" + id, { cache: "no-store" });
  if (selected !== id) return;
  if (!answer.ok) {
    detailTitle.textContent = "Flow " + id;
    detailBody.replaceChildren(el("p", { class: "note" }, await answer.text()));
    return;
  }
  renderDetail(await answer.json());
}

function closeDetail() {
  if (selected !== null) byId.get(selected)?.classList.remove("selected");
  selected = null;
  detail.hidden = true;
  history.replaceState(null, "", location.pathname);
}

filterBox.addEventListener("input", () => {
  for (const tr of byId.values()) tr.hidden = !matches(tr);
  updateCount();
});
document.getElementById("close").addEventListener("click", closeDetail);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") closeDetail();
});

listen();
loadFlows()
  .then(() => {
    const id = Number(location.hash.slice(1));
    if (Number.isInteger(id) && id > 0) select(id);
  })
  .catch((e) => {
    empty.hidden = false;
    empty.textContent = "Could not load the flows: " + e.message;
  });
