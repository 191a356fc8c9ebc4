// The Odradek console's page: hash routes over the console's JSON API (/api/...), polled
// so that a failover shows without reloading. Everything from the cluster is put in the
// page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1500;
let timer = null;
let generation = 0;  // a newer route cancels the older one's pending renders

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function table(id, headers, rows) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, headers.map(([t, cls]) => h("th", { class: cls }, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) =>
      c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))))));
}

const num = (v) => h("td", { class: "num" }, v === null || v === undefined ? "–" : v);
const list = (xs) => (xs && xs.length ? xs.join(", ") : "–");

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function badge(text, kind) { return h("span", { class: "badge " + kind }, text); }

async function api(path, options) {
  const r = await fetch("/api" + path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function setBanner(text) {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.textContent = text || "";
}

function render(...nodes) {
  document.getElementById("view").replaceChildren(...nodes);
  document.getElementById("updated").textContent =
    "updated " + new Date().toLocaleTimeString();
}

// -- views ----------------------------------------------------------------------------

async function overview() {
  const o = await api("/overview");
  const statusKind = { healthy: "ok", degraded: "warn" }[o.status] || "bad";
  const q = o.quorum || {};
  const roles = q.roles || {};
  const nodesByUrl = Object.fromEntries((o.nodes || []).map((n) => [n.url, n]));
  const brokerRows = o.brokers.map((b) => {
    const m = b.metrics;
    let state = badge("alive", "ok");
    if (b.fenced) state = badge("fenced", "bad");
    else if (m && !m.up) state = badge("unreachable", "bad");
    return [b.id, `${b.host}:${b.port}`, b.rack || "–",
      h("td", { "data-broker-state": b.id }, state),
      b.id === o.controller_id ? "yes" : "",
      m ? (m.raft_role || "–") : "–",
      num(m ? m.partitions_led : null), num(m ? m.partitions_hosted : null),
      num(m ? m.under_replicated : null)];
  });
  const unmatched = (o.nodes || []).filter((n) => n.node_id === null || n.node_id === undefined);
  return [
    h("h1", {}, "Cluster ", h("span", { id: "health-status" }, badge(o.status, statusKind))),
    o.problems.length ? h("ul", { class: "problems", id: "problems" },
      o.problems.map((p) => h("li", {}, p))) : null,
    h("div", { class: "cards" },
      card("Cluster id", o.cluster_id || "–"),
      card("Active controller", o.controller_id ?? "–", "controller-id"),
      card("Quorum leader", q.leader_id ?? "–", "quorum-leader"),
      card("Raft term", q.term ?? "–"),
      card("Brokers", o.brokers.length),
      card("Topics", o.topics),
      card("Partitions", o.partitions),
      card("Under-replicated", o.under_replicated, "under-replicated"),
      card("Offline", o.offline, "offline")),
    h("h2", {}, "Brokers"),
    table("brokers", [["Id"], ["Address"], ["Rack"], ["State"], ["Controller"], ["Raft role"],
      ["Leads", "num"], ["Replicas", "num"], ["Under-replicated", "num"]], brokerRows),
    unmatched.length ? [h("h2", {}, "Nodes"), table("nodes", [["Metrics"], ["Up"], ["Raft role"]],
      unmatched.map((n) => [n.url, n.up ? "yes" : "no: " + n.error, n.raft_role || "–"]))] : null,
    Object.keys(roles).length ? [h("h2", {}, "Controller quorum"),
      q.disagreement ? h("p", { class: "muted" }, "voters disagree on the leader (an election just happened)") : null,
      table("quorum", [["Node"], ["Role"]], Object.entries(roles).map(([url, role]) =>
        [nodesByUrl[url] && nodesByUrl[url].node_id !== null ? nodesByUrl[url].node_id : url, role]))] : null,
  ];
}

function card(label, value, id) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value", id: id || null }, value));
}

async function topics() {
  const all = await api("/topics");
  const showInternal = sessionStorage.getItem("internal") === "1";
  const shown = all.filter((t) => showInternal || !t.internal);
  const toggle = h("label", { class: "inline" }, h("input", {
    type: "checkbox", id: "show-internal", checked: showInternal,
    onchange: (e) => { sessionStorage.setItem("internal", e.target.checked ? "1" : "0"); route(); },
  }), `internal topics (${all.length - all.filter((t) => !t.internal).length})`);
  return [
    h("h1", {}, "Topics"), toggle,
    table("topics", [["Name"], ["Partitions", "num"], ["Replication", "num"],
      ["Under-replicated", "num"], ["Offline", "num"], ["Size", "num"]],
      shown.map((t) => [h("a", { href: "#/topics/" + encodeURIComponent(t.name) }, t.name),
        num(t.partitions), num(t.replication_factor), num(t.under_replicated),
        num(t.offline), num(bytes(t.size_bytes))])),
  ];
}

async function topic(name) {
  const t = await api("/topics/" + encodeURIComponent(name));
  return [
    h("h1", {}, "Topic ", h("span", { id: "topic-name" }, t.name)),
    h("p", {}, h("a", { href: `#/topics/${encodeURIComponent(name)}/messages`, id: "browse-link" },
      "Browse and produce messages")),
    h("h2", {}, "Partitions"),
    table("partitions", [["Partition", "num"], ["Leader", "num"], ["Replicas"], ["ISR"],
      ["Log start", "num"], ["Log end", "num"], ["Size", "num"]],
      t.partitions.map((p) => [num(p.partition),
        h("td", { class: "num" }, p.leader === null ? badge("none", "bad") : p.leader),
        list(p.replicas),
        h("td", {}, list(p.isr), p.under_replicated ? [" ", badge("under-replicated", "warn")] : null),
        num(p.log_start), num(p.log_end), num(bytes(p.size_bytes))])),
    h("h2", {}, "Configs"),
    table("configs", [["Name"], ["Value"], ["Source"]],
      t.configs.map((c) => [c.name, c.sensitive ? "(sensitive)" : (c.value ?? "–"),
        h("td", { class: "muted" }, c.source.toLowerCase().replace(/_/g, " "))])),
  ];
}

async function groups() {
  const gs = await api("/groups");
  return [
    h("h1", {}, "Consumer groups"),
    gs.length ? table("groups", [["Group"], ["State"], ["Protocol type"]],
      gs.map((g) => [h("a", { href: "#/groups/" + encodeURIComponent(g.group) }, g.group),
        g.state || "–", g.protocol_type || "–"]))
      : h("p", { class: "muted" }, "No consumer groups yet."),
  ];
}

async function group(id) {
  const g = await api("/groups/" + encodeURIComponent(id));
  return [
    h("h1", {}, "Group ", h("span", { id: "group-name" }, g.group)),
    h("div", { class: "cards" }, card("State", g.state || "–", "group-state"),
      card("Members", g.members.length), card("Total lag", g.total_lag, "total-lag"),
      card("Assignor", g.protocol || "–")),
    h("h2", {}, "Members"),
    table("members", [["Member"], ["Client id"], ["Host"], ["Assignment"]],
      g.members.map((m) => [m.member_id, m.client_id || "–", m.host || "–",
        Object.entries(m.assignment).map(([t, ps]) => `${t}: ${ps.join(", ")}`).join("; ") || "–"])),
    h("h2", {}, "Lag per partition"),
    table("lag", [["Topic"], ["Partition", "num"], ["Committed", "num"], ["Log end", "num"],
      ["Lag", "num"], ["Member"]],
      g.partitions.map((p) => [p.topic, num(p.partition), num(p.committed), num(p.log_end),
        num(p.lag), p.member_id || "–"])),
  ];
}

// The message browser does not poll: it reads when asked.
async function messages(name) {
  const t = await api("/topics/" + encodeURIComponent(name));
  const state = JSON.parse(sessionStorage.getItem("browse:" + name) || "{}");
  const partition = h("select", { id: "partition" },
    t.partitions.map((p) => h("option", { value: p.partition, selected: String(p.partition) === String(state.partition ?? 0) },
      `${p.partition} (offsets ${p.log_start}–${p.log_end})`)));
  const mode = h("select", { id: "mode" },
    [["latest", "newest"], ["offset", "from offset"], ["timestamp", "from time"]].map(([v, l]) =>
      h("option", { value: v, selected: (state.mode || "latest") === v }, l)));
  const from = h("input", { id: "from", placeholder: "offset, or 2026-12-06T10:00:00", value: state.from || "", size: 24 });
  const limit = h("input", { id: "limit", type: "number", min: 1, max: 500, value: state.limit || 50, size: 5 });
  const format = h("select", { id: "format" }, ["text", "json", "hex"].map((f) =>
    h("option", { value: f, selected: (state.format || "text") === f }, f)));
  const results = h("div", { id: "results" });

  async function read(e) {
    if (e) e.preventDefault();
    const s = { partition: partition.value, mode: mode.value, from: from.value, limit: limit.value, format: format.value };
    sessionStorage.setItem("browse:" + name, JSON.stringify(s));
    const q = new URLSearchParams({ partition: s.partition, limit: s.limit });
    try {
      if (s.mode === "offset") q.set("offset", String(parseInt(s.from, 10) || 0));
      if (s.mode === "timestamp") {
        const ms = /^\d+$/.test(s.from.trim()) ? parseInt(s.from, 10) : Date.parse(s.from);
        if (Number.isNaN(ms)) throw new Error("give the time as 2026-12-06T10:00:00 or milliseconds since the epoch");
        q.set("timestamp", String(ms));
      }
      const page = await api(`/topics/${encodeURIComponent(name)}/messages?` + q);
      results.replaceChildren(messageTable(page, s.format));
    } catch (err) {
      results.replaceChildren(h("p", { class: "bad", id: "browse-error" }, String(err.message || err)));
    }
  }

  const produced = h("span", { id: "produced", class: "muted" });
  const pKey = h("input", { id: "produce-key", placeholder: "key (optional)" });
  const pValue = h("textarea", { id: "produce-value", rows: 2, cols: 40, placeholder: "value" });
  const pHeaders = h("input", { id: "produce-headers", placeholder: "headers: k=v, k2=v2", size: 24 });
  const pPartition = h("input", { id: "produce-partition", type: "number", min: 0, placeholder: "any", size: 5 });
  async function produce(e) {
    e.preventDefault();
    const headers = pHeaders.value.split(",").map((x) => x.trim()).filter(Boolean).map((kv) => {
      const i = kv.indexOf("=");
      return i < 0 ? { key: kv, value: { text: "" } } : { key: kv.slice(0, i), value: { text: kv.slice(i + 1) } };
    });
    const body = { value: { text: pValue.value }, headers };
    if (pKey.value) body.key = { text: pKey.value };
    if (pPartition.value !== "") body.partition = parseInt(pPartition.value, 10);
    try {
      const r = await api(`/topics/${encodeURIComponent(name)}/messages`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      produced.textContent = `written to partition ${r.partition} at offset ${r.offset}`;
      // Show it: the newest records of the partition it went to.
      partition.value = String(r.partition);
      mode.value = "latest";
      await read();
    } catch (err) {
      produced.textContent = "not written: " + (err.message || err);
    }
  }

  const view = [
    h("h1", {}, "Messages in ", h("a", { href: "#/topics/" + encodeURIComponent(name) }, name)),
    h("form", { class: "controls", id: "browse-form", onsubmit: read },
      h("label", {}, "Partition", partition), h("label", {}, "Start", mode),
      h("label", {}, "From", from), h("label", {}, "Limit", limit),
      h("label", {}, "Show as", format), h("button", { type: "submit", id: "read" }, "Read")),
    results,
    h("h2", {}, "Produce a test message"),
    h("form", { class: "inline", id: "produce-form", onsubmit: produce },
      h("label", {}, "Key", pKey), h("label", {}, "Value", pValue),
      h("label", {}, "Headers", pHeaders), h("label", {}, "Partition", pPartition),
      h("button", { type: "submit", id: "produce" }, "Produce"), produced),
  ];
  setTimeout(read, 0);
  return view;
}

function shownAs(v, format) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "null");
  let text;
  if (format === "hex" || (v.text === null && format !== "hex")) text = v.hex;
  else if (format === "json" && v.is_json) text = JSON.stringify(v.json, null, 2);
  else text = v.text;
  return h("pre", { class: "value" }, text, v.truncated ? h("span", { class: "muted" }, ` … (${v.size} bytes)`) : null);
}

function messageTable(page, format) {
  if (!page.messages.length) {
    return h("p", { class: "muted", id: "no-messages" },
      `No records from offset ${page.start} (log ${page.log_start}–${page.log_end}).`);
  }
  return h("div", { id: "message-page", "data-start": page.start, "data-format": format },
    h("p", { class: "muted" }, `Offsets ${page.messages[0].offset}–${page.messages[page.messages.length - 1].offset} of ${page.log_start}–${page.log_end}`),
    table("messages", [["Offset", "num"], ["Timestamp"], ["Key"], ["Value"], ["Headers"]],
      page.messages.map((m) => [num(m.offset), new Date(m.timestamp).toISOString(),
        shownAs(m.key, format), shownAs(m.value, format),
        m.headers.length ? h("div", {}, m.headers.map((hd) => h("div", {}, hd.key + ": ", shownAs(hd.value, format)))) : "–"])));
}

// -- routing --------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, "overview", () => overview(), true],
  [/^#\/topics$/, "topics", () => topics(), true],
  [/^#\/topics\/([^/]+)\/messages$/, "topics", (m) => messages(decodeURIComponent(m[1])), false],
  [/^#\/topics\/([^/]+)$/, "topics", (m) => topic(decodeURIComponent(m[1])), true],
  [/^#\/groups$/, "groups", () => groups(), true],
  [/^#\/groups\/([^/]+)$/, "groups", (m) => group(decodeURIComponent(m[1])), true],
];

async function route() {
  clearTimeout(timer);
  const mine = ++generation;
  const hash = location.hash || "#/";
  for (const [re, nav, view, poll] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    document.querySelectorAll("[data-nav]").forEach((a) =>
      a.classList.toggle("active", a.dataset.nav === nav));
    try {
      const nodes = await view(m);
      if (mine !== generation) return;
      render(...[nodes].flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
      setBanner("");
    } catch (err) {
      if (mine !== generation) return;
      setBanner("The cluster did not answer: " + (err.message || err) + " (retrying)");
    }
    if (poll && mine === generation) timer = setTimeout(route, POLL_MS);
    return;
  }
  render(h("p", {}, "No such page. ", h("a", { href: "#/" }, "Overview")));
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
