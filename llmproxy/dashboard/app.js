// llmproxy's dashboard: one page over the admin JSON API, redrawn every 5 s. No framework, no build step.
// The admin key is asked for once and sent as "Authorization: Bearer …" on every call; never in a URL.

const $ = (sel) => document.querySelector(sel);
const KEY = "llmproxy.admin_key";
const CLIENT_KEY = "llmproxy.client_key";
const REFRESH_MS = 5000;
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"];
const TOP = 8; // split values charted on their own; the rest are "other"

class AuthError extends Error {}

// ---- the admin key ----------------------------------------------------------------------------

const adminKey = () => sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);

function saveKey(key, remember) {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
}

function askKey(message) {
  const dialog = $("#key-dialog");
  if (dialog.open) return;
  if (!adminKey()) message = ""; // the first visit: no key was wrong yet
  $("#key-error").hidden = !message;
  $("#key-error").textContent = message || "";
  $("#key-input").value = "";
  $("#key-remember").checked = localStorage.getItem(KEY) !== null;
  dialog.showModal();
}

$("#key-form").addEventListener("submit", () => {
  saveKey($("#key-input").value.trim(), $("#key-remember").checked);
  refresh();
});
$("#key-button").addEventListener("click", () => askKey(""));

async function api(path) {
  const key = adminKey();
  const r = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {}, cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    const body = await r.json().catch(() => ({}));
    throw new AuthError(body.error?.message || `${r.status} from ${path}`);
  }
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.json();
}

// ---- small helpers ----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

const num = new Intl.NumberFormat();
const int = (n) => (n === null || n === undefined ? "–" : num.format(n));
const usd = (x) => (x === null || x === undefined ? "–" : "$" + (x >= 1 ? x.toFixed(2) : x >= 0.01 ? x.toFixed(3) : x.toFixed(5)));
const ms = (x) => (x === null || x === undefined ? "–" : x >= 1000 ? (x / 1000).toFixed(1) + " s" : Math.round(x) + " ms");
const short = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n * 100) / 100));

function when(ts) {
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  if (today) return d.toLocaleTimeString([], { hourCycle: "h23" });
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

// A state as a coloured label: green for ok / closed / 2xx, red for open / cooling / failed / 4xx-5xx, amber otherwise.
function badge(state, label = state) {
  const good = ["ok", "closed"].includes(String(state)) || (Number(state) >= 200 && Number(state) < 300);
  const bad = ["open", "failed", "cooling", "disabled", "degraded", "error"].includes(String(state)) || Number(state) >= 400;
  return el("span", { class: `badge ${good ? "good" : bad ? "bad" : "warn"}` }, label ?? "–");
}

function showProblem(message) {
  $("#problem").hidden = !message;
  $("#problem").textContent = message || "";
}

// ---- usage charts -----------------------------------------------------------------------------

let usageGroups = [];

async function loadUsage() {
  const body = await api(`/admin/api/usage?by=day&split=${$("#split").value}&since=${$("#since").value}`);
  usageGroups = body.groups;
  drawUsage();
}

function dayList(sinceDays) {
  const out = [];
  const now = Date.now();
  for (let i = sinceDays; i >= 0; i--) out.push(new Date(now - i * 86400000).toISOString().slice(0, 10));
  return out;
}

function drawUsage() {
  const days = dayList(parseInt($("#since").value, 10));
  const label = (v) => (v === null ? "(none)" : v);
  // split values ranked by requests; past TOP they share one "other" series
  const totals = new Map();
  for (const g of usageGroups) totals.set(label(g.split), (totals.get(label(g.split)) || 0) + g.requests);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
  const shown = ranked.length > TOP + 1 ? ranked.slice(0, TOP) : ranked;
  const names = ranked.length > shown.length ? [...shown, "other"] : shown;
  const color = (name) => (name === "other" ? "#999" : PALETTE[names.indexOf(name) % PALETTE.length]);
  const series = (field) =>
    names.map((name) => {
      const values = new Map();
      for (const g of usageGroups) {
        const s = shown.includes(label(g.split)) ? label(g.split) : "other";
        if (s === name) values.set(g.key, (values.get(g.key) || 0) + field(g));
      }
      return { name, color: color(name), values: days.map((d) => values.get(d) || 0) };
    });
  barChart($("#chart-requests"), days, series((g) => g.requests), int);
  barChart($("#chart-tokens"), days, series((g) => g.prompt_tokens + g.completion_tokens), int);
  const priced = usageGroups.some((g) => g.cost_usd !== null);
  barChart($("#chart-cost"), days, series((g) => g.cost_usd || 0), usd, priced || !usageGroups.length ? "nothing yet" : "no model has a price");

  const sum = (f) => usageGroups.reduce((a, g) => a + (f(g) || 0), 0);
  $("#totals").replaceChildren(
    stat("requests", int(sum((g) => g.requests))),
    stat("errors", int(sum((g) => g.errors))),
    stat("prompt tokens", int(sum((g) => g.prompt_tokens))),
    stat("completion tokens", int(sum((g) => g.completion_tokens))),
    stat("cached tokens", int(sum((g) => g.cached_tokens))),
    stat("cost", priced ? usd(sum((g) => g.cost_usd)) : "no prices"),
  );
  $("#legend").replaceChildren(
    ...names.map((name) => el("li", {}, el("span", { class: "swatch", "data-color": color(name) }), name)),
  );
  for (const sw of document.querySelectorAll("#legend .swatch")) sw.style.background = sw.dataset.color;
}

function stat(label, value) {
  return el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label));
}

// Stacked bars, one per UTC day, drawn as inline SVG at the container's width.
function barChart(container, days, series, fmt, empty = "nothing yet") {
  const W = Math.max(container.clientWidth, 260), H = 170;
  const pad = { l: 46, r: 6, t: 8, b: 20 };
  const totals = days.map((_, i) => series.reduce((a, s) => a + s.values[i], 0));
  const max = niceMax(Math.max(0, ...totals));
  const bw = (W - pad.l - pad.r) / days.length;
  const y = (v) => H - pad.b - (v / max) * (H - pad.t - pad.b);
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  for (const v of [0, max / 2, max]) {
    svg.append(el("svg:line", { x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("svg:text", { x: pad.l - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmt === usd ? "$" + short(v) : short(v)));
  }
  const every = Math.ceil(days.length / Math.max(1, Math.floor((W - pad.l) / 56)));
  days.forEach((day, i) => {
    const x = pad.l + i * bw;
    let base = 0;
    for (const s of series) {
      const v = s.values[i];
      if (!v) continue;
      const r = el("svg:rect", {
        x: x + bw * 0.12, width: Math.max(bw * 0.76, 1), y: y(base + v), height: Math.max(y(base) - y(base + v), 0.5),
        fill: s.color, "data-day": day, "data-split": s.name, "data-value": v,
      }, el("svg:title", {}, `${day} · ${s.name}: ${fmt(v)}`));
      svg.append(r);
      base += v;
    }
    if ((days.length - 1 - i) % every === 0) { // counted back from today, whose label is kept inside the frame
      const last = i === days.length - 1;
      svg.append(el("svg:text", { x: last ? W - pad.r : x + bw / 2, y: H - 5, "text-anchor": last ? "end" : "middle", class: "axis" }, day.slice(5)));
    }
  });
  if (!totals.some(Boolean)) svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, empty));
  container.replaceChildren(svg);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// ---- recent requests and one request's story --------------------------------------------------

let selected = null;

async function loadRecent() {
  const params = new URLSearchParams({ limit: "50" });
  for (const [k, v] of new FormData($("#filters"))) if (v.trim()) params.set(k, v.trim());
  const { requests } = await api(`/admin/api/requests?${params}`);
  $("#recent tbody").replaceChildren(
    ...requests.map((r) =>
      el("tr", { "data-id": r.id, class: r.id === selected ? "selected" : null, onclick: () => openDetail(r.id) },
        el("td", { title: r.id }, when(r.ts)),
        el("td", {}, r.client ?? "–", r.user_name || r.user_id ? el("span", { class: "muted wide" }, ` · ${r.user_name || r.user_id}`) : null),
        el("td", { title: r.upstream_model ? `upstream: ${r.upstream_model}` : null, class: "model" }, r.model ?? r.requested_model ?? "–",
          r.stream ? el("span", { class: "muted" }, " ⇣") : null),
        el("td", { class: "wide" }, r.backend ?? "–", r.attempts > 1 ? el("span", { class: "muted" }, ` (${r.attempts} tries)`) : null),
        el("td", { title: r.error || null }, badge(r.status ?? "none")),
        el("td", { class: "num" }, `${int(r.prompt_tokens)} / ${int(r.completion_tokens)}`),
        el("td", { class: "num wide" }, usd(r.cost_usd)),
        el("td", { class: "num wide" }, ms(r.first_byte_ms)),
        el("td", { class: "num wide" }, ms(r.total_ms)),
      )),
  );
  if (!requests.length) $("#recent tbody").append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no requests")));
}

let filterTimer;
$("#filters").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => loadRecent().catch(failed), 300);
});
$("#filters").addEventListener("reset", () => setTimeout(() => loadRecent().catch(failed)));
$("#filters").addEventListener("submit", (e) => e.preventDefault());

async function openDetail(id) {
  selected = id;
  for (const tr of document.querySelectorAll("#recent tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  const { request: r, attempts, bodies } = await api(`/admin/api/requests/${encodeURIComponent(id)}`).catch(failed) || {};
  if (!r) return;
  const fields = Object.entries(r).filter(([k, v]) => v !== null && v !== "" && k !== "attempt_log");
  const body = [
    el("dl", {}, fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, k === "ts" ? `${when(v)} (${v})` : String(v))])),
    el("h3", {}, "Attempts"),
  ];
  const story = attempts.length ? attempts : [{ backend: r.backend, model: r.upstream_model, status: r.status, ms: r.total_ms, error: r.error }];
  body.push(el("ol", { class: "attempts" }, story.map((a) =>
    el("li", {}, badge(a.skipped ? "skipped" : a.status ?? "none"), ` ${a.backend ?? "–"} / ${a.model ?? "–"}`,
      a.key ? el("span", { class: "muted" }, ` key #${a.key}`) : null,
      a.ms !== undefined && a.ms !== null ? el("span", { class: "muted" }, ` ${ms(a.ms)}`) : null,
      a.skipped ? el("div", { class: "muted" }, a.skipped) : null,
      a.error ? el("div", { class: "err" }, a.error) : null))));
  if (bodies) {
    body.push(el("h3", {}, "Bodies", bodies.truncated ? el("span", { class: "muted" }, " (truncated)") : null),
      el("h4", {}, "request"), el("pre", {}, pretty(bodies.request)), el("h4", {}, "response"), el("pre", {}, pretty(bodies.response)));
  }
  $("#detail-body").replaceChildren(...body);
  $("#detail").hidden = false;
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text ?? ""; }
}

$("#detail-close").addEventListener("click", () => {
  $("#detail").hidden = true;
  selected = null;
  for (const tr of document.querySelectorAll("#recent tr.selected")) tr.classList.remove("selected");
});

// ---- health (backends, routes, keys, cooldowns) -----------------------------------------------

async function loadHealth() {
  const h = await api("/health");
  const status = $("#status");
  status.className = `badge ${h.status === "ok" ? "good" : "bad"}`;
  status.textContent = `${h.status} · v${h.version}`;
  if (!h.backends) {
    $("#backends").replaceChildren(el("p", { class: "muted" }, "The details need the admin key."));
    return;
  }
  const uptime = h.uptime_s > 86400 ? `${(h.uptime_s / 86400).toFixed(1)} d` : h.uptime_s > 3600 ? `${(h.uptime_s / 3600).toFixed(1)} h` : `${Math.round(h.uptime_s / 60)} min`;
  $("#health-summary").replaceChildren(
    stat("uptime", uptime), stat("in flight", int(h.in_flight)), stat("log rows written", int(h.log.written)),
    stat("log queued / dropped", `${int(h.log.queued)} / ${int(h.log.dropped)}`),
    ...(h.config.reload_error ? [el("div", { class: "stat bad" }, el("b", {}, "reload failed"), el("span", {}, h.config.reload_error))] : []),
  );
  $("#backends").replaceChildren(...Object.entries(h.backends).map(([name, b]) =>
    el("div", { class: "card", "data-backend": name },
      el("div", { class: "card-head" }, el("b", {}, name), badge(b.state), el("span", { class: "muted" }, ` ${b.api}`)),
      el("div", { class: "muted small url" }, b.url),
      cooldown(b),
      b.keys?.length ? el("div", { class: "keys" }, "keys ", b.keys.map((k) => el("span", { title: k.reason || "" }, badge(k.state, k.state === "ok" ? `#${k.key}` : `#${k.key} ${k.state}${k.seconds_left ? " " + k.seconds_left + " s" : ""}`)))) : null,
      b.health_check ? el("div", { class: "small" }, "health check ", badge(b.health_check.state), b.health_check.error ? el("div", { class: "err" }, b.health_check.error) : null) : null,
      b.discovery ? el("div", { class: "small" }, `discovery `, badge(b.discovery.state), ` ${b.discovery.models} models`, b.discovery.error ? el("div", { class: "err" }, b.discovery.error) : null) : null,
      b.routes ? el("ul", { class: "routes" }, Object.entries(b.routes).map(([model, r]) => routeItem(model, r))) : null)));
  const models = Object.entries(h.models || {});
  $("#models").replaceChildren(...(models.length ? models.map(([name, m]) =>
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("b", {}, name), el("span", { class: "muted" }, ` ${m.strategy}`)),
      el("ul", { class: "routes" }, m.routes.map((r) => routeItem(`${r.backend}/${r.model}`, r))))) : [el("p", { class: "muted" }, "none")]));
}

function cooldown(x) {
  if (!x.reason && !x.seconds_left) return null;
  return el("div", { class: x.state === "closed" ? "muted small" : "err small" }, x.reason || "", x.seconds_left ? ` — ${x.seconds_left} s left` : "", x.failures ? ` (${x.failures} failures)` : "");
}

function routeItem(name, r) {
  return el("li", {}, badge(r.state), ` ${name}`,
    el("span", { class: "muted" }, ` · ${r.in_flight ?? 0} in flight`, r.first_byte_ms ? ` · first byte ${ms(r.first_byte_ms)}` : "",
      r.keys_usable ? ` · keys ${r.keys_usable}` : ""), cooldown(r));
}

// ---- config and reloads -----------------------------------------------------------------------

let configSha = null;

async function loadConfig() {
  const c = await api("/admin/api/config");
  if (c.sha256 !== configSha) {
    configSha = c.sha256;
    $("#config-summary").replaceChildren(el("code", {}, c.path), ` · sha256 ${c.sha256.slice(0, 12)}… · loaded ${when(c.loaded_at)}`);
    $("#config-json").textContent = JSON.stringify(c.config, null, 2);
    const models = [...Object.keys(c.config.models || {}), ...Object.keys(c.config.aliases || {})];
    $("#model-list").replaceChildren(...models.map((m) => el("option", { value: m })));
    $("#client-list").replaceChildren(...(c.config.access?.clients || []).map((x) => el("option", { value: x.name })));
  }
  const { reloads } = await api("/admin/api/reloads?limit=10");
  $("#reloads tbody").replaceChildren(...reloads.map((x) =>
    el("tr", {}, el("td", {}, when(x.ts)), el("td", {}, x.trigger), el("td", {}, badge(x.ok ? "ok" : "failed"), x.error ? el("div", { class: "err small" }, x.error) : null),
      el("td", { class: "mono" }, x.sha256 ? x.sha256.slice(0, 12) : "–"))));
}

// ---- playground -------------------------------------------------------------------------------

const clientHeaders = () => {
  const key = $("#client-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
};

async function loadModels() {
  const r = await fetch("/v1/models", { headers: clientHeaders() });
  const select = $("#play-model");
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    $("#play-status").textContent = `models: ${r.status} ${body.error?.message || ""}`;
    select.replaceChildren();
    return;
  }
  const { data } = await r.json();
  const keep = select.value;
  select.replaceChildren(...data.map((m) => el("option", { value: m.id }, m.id)));
  if (data.some((m) => m.id === keep)) select.value = keep;
  $("#play-status").textContent = "";
}

$("#client-key").value = sessionStorage.getItem(CLIENT_KEY) || "";
$("#client-key").addEventListener("change", () => {
  sessionStorage.setItem(CLIENT_KEY, $("#client-key").value.trim());
  loadModels();
});

let playing = null;

$("#play").addEventListener("submit", async (e) => {
  e.preventDefault();
  const answer = $("#answer");
  answer.replaceChildren();
  const thinking = el("span", { class: "thinking" }), text = el("span", {});
  answer.append(thinking, text);
  playing = new AbortController();
  $("#send").disabled = true;
  $("#stop").disabled = false;
  $("#play-status").textContent = "waiting…";
  const t0 = performance.now();
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", signal: playing.signal,
      headers: { "Content-Type": "application/json", ...clientHeaders() },
      body: JSON.stringify({ model: $("#play-model").value, stream: true, stream_options: { include_usage: true },
        messages: [{ role: "user", content: $("#prompt").value }] }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(`${r.status}: ${body.error?.message || r.statusText}`);
    }
    $("#play-status").textContent = "streaming…";
    let usage = null;
    for await (const event of sseEvents(r.body)) {
      if (event.error) throw new Error(event.error.message || JSON.stringify(event.error));
      const delta = event.choices?.[0]?.delta || {};
      if (delta.reasoning_content) thinking.textContent += delta.reasoning_content;
      if (delta.content) text.textContent += delta.content;
      if (event.usage) usage = event.usage;
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    $("#play-status").textContent = `done in ${secs} s` + (usage ? `, ${usage.prompt_tokens} + ${usage.completion_tokens} tokens` : "");
  } catch (err) {
    $("#play-status").textContent = err.name === "AbortError" ? "stopped" : String(err.message || err);
  } finally {
    $("#send").disabled = false;
    $("#stop").disabled = true;
    playing = null;
    setTimeout(() => loadRecent().catch(failed), 300); // its row is written just after the last byte reached us
  }
});
$("#stop").addEventListener("click", () => playing?.abort());

// Server-sent events off a fetch body: each "data:" payload parsed as JSON, until [DONE].
async function* sseEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf = (buf + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const data = buf.slice(0, end).split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      buf = buf.slice(end + 2);
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// ---- refresh ----------------------------------------------------------------------------------

let paused = false, busy = false;

function failed(err) {
  if (err instanceof AuthError) askKey(err.message);
  else showProblem(String(err.message || err));
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const results = await Promise.allSettled([loadUsage(), loadRecent(), loadHealth(), loadConfig()]);
    const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    const auth = errors.find((e) => e instanceof AuthError);
    if (auth) askKey(auth.message);
    showProblem(errors.filter((e) => !(e instanceof AuthError)).map((e) => e.message).join("; "));
    if (!errors.length) $("#updated").textContent = `updated ${new Date().toLocaleTimeString([], { hourCycle: "h23" })}`;
  } finally {
    busy = false;
  }
}

$("#pause").addEventListener("click", () => {
  paused = !paused;
  $("#pause").textContent = paused ? "Resume" : "Pause";
  $("#pause").classList.toggle("on", paused);
  if (!paused) refresh();
});
for (const id of ["#split", "#since"]) $(id).addEventListener("change", () => loadUsage().catch(failed));
let resizeTimer;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(drawUsage, 150);
});
setInterval(() => {
  if (!paused && !document.hidden && !$("#key-dialog").open) refresh();
}, REFRESH_MS);

refresh();
loadModels().catch((e) => ($("#play-status").textContent = String(e.message || e)));
