// puaside lamp board: reads /board/events (Server-Sent Events over fetch, so
// the bearer token can be sent) and renders the AoRs in a virtualised list.
"use strict";
(function () {
  const ROW = 34; // px, matches --row
  const OVERSCAN = 8;
  const LAMP = {
    idle: ["○", "idle"], trying: ["↗", "trying"], ringing: ["◔", "ringing"],
    talking: ["●", "talking"], held: ["‖", "on hold"],
  };
  const REG = {
    registered: ["✓", "registered"], unregistered: ["✗", "unregistered"], expired: ["⌛", "expired"],
  };

  const $ = (id) => document.getElementById(id);
  const list = $("list"), spacer = $("spacer"), detail = $("detail"), detailBody = $("detailbody");
  const search = $("search"), stateSel = $("state"), groupBox = $("group");

  const items = new Map(); // hub key → document
  let lastId = "";
  let token = "";
  let rows = [];           // {group: name, count} or {key, doc}
  let structureDirty = true, renderQueued = false;
  let selected = "";       // hub key of the selected AoR
  let detailFor = "", detailTimer = 0;
  const pool = [];         // row elements
  // stats are read by the browser tests and the load benchmark; watch names
  // a hub key whose last arrival time and document are kept.
  const stats = { connects: 0, events: 0, bytes: 0, snapshots: 0, lastId: "", renders: 0, watch: "", watchAt: 0, watchDoc: null };
  window.boardStats = stats;

  // ---- token ----
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("puaside-board-token", hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = sessionStorage.getItem("puaside-board-token") || "";
  $("tokenform").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value;
    sessionStorage.setItem("puaside-board-token", token);
    $("tokenform").hidden = true;
    connect();
  });
  function headers() {
    const h = {};
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  // ---- connection ----
  let backoff = 500, controller = null;
  function setConn(state, label) {
    const c = $("conn");
    c.dataset.state = state;
    c.querySelector(".icon").textContent = { live: "●", reconnecting: "◌", connecting: "◌", auth: "✗" }[state] || "?";
    c.querySelector(".label").textContent = label;
  }
  async function connect() {
    if (controller) controller.abort();
    controller = new AbortController();
    const h = headers();
    if (lastId) h["Last-Event-ID"] = lastId;
    let res;
    try {
      res = await fetch("/board/events", { headers: h, signal: controller.signal, cache: "no-store" });
    } catch (e) {
      return retry();
    }
    if (res.status === 401) {
      setConn("auth", "token needed");
      $("tokenform").hidden = false;
      $("tokenerr").textContent = token ? "wrong token" : "";
      $("token").focus();
      return;
    }
    if (!res.ok || !res.body) return retry();
    stats.connects++;
    setConn("live", "live");
    backoff = 500;
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stats.bytes += value.length;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          onBlock(block);
        }
      }
    } catch (e) { /* connection lost */ }
    retry();
  }
  function retry() {
    setConn("reconnecting", "reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  }
  function onBlock(block) {
    let id = "", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const f = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? "" : line.slice(c + 1);
      if (v.startsWith(" ")) v = v.slice(1);
      if (f === "id") id = v;
      else if (f === "data") data += (data ? "\n" : "") + v;
    }
    if (!data) return;
    let batch;
    try { batch = JSON.parse(data); } catch (e) { return; }
    apply(batch);
    if (id) { lastId = id; stats.lastId = id; }
  }
  function apply(batch) {
    stats.events++;
    if (batch.reset) { items.clear(); stats.snapshots++; structureDirty = true; }
    let linesChanged = false, selChanged = false;
    for (const it of batch.items) {
      if (!items.has(it.k)) structureDirty = true;
      items.set(it.k, it.v);
      if (it.k.startsWith("l:")) linesChanged = true;
      else if (it.k === "s:") renderServer(it.v);
      if (it.k === selected) selChanged = true;
      if (it.k === stats.watch) { stats.watchAt = Date.now(); stats.watchDoc = it.v; }
    }
    for (const k of batch.gone) {
      items.delete(k);
      structureDirty = true;
      if (k.startsWith("l:")) linesChanged = true;
    }
    if (filtering()) structureDirty = true;
    summaryDirty = true;
    if (linesChanged || batch.reset) renderLines();
    if (batch.reset && items.has("s:")) renderServer(items.get("s:"));
    if (selChanged) scheduleDetail();
    queueRender();
  }

  // ---- server and lines ----
  function renderServer(s) {
    const el = $("server");
    let state = "unknown", icon = "?", label = "presence server: not watched";
    if (s.watched && s.up) { state = "up"; icon = "✓"; label = "presence server " + (s.name || "") + ": reachable"; }
    else if (s.watched) { state = "down"; icon = "⚠"; label = "presence server " + (s.name || "") + ": unreachable — " + (s.error || ""); }
    el.dataset.state = state;
    el.querySelector(".icon").textContent = icon;
    el.querySelector(".label").textContent = label;
  }
  function renderLines() {
    const box = $("lines");
    box.textContent = "";
    const keys = [...items.keys()].filter((k) => k.startsWith("l:")).sort();
    for (const k of keys) {
      const ln = items.get(k);
      const card = el("div", "linecard");
      card.dataset.line = ln.aor;
      card.append(el("h2", "", "Shared line " + ln.aor));
      const phones = el("div", "muted", ln.phones.length + " phone(s): " + ln.phones.map((p) => p.contact + (p.subscribed ? "" : " (not subscribed)")).join(", "));
      card.append(phones);
      if (ln.appearances.length === 0) card.append(el("div", "appearance lamp-idle", "○ all appearances free"));
      for (const a of ln.appearances) {
        const lamp = a.held ? "held" : a.state === "confirmed" ? "talking" : a.state === "terminated" ? "idle" : "ringing";
        const s = el("div", "appearance lamp-" + lamp, LAMP[lamp][0] + " appearance " + a.index + ": " + a.state + (a.held ? ", on hold" : "") + " — held by " + a.contact);
        s.dataset.index = a.index;
        s.dataset.state = a.state;
        card.append(s);
      }
      box.append(card);
    }
  }

  // ---- filtering and rows ----
  function filtering() { return search.value.trim() !== "" || stateSel.value !== ""; }
  function matches(d, q, st) {
    if (st) {
      if (st === "busy" && d.lamp !== "talking" && d.lamp !== "held") return false;
      if (st === "ringing" && d.lamp !== "ringing" && d.lamp !== "trying") return false;
      if (st === "failing" && !(d.pubs && d.pubs.length)) return false;
      if ((st === "registered" || st === "unregistered" || st === "expired") && d.reg !== st) return false;
    }
    if (!q) return true;
    if (d.aor.toLowerCase().includes(q) || (d.remote || "").toLowerCase().includes(q)) return true;
    return d.contacts.some((c) => (c.ua || "").toLowerCase().includes(q) || c.uri.toLowerCase().includes(q));
  }
  function buildRows() {
    const q = search.value.trim().toLowerCase(), st = stateSel.value;
    const docs = [];
    for (const [k, d] of items) if (k.startsWith("a:") && matches(d, q, st)) docs.push([k, d]);
    docs.sort((x, y) => (x[1].domain < y[1].domain ? -1 : x[1].domain > y[1].domain ? 1 : x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    rows = [];
    let dom = null;
    const groups = groupBox.checked;
    for (const [k, d] of docs) {
      if (groups && d.domain !== dom) {
        dom = d.domain;
        rows.push({ group: dom, count: 0 });
      }
      rows.push({ key: k });
    }
    if (groups) {
      let g = null;
      for (const r of rows) { if (r.group !== undefined) g = r; else g.count++; }
    }
    shown = docs.length;
    spacer.style.height = rows.length * ROW + "px";
    structureDirty = false;
  }

  // ---- virtualised rendering ----
  let shown = 0, summaryDirty = true;
  function renderSummary() {
    let reg = 0, busy = 0, ring = 0, fail = 0;
    for (const [k, d] of items) {
      if (!k.startsWith("a:")) continue;
      if (d.reg === "registered") reg++;
      if (d.lamp === "talking" || d.lamp === "held") busy++;
      if (d.lamp === "ringing" || d.lamp === "trying") ring++;
      if (d.pubs && d.pubs.length) fail++;
    }
    $("summary").textContent = shown + " AoRs shown · " + reg + " registered · " + ring + " ringing · " + busy + " busy · " + fail + " failing";
    summaryDirty = false;
  }
  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(render);
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function dur(since) {
    if (!since) return "";
    let s = Math.max(0, Math.floor((Date.now() - since) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s %= 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(s).padStart(2, "0");
  }
  function rowEl(i) {
    let r = pool[i];
    if (!r) {
      r = el("div", "row");
      r.setAttribute("role", "option");
      r.append(el("span", "aor"), el("span", "reg"), el("span", "lamp"), el("span", "ua muted"), el("span", "pub"));
      r.addEventListener("click", () => { if (r.dataset.key) { select(r.dataset.key); openDetail(); } });
      spacer.append(r);
      pool[i] = r;
    }
    return r;
  }
  function render() {
    renderQueued = false;
    stats.renders++;
    if (structureDirty) { buildRows(); summaryDirty = true; }
    if (summaryDirty) renderSummary();
    const top = list.scrollTop, h = list.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + h) / ROW) + OVERSCAN);
    let n = 0;
    for (let i = first; i < last; i++, n++) {
      const r = rowEl(n), row = rows[i];
      r.hidden = false;
      r.style.top = i * ROW + "px";
      const [a, reg, lamp, ua, pub] = r.children;
      if (row.group !== undefined) {
        r.className = "row group";
        r.removeAttribute("role");
        r.dataset.key = "";
        delete r.dataset.aor;
        r.removeAttribute("aria-selected");
        r.id = "";
        a.textContent = row.group + " (" + row.count + ")";
        reg.textContent = lamp.textContent = ua.textContent = pub.textContent = "";
        continue;
      }
      const d = items.get(row.key);
      r.className = "row";
      r.setAttribute("role", "option");
      r.id = "opt-" + i;
      r.dataset.key = row.key;
      r.dataset.aor = d.aor;
      r.dataset.reg = d.reg;
      r.dataset.lamp = d.lamp;
      r.setAttribute("aria-selected", row.key === selected ? "true" : "false");
      a.textContent = d.aor;
      const rg = REG[d.reg] || ["?", d.reg];
      reg.className = "reg reg-" + d.reg;
      reg.textContent = rg[0] + " " + rg[1] + (d.contacts.length > 1 ? " ×" + d.contacts.length : "");
      const lp = LAMP[d.lamp] || ["?", d.lamp];
      lamp.className = "lamp lamp-" + d.lamp;
      lamp.textContent = lp[0] + " " + lp[1] + (d.since ? " " + dur(d.since) : "");
      ua.textContent = (d.remote ? (d.dir === "initiator" ? "→ " : "← ") + d.remote : (d.contacts[0] && d.contacts[0].ua) || "") +
        (d.watchers ? " · " + d.watchers + " watcher" + (d.watchers > 1 ? "s" : "") : "");
      if (d.pubs && d.pubs.length) {
        const p = d.pubs[0];
        pub.className = "pub pubfail";
        pub.textContent = "⚠ " + p.event + " " + (p.status || "") + " " + p.reason;
      } else {
        pub.className = "pub";
        pub.textContent = "";
      }
    }
    for (let i = n; i < pool.length; i++) { pool[i].hidden = true; pool[i].dataset.key = ""; delete pool[i].dataset.aor; }
    const si = rows.findIndex((r) => r.key === selected);
    if (si >= 0) list.setAttribute("aria-activedescendant", "opt-" + si);
    else list.removeAttribute("aria-activedescendant");
  }
  list.addEventListener("scroll", queueRender, { passive: true });
  window.addEventListener("resize", queueRender);
  setInterval(queueRender, 1000); // durations
  for (const c of [search, stateSel, groupBox]) c.addEventListener("input", () => { structureDirty = true; queueRender(); });

  // ---- keyboard and selection ----
  function select(key) {
    selected = key;
    const i = rows.findIndex((r) => r.key === key);
    if (i >= 0) {
      const top = i * ROW;
      if (top < list.scrollTop) list.scrollTop = top;
      else if (top + ROW > list.scrollTop + list.clientHeight) list.scrollTop = top + ROW - list.clientHeight;
    }
    queueRender();
    if (!detail.hidden) openDetail();
  }
  function move(delta) {
    if (structureDirty) buildRows();
    let i = rows.findIndex((r) => r.key === selected);
    if (i < 0) i = delta > 0 ? -1 : rows.length;
    let j = Math.max(0, Math.min(rows.length - 1, i + delta));
    while (rows[j] && rows[j].group !== undefined) j += delta > 0 || j === 0 ? 1 : -1;
    if (rows[j]) select(rows[j].key);
  }
  list.addEventListener("keydown", (e) => {
    const page = Math.max(1, Math.floor(list.clientHeight / ROW) - 1);
    const k = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -1e9, End: 1e9 }[e.key];
    if (k !== undefined) { e.preventDefault(); move(k); }
    else if (e.key === "Enter" && selected) { e.preventDefault(); openDetail(); detail.focus(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
    else if (e.key === "Escape" && !detail.hidden) { closeDetail(); }
  });
  $("close").addEventListener("click", closeDetail);

  // ---- detail panel ----
  function closeDetail() { detail.hidden = true; detailFor = ""; list.focus(); }
  function scheduleDetail() {
    if (detail.hidden) return;
    clearTimeout(detailTimer);
    detailTimer = setTimeout(openDetail, 100);
  }
  async function openDetail() {
    if (!selected) return;
    const d = items.get(selected);
    if (!d) return;
    detail.hidden = false;
    detailFor = selected;
    let res, info;
    try {
      res = await fetch("/board/aor?aor=" + encodeURIComponent(d.aor), { headers: headers(), cache: "no-store" });
      info = await res.json();
    } catch (e) { return; }
    if (detailFor !== selected || !res.ok) return;
    detailBody.textContent = "";
    detailBody.dataset.aor = info.aor;
    detailBody.append(el("h2", "", info.aor));
    const rg = REG[info.reg] || ["?", info.reg], lp = LAMP[info.lamp] || ["?", info.lamp];
    detailBody.append(el("div", "reg-" + info.reg, rg[0] + " " + rg[1]));
    detailBody.append(el("div", "lamp-" + info.lamp, lp[0] + " " + lp[1] + (info.remote ? " with " + info.remote : "") + (info.since ? " for " + dur(info.since) : "")));
    section("Contacts", info.contacts.map((c) => c.uri + (c.ua ? " — " + c.ua : "") + (c.expires ? " — expires " + new Date(c.expires).toLocaleTimeString() : "")), "none");
    section("Failing publications", (info.pubs || []).map((p) => p.event + ": " + (p.status || "no answer") + " " + p.reason), "none", "pubfail");
    if (info.watcher_list.length) section("Watchers", info.watcher_list.map((w) => w.uri + " (" + w.event + ", " + w.status + ")"));
    const h = el("h3", "", "Last events");
    const ul = el("ul", "events");
    for (const ev of info.events.slice().reverse()) {
      const li = el("li");
      li.dataset.kind = ev.kind;
      li.append(el("time", "", new Date(ev.at).toLocaleTimeString()), document.createTextNode(ev.text));
      ul.append(li);
    }
    if (!info.events.length) ul.append(el("li", "muted", "none yet"));
    detailBody.append(h, ul);
  }
  function section(title, lines, empty, cls) {
    detailBody.append(el("h3", "", title));
    const ul = el("ul", cls || "");
    for (const l of lines) ul.append(el("li", "", l));
    if (!lines.length) ul.append(el("li", "muted", empty));
    detailBody.append(ul);
  }

  connect();
})();
