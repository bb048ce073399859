// nbserve's request tester and dashboard: an anywidget ES module (AFM: `export default {render}`).
//
// The page never calls the service itself: every request is described to the kernel over the
// widget's comm (`model.send`, file contents as buffers), the kernel makes the real HTTP call
// on 127.0.0.1 and streams the answer back as `head` / `chunk` / `done` / `failed` messages
// (see nbserve/_notebook/tester/bridge.py). So it works wherever the notebook works: VS Code
// remote, JupyterHub or Binder without a proxy to the service's port.
//
// The pure parts (form building, request building, answer decoding and rendering, code
// snippets) are exported for the unit tests (tests/js/tester.test.js, vitest + jsdom).

const TEXT = new TextDecoder();

// --- schema → form ------------------------------------------------------------------------

/** The property itself, or its one non-null alternative (`str | None`), and whether null is ok. */
export function unwrap(prop) {
  const options = prop.anyOf || prop.oneOf;
  if (options && !prop.type) {
    const real = options.filter((p) => p.type !== "null");
    const nullable = real.length < options.length;
    if (real.length === 1) return { ...real[0], ...pick(prop, ["title", "default", "description"]), nullable };
    return { ...prop, nullable };
  }
  return prop;
}

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (k in obj) out[k] = obj[k];
  return out;
}

/** How a property is edited: text, number, integer, checkbox, select, file, files or json. */
export function fieldKind(prop) {
  const p = unwrap(prop);
  if (p.type === "file") return "file";
  if (p.type === "array" && p.items && p.items.type === "file") return "files";
  if (Array.isArray(p.enum) && p.enum.every((v) => typeof v === "string")) return "select";
  if (p.type === "string") return "text";
  if (p.type === "integer") return "integer";
  if (p.type === "number") return "number";
  if (p.type === "boolean") return "checkbox";
  return "json"; // lists, dicts, pydantic models, tensors, data frames, unions
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-")) el.setAttribute(k, v);
    else if (k in el) el[k] = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function typeLabel(prop) {
  const p = unwrap(prop);
  if (p.type === "tensor") return `ndarray${p.shape ? " [" + p.shape.join(", ") + "]" : ""}${p.dtype ? " " + p.dtype : ""}`;
  if (p.type === "dataframe") return "DataFrame";
  if (p.type === "file") return p.format === "image" ? "image" : "file";
  if (p.type === "array") return `list[${p.items ? typeLabel(p.items) : "any"}]`;
  if (p.type === "object" && p.title && p.properties) return p.title;
  return (p.type || "any") + (p.nullable ? " | None" : "");
}

/**
 * The form of one API. `route` is a `/schema.json` route entry, `examples` the field → value
 * map the kernel computed (defaults, or examples that validate). Returns
 * `{el, collect, showFieldErrors, clearErrors}`; `collect()` resolves to
 * `{message, buffers}` (the comm message of `bridge.build_request`) or throws a FieldError.
 */
export function buildForm(route, examples = {}) {
  const input = route.input || {};
  const el = h("div", { class: "nbs-form" });
  const controls = new Map(); // field → {kind, input, prop, required, error}
  const rootInput = !!input.root_input;
  const props = rootInput ? { "": input } : input.properties || {};
  const required = new Set(rootInput ? [""] : input.required || []);
  for (const [name, prop] of Object.entries(props)) {
    const kind = rootInput && unwrap(prop).type === "string" ? "rawtext" : fieldKind(prop);
    const example = examples[name];
    const id = `nbs-${route.name}-${name || "body"}-${Math.random().toString(36).slice(2, 8)}`;
    let control;
    if (kind === "checkbox") {
      control = h("input", { type: "checkbox", id, name: name || "body", checked: !!example });
    } else if (kind === "integer" || kind === "number") {
      control = h("input", { type: "number", id, name, step: kind === "integer" ? "1" : "any", value: example ?? "" });
    } else if (kind === "text") {
      control = h("input", { type: "text", id, name, value: example ?? "" });
    } else if (kind === "select") {
      control = h("select", { id, name }, ...unwrap(prop).enum.map((v) => h("option", { value: v, text: v, selected: v === example })));
    } else if (kind === "file" || kind === "files") {
      const image = (unwrap(prop).format || (unwrap(prop).items || {}).format) === "image";
      control = h("input", { type: "file", id, name, multiple: kind === "files", accept: image ? "image/*" : undefined });
    } else if (kind === "rawtext") {
      control = h("textarea", { id, name: "body", rows: 3, spellcheck: false, value: example ?? "" });
    } else {
      control = h("textarea", {
        id, name: name || "body", class: "nbs-json", rows: Math.min(10, JSON.stringify(example ?? null, null, 2).split("\n").length + 1),
        spellcheck: false, value: JSON.stringify(example ?? null, null, 2),
      });
    }
    const error = h("div", { class: "nbs-field-error", "data-field": name || "body" });
    const label = h("label", { htmlFor: id },
      h("code", { text: name || "body" }),
      h("span", { class: "nbs-type", text: typeLabel(prop) }),
      required.has(name) ? h("span", { class: "nbs-required", text: "required" }) : null,
    );
    const row = h("div", { class: `nbs-field nbs-kind-${kind}`, "data-field": name || "body" }, label, control, error);
    if (prop.description) row.append(h("div", { class: "nbs-help", text: prop.description }));
    el.append(row);
    controls.set(name, { kind, input: control, prop, required: required.has(name), error, row });
  }

  function clearErrors() {
    for (const c of controls.values()) {
      c.error.textContent = "";
      c.row.classList.remove("nbs-invalid");
    }
  }

  /** Put each `{loc, msg}` of a 400's detail next to the field its loc names; returns the misses. */
  function showFieldErrors(detail) {
    const missed = [];
    for (const item of Array.isArray(detail) ? detail : []) {
      const loc = (item.loc || []).filter((p) => p !== "body");
      const field = rootInput ? "" : String(loc[0] ?? "");
      const c = controls.get(field);
      if (!c) { missed.push(item); continue; }
      const where = loc.length > 1 ? loc.slice(1).join(".") + ": " : "";
      c.error.textContent = (c.error.textContent ? c.error.textContent + "; " : "") + where + (item.msg || "invalid");
      c.row.classList.add("nbs-invalid");
    }
    return missed;
  }

  async function collect() {
    clearErrors();
    const values = {};
    const files = [];
    const buffers = [];
    const problems = [];
    for (const [name, c] of controls) {
      const v = c.input;
      if (c.kind === "file" || c.kind === "files") {
        for (const f of v.files || []) {
          files.push({ field: name, filename: f.name, content_type: f.type || "application/octet-stream" });
          buffers.push(await readFile(f));
        }
        if (c.required && !(v.files || []).length) problems.push([name, "pick a file"]);
        continue;
      }
      if (c.kind === "checkbox") { values[name] = v.checked; continue; }
      if (c.kind === "rawtext") { values[name] = v.value; continue; }
      if (v.value === "" && c.kind !== "text") {
        if (c.required) problems.push([name, "required"]);
        continue;
      }
      if (c.kind === "integer" || c.kind === "number") {
        const n = Number(v.value);
        if (!Number.isFinite(n) || (c.kind === "integer" && !Number.isInteger(n))) problems.push([name, `not ${c.kind === "integer" ? "an integer" : "a number"}: ${v.value}`]);
        else values[name] = n;
      } else if (c.kind === "json") {
        try { values[name] = JSON.parse(v.value); } catch (e) { problems.push([name, `not valid JSON: ${e.message}`]); }
      } else if (c.kind === "text" && v.value === "" && !c.required && unwrap(c.prop).nullable) {
        continue; // an optional text left empty: the server's default applies
      } else {
        values[name] = v.value;
      }
    }
    if (problems.length) {
      showFieldErrors(problems.map(([field, msg]) => ({ loc: [field], msg })));
      throw new FieldError(problems);
    }
    return { message: requestMessage(route, values, files), buffers };
  }

  return { el, collect, showFieldErrors, clearErrors, controls };
}

export class FieldError extends Error {
  constructor(problems) {
    super(problems.map(([f, m]) => `${f || "body"}: ${m}`).join("; "));
    this.problems = problems;
  }
}

function readFile(file) {
  if (file.arrayBuffer) return file.arrayBuffer();
  return new Promise((resolve, reject) => { // jsdom's File has no arrayBuffer()
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(file);
  });
}

/** The comm message of one request (see bridge.build_request), without its id. */
export function requestMessage(route, values, files = []) {
  const input = route.input || {};
  // `path` is relative to the service's URL, which holds its path prefix (`/v1`).
  const base = { type: "send", api: route.name, path: route.route, method: "POST" };
  if (files.length) {
    const fields = {};
    for (const [k, v] of Object.entries(values)) fields[k] = JSON.stringify(v);
    return { ...base, kind: "multipart", fields, files };
  }
  if (input.root_input) {
    const v = values[""];
    if (unwrap(input).type === "string" && typeof v === "string") return { ...base, kind: "text", body: v };
    return { ...base, kind: "json", body: JSON.stringify(v) };
  }
  return { ...base, kind: "json", body: JSON.stringify(values) };
}

// --- answers --------------------------------------------------------------------------------

function header(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) if (k.toLowerCase() === name) return v;
  return "";
}

function concat(chunks) {
  const size = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { out.set(new Uint8Array(c.buffer || c, c.byteOffset || 0, c.byteLength), at); at += c.byteLength; }
  return out;
}

export function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** What an answer is, from its content type, status and the route's output schema. */
export function answerKind(answer, route = {}) {
  const type = header(answer.headers, "content-type").toLowerCase();
  const output = route.output || {};
  if (answer.failed) return "failed";
  if (answer.status >= 400) return "error";
  if (output.is_stream || type.startsWith("text/event-stream")) return "stream";
  if (type.startsWith("image/")) return "image";
  if (type.includes("json")) return output.type === "dataframe" ? "dataframe" : "json";
  if (type.startsWith("text/")) return "text";
  return "binary";
}

/** Records (`[{col: v}]`) or columns (`{col: [v]}`) as a header row and rows. */
export function tableOf(value) {
  if (Array.isArray(value) && value.every((r) => r && typeof r === "object" && !Array.isArray(r))) {
    const columns = [...new Set(value.flatMap((r) => Object.keys(r)))];
    return { columns, rows: value.map((r) => columns.map((c) => r[c])) };
  }
  if (value && typeof value === "object" && !Array.isArray(value) && Object.values(value).every(Array.isArray)) {
    const columns = Object.keys(value);
    const n = Math.max(0, ...columns.map((c) => value[c].length));
    return { columns, rows: Array.from({ length: n }, (_, i) => columns.map((c) => value[c][i])) };
  }
  return null;
}

function cell(v) {
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

/**
 * Render `answer` ({status, reason, headers, chunks, ms, size, requestId, done, failed,
 * message}) into `el`, replacing what was there. Called again as chunks arrive: a stream
 * grows in place; other bodies are shown once `done`.
 */
export function renderAnswer(el, answer, route = {}, form = null) {
  const kind = answerKind(answer, route);
  el.replaceChildren();
  el.dataset.kind = kind;
  const head = h("div", { class: "nbs-answer-head" });
  if (answer.failed) {
    head.append(h("span", { class: "nbs-pill nbs-bad", text: "no answer" }));
  } else if (answer.status) {
    const ok = answer.status < 400;
    head.append(h("span", { class: `nbs-pill ${ok ? "nbs-ok" : "nbs-bad"}`, "data-status": answer.status, text: `${answer.status} ${answer.reason || ""}`.trim() }));
  }
  if (answer.done) {
    head.append(h("span", { class: "nbs-latency", text: formatMs(answer.ms) }));
    head.append(h("span", { class: "nbs-size", text: formatSize(answer.size) }));
  } else if (!answer.failed) {
    head.append(h("span", { class: "nbs-pending", text: answer.status ? "receiving…" : "sending…" }));
  }
  if (kind === "stream") head.append(h("span", { class: "nbs-chunks", text: `${answer.chunks.length} chunk${answer.chunks.length === 1 ? "" : "s"}` }));
  if (answer.requestId) head.append(h("span", { class: "nbs-rid", text: `request ${answer.requestId}` }));
  el.append(head);

  const bytes = () => concat(answer.chunks);
  if (kind === "failed") {
    el.append(h("div", { class: "nbs-error" }, h("div", { class: "nbs-error-message", text: answer.message || "no answer" })));
    return kind;
  }
  if (kind === "stream") {
    el.append(h("pre", { class: "nbs-body nbs-stream", text: TEXT.decode(bytes()) }));
    return kind;
  }
  if (!answer.done) return kind;
  if (kind === "error") {
    let message = TEXT.decode(bytes());
    let detail = null;
    try {
      const doc = JSON.parse(message);
      message = doc.error || doc.message || message;
      detail = doc.detail;
    } catch { /* not JSON: show the text */ }
    const box = h("div", { class: "nbs-error" },
      h("div", { class: "nbs-error-title", text: `${answer.status} ${answer.reason || ""}`.trim() }),
      h("pre", { class: "nbs-error-message", text: message }));
    if (answer.requestId) box.append(h("div", { class: "nbs-error-rid", text: `request id ${answer.requestId} (see %serve logs)` }));
    el.append(box);
    if (form && answer.status === 400) form.showFieldErrors(detail);
    return kind;
  }
  if (kind === "image") {
    const type = header(answer.headers, "content-type");
    const blob = new Blob([bytes()], { type });
    const img = h("img", { class: "nbs-image", alt: "image answer" });
    img.src = typeof URL.createObjectURL === "function" ? URL.createObjectURL(blob) : "";
    el.append(img);
    return kind;
  }
  if (kind === "json" || kind === "dataframe") {
    const text = TEXT.decode(bytes());
    let value;
    try { value = JSON.parse(text); } catch { el.append(h("pre", { class: "nbs-body", text })); return kind; }
    const table = kind === "dataframe" ? tableOf(value) : null;
    if (table) {
      el.append(h("div", { class: "nbs-table-wrap" }, h("table", { class: "nbs-table" },
        h("thead", {}, h("tr", {}, ...table.columns.map((c) => h("th", { text: c })))),
        h("tbody", {}, ...table.rows.map((r) => h("tr", {}, ...r.map((v) => h("td", { text: cell(v) }))))))));
    } else {
      el.append(h("pre", { class: "nbs-body nbs-json-body", text: JSON.stringify(value, null, 2) }));
    }
    return kind;
  }
  if (kind === "text") {
    el.append(h("pre", { class: "nbs-body", text: TEXT.decode(bytes()) }));
    return kind;
  }
  el.append(h("div", { class: "nbs-body", text: `${formatSize(answer.size)} of ${header(answer.headers, "content-type") || "binary data"}` }));
  return kind;
}

// --- the same request as code ----------------------------------------------------------------

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'"'"'`)}'`;
}

/** The request as a curl command against `url` (the service's URL, its path prefix included). */
export function curlFor(message, url, tokenRequired = false) {
  const parts = [`curl -s -X POST ${url.replace(/\/$/, "")}${message.path}`];
  if (tokenRequired) parts.push(`-H "Authorization: Bearer $NBSERVE_TOKEN"`);
  if (message.kind === "multipart") {
    for (const [k, v] of Object.entries(message.fields || {})) parts.push(`-F ${shellQuote(`${k}=${v}`)}`);
    for (const f of message.files || []) parts.push(`-F ${shellQuote(`${f.field}=@${f.filename}`)}`);
  } else if (message.kind === "text") {
    parts.push(`-H 'Content-Type: text/plain'`, `--data-binary ${shellQuote(message.body)}`);
  } else {
    parts.push(`-H 'Content-Type: application/json'`, `-d ${shellQuote(message.body)}`);
  }
  return parts.join(" \\\n  ");
}

function pyValue(v) {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (Array.isArray(v)) return `[${v.map(pyValue).join(", ")}]`;
  if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyValue(x)}`).join(", ")}}`;
  return JSON.stringify(v);
}

/** The request as nbserve client code (`SyncHTTPClient`, BentoML's client interface). */
export function pythonFor(message, url, serviceName, tokenRequired = false) {
  const lines = ["import nbserve", ""];
  const token = tokenRequired ? `, token=nbserve.services()[${JSON.stringify(serviceName)}].token` : "";
  lines.push(`with nbserve.SyncHTTPClient(${JSON.stringify(url.replace(/\/$/, ""))}${token}) as client:`);
  let args = [];
  if (message.kind === "multipart") {
    args = Object.entries(message.fields || {}).map(([k, v]) => `${k}=${pyValue(JSON.parse(v))}`);
    const byField = {};
    for (const f of message.files || []) (byField[f.field] ||= []).push(`Path(${JSON.stringify(f.filename)})`);
    for (const [k, paths] of Object.entries(byField)) args.push(`${k}=${paths.length > 1 ? `[${paths.join(", ")}]` : paths[0]}`);
    lines.unshift("from pathlib import Path");
  } else if (message.kind === "text") {
    args = [JSON.stringify(message.body)];
  } else {
    const body = JSON.parse(message.body || "{}");
    args = body && typeof body === "object" && !Array.isArray(body) ? Object.entries(body).map(([k, v]) => `${k}=${pyValue(v)}`) : [pyValue(body)];
  }
  lines.push(`    result = client.${message.api}(${args.join(", ")})`);
  return lines.join("\n");
}

// --- the dashboard ---------------------------------------------------------------------------

/** Render one `stats` frame (see dashboard.snapshot) into `el`. */
export function renderDashboard(el, stats) {
  el.replaceChildren();
  if (!stats) { el.append(h("div", { class: "nbs-muted", text: "waiting for numbers…" })); return; }
  const rate = stats.total ? (100 * stats.total_errors) / stats.total : 0;
  el.append(h("div", { class: "nbs-cards" },
    h("div", { class: "nbs-card" }, h("div", { class: "nbs-card-value", "data-metric": "requests", text: String(stats.total) }), h("div", { text: "requests" })),
    h("div", { class: "nbs-card" }, h("div", { class: "nbs-card-value", "data-metric": "error-rate", text: `${rate.toFixed(1)}%` }), h("div", { text: "errors" })),
    h("div", { class: "nbs-card" }, h("div", { class: "nbs-card-value", "data-metric": "state", text: stats.state }), h("div", { text: "state" }))));
  const ms = (v) => (v === null || v === undefined ? "–" : formatMs(v));
  el.append(h("table", { class: "nbs-table nbs-routes" },
    h("thead", {}, h("tr", {}, ...["route", "requests", "errors", "p50", "p95", "p99"].map((c) => h("th", { text: c })))),
    h("tbody", {}, ...stats.routes.map((r) => h("tr", { "data-route": r.route },
      h("td", {}, h("code", { text: r.route })), h("td", { text: String(r.count) }),
      h("td", { text: r.errors ? `${r.errors} (${(100 * r.error_rate).toFixed(1)}%)` : "0" }),
      h("td", { text: ms(r.p50_ms) }), h("td", { text: ms(r.p95_ms) }), h("td", { text: ms(r.p99_ms) }))))));
  const batches = Object.entries(stats.batches || {});
  if (batches.length) {
    const section = h("div", { class: "nbs-batches" }, h("h4", { text: "batch sizes" }));
    for (const [api, rows] of batches) {
      const most = Math.max(1, ...rows.map((r) => r[1]));
      section.append(h("div", { class: "nbs-batch", "data-api": api }, h("code", { text: api }),
        ...rows.filter((r) => r[1] > 0).map(([bound, count]) => h("div", { class: "nbs-bar-row" },
          h("span", { class: "nbs-bar-label", text: Number.isFinite(bound) ? `≤ ${bound}` : "more" }),
          h("span", { class: "nbs-bar", style: `width:${Math.max(2, (100 * count) / most)}%` }),
          h("span", { class: "nbs-bar-count", text: String(count) })))));
    }
    el.append(section);
  }
  const workers = stats.workers || [];
  el.append(h("div", { class: "nbs-workers" }, h("h4", { text: "workers" }),
    workers.length
      ? h("table", { class: "nbs-table" }, h("thead", {}, h("tr", {}, ...["worker", "state", "pid", "devices"].map((c) => h("th", { text: c })))),
        h("tbody", {}, ...workers.map((w) => h("tr", {}, h("td", { text: String(w.index) }), h("td", { class: `nbs-state-${w.state}`, text: w.state }), h("td", { text: w.pid || "–" }), h("td", { text: w.devices || "cpu" })))))
      : h("div", { class: "nbs-muted", text: "inline: served in the kernel's process" })));
}

// --- the widget ------------------------------------------------------------------------------

let counter = 0;

/**
 * Build the whole tester in `el`; `model` is anywidget's model (get/on/off/send). `pending`
 * (request id → answer in progress) survives a rebuild, so an answer to a request sent just
 * before the service was swapped still lands in its API's tab.
 */
export function createTester({ model, el, pending = new Map() }) {
  const schema = model.get("schema") || {};
  const examples = model.get("examples") || {};
  const urls = model.get("urls") || {};
  const prefix = model.get("prefix") || "";
  const serviceName = model.get("service_name");
  const tokenRequired = model.get("token_required");
  const view = model.get("view") || "tester";
  const routes = (schema.routes || []).map((r) => ({ ...r, fullPath: prefix + r.route }));
  const forms = new Map(); // API name → its form (for field errors)
  const cleanups = [];
  const root = h("div", { class: "nbs-tester", "data-view": view });
  el.replaceChildren(root);

  const tabs = h("div", { class: "nbs-tabs", role: "tablist" });
  const panels = h("div", { class: "nbs-panels" });
  root.append(h("div", { class: "nbs-title" }, h("b", { text: "nbserve" }), " ", h("code", { text: serviceName }),
    h("span", { class: "nbs-muted", text: view === "dashboard" ? " dashboard" : " request tester" })), tabs, panels);

  const panelsByName = new Map();
  function addTab(name, label, panel) {
    const button = h("button", { class: "nbs-tab", type: "button", role: "tab", "data-tab": name, text: label });
    button.addEventListener("click", () => select(name));
    tabs.append(button);
    panel.dataset.panel = name;
    panel.hidden = true;
    panels.append(panel);
    panelsByName.set(name, { button, panel });
  }
  let watching = null;
  let dashboardTab = false;
  let onScreen = true; // without IntersectionObserver (jsdom), assume it is seen
  function select(name) {
    for (const [n, { button, panel }] of panelsByName) {
      const on = n === name;
      button.classList.toggle("nbs-active", on);
      button.setAttribute("aria-selected", String(on));
      panel.hidden = !on;
    }
    dashboardTab = name === "__dashboard";
    setWatching(dashboardTab && onScreen);
  }
  // The kernel polls only while the dashboard is both the open tab and on screen (a closed
  // tab, a collapsed output or a scrolled-away cell costs nothing).
  if (typeof IntersectionObserver === "function") {
    const observer = new IntersectionObserver((entries) => {
      onScreen = entries.some((e) => e.isIntersecting);
      setWatching(dashboardTab && onScreen);
    });
    observer.observe(root);
    cleanups.push(() => observer.disconnect());
  }
  function setWatching(on) {
    if (on && !watching) {
      model.send({ type: "watch", on: true });
      watching = setInterval(() => model.send({ type: "watch", on: true }), 5000);
    } else if (!on && watching) {
      clearInterval(watching);
      watching = null;
      model.send({ type: "watch", on: false });
    }
  }
  cleanups.push(() => setWatching(false));

  if (view !== "dashboard") {
    for (const route of routes) addTab(route.name, route.name, apiPanel(route));
  }
  const dash = h("div", { class: "nbs-dashboard" });
  renderDashboard(dash, null);
  addTab("__dashboard", "Dashboard", dash);
  const history = h("div", { class: "nbs-history" });
  if (view !== "dashboard") {
    root.append(h("details", { class: "nbs-history-box" }, h("summary", { text: "History" }), history));
    renderHistory();
  }
  select(view === "dashboard" || !routes.length ? "__dashboard" : routes[0].name);

  function apiPanel(route) {
    const panel = h("div", { class: "nbs-api", "data-api": route.name });
    const desc = route.doc || route.description;
    panel.append(h("div", { class: "nbs-route" }, h("span", { class: "nbs-method", text: "POST" }), " ", h("code", { text: route.fullPath })));
    if (desc) panel.append(h("div", { class: "nbs-doc", text: desc }));
    const form = buildForm(route, examples[route.name] || {});
    forms.set(route.name, form);
    const send = h("button", { class: "nbs-send", type: "button", text: "Send" });
    const out = h("div", { class: "nbs-answer" });
    const curl = h("pre", { class: "nbs-curl" });
    const python = h("pre", { class: "nbs-python" });
    const code = h("details", { class: "nbs-code" }, h("summary", { text: "as curl / Python" }),
      h("div", { class: "nbs-code-label", text: "curl (in a terminal on the kernel's machine, or a ! line)" }), curl,
      h("div", { class: "nbs-code-label", text: "Python (nbserve or BentoML client)" }), python);
    if (urls.public && urls.local && urls.public.replace(/\/$/, "") !== urls.local.replace(/\/$/, "")) {
      code.append(h("div", { class: "nbs-code-label", text: `from your browser's machine the service is at ${urls.public}` }));
    }
    panel.append(form.el, h("div", { class: "nbs-actions" }, send), out, code);
    const showCode = (message) => {
      curl.textContent = curlFor(message, urls.local || "", tokenRequired);
      python.textContent = pythonFor(message, urls.local || "", serviceName, tokenRequired);
    };
    form.collect().then(({ message }) => showCode(message), () => {});
    send.addEventListener("click", async () => {
      let collected;
      try {
        collected = await form.collect();
      } catch (e) {
        renderAnswer(out, { failed: true, message: e.message, chunks: [] }, route);
        return;
      }
      showCode(collected.message);
      const id = `r${Date.now().toString(36)}${(counter++).toString(36)}`;
      pending.set(id, { answer: { chunks: [], headers: {} }, route, form, out });
      renderAnswer(out, { chunks: [], headers: {} }, route);
      model.send({ ...collected.message, id }, undefined, collected.buffers);
    });
    return panel;
  }

  function renderHistory() {
    const entries = (model.get("history") || []).slice().reverse();
    history.replaceChildren();
    if (!entries.length) { history.append(h("div", { class: "nbs-muted", text: "no requests yet" })); return; }
    for (const e of entries) {
      const again = h("button", { class: "nbs-resend", type: "button", text: "re-send" });
      again.addEventListener("click", () => {
        const route = routes.find((r) => r.name === e.api) || {};
        const panel = panelsByName.get(e.api);
        if (panel) select(e.api);
        const out = panel ? panel.panel.querySelector(".nbs-answer") : h("div");
        const id = `r${Date.now().toString(36)}${(counter++).toString(36)}`;
        pending.set(id, { answer: { chunks: [], headers: {} }, route, form: null, out });
        renderAnswer(out, { chunks: [], headers: {} }, route);
        model.send({ type: "resend", of: e.id, id });
      });
      history.append(h("div", { class: "nbs-history-row", "data-id": e.id },
        h("code", { text: e.path || e.api }),
        h("span", { class: `nbs-pill ${e.status && e.status < 400 ? "nbs-ok" : "nbs-bad"}`, text: e.status ? String(e.status) : e.error ? "no answer" : "…" }),
        h("span", { class: "nbs-latency", text: e.ms !== undefined ? formatMs(e.ms) : "" }),
        h("span", { class: "nbs-size", text: e.size !== undefined ? formatSize(e.size) : "" }), again));
    }
  }

  for (const entry of pending.values()) { // a rebuild: answers in flight go to the new tabs
    const panel = panelsByName.get(entry.route.name);
    if (panel) entry.out = panel.panel.querySelector(".nbs-answer");
    entry.form = forms.get(entry.route.name) || null;
  }

  function onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "stats") { renderDashboard(dash, msg.stats); return; }
    const entry = pending.get(msg.id);
    if (!entry) return;
    const a = entry.answer;
    if (msg.type === "head") Object.assign(a, { status: msg.status, reason: msg.reason, headers: msg.headers });
    else if (msg.type === "chunk") a.chunks.push(buffers && buffers[0] ? buffers[0] : new Uint8Array());
    else if (msg.type === "done") { Object.assign(a, { done: true, ms: msg.ms, size: msg.size, requestId: msg.request_id }); pending.delete(msg.id); }
    else if (msg.type === "failed") { Object.assign(a, { failed: true, message: msg.message }); pending.delete(msg.id); }
    else return;
    if (msg.type === "chunk" && answerKind(a, entry.route) !== "stream") return; // shown when done
    renderAnswer(entry.out, a, entry.route, entry.form);
  }
  model.on("msg:custom", onMessage);
  model.on("change:history", renderHistory);
  cleanups.push(() => { model.off("msg:custom", onMessage); model.off("change:history", renderHistory); });
  return { root, select, onMessage, cleanup: () => cleanups.forEach((f) => f()) };
}

export default {
  render({ model, el }) {
    const pending = new Map(); // request id → {answer, route, form, out}
    let tester = createTester({ model, el, pending });
    // The kernel re-reads the schema when the cell was re-run (a swap): new tabs and forms.
    const rebuild = () => {
      tester.cleanup();
      tester = createTester({ model, el, pending });
    };
    model.on("change:schema", rebuild);
    return () => {
      model.off("change:schema", rebuild);
      tester.cleanup();
    };
  },
};
