// The live presence board: renders tiles, ticks call timers, follows the event stream.
// The page is complete without this script (server-rendered); this keeps it current.
(function () {
  "use strict";

  const config = document.getElementById("board-config").dataset;
  const labels = JSON.parse(document.getElementById("state-labels").textContent);
  const board = document.getElementById("board");
  const connection = document.getElementById("connection");
  const search = document.getElementById("search");
  const filter = document.getElementById("filter");
  const tiles = new Map();
  let clockOffset = Date.parse(config.now) - Date.now(); // server time minus ours
  let stream = null;
  let failures = 0;

  function serverNow() {
    return Date.now() + clockOffset;
  }

  function load(list) {
    tiles.clear();
    for (const tile of list) tiles.set(tile.id, tile);
  }

  // A call past its deadline leaves the board without waiting for the server's sweep.
  function expireCalls() {
    let changed = false;
    for (const tile of tiles.values()) {
      if (tile.call && Date.parse(tile.call.expires_at) <= serverNow()) {
        tile.call = null;
        tile.state = tile.availability === "dnd" || tile.availability === "away" ? tile.availability : "available";
        tile.label = labels[tile.state];
        changed = true;
      }
    }
    return changed;
  }

  function duration(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function tileElement(tile) {
    const item = element("li", `tile state-${tile.state}`);
    item.dataset.id = tile.id;
    item.dataset.state = tile.state;
    const icon = element("span", "icon");
    icon.setAttribute("aria-hidden", "true");
    const who = element("span", "who");
    who.append(element("span", "name", tile.name || tile.number), " ", element("span", "ext", tile.number));
    item.append(icon, who, " ", element("span", "label", tile.label));
    if (tile.call) {
      const call = element("span", "call");
      const timer = element("time", "timer");
      timer.dataset.started = tile.call.started_at;
      timer.dataset.expires = tile.call.expires_at;
      call.append(element("span", "remote", tile.call.remote), " ", timer);
      item.append(" ", call);
    }
    if (tile.note) item.append(" ", element("span", "note", tile.note));
    return item;
  }

  function matches(tile) {
    const wanted = filter ? filter.value : "";
    if (wanted && tile.state !== wanted) return false;
    const text = search ? search.value.trim().toLowerCase() : "";
    if (!text) return true;
    return [tile.name, tile.number, tile.department, tile.note].some(
      (field) => (field || "").toLowerCase().includes(text),
    );
  }

  function render() {
    const groups = new Map();
    const counts = { on_call: 0, available: 0, dnd: 0, away: 0 };
    const sorted = [...tiles.values()].sort(
      (a, b) => a.department.localeCompare(b.department) || a.number.localeCompare(b.number, undefined, { numeric: true }),
    );
    for (const tile of sorted) {
      if (tile.state in counts) counts[tile.state] += 1;
      if (!matches(tile)) continue;
      if (!groups.has(tile.department)) groups.set(tile.department, []);
      groups.get(tile.department).push(tile);
    }
    const sections = [];
    for (const [department, list] of groups) {
      const section = element("section", "department");
      section.append(element("h2", "", department || "No department"));
      const ul = element("ul", "tiles");
      for (const tile of list) ul.append(tileElement(tile));
      section.append(ul);
      sections.push(section);
    }
    if (!sections.length) sections.push(element("p", "empty", tiles.size ? "Nobody matches." : "No extensions yet."));
    board.replaceChildren(...sections);
    for (const [state, count] of Object.entries(counts)) {
      const node = document.querySelector(`[data-count="${state}"]`);
      if (node) node.textContent = count;
    }
    tick();
  }

  function tick() {
    for (const timer of board.querySelectorAll("time.timer")) {
      const text = duration(serverNow() - Date.parse(timer.dataset.started));
      if (timer.textContent !== text) timer.textContent = text;
      timer.setAttribute("aria-label", `on the phone for ${text}`);
    }
  }

  function showConnection(text) {
    connection.textContent = text;
    connection.hidden = !text;
    document.body.classList.toggle("disconnected", Boolean(text));
  }

  function streamUrl() {
    const base = config.streamBase || `${location.protocol}//${location.hostname}:${config.streamPort}`;
    return `${base}/stream/board?t=${encodeURIComponent(config.streamPass)}`;
  }

  function connect() {
    stream = new EventSource(streamUrl());
    stream.addEventListener("open", () => {
      failures = 0;
      showConnection("");
    });
    stream.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      clockOffset = Date.parse(data.now) - Date.now();
      load(data.tiles);
      expireCalls();
      render();
    });
    stream.addEventListener("presence", (event) => {
      const tile = JSON.parse(event.data).tile;
      if (tile.state === "offline") tiles.delete(tile.id);
      else tiles.set(tile.id, tile);
      expireCalls();
      render();
    });
    stream.addEventListener("revoked", () => {
      stream.close();
      showConnection("This board has been switched off. Ask your administrator for a new link.");
    });
    stream.addEventListener("error", () => {
      if (connection.textContent.startsWith("This board has been switched off")) return;
      showConnection("Reconnecting…");
      if (stream.readyState === EventSource.CLOSED) {
        // The stream refused us (or is down): try again, then reload the page, which
        // renews our pass or shows why we cannot see this board any more.
        failures += 1;
        if (failures > 5) location.reload();
        else setTimeout(connect, 1000 * failures);
      }
    });
  }

  load(JSON.parse(document.getElementById("initial-tiles").textContent));
  if (search) search.addEventListener("input", render);
  if (filter) filter.addEventListener("change", render);
  render();
  setInterval(() => {
    if (expireCalls()) render();
    else tick();
  }, 1000);
  connect();
})();
