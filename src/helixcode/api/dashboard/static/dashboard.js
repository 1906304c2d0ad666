// HelixCode dashboard: the one script module of the pages `helix serve` renders. No dependencies
// and no build: the browser runs this file as written.
//
// - Every page: times shown in local time; the logout form.
// - Jobs: submitting a plan file or a goal (operators).
// - A job: its task graph on a <canvas> (boxes laid out by the server, see layout.py), kept live
//   from the job's event stream (Server-Sent Events with the session cookie); a task's detail;
//   the timeline of attempts per worker slot; the event log; pause, resume, cancel, retry, skip.
//
// Controls send the page's CSRF token in a header; the server refuses them without it.

const STATUS_COLORS = {
  blocked: "#aab4c0", ready: "#6cb4ee", running: "#f2a541", retrying: "#e8875f",
  waiting: "#b9a3e6", paused: "#d6c25a", succeeded: "#5fb57d", failed: "#d9534f",
  upstream_failed: "#b07070", cancelled: "#7d7d7d", skipped: "#9cc9b0",
};
const OUTCOME_COLORS = { succeeded: "#5fb57d", failed: "#d9534f", retried: "#e8875f", requeued: "#aab4c0", cancelled: "#7d7d7d" };

const $ = (sel, root = document) => root.querySelector(sel);
const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function localTime(ts) {
  return ts == null ? "—" : new Date(ts * 1000).toLocaleString();
}

function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function localTimes(root = document) {
  for (const t of root.querySelectorAll("time[data-ts]")) {
    t.title = t.textContent;
    t.textContent = localTime(Number(t.dataset.ts));
  }
}

async function send(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body ?? {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const faults = (data.errors || []).map((e) => e.message).join("; ");
    throw new Error(faults || data.detail || `${response.status} ${response.statusText}`);
  }
  return data;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new Error("logged out");
  }
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

function showError(node, error) {
  node.textContent = error ? String(error.message || error) : "";
  node.hidden = !error;
}

// -- the jobs page ------------------------------------------------------------------------------

function initJobs() {
  // While a job on the page is unfinished, the table refreshes itself (the page as served, re-read).
  setInterval(async () => {
    const open = document.querySelector('#jobs tr[data-status="running"], #jobs tr[data-status="paused"]');
    if (!open || document.hidden) return;
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("#jobs tbody");
    if (fresh) { $("#jobs tbody").replaceWith(fresh); localTimes(fresh); }
  }, 5000);
  const error = $("#submit-error");
  const planForm = $("#submit-plan");
  const goalForm = $("#submit-goal");
  planForm?.elements.file.addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (file) planForm.elements.plan.value = await file.text();
  });
  const submit = (form, body) => async (ev) => {
    ev.preventDefault();
    showError(error, null);
    try {
      const job = await send("/ui/jobs", body());
      location.href = `/jobs/${job.id}`;
    } catch (e) {
      showError(error, e);
    }
  };
  planForm?.addEventListener("submit", submit(planForm, () => ({ plan: planForm.elements.plan.value })));
  goalForm?.addEventListener("submit", submit(goalForm, () => ({
    goal: goalForm.elements.goal.value,
    name: goalForm.elements.name.value || null,
    workdir: goalForm.elements.workdir.value || null,
  })));
}

// -- the task graph -----------------------------------------------------------------------------

// Box fields, as the server sends them: [key, kind, x, y, w, h, members, title, status].
const K = 0, KIND = 1, X = 2, Y = 3, W = 4, H = 5, MEMBERS = 6, TITLE = 7, STATUS = 8;

class Graph {
  constructor(canvas, jobId, onSelect) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.jobId = jobId;
    this.onSelect = onSelect;
    this.view = null; // {scale, x, y}: screen = (world - (x, y)) * scale
    this.selected = null;
    this.pending = false;
    this.loads = 0;
    this.listen();
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  async load(open) {
    const query = open == null ? "" : `?open=${encodeURIComponent([...open].join(","))}`;
    const data = await getJSON(`/ui/jobs/${this.jobId}/graph${query}`);
    const old = this.tasks;
    this.data = data;
    this.tasks = {};
    for (const [key, [status, owner, parent]] of Object.entries(data.tasks)) {
      const tag = old?.[key] && old[key].tag > data.tag ? old[key] : null;
      this.tasks[key] = { status: tag ? tag.status : status, owner, parent, tag: tag ? tag.tag : data.tag };
    }
    this.groupKeys = new Set(Object.values(data.tasks).map((t) => t[2]).filter(Boolean));
    this.recount();
    if (!this.view) this.fit();
    this.resize();
    this.loads += 1;
    document.body.dataset.graphLoads = String(this.loads);
    document.body.dataset.graphBoxes = String(data.boxes.length);
    return data;
  }

  openGroups() {
    return new Set(this.data.boxes.filter((b) => b[KIND] === "frame").map((b) => b[K]));
  }

  toggle(key) {
    const open = this.openGroups();
    if (open.has(key)) {
      for (const k of [...open]) if (k === key || this.isInside(k, key)) open.delete(k);
    } else open.add(key);
    return this.load(open);
  }

  isInside(key, ancestor) {
    for (let p = this.tasks[key]?.parent; p; p = this.tasks[p]?.parent) if (p === ancestor) return true;
    return false;
  }

  recount() {
    // Each closed group's members by status (a group box is coloured by them).
    this.counts = new Map();
    for (const [key, t] of Object.entries(this.tasks)) {
      const box = this.data.boxes[t.owner];
      if (box[KIND] !== "group" || box[K] === key) continue;
      const c = this.counts.get(t.owner) || {};
      c[t.status] = (c[t.status] || 0) + 1;
      this.counts.set(t.owner, c);
    }
  }

  // States from the stream: {key: [status, progress, message, attempts]}, as of event `tag`.
  apply(states, tag) {
    let unknown = false;
    for (const [key, state] of Object.entries(states)) {
      const t = this.tasks?.[key];
      if (!t) { unknown = true; continue; }
      if (tag < t.tag) continue;
      t.tag = tag;
      t.progress = state[1];
      t.message = state[2];
      if (t.status === state[0]) continue;
      const box = this.data.boxes[t.owner];
      if (box[KIND] === "group" && box[K] !== key) {
        const c = this.counts.get(t.owner) || {};
        c[t.status] = Math.max(0, (c[t.status] || 1) - 1);
        c[state[0]] = (c[state[0]] || 0) + 1;
        this.counts.set(t.owner, c);
      }
      t.status = state[0];
      if (box[K] === key) box[STATUS] = state[0];
    }
    this.draw();
    return unknown;
  }

  // What is drawn, for people who cannot see the canvas and for tests: every task's status and
  // the box that shows it.
  snapshot() {
    const out = {};
    for (const [key, t] of Object.entries(this.tasks)) {
      const box = this.data.boxes[t.owner];
      out[key] = { status: t.status, box: box[K], kind: box[KIND] };
    }
    return out;
  }

  screenOf(key) {
    const box = this.data.boxes[this.tasks[key].owner];
    const { scale, x, y } = this.view;
    const hy = box[KIND] === "frame" ? 12 : box[H] / 2;
    return { x: (box[X] + box[W] / 2 - x) * scale, y: (box[Y] + hy - y) * scale };
  }

  fit() {
    const rect = this.canvas.getBoundingClientRect();
    const w = Math.max(rect.width, 100), h = Math.max(rect.height, 100);
    const scale = Math.min(1.5, Math.max(0.02, Math.min(w / (this.data.width + 40), h / (this.data.height + 40))));
    this.view = {
      scale,
      x: -(w / scale - this.data.width) / 2,
      y: -(h / scale - this.data.height) / 2,
    };
    this.draw();
  }

  center(key) {
    this.touched = true;
    const box = this.data.boxes[this.tasks[key].owner];
    const rect = this.canvas.getBoundingClientRect();
    this.view.scale = Math.max(this.view.scale, 0.8);
    this.view.x = box[X] + box[W] / 2 - rect.width / 2 / this.view.scale;
    this.view.y = box[Y] + box[H] / 2 - rect.height / 2 / this.view.scale;
    this.draw();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.round(rect.width * dpr);
    this.canvas.height = Math.round(rect.height * dpr);
    if (this.data && !this.touched) this.fit(); // the whole graph until the view is moved
    else this.draw();
  }

  draw() {
    if (this.pending || !this.data) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
      document.body.dataset.graphReady = String(this.data.boxes.length);
    });
  }

  render() {
    const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    const { scale, x: vx, y: vy } = this.view;
    const cw = this.canvas.width / dpr, ch = this.canvas.height / dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, -vx * dpr * scale, -vy * dpr * scale);
    const x0 = vx, y0 = vy, x1 = vx + cw / scale, y1 = vy + ch / scale;
    const boxes = this.data.boxes;
    const seen = (b) => b[X] < x1 && b[X] + b[W] > x0 && b[Y] < y1 && b[Y] + b[H] > y0;
    const px = 1 / scale;
    const detail = scale * 34 >= 14; // text only when a box is tall enough to read

    // Frames (open groups) under everything.
    for (const b of boxes) {
      if (b[KIND] !== "frame" || !seen(b)) continue;
      ctx.fillStyle = "rgba(120,130,150,0.06)";
      ctx.fillRect(b[X], b[Y], b[W], b[H]);
      ctx.fillStyle = STATUS_COLORS[b[STATUS]] || "#ccc";
      ctx.globalAlpha = 0.35;
      ctx.fillRect(b[X], b[Y], b[W], 24);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#8a94a6";
      ctx.lineWidth = px;
      ctx.strokeRect(b[X], b[Y], b[W], b[H]);
      if (detail) this.label(`▾ ${b[K]} · ${b[TITLE]}`, b[X] + 6, b[Y] + 16, b[W] - 12, "600 12px system-ui");
    }

    // Arrows, one path: from a dependency's right edge to its dependent's left edge.
    ctx.beginPath();
    for (const [a, c] of this.data.edges) {
      const s = boxes[a], t = boxes[c];
      const sx = s[X] + s[W], sy = s[Y] + (s[KIND] === "frame" ? 12 : s[H] / 2);
      const tx = t[X], ty = t[Y] + (t[KIND] === "frame" ? 12 : t[H] / 2);
      if (Math.max(sx, tx) < x0 || Math.min(sx, tx) > x1 || Math.max(sy, ty) < y0 || Math.min(sy, ty) > y1) continue;
      const dx = Math.max(20, (tx - sx) / 2);
      ctx.moveTo(sx, sy);
      ctx.bezierCurveTo(sx + dx, sy, tx - dx, ty, tx, ty);
    }
    ctx.strokeStyle = detail ? "rgba(90,100,120,0.55)" : "rgba(90,100,120,0.25)";
    ctx.lineWidth = px;
    ctx.stroke();
    if (detail) {
      // Arrowheads where a dependent starts: the arrow reads "is needed by".
      ctx.beginPath();
      const seenHead = new Set();
      for (const [, c] of this.data.edges) {
        if (seenHead.has(c)) continue;
        seenHead.add(c);
        const t = boxes[c];
        const tx = t[X], ty = t[Y] + (t[KIND] === "frame" ? 12 : t[H] / 2);
        if (tx < x0 || tx > x1 || ty < y0 || ty > y1) continue;
        ctx.moveTo(tx, ty);
        ctx.lineTo(tx - 7, ty - 4);
        ctx.lineTo(tx - 7, ty + 4);
        ctx.closePath();
      }
      ctx.fillStyle = "rgba(90,100,120,0.8)";
      ctx.fill();
    }

    // Tasks, batched by colour; then closed groups with their members' colours.
    const byColor = new Map();
    for (const b of boxes) {
      if (b[KIND] !== "task" || !seen(b)) continue;
      const color = STATUS_COLORS[b[STATUS]] || "#ccc";
      if (!byColor.has(color)) byColor.set(color, []);
      byColor.get(color).push(b);
    }
    for (const [color, list] of byColor) {
      ctx.fillStyle = color;
      ctx.beginPath();
      for (const b of list) ctx.rect(b[X], b[Y], b[W], b[H]);
      ctx.fill();
    }
    for (let i = 0; i < boxes.length; i++) {
      const b = boxes[i];
      if (b[KIND] !== "group" || !seen(b)) continue;
      ctx.fillStyle = "#eef1f5";
      ctx.fillRect(b[X], b[Y], b[W], b[H]);
      const counts = this.counts.get(i) || {};
      let off = 0;
      for (const [status, n] of Object.entries(counts)) {
        if (!n) continue;
        const w = (b[W] * n) / b[MEMBERS];
        ctx.fillStyle = STATUS_COLORS[status] || "#ccc";
        ctx.fillRect(b[X] + off, b[Y] + b[H] - 12, w, 12);
        off += w;
      }
      ctx.strokeStyle = "#56607a";
      ctx.lineWidth = 2 * px;
      ctx.strokeRect(b[X], b[Y], b[W], b[H]);
      ctx.strokeRect(b[X] + 3, b[Y] + 3, b[W] - 6, b[H] - 6);
    }
    if (detail) {
      for (const b of boxes) {
        if (!seen(b) || b[KIND] === "frame") continue;
        if (b[KIND] === "group") {
          this.label(`▸ ${b[K]} (${b[MEMBERS]})`, b[X] + 8, b[Y] + 17, b[W] - 16, "600 12px system-ui");
          this.label(b[TITLE], b[X] + 8, b[Y] + 30, b[W] - 16, "11px system-ui");
        } else {
          this.label(b[K], b[X] + 6, b[Y] + 14, b[W] - 12, "600 11px system-ui");
          this.label(b[TITLE], b[X] + 6, b[Y] + 27, b[W] - 12, "11px system-ui");
        }
      }
    }
    if (this.selected && this.tasks[this.selected]) {
      const b = boxes[this.tasks[this.selected].owner];
      ctx.strokeStyle = "#1d4ed8";
      ctx.lineWidth = 3 * px;
      ctx.strokeRect(b[X] - 2 * px, b[Y] - 2 * px, b[W] + 4 * px, (b[KIND] === "frame" ? 24 : b[H]) + 4 * px);
    }
  }

  label(text, x, y, width, font) {
    const ctx = this.ctx;
    ctx.font = font;
    ctx.fillStyle = "#1b1f27";
    let s = String(text);
    if (ctx.measureText(s).width > width) {
      while (s.length > 1 && ctx.measureText(`${s}…`).width > width) s = s.slice(0, Math.max(1, Math.floor(s.length * 0.8)));
      s = `${s}…`;
    }
    ctx.fillText(s, x, y);
  }

  hit(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const wx = (clientX - rect.left) / this.view.scale + this.view.x;
    const wy = (clientY - rect.top) / this.view.scale + this.view.y;
    const boxes = this.data.boxes;
    for (let i = boxes.length - 1; i >= 0; i--) {
      const b = boxes[i];
      const h = b[KIND] === "frame" ? 24 : b[H];
      if (wx >= b[X] && wx <= b[X] + b[W] && wy >= b[Y] && wy <= b[Y] + h) return b;
    }
    return null;
  }

  listen() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, vx: this.view?.x, vy: this.view?.y, moved: false };
      c.setPointerCapture(ev.pointerId);
    });
    c.addEventListener("pointermove", (ev) => {
      if (!this.data) return;
      if (drag) {
        const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = this.touched = true;
        this.view.x = drag.vx - dx / this.view.scale;
        this.view.y = drag.vy - dy / this.view.scale;
        this.draw();
        return;
      }
      const b = this.hit(ev.clientX, ev.clientY);
      c.title = b ? `${b[K]} · ${b[TITLE]} · ${b[KIND] === "group" ? `${b[MEMBERS]} tasks` : b[STATUS]}` : "";
      c.style.cursor = b ? "pointer" : "grab";
    });
    c.addEventListener("pointerup", (ev) => {
      const was = drag;
      drag = null;
      if (!was || was.moved || !this.data) return;
      const b = this.hit(ev.clientX, ev.clientY);
      if (!b) return;
      if (b[KIND] === "group" || (b[KIND] === "frame" && this.frameToggle(b, ev))) this.toggle(b[K]);
      else this.select(b[K]);
    });
    c.addEventListener("wheel", (ev) => {
      if (!this.data) return;
      ev.preventDefault();
      const rect = c.getBoundingClientRect();
      const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
      const wx = mx / this.view.scale + this.view.x, wy = my / this.view.scale + this.view.y;
      const scale = Math.min(4, Math.max(0.01, this.view.scale * Math.exp(-ev.deltaY * 0.0015)));
      this.view = { scale, x: wx - mx / scale, y: wy - my / scale };
      this.touched = true;
      this.draw();
    }, { passive: false });
  }

  frameToggle(b, ev) {
    // A click on a frame's marker (its first 24 pixels) closes it; elsewhere on the header selects
    // the parent task.
    const rect = this.canvas.getBoundingClientRect();
    const wx = (ev.clientX - rect.left) / this.view.scale + this.view.x;
    return wx - b[X] <= 24 / Math.min(1, this.view.scale);
  }

  select(key) {
    this.selected = key;
    this.draw();
    this.onSelect(key);
  }
}

// -- a task's detail ----------------------------------------------------------------------------

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}

function statusBadge(status) {
  return el("span", { class: `status s-${status}` }, status);
}

async function renderDetail(aside, jobId, key, canAct, onChange, onSelect) {
  const d = await getJSON(`/ui/jobs/${jobId}/tasks/${encodeURIComponent(key)}`);
  const t = d.task;
  const worker = (id) => (id ? (d.workers[id] ? `${d.workers[id]} (${id})` : id) : "—");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const act = (what) => async () => {
    try {
      await send(`/ui/jobs/${jobId}/tasks/${encodeURIComponent(key)}/${what}`);
      onChange();
    } catch (e) { showError(error, e); }
  };
  const links = (keys) => keys.length ? keys.map((k) => el("a", { href: `#task=${encodeURIComponent(k)}`, onclick: (ev) => { ev.preventDefault(); onSelect(k); } }, k, " ")) : "—";
  aside.replaceChildren(el("div", {},
    el("header", {}, el("h2", {}, t.key), statusBadge(t.status),
      el("button", { class: "close", "aria-label": "close", onclick: () => { aside.hidden = true; } }, "×")),
    el("p", {}, t.title),
    t.description ? el("p", { class: "desc" }, t.description) : null,
    el("dl", { class: "facts" },
      el("div", {}, el("dt", {}, "Type"), el("dd", {}, `${t.type} · ${t.priority} priority · ${t.criticality}`)),
      el("div", {}, el("dt", {}, "Progress"), el("dd", {}, `${Math.round(t.progress * 100)}%`, t.progress_message ? ` — ${t.progress_message}` : "")),
      el("div", {}, el("dt", {}, "Attempts"), el("dd", {}, `${t.attempts} of ${t.max_attempts} (${t.failures} failed, ${t.lease_losses} lost)`)),
      el("div", {}, el("dt", {}, "Depends on"), el("dd", {}, links(t.depends_on))),
      el("div", {}, el("dt", {}, "Part of"), el("dd", {}, t.parent_key ? links([t.parent_key]) : "—")),
      el("div", {}, el("dt", {}, "Worker"), el("dd", {}, worker(t.lease_owner))),
      el("div", {}, el("dt", {}, "Started / ended"), el("dd", {}, `${localTime(t.started_at)} / ${localTime(t.finished_at)}`)),
      el("div", {}, el("dt", {}, "Commit"), el("dd", {}, d.commit ? el("code", {}, d.commit) : "—", d.branch ? [" on ", el("code", {}, d.branch)] : "")),
    ),
    t.last_error ? el("pre", { class: "error" }, t.last_error) : null,
    el("div", { class: "controls" },
      el("button", { onclick: act("retry"), disabled: !canAct, title: canAct ? null : "needs the operator role" }, "Retry"),
      el("button", { onclick: act("skip"), disabled: !canAct, title: canAct ? null : "needs the operator role" }, "Skip")),
    error,
    el("h3", {}, "Attempts"),
    d.attempts.length ? table(["#", "worker", "duration", "outcome", "error"], d.attempts.map((a) => [
      a.attempt, worker(a.worker_id), duration(a.duration), statusBadge(a.outcome), a.error || "",
    ])) : el("p", { class: "note" }, "none finished yet"),
    el("h3", {}, "Output"),
    d.output.length ? d.output.map(([label, text]) => [el("h4", {}, label), el("pre", {}, text)]) : el("p", { class: "note" }, "none"),
    d.result ? [el("h3", {}, "Result"), el("pre", {}, d.result)] : null,
    el("h3", {}, "Checkpoints"),
    d.checkpoints.length ? table(["attempt", "name", "saved", "data"], d.checkpoints.map((c) => [
      c.attempt, c.name, localTime(c.created_at), el("code", {}, c.data),
    ])) : el("p", { class: "note" }, "none"),
    el("h3", {}, "Events"),
    table(["time", "event", "attempt", "worker"], d.events.map((e) => [localTime(e.created_at), e.kind, e.attempt ?? "", e.worker_id || ""])),
  ));
  aside.hidden = false;
  aside.dataset.task = t.key;
  aside.dataset.status = t.status;
}

// -- the timeline -------------------------------------------------------------------------------

function renderTimeline(node, data, onSelect) {
  const rows = [];
  for (const w of data.workers) w.lanes.forEach((lane, i) => rows.push({ w, lane, i }));
  if (!rows.length) { node.replaceChildren(el("p", { class: "note" }, "No attempts yet.")); return; }
  let t0 = Infinity;
  for (const r of rows) for (const bar of r.lane) t0 = Math.min(t0, bar[2]);
  const t1 = Math.max(data.now, t0 + 1);
  const left = 170, width = Math.max(node.clientWidth || 900, 500), lane = 16, right = width - 10;
  const sx = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
  const parts = [];
  rows.forEach((r, n) => {
    const y = 20 + n * (lane + 4);
    const name = r.i === 0 ? esc(r.w.name) : "";
    parts.push(`<text x="4" y="${y + 12}" class="lane">${name}</text><text x="${left - 6}" y="${y + 12}" class="slot" text-anchor="end">${r.i + 1}</text>`);
    for (const [key, attempt, start, end, outcome] of r.lane) {
      const x = sx(start), w = Math.max(1.5, sx(end ?? data.now) - x);
      const color = outcome ? OUTCOME_COLORS[outcome] || "#999" : STATUS_COLORS.running;
      const title = `${key} #${attempt} · ${outcome || "running"} · ${duration((end ?? data.now) - start)}`;
      parts.push(`<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${lane}" fill="${color}" data-task="${esc(key)}"><title>${esc(title)}</title></rect>`);
    }
  });
  const height = 30 + rows.length * (lane + 4);
  const ticks = [];
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    ticks.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="12" y2="${height}" class="tick"/><text x="${sx(t)}" y="10" text-anchor="middle" class="tick">${esc(new Date(t * 1000).toLocaleTimeString())}</text>`);
  }
  node.innerHTML = `<svg width="${width}" height="${height}" role="img" aria-label="attempts per worker slot">${ticks.join("")}${parts.join("")}</svg>`;
  node.querySelector("svg").addEventListener("click", (ev) => {
    const key = ev.target.dataset?.task;
    if (key) onSelect(key);
  });
}

// -- the job page -------------------------------------------------------------------------------

function updateSummary(s) {
  if (!s) return;
  const badge = $("#job-status");
  badge.textContent = s.status;
  badge.className = `status s-${s.status}`;
  $("#job-progress").value = s.progress;
  $("#job-pct").textContent = `${Math.round(s.progress * 100)}%`;
  $("#job-eta").textContent = s.eta_seconds == null ? "—" : duration(s.eta_seconds);
  $("#job-tokens").textContent = s.tokens ? String(s.tokens) : "—";
  $("#job-cost").textContent = s.cost_usd == null ? "—" : `$${s.cost_usd.toFixed(4)}`;
  $("#job-ended").textContent = localTime(s.finished_at);
  $("#job-pause").textContent = s.pause_reason || "—";
  $("#job-counts").replaceChildren(
    ...Object.entries(s.counts).sort().flatMap(([k, v]) => [el("span", { class: `status s-${k}` }, `${k} ${v}`), " "]));
}

function eventRow(e) {
  const details = Object.keys(e.details || {}).length ? JSON.stringify(e.details) : "";
  return el("tr", { "data-id": e.id }, el("td", {}, e.id), el("td", {}, localTime(e.created_at)), el("td", {}, e.kind),
    el("td", {}, e.task_key || ""), el("td", {}, e.attempt ?? ""), el("td", {}, e.worker_id || ""),
    el("td", { class: "details" }, details.length > 300 ? `${details.slice(0, 300)}…` : details));
}

async function initJob() {
  const jobId = $("#job").dataset.job;
  const canAct = document.body.dataset.role === "operator" || document.body.dataset.role === "admin";
  const aside = $("#detail");
  const actionError = $("#action-error");
  let detailTimer = null;
  const showDetail = (key) => renderDetail(aside, jobId, key, canAct, () => showDetail(key), (k) => graph.select(k)).catch((e) => showError(actionError, e));
  const graph = new Graph($("#graph"), jobId, showDetail);
  window.helixGraph = graph;

  // Tabs.
  let timelineShown = false;
  const refreshTimeline = async () => renderTimeline($("#timeline"), await getJSON(`/ui/jobs/${jobId}/timeline`), (k) => { pickTab("graph"); graph.select(k); });
  function pickTab(name) {
    for (const b of document.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== `tab-${name}`;
    timelineShown = name === "timeline";
    if (timelineShown) refreshTimeline().catch((e) => showError(actionError, e));
    if (name === "graph") graph.resize();
  }
  for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => pickTab(b.dataset.tab));

  // Controls.
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", async () => {
      if (b.dataset.action === "cancel" && !confirm("Cancel every unfinished task of this job?")) return;
      showError(actionError, null);
      try {
        const answer = await send(`/ui/jobs/${jobId}/${b.dataset.action}`);
        if (answer.status) updateSummary(answer);
      } catch (e) { showError(actionError, e); }
    });
  }

  // The graph, then the stream from the graph's tag.
  const tools = { fit: () => { graph.touched = false; graph.fit(); }, "open-all": () => graph.load(graph.groupKeys), "close-all": () => graph.load([]) };
  for (const [id, fn] of Object.entries(tools)) $(`#${id}`).addEventListener("click", fn);
  $("#find").addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const key = ev.target.value.trim();
    if (graph.tasks[key]) { graph.center(key); graph.select(key); }
  });
  const data = await graph.load(null);
  $("#graph-info").textContent = `${Object.keys(data.tasks).length} tasks · ${data.boxes.length} boxes${data.groups ? ` · ${data.groups} groups` : ""}`;
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("task");
  if (fromHash && graph.tasks[fromHash]) { graph.center(fromHash); graph.select(fromHash); }

  const log = $("#event-log");
  let lastShown = 0;
  const addEvents = (events) => {
    const fresh = events.filter((e) => e.id > lastShown);
    if (!fresh.length) return;
    lastShown = fresh[fresh.length - 1].id;
    log.prepend(...fresh.reverse().map(eventRow));
    while (log.children.length > 500) log.lastChild.remove();
  };
  addEvents(await getJSON(`/ui/jobs/${jobId}/events?limit=200`));

  let reloadTimer = null, timelineTimer = null;
  const handle = (msg) => {
    addEvents(msg.events);
    updateSummary(msg.job);
    if (graph.apply(msg.states, msg.tag) && !reloadTimer) {
      // A task the graph does not know (a split or planned subtasks): lay out again.
      reloadTimer = setTimeout(() => { reloadTimer = null; graph.load(graph.openGroups()); }, 500);
    }
    if (!aside.hidden && msg.states[aside.dataset.task] && !detailTimer) {
      detailTimer = setTimeout(() => { detailTimer = null; showDetail(aside.dataset.task); }, 300);
    }
    if (timelineShown && msg.events.length && !timelineTimer) {
      timelineTimer = setTimeout(() => { timelineTimer = null; refreshTimeline().catch(() => {}); }, 1500);
    }
  };
  const source = new EventSource(`/ui/jobs/${jobId}/stream?after=${data.tag}`);
  source.addEventListener("open", () => { document.body.dataset.live = "1"; });
  source.addEventListener("batch", (ev) => handle(JSON.parse(ev.data)));
  source.addEventListener("end", (ev) => { handle(JSON.parse(ev.data)); source.close(); document.body.dataset.live = "ended"; });
  source.addEventListener("logout", () => { source.close(); location.href = "/login"; });
  source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) document.body.dataset.live = "closed"; });
}

// -- start --------------------------------------------------------------------------------------

localTimes();
const page = document.body.dataset.page;
if (page === "jobs") initJobs();
if (page === "job") initJob().catch((e) => showError($("#action-error"), e));
