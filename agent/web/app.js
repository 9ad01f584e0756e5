// ftagent web console: plain JavaScript over the HTTP API (no framework, no build step, nothing external).
// Pages: sign-in, chat & jobs (#/), one job (#/jobs/ID), models (#/models, #/models/NAME).
"use strict";

const API = "/api/v1/fine-tuning";
const TOKEN_KEY = "ftagent.token";
const CHAT_KEY = "ftagent.chat";
const PHASES = ["intake", "researcher", "curator", "generator", "trainer", "evaluator", "critic", "deployer"];
const FINISHED = ["succeeded", "failed", "cancelled"];
const store = window.sessionStorage;
let page = { cleanup: [] }; // what the current page must stop when the next one renders
let me = { user: null, admin: false, document_roots: [] }; // who the token names (GET /limits)

// ---- small DOM helpers --------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "line", "polyline", "circle", "text", "title", "rect", "path"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key in el && !svg && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
function fill(el, ...children) { el.replaceChildren(); return append(el, children); }
const $ = (selector, root = document) => root.querySelector(selector);
const fmt = (value, digits = 3) => (value === null || value === undefined) ? "–"
  : typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toFixed(digits)) : String(value);
const badge = (text) => h("span", { class: `badge ${String(text).toLowerCase()}` }, text);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 6000);
}
function when(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : ""; }

// ---- the API --------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body || {}; }
}
function authHeaders() {
  return { Authorization: `Bearer ${store.getItem(TOKEN_KEY) || ""}` };
}
async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (response.status === 401) {
    signOut(`The server refused the token: ${(data && data.error) || "401"}`);
    throw new ApiError(401, (data && data.error) || "unauthorized", data);
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || response.statusText, data);
  return data;
}
const enc = encodeURIComponent;

// Server-sent events through fetch (EventSource cannot send the Authorization header). Reconnects after a
// dropped connection from the last event seen; stops at the stream's `end` message or when aborted.
async function followEvents(jobId, onEvent, onEnd, signal) {
  let after = 0;
  while (!signal.aborted) {
    try {
      const response = await fetch(`${API}/jobs/${enc(jobId)}/events?after=${after}`,
        { headers: authHeaders(), signal });
      if (!response.ok) throw new ApiError(response.status, `event stream: HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let boundary;
        while ((boundary = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + buffer.slice(boundary).match(/^\r?\n\r?\n/)[0].length);
          const message = parseSse(block);
          if (!message) continue;
          if (message.event === "end") { onEnd(JSON.parse(message.data)); return; }
          if (message.id) after = Number(message.id);
          onEvent(JSON.parse(message.data));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 404) { onEnd(null); return; }
    }
    await sleep(1500);
  }
}
function parseSse(block) {
  const message = { event: "message", data: "", id: null };
  let seen = false;
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") { message.data += (message.data ? "\n" : "") + value; seen = true; }
    else if (field === "event") message.event = value;
    else if (field === "id") message.id = value;
  }
  return seen ? message : null;
}

// ---- a small, safe Markdown renderer for the model and dataset cards (DOM nodes, never innerHTML) --------
function inline(text) {
  const parts = [];
  const pattern = /(`[^`]+`|\*\*[^*]+\*\*|!\[[^\]]*\]\([^)]*\)|\[[^\]]+\]\([^)]*\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parts.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("`")) parts.push(h("code", {}, token.slice(1, -1)));
    else if (token.startsWith("**")) parts.push(h("strong", {}, token.slice(2, -2)));
    else if (token.startsWith("!")) parts.push(h("span", { class: "muted" }, `[figure: ${token.match(/^!\[([^\]]*)\]/)[1]}]`));
    else {
      const [, label, href] = token.match(/^\[([^\]]+)\]\(([^)]*)\)/);
      parts.push(/^https?:\/\//.test(href) ? h("a", { href, rel: "noreferrer noopener" }, label) : label);
    }
    last = match.index + token.length;
  }
  parts.push(text.slice(last));
  return parts;
}
function markdown(source) {
  const root = h("div", { class: "markdown" });
  const lines = String(source || "").split("\n");
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(h("pre", {}, code.join("\n")));
      i++;
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(line.match(/^#+/)[0].length + 1, 6);
      root.append(h(`h${level}`, {}, inline(line.replace(/^#+ /, ""))));
      i++;
    } else if (line.trim().startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].trim().startsWith("|"); i++) rows.push(lines[i].trim());
      root.append(markdownTable(rows));
    } else if (/^\s*([-*]|\d+\.) /.test(line)) {
      const stack = [{ indent: line.match(/^\s*/)[0].length, list: h("ul") }];
      for (; i < lines.length && /^\s*([-*]|\d+\.) /.test(lines[i]); i++) {
        const indent = lines[i].match(/^\s*/)[0].length;
        let top = stack[stack.length - 1];
        if (indent > top.indent && top.list.lastElementChild) { // deeper: a list inside the last item
          const sub = h("ul");
          top.list.lastElementChild.append(sub);
          stack.push(top = { indent, list: sub });
        }
        while (stack.length > 1 && indent < top.indent) { stack.pop(); top = stack[stack.length - 1]; }
        top.list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.) /, ""))));
      }
      root.append(stack[0].list);
    } else if (!line.trim()) {
      i++;
    } else {
      const paragraph = [];
      for (; i < lines.length && lines[i].trim() && !/^(#|\||```|\s*([-*]|\d+\.) )/.test(lines[i]); i++) paragraph.push(lines[i]);
      root.append(h("p", {}, inline(paragraph.join(" "))));
    }
  }
  return root;
}
function markdownTable(rows) {
  const cells = (row) => row.replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((cell) => cell.trim());
  const body = rows.filter((row) => !/^\|[\s:|-]+\|$/.test(row));
  const [head, ...rest] = body;
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, cells(head || "").map((cell) => h("th", {}, inline(cell))))),
    h("tbody", {}, rest.map((row) => h("tr", {}, cells(row).map((cell) => h("td", {}, inline(cell))))))));
}

// ---- sign-in ----------------------------------------------------------------------------------------
function takeTokenFromFragment() {
  const found = location.hash.match(/^#token=([^&]+)/);
  if (!found) return;
  store.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
  history.replaceState(null, "", `${location.pathname}#/`); // the token leaves the address bar and history
}
function signOut(reason) {
  store.removeItem(TOKEN_KEY);
  store.removeItem(CHAT_KEY);
  renderSignIn(reason);
}
function renderSignIn(reason) {
  stopPage();
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  fill($("#who"));
  const error = h("p", { class: "error", id: "signin-error", role: "alert" }, reason || "");
  const token = h("input", { type: "password", id: "token", autocomplete: "off", required: true,
                             "aria-describedby": "token-hint" });
  const form = h("form", { class: "card signin", id: "signin", onsubmit: async (event) => {
    event.preventDefault();
    store.setItem(TOKEN_KEY, token.value.trim());
    await enter();
  } },
  h("h1", {}, "Sign in to ftagent"),
  h("label", { for: "token" }, "API token"), token,
  h("p", { class: "hint", id: "token-hint" }, "Your own token (an admin makes it with `ftagent token add NAME`); it says who you are: ",
    "you see and stop your own jobs. For a bookmark use /#token=… : the part after # never leaves this browser."),
  error, h("div", { class: "row end" }, h("button", { type: "submit" }, "Sign in")));
  fill($("#main"), form);
  token.focus();
}
async function enter() {
  try {
    me = await api("/limits");
    fill($("#who"), "Signed in as ", h("strong", {}, me.user), me.admin ? " (admin)" : "");
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    route();
  } catch (error) {
    if (error.status !== 401) renderSignIn(`Cannot reach the API: ${error.message}`);
  }
}

// ---- routing ----------------------------------------------------------------------------------------
function stopPage() {
  for (const stop of page.cleanup) stop();
  page = { cleanup: [] };
}
function every(ms, task) {
  const timer = setInterval(task, ms);
  page.cleanup.push(() => clearInterval(timer));
}
function route() {
  if (!store.getItem(TOKEN_KEY)) return renderSignIn();
  stopPage();
  const path = location.hash.replace(/^#/, "") || "/";
  const job = path.match(/^\/jobs\/(.+)$/);
  const model = path.match(/^\/models(?:\/(.+))?$/);
  for (const link of document.querySelectorAll("#nav a")) {
    const current = (link.dataset.page === "models") === Boolean(model);
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (job) renderJob(decodeURIComponent(job[1]));
  else if (model) renderModels(model[1] ? decodeURIComponent(model[1]) : null);
  else renderHome();
  $("#main").focus({ preventScroll: true });
}

// ---- chat & jobs --------------------------------------------------------------------------------------
function chatHistory() { try { return JSON.parse(store.getItem(CHAT_KEY)) || { messages: [] }; } catch { return { messages: [] }; } }
function saveChat(chat) { store.setItem(CHAT_KEY, JSON.stringify(chat)); }
function chatLine(message) {
  return h("li", { class: `${message.from}${message.question ? " question" : ""}` },
    h("span", { class: "who" }, message.from === "you" ? "You" : "Agent"), message.text,
    message.job_id ? [" ", h("a", { href: `#/jobs/${enc(message.job_id)}` }, `Open job ${message.job_id}`)] : null);
}
function renderHome() {
  const chat = chatHistory();
  const log = h("ol", { class: "chat-log", id: "chat-log", "aria-live": "polite", "aria-label": "Conversation" },
    chat.messages.length ? chat.messages.map(chatLine)
      : h("li", { class: "agent" }, h("span", { class: "who" }, "Agent"),
        "Tell me what to fine-tune, e.g. 'fine-tune SmolLM2 on marine biology'. Ask 'how is it going?' or 'stop it' any time."));
  const input = h("textarea", { id: "chat-input", rows: 2, required: true, "aria-describedby": "chat-hint",
                                placeholder: "fine-tune SmolLM2 on …" });
  const docs = h("input", { type: "text", id: "docs-folder", value: chat.docs || "", list: "docs-roots",
                            placeholder: (me.document_roots || [])[0] || "/path/to/documents", "aria-describedby": "docs-hint" });
  const options = h("textarea", { id: "chat-options", rows: 4, class: "mono", placeholder: '{"training": {"epochs": 2}}' },
    chat.options || "");
  const error = h("p", { class: "error", role: "alert", id: "chat-error" });
  const send = h("button", { type: "submit", id: "chat-send" }, "Send");
  const form = h("form", { id: "chat-form", onsubmit: (event) => { event.preventDefault(); sendChat(); } },
    h("label", { for: "chat-input" }, "Message"), input,
    h("p", { class: "hint", id: "chat-hint" }, "Enter sends, Shift+Enter starts a new line."),
    h("label", { for: "docs-folder" }, "Documents folder (optional)"), docs,
    h("p", { class: "hint", id: "docs-hint" }, "A folder of .md/.txt/.html/.pdf files inside a document root of the server",
      (me.document_roots || []).length ? [": ", me.document_roots.join(", "), " (a relative path is taken inside the first)"] : "",
      ". Without one the agent searches its sources."),
    h("datalist", { id: "docs-roots" }, (me.document_roots || []).map((root) => h("option", { value: root }))),
    h("details", {}, h("summary", {}, "Job options (JSON)"),
      h("label", { for: "chat-options" }, "JobSpec options for jobs started from this chat"), options),
    error, h("div", { class: "row end" }, send));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
  });

  async function sendChat() {
    const text = input.value.trim();
    if (!text) return;
    let extra = {};
    if (options.value.trim()) {
      try { extra = JSON.parse(options.value); } catch (parse) { fill(error, `Job options are not valid JSON: ${parse.message}`); options.focus(); return; }
      if (typeof extra !== "object" || Array.isArray(extra) || extra === null) { fill(error, "Job options must be a JSON object."); return; }
    }
    fill(error);
    const state = chatHistory();
    Object.assign(state, { docs: docs.value, options: options.value });
    state.messages.push({ from: "you", text });
    saveChat(state);
    if (state.messages.length === 1) fill(log);
    log.append(chatLine({ from: "you", text }));
    input.value = "";
    send.disabled = true;
    try {
      const reply = await api("/chat", { method: "POST", body: {
        message: text, session_id: state.session_id || null, options: { ...extra, docs_path: docs.value.trim() || null } } });
      const message = { from: "agent", text: reply.reply, question: reply.awaiting_subject,
                        job_id: reply.started ? reply.job_id : null };
      state.session_id = reply.session_id;
      state.messages.push(message);
      saveChat(state);
      log.append(chatLine(message));
      if (reply.started) refreshJobs();
    } catch (failure) {
      fill(error, failure.message);
    } finally {
      send.disabled = false;
      log.scrollTop = log.scrollHeight;
      input.focus();
    }
  }

  const jobsBody = h("tbody", { id: "jobs-body" });
  const jobs = h("section", { class: "card", "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Jobs"),
    h("div", { class: "table-wrap" }, h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Request", "Status", "Owner", "Started"].map((c) => h("th", {}, c)))), jobsBody)));
  async function refreshJobs() {
    try {
      const list = await api("/jobs");
      fill(jobsBody, list.length ? list.map((job) => h("tr", { "data-job": job.job_id },
        h("td", {}, h("a", { href: `#/jobs/${enc(job.job_id)}` }, job.job_id)),
        h("td", {}, job.request, job.outcome ? h("div", { class: "muted small" }, job.outcome) : null),
        h("td", {}, badge(job.status)), h("td", {}, job.owner || "–"),
        h("td", { class: "small" }, (job.created_at || "").replace("T", " ").slice(0, 19))))
        : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet.")));
    } catch (failure) {
      if (failure.status !== 401) fill(jobsBody, h("tr", {}, h("td", { colspan: 5, class: "error" }, failure.message)));
    }
  }
  fill($("#main"), h("h1", {}, "Ask for a model"), h("div", { class: "grid two" },
    h("section", { class: "card", "aria-labelledby": "chat-title" }, h("h2", { id: "chat-title" }, "Chat with the agent"), log, form),
    jobs));
  log.scrollTop = log.scrollHeight;
  refreshJobs();
  every(2500, refreshJobs);
  input.focus();
}

// ---- one job ------------------------------------------------------------------------------------------
function renderJob(jobId) {
  const view = {
    title: h("h1", {}, "Job ", h("span", { class: "mono" }, jobId)),
    summary: h("div", { id: "job-summary" }),
    phases: h("ol", { class: "phases", id: "phases", "aria-label": "Phases" }),
    chart: h("div", { id: "loss-chart" }), chartNote: h("p", { class: "muted small", id: "loss-note" }, "No training step yet."),
    events: h("ol", { class: "events", id: "events", "aria-live": "off" }),
    dataset: h("div", { id: "dataset" }, h("p", { class: "muted" }, "The dataset appears when the generator has written it.")),
    evaluation: h("div", { id: "evaluation" }, h("p", { class: "muted" }, "The evaluation appears when the first round is evaluated.")),
    rounds: h("div", { id: "rounds" }, h("p", { class: "muted" }, "No round evaluated yet.")),
    series: [], seen: new Set(), job: null,
  };
  const section = (id, title, ...body) => h("section", { class: "card", id: `${id}-card`, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title), ...body);
  fill($("#main"), h("p", {}, h("a", { href: "#/" }, "← Chat & jobs")), view.title, view.summary,
    h("div", { class: "grid job" },
      h("div", { class: "stack" },
        section("loss", "Training loss", view.chart, view.chartNote),
        section("eval", "Evaluation: tuned vs base", view.evaluation),
        section("data", "Dataset", view.dataset),
        section("critic", "Critic rounds", view.rounds)),
      h("div", { class: "stack" }, section("log", "Decisions and events", view.events))));
  drawLoss(view);

  const controller = new AbortController();
  page.cleanup.push(() => controller.abort());
  const reload = debounce(() => loadArtefacts(jobId, view), 400);
  const refresh = debounce(() => loadJob(jobId, view), 250);
  loadJob(jobId, view);
  reload();
  followEvents(jobId, (event) => {
    addEvent(view, event);
    if (event.kind !== "step") refresh();
    if (["phase", "gate", "cancelled"].includes(event.kind) || event.phase === "critic") reload();
  }, () => { loadJob(jobId, view); loadArtefacts(jobId, view); }, controller.signal);
}
function debounce(task, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(task, ms); };
}
async function loadJob(jobId, view) {
  try {
    const job = await api(`/jobs/${enc(jobId)}`);
    view.job = job;
    const cancel = FINISHED.includes(job.status) ? null : h("button", { type: "button", class: "danger", id: "cancel-job",
      onclick: async () => { try { await api(`/jobs/${enc(jobId)}/cancel`, { method: "POST" }); toast("Cancel requested."); } catch (e) { toast(e.message); } } },
      "Stop this job");
    fill(view.summary, h("div", { class: "card" },
      h("p", { class: "row" }, badge(job.status), h("span", {}, "Phase: ", h("strong", { id: "job-phase" }, job.phase || "waiting for the worker")),
        h("span", { class: "muted" }, `owner ${job.owner || "–"}`), h("span", { class: "spacer" }), cancel),
      h("p", {}, h("span", { class: "muted" }, "Request: "), h("q", {}, job.request)),
      job.last_event ? h("p", { class: "small" }, h("span", { class: "muted" }, "Latest: "), job.last_event) : null,
      job.outcome ? h("p", { id: "job-outcome" }, h("strong", {}, "Outcome: "), job.outcome) : null,
      job.error ? h("p", { class: "error" }, job.error) : null,
      job.model_name ? h("p", {}, "Model: ", h("a", { href: `#/models/${enc(job.model_name)}` }, job.model_name)) : null,
      view.phases));
    const current = PHASES.indexOf(job.phase);
    const running = !FINISHED.includes(job.status);
    fill(view.phases, PHASES.map((name, index) => {
      const now = running && index === current;
      return h("li", { class: now ? "current" : view.seen.has(name) ? "done" : "", "aria-current": now ? "step" : null,
                       title: view.seen.has(name) || now ? null : "not run (yet)" }, name);
    }));
    view.summary.dataset.status = job.status;
  } catch (failure) {
    if (failure.status === 404) fill(view.summary, h("p", { class: "error" }, failure.message));
  }
}
async function loadArtefacts(jobId, view) {
  const show = (target, render) => (data) => { if (data.ready) fill(target, render(data)); };
  const failed = (target) => (failure) => { if (failure.status !== 401) fill(target, h("p", { class: "error" }, failure.message)); };
  await Promise.all([
    api(`/jobs/${enc(jobId)}/dataset`).then(show(view.dataset, datasetView), failed(view.dataset)),
    api(`/jobs/${enc(jobId)}/evaluation`).then(show(view.evaluation, evaluationView), failed(view.evaluation)),
    api(`/jobs/${enc(jobId)}/rounds`).then((data) => { if (data.rounds.length || data.remedies.length) fill(view.rounds, roundsView(data)); }, failed(view.rounds)),
  ]);
}
function addEvent(view, event) {
  if (event.kind === "step") return addStep(view, event);
  if (event.phase === "trainer" && event.kind === "phase" && /^round \d+:/.test(event.message)) {
    view.series.push({ round: Number(event.message.match(/^round (\d+)/)[1]), steps: [], val: [] });
  }
  if (event.kind === "decision" && event.data && event.data.val_loss !== undefined && event.data.step !== undefined) {
    currentSeries(view).val.push({ step: event.data.step, loss: event.data.val_loss });
    drawLoss(view);
  }
  const data = event.data || {};
  view.seen.add(event.phase);
  const why = data.why || data.reason || (data.detail && !event.message.includes(data.detail) ? data.detail : null)
    || (event.kind === "decision" ? scalars(data) : null);
  const gate = event.kind === "gate" ? (data.passed ? " pass" : " fail") : "";
  const atBottom = view.events.scrollHeight - view.events.scrollTop - view.events.clientHeight < 40;
  view.events.append(h("li", { class: `${event.kind}${gate}`, "data-kind": event.kind },
    h("div", { class: "meta" }, `${when(event.ts)} · ${event.phase} · ${event.kind}`),
    h("div", { class: "msg" }, event.message), why ? h("div", { class: "why" }, data.why || data.reason ? "why: " : "", why) : null));
  if (atBottom) view.events.scrollTop = view.events.scrollHeight;
}
function scalars(data) { // "step 5, val_loss 6.68" for a decision that carries numbers but no reason
  const parts = Object.entries(data).filter(([, v]) => ["number", "boolean"].includes(typeof v) || (typeof v === "string" && v.length < 60))
    .slice(0, 5).map(([k, v]) => `${k} ${fmt(v, 4)}`);
  return parts.length ? parts.join(", ") : null;
}
function currentSeries(view) {
  if (!view.series.length) view.series.push({ round: 1, steps: [], val: [] });
  return view.series[view.series.length - 1];
}
function addStep(view, event) {
  const step = event.data || {};
  let series = currentSeries(view);
  const last = series.steps[series.steps.length - 1];
  if (last && step.step <= last.step) { // a resumed run repeats steps: a new line, not a zigzag
    series = { round: series.round, resumed: true, steps: [], val: [] };
    view.series.push(series);
  }
  series.steps.push({ step: step.step, loss: step.loss, total: step.total_steps });
  fill(view.chartNote, `Round ${series.round}: step ${step.step}/${step.total_steps}, loss ${fmt(step.loss)}`,
    step.tokens_per_second ? `, ${Math.round(step.tokens_per_second)} tokens/s` : "");
  drawLoss(view);
}
function drawLoss(view) {
  const width = 720, height = 260, left = 52, right = 16, top = 14, bottom = 34;
  const points = view.series.flatMap((s) => [...s.steps, ...s.val]);
  const svg = h("svg", { class: "loss", id: "loss-svg", viewBox: `0 0 ${width} ${height}`, role: "img",
                         "aria-label": "Training loss by step", "data-points": view.series.reduce((n, s) => n + s.steps.length, 0) });
  svg.append(h("title", {}, "Training loss by step"));
  if (!points.length) {
    svg.append(h("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "The curve grows here as the trainer reports steps."));
    fill(view.chart, svg);
    return;
  }
  const maxStep = Math.max(...view.series.flatMap((s) => s.steps.map((p) => p.total || p.step)), ...points.map((p) => p.step), 1);
  let low = Math.min(...points.map((p) => p.loss)), high = Math.max(...points.map((p) => p.loss));
  const pad = (high - low) * 0.1 || Math.abs(high) * 0.01 || 0.1;
  low -= pad; high += pad;
  const x = (step) => left + ((width - left - right) * step) / maxStep;
  const y = (loss) => top + ((height - top - bottom) * (high - loss)) / (high - low);
  for (let i = 0; i <= 4; i++) {
    const value = low + ((high - low) * i) / 4;
    svg.append(h("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }),
      h("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, value.toFixed(high - low < 0.1 ? 4 : 3)));
  }
  const tick = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].find((n) => maxStep / n <= 10) || Math.ceil(maxStep / 10);
  for (let step = 0; step <= maxStep; step += tick) {
    svg.append(h("text", { x: x(step), y: height - bottom + 16, "text-anchor": "middle" }, String(step)));
  }
  svg.append(h("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }),
    h("line", { class: "axis", x1: left, x2: left, y1: top, y2: height - bottom }),
    h("text", { x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle" }, "step"));
  view.series.forEach((series, index) => {
    const colour = `s${index % 4}`;
    if (series.steps.length) {
      svg.append(h("polyline", { class: `line ${colour}`, points: series.steps.map((p) => `${x(p.step)},${y(p.loss)}`).join(" ") }));
    }
    for (const p of series.val) svg.append(h("circle", { class: `val ${colour}`, cx: x(p.step), cy: y(p.loss), r: 4 }, h("title", {}, `val loss ${fmt(p.loss)} at step ${p.step}`)));
  });
  const legend = view.series.map((s, i) => [h("span", { class: `legend s${i % 4}` }, `■ round ${s.round}${s.resumed ? " (resumed)" : ""}`), " "]);
  fill(view.chart, svg, h("p", { class: "small muted" }, legend, "· line: train loss per step · dots: validation loss"));
}

function datasetView(data) {
  const summary = data.summary || {};
  const counts = summary.counts || {};
  const table = (title, values) => values && Object.keys(values).length ? h("div", {}, h("h3", {}, title),
    h("table", { class: "small" }, h("tbody", {}, Object.entries(values).map(([key, value]) => h("tr", {}, h("td", {}, key), h("td", { class: "num" }, fmt(value))))))) : null;
  const splits = Object.entries(data.examples || {});
  return [
    h("p", {}, `${Object.values(counts).reduce((a, b) => a + b, 0)} examples from the ${summary.generator || "?"} generator: `,
      Object.entries(counts).map(([split, n]) => `${split} ${n}`).join(", "),
      summary.documents_per_split ? ` (documents per split: ${Object.entries(summary.documents_per_split).map(([s, n]) => `${s} ${n}`).join(", ")})` : "",
      summary.yield !== undefined ? `; yield ${fmt(summary.yield, 2)}` : ""),
    h("div", { class: "grid two" }, table("By question type", summary.types), table("By difficulty", summary.difficulty)),
    table("Dropped", summary.dropped_examples),
    splits.map(([split, rows], index) => h("details", { open: index === 0 }, h("summary", {}, `${split}: first ${rows.length} examples`),
      h("div", { class: "table-wrap" }, h("table", { class: "small dataset-examples", "data-split": split },
        h("thead", {}, h("tr", {}, ["Question", "Answer", "Type", "Source"].map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((row) => h("tr", {}, h("td", {}, row.question), h("td", {}, row.answer),
          h("td", {}, row.type || "–", row.difficulty ? h("div", { class: "muted" }, row.difficulty) : null),
          h("td", {}, row.source || "–")))))))),
    data.card ? h("details", {}, h("summary", {}, "The dataset card"), markdown(data.card)) : null,
  ];
}

const METRICS = [["answer_nll", "answer NLL", "lower"], ["rouge_l", "ROUGE-L", "higher"], ["token_f1", "token F1", "higher"],
  ["exact_match", "exact match", "higher"], ["format_compliance", "format compliance", "higher"],
  ["general_perplexity", "general perplexity", "lower"], ["general_qa_f1", "general QA F1", "higher"],
  ["general_qa_rouge_l", "general QA ROUGE-L", "higher"], ["generated", "answers generated", null]];
function evaluationView(report) {
  const base = report.base || {}, tuned = report.tuned || {};
  const rows = METRICS.filter(([key]) => base[key] !== undefined || tuned[key] !== undefined).map(([key, label, better]) => {
    const delta = typeof base[key] === "number" && typeof tuned[key] === "number" ? tuned[key] - base[key] : null;
    const good = delta === null || better === null || delta === 0 ? "" : (delta < 0) === (better === "lower") ? "better" : "worse";
    return h("tr", {}, h("td", {}, label), h("td", { class: "num" }, fmt(base[key])), h("td", { class: "num" }, fmt(tuned[key])),
      h("td", { class: `num delta ${good}` }, delta === null ? "–" : `${delta > 0 ? "+" : ""}${fmt(delta)}`));
  });
  const judge = report.judge || {};
  return [
    h("p", {}, `Round ${fmt(report.round)}: `, badge(report.passed ? "pass" : "fail"), report.passed ? " every gate passed" : " a gate failed"),
    h("div", { class: "table-wrap" }, h("table", { id: "eval-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", { class: "num" }, "base"), h("th", { class: "num" }, "tuned"), h("th", { class: "num" }, "tuned − base"))),
      h("tbody", {}, rows))),
    h("h3", {}, "Gates"), gateList(report.gates || []),
    h("p", { class: "small muted" }, `LLM judge: ${judge.status || "–"}${judge.reason ? ` (${judge.reason})` : ""}`),
    h("h3", {}, `Answers side by side (${(report.per_example || []).length} held-out questions)`),
    h("div", { id: "per-example" }, (report.per_example || []).map(exampleView)),
    (report.general_per_example || []).length ? h("details", {}, h("summary", {}, `General questions (${report.general_per_example.length}): did it forget?`),
      report.general_per_example.map(exampleView)) : null,
  ];
}
function gateList(gates) {
  return h("ul", { class: "gates" }, gates.map((gate) => h("li", {}, badge(gate.passed ? "pass" : "fail"), " ", h("code", {}, gate.name), ": ", gate.detail)));
}
function exampleView(row) {
  const score = (value) => value === undefined ? "" : ` · ROUGE-L ${fmt(value, 2)}`;
  return h("div", { class: "example" }, h("div", { class: "q" }, row.question),
    row.reference ? h("div", { class: "small muted" }, "Reference: ", row.reference) : null,
    h("div", { class: "pair" },
      h("div", { class: "answer base-answer" }, h("span", { class: "label" }, `base${score(row.base_rouge_l)}`), row.base_answer || h("em", { class: "muted" }, "(empty answer)")),
      h("div", { class: "answer tuned-answer" }, h("span", { class: "label" }, `tuned${score(row.tuned_rouge_l)}`), row.tuned_answer || h("em", { class: "muted" }, "(empty answer)"))));
}
function roundsView(data) {
  const remedies = {};
  for (const remedy of data.remedies) (remedies[remedy.after_round] = remedies[remedy.after_round] || []).push(remedy);
  const numbers = [...new Set([...data.rounds.map((r) => r.round), ...Object.keys(remedies).map(Number)])].sort((a, b) => a - b);
  const byNumber = Object.fromEntries(data.rounds.map((r) => [r.round, r]));
  return [
    h("p", { class: "muted small" }, `${data.rounds.length} round(s) evaluated; at most ${fmt(data.max_rounds)} critic round(s) after the first.`),
    numbers.map((number) => {
      const record = byNumber[number];
      return h("div", { class: "round-group" },
        record ? h("div", { class: `round ${record.passed ? "passed" : "failed"}`, "data-round": number },
          h("h3", {}, `Round ${number} `, badge(record.passed ? "pass" : "fail")),
          h("dl", { class: "kv small" },
            h("dt", {}, "training"), h("dd", {}, Object.entries(record.config || {}).map(([k, v]) => `${k}=${fmt(v, 4)}`).join(", ")),
            h("dt", {}, "examples"), h("dd", {}, `${fmt(record.train_examples)} (replayed general: ${fmt(record.replay_examples)})`),
            h("dt", {}, "loss"), h("dd", {}, `train ${fmt(record.train_loss)}, val ${fmt(record.val_loss)} after ${fmt(record.steps)} steps`),
            h("dt", {}, "base → tuned"), h("dd", {}, METRICS.slice(0, 3).concat([METRICS[5]]).filter(([k]) => record.base && record.base[k] !== undefined)
              .map(([k, label]) => `${label} ${fmt(record.base[k])} → ${fmt(record.tuned[k])}`).join("; "))),
          gateList(record.gates || [])) : null,
        (remedies[number] || []).map((remedy) => h("div", { class: "remedy" },
          h("strong", {}, `Critic after round ${number}: `), remedy.reason,
          h("div", { class: "small" }, "changed ", h("code", {}, remedy.section), ": ",
            Object.entries(remedy.changes || {}).map(([k, v]) => `${k} ${fmt((remedy.before || {})[k], 4)} → ${fmt(v, 4)}`).join(", "),
            `; back to ${remedy.route} (chosen by ${remedy.chosen_by || "policy"})`))));
    }),
  ];
}

// ---- models ------------------------------------------------------------------------------------------
async function renderModels(selected) {
  const list = h("tbody", { id: "models-body" });
  const detail = h("div", { id: "model-detail" });
  fill($("#main"), h("h1", {}, "Models"), h("div", { class: "grid two" },
    h("section", { class: "card", "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Registered versions"),
      h("div", { class: "table-wrap" }, h("table", { id: "models" },
        h("thead", {}, h("tr", {}, ["Version", "Status", "Gates", "Subject", "Created"].map((c) => h("th", {}, c)))), list))),
    h("section", { class: "card", "aria-live": "polite" }, detail)));
  let versions = [];
  try { versions = await api("/models"); } catch (failure) { fill(list, h("tr", {}, h("td", { colspan: 5, class: "error" }, failure.message))); return; }
  if (!selected && versions.length) selected = versions[0].name;
  fill(list, versions.length ? versions.map((v) => h("tr", { "data-model": v.name, class: v.name === selected ? "selected" : "" },
    h("td", {}, h("a", { href: `#/models/${enc(v.name)}`, "aria-current": v.name === selected ? "true" : null }, v.name), h("div", { class: "muted small" }, `${v.family} v${v.version}`)),
    h("td", {}, badge(v.status)), h("td", {}, badge(v.gates_passed ? "pass" : "fail")), h("td", {}, v.subject),
    h("td", { class: "small" }, (v.created_at || "").replace("T", " ").slice(0, 16))))
    : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No model yet: start a job from the chat.")));
  if (selected) modelDetail(selected, detail);
  else fill(detail, h("p", { class: "muted" }, "Pick a version to see its card, ask it a question and promote it."));
}
async function modelDetail(name, detail) {
  let model;
  try { model = await api(`/models/${enc(name)}`); } catch (failure) { fill(detail, h("p", { class: "error" }, failure.message)); return; }
  const gates = ((model.metrics || {}).gates) || [];
  const force = h("input", { type: "checkbox", id: "force-promote" });
  const confirmDelete = h("input", { type: "checkbox", id: "confirm-delete" });
  const act = (label, run) => async (event) => {
    event.target.disabled = true;
    try { await run(); toast(label); await renderModels(name); } catch (failure) { toast(failure.message); event.target.disabled = false; }
  };
  const question = h("textarea", { id: "ask-question", rows: 2, placeholder: `A question about ${model.subject}` });
  const answers = h("div", { id: "ask-answers", "aria-live": "polite" });
  const ask = h("form", { id: "ask-form", onsubmit: async (event) => {
    event.preventDefault();
    if (!question.value.trim()) return;
    const button = $("button", event.target);
    button.disabled = true;
    fill(answers, h("p", { class: "muted" }, "Thinking… (the model loads on the server)"));
    try {
      const reply = await api(`/models/${enc(name)}/ask`, { method: "POST", body: { question: question.value.trim() } });
      fill(answers, h("div", { class: "pair" },
        h("div", { class: "answer tuned-answer" }, h("span", { class: "label" }, name), reply.tuned || h("em", {}, "(empty answer)")),
        h("div", { class: "answer base-answer" }, h("span", { class: "label" }, `base: ${model.base_model}`),
          reply.base === null ? h("em", {}, "(this version has no adapter: it is its base)") : reply.base || h("em", {}, "(empty answer)"))));
    } catch (failure) { fill(answers, h("p", { class: "error" }, failure.message)); } finally { button.disabled = false; }
  } }, h("label", { for: "ask-question" }, "Ask this version and its base"), question,
  h("div", { class: "row end" }, h("button", { type: "submit", id: "ask-send" }, "Ask both")));
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); ask.requestSubmit(); }
  });
  fill(detail,
    h("h2", { id: "model-name" }, name), h("p", { class: "row" }, badge(model.status), h("span", {}, `${model.family} v${model.version}`),
      h("span", { class: "muted" }, `base ${model.base_model}`), model.job_id ? h("a", { href: `#/jobs/${enc(model.job_id)}` }, "its job") : null),
    me.admin ? h("div", { class: "row", id: "model-actions" },
      h("button", { type: "button", id: "promote", disabled: model.status === "production",
        onclick: act(`${name} is in production.`, () => api(`/models/${enc(name)}/promote`, { method: "POST", body: { force: force.checked } })) }, "Promote to production"),
      model.gates_passed ? null : h("label", { class: "small", for: "force-promote" }, force, " even though its gates failed"),
      h("button", { type: "button", class: "secondary", id: "rollback",
        onclick: act(`${model.family} rolled back.`, () => api(`/models/${enc(name)}/rollback`, { method: "POST" })) }, "Roll back the family"),
      h("button", { type: "button", class: "danger", id: "delete",
        onclick: act(`${name} deleted.`, async () => {
          if (!confirmDelete.checked) throw new Error("Tick 'yes, delete' first: deleting removes the version's files.");
          await api(`/models/${enc(name)}?force=${model.status === "production"}`, { method: "DELETE" });
          location.hash = "#/models";
        }) }, "Delete"),
      h("label", { class: "small", for: "confirm-delete" }, confirmDelete, " yes, delete"))
      : h("p", { class: "muted small", id: "model-actions" }, "Promote, roll back and delete need an admin's token: they change what every user is served."),
    h("h3", {}, "Gates"), gateList(gates), ask, answers,
    h("details", { open: true }, h("summary", {}, "Model card"), markdown(model.card)));
}

// ---- start ----------------------------------------------------------------------------------------
window.addEventListener("hashchange", () => {
  if (/^#token=/.test(location.hash)) { takeTokenFromFragment(); enter(); } else if (store.getItem(TOKEN_KEY)) route();
});
document.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  takeTokenFromFragment();
  if (store.getItem(TOKEN_KEY)) enter(); else renderSignIn();
});
