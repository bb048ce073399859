// nbserve docs page: lists a service's APIs from ./schema.json and lets you call them.
// Every URL is relative to the page, so it works under a path prefix and behind Jupyter's
// proxy (/user/<name>/proxy/<port>/). Everything the server sends is rendered as text nodes,
// never as HTML.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("nbserve-config").textContent);
  const prefix = config.prefix || "";
  const MAX_SHOWN = 200000; // characters of a response body shown; the rest is a download

  // The page is served at {prefix}/; tolerate a missing trailing slash so ./x still resolves
  // next to the page rather than one level up.
  const base = new URL(window.location.href);
  base.search = "";
  base.hash = "";
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const url = (rel) => new URL(rel, base).toString();
  // schema.json routes are relative to the service's base URL (where the page is), so /predict
  // is ./predict; the full path, prefix included, is what the page shows.
  const routeUrl = (route) => url("./" + route.replace(/^\/+/, ""));
  const fullPath = (route) => prefix + route;

  // A server started with a token wants `Authorization: Bearer`; take it from ?token= or ask.
  const store = {
    get() { try { return sessionStorage.getItem("nbserve-token") || ""; } catch (e) { return ""; } },
    set(v) { try { sessionStorage.setItem("nbserve-token", v); } catch (e) { /* private mode */ } },
  };
  let token = new URLSearchParams(window.location.search).get("token") || store.get();
  const authHeaders = (extra) => {
    const h = new Headers(extra || {});
    if (token) h.set("Authorization", "Bearer " + token);
    // Behind nbserve's Jupyter proxy the browser is logged in by cookie, and Jupyter wants the
    // XSRF token (its `_xsrf` cookie, echoed in a header) on cookie-authenticated POSTs.
    const xsrf = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    if (xsrf) h.set("X-XSRFToken", xsrf[1]);
    return h;
  };

  // --- DOM helpers ---------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);

  // --- schemas -------------------------------------------------------------------------------
  // Optional[X] arrives as anyOf [X, null] (or as X with a null default): unwrap it.
  function unwrap(s) {
    const variants = s && (s.anyOf || s.oneOf);
    if (!variants) return s || {};
    const real = variants.filter((v) => v && v.type !== "null");
    return real.length === 1 ? Object.assign({}, s, real[0], { anyOf: undefined, oneOf: undefined }) : s;
  }
  const isFile = (s) => unwrap(s).type === "file";
  const isFileList = (s) => { const u = unwrap(s); return u.type === "array" && isFile(u.items); };

  function typeLabel(schema) {
    const s = schema || {};
    const variants = s.anyOf || s.oneOf;
    if (variants) return variants.map(typeLabel).join(" | ");
    if (s.allOf && s.allOf.length === 1) return typeLabel(s.allOf[0]);
    if ("const" in s) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    switch (s.type) {
      case "tensor": {
        const parts = [s.dtype, s.shape && "(" + s.shape.join(", ") + ")"].filter(Boolean);
        return "ndarray" + (parts.length ? "[" + parts.join(", ") + "]" : "");
      }
      case "dataframe": return "DataFrame" + (s.orient ? " (" + s.orient + ")" : "");
      case "file": return (s.pil || s.format === "image" ? "image" : "file") + (s.content_type ? " (" + s.content_type + ")" : "");
      case "array":
        if (s.prefixItems) return "tuple[" + s.prefixItems.map(typeLabel).join(", ") + "]";
        return "list[" + (s.items ? typeLabel(s.items) : "any") + "]";
      case "object":
        if (s.properties && s.title && s.title !== "Input") return s.title;
        if (s.additionalProperties && typeof s.additionalProperties === "object") return "dict[str, " + typeLabel(s.additionalProperties) + "]";
        return s.properties ? "object" : "dict";
      case "string":
        if (s.format === "binary") return "bytes";
        return s.format ? "string (" + s.format + ")" : "string";
      case undefined: return "any";
      default: return Array.isArray(s.type) ? s.type.join(" | ") : s.type;
    }
  }

  function constraints(s) {
    const out = [];
    const names = { minimum: "≥", exclusiveMinimum: ">", maximum: "≤", exclusiveMaximum: "<", minLength: "min length", maxLength: "max length", minItems: "min items", maxItems: "max items", pattern: "pattern" };
    for (const [k, label] of Object.entries(names)) if (k in s) out.push(label + " " + s[k]);
    return out.join(", ");
  }

  // An example value that validates against `schema`, for pre-filling the request body.
  function example(schema, depth) {
    const s = unwrap(schema);
    if (depth > 6) return null;
    if (s.examples && s.examples.length) return s.examples[0];
    if ("example" in s) return s.example;
    if ("default" in s) return s.default;
    if ("const" in s) return s.const;
    if (s.enum && s.enum.length) return s.enum[0];
    if (s.anyOf || s.oneOf) return example((s.anyOf || s.oneOf)[0], depth + 1);
    if (s.allOf && s.allOf.length) return example(s.allOf[0], depth + 1);
    switch (s.type) {
      case "string": return s.format === "date-time" ? new Date().toISOString() : s.format === "date" ? new Date().toISOString().slice(0, 10) : "string";
      case "integer": return typeof s.minimum === "number" ? Math.ceil(s.minimum) : 0;
      case "number": return typeof s.minimum === "number" ? s.minimum : 0;
      case "boolean": return false;
      case "null": return null;
      case "array":
        if (s.prefixItems) return s.prefixItems.map((p) => example(p, depth + 1));
        return Array.from({ length: Math.max(1, s.minItems || 0) }, () => example(s.items || {}, depth + 1));
      case "tensor": return tensorExample(s);
      case "dataframe": return frameExample(s);
      case "object": case undefined: {
        if (!s.properties) return {};
        const obj = {};
        for (const [k, p] of Object.entries(s.properties)) if (!isFile(p) && !isFileList(p)) obj[k] = example(p, depth + 1);
        return obj;
      }
      default: return null;
    }
  }

  // JSON.stringify(v, null, 2), except that short nested arrays and objects stay on one line:
  // a tensor row or a list of ids reads better as [0, 0, 0, 0] than one number per line.
  function flat(value) {
    if (Array.isArray(value)) return "[" + value.map(flat).join(", ") + "]";
    if (value && typeof value === "object") return "{" + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ": " + flat(v)).join(", ") + "}";
    const text = JSON.stringify(value);
    return text === undefined ? "null" : text;
  }
  function pretty(value, indent) {
    const pad = indent || "";
    if (value === null || typeof value !== "object") return flat(value);
    const oneLine = flat(value);
    if (pad && pad.length + oneLine.length <= 72) return oneLine;
    const entries = Array.isArray(value) ? value.map((v) => [null, v]) : Object.entries(value);
    if (!entries.length) return oneLine;
    const inner = pad + "  ";
    const body = entries.map(([k, v]) => inner + (k === null ? "" : JSON.stringify(k) + ": ") + pretty(v, inner)).join(",\n");
    return (Array.isArray(value) ? "[\n" : "{\n") + body + "\n" + pad + (Array.isArray(value) ? "]" : "}");
  }

  function tensorExample(s) {
    let shape = (s.shape || [1]).map((d) => (typeof d === "number" && d > 0 ? d : 1));
    // Keep the declared shape unless it is too big to edit by hand.
    if (shape.reduce((a, b) => a * b, 1) > 4096) shape = shape.map((d) => Math.min(d, 2));
    const zero = /bool/.test(s.dtype || "") ? false : 0;
    const build = (dims) => (dims.length ? Array.from({ length: dims[0] }, () => build(dims.slice(1))) : zero);
    return build(shape);
  }

  function frameExample(s) {
    const cols = s.columns && s.columns.length ? s.columns : ["a", "b"];
    if (s.orient === "columns") return Object.fromEntries(cols.map((c) => [c, { 0: 0 }]));
    if (s.orient === "list" || s.orient === "dict") return Object.fromEntries(cols.map((c) => [c, [0]]));
    if (s.orient === "values") return [cols.map(() => 0)];
    if (s.orient === "split") return { columns: cols, data: [cols.map(() => 0)] };
    return [Object.fromEntries(cols.map((c) => [c, 0]))];
  }

  // --- one API -------------------------------------------------------------------------------
  function fieldRows(props, required, path, depth) {
    const rows = [];
    for (const [name, prop] of Object.entries(props)) {
      const s = unwrap(prop);
      const notes = [s.description || prop.description, constraints(s)].filter(Boolean).join(" · ");
      const dflt = "default" in prop ? JSON.stringify(prop.default) : "";
      rows.push(el("tr", {},
        el("td", {}, el("code", { style: depth ? "padding-left:" + depth * 14 + "px" : null }, path + name),
          required.has(name) ? el("span", { class: "req", title: "required" }, "required") : null),
        el("td", {}, el("span", { class: "type" }, typeLabel(prop))),
        el("td", {}, dflt ? el("code", {}, dflt) : ""),
        el("td", { class: "muted" }, notes)));
      if (s.type === "object" && s.properties && depth < 3) {
        rows.push(...fieldRows(s.properties, new Set(s.required || []), path + name + ".", depth + 1));
      }
    }
    return rows;
  }

  function inputSection(input) {
    if (input.root_input) {
      return el("p", {}, "The request body is the value itself: ", el("span", { class: "type" }, typeLabel(input)), ".");
    }
    const props = input.properties || {};
    if (!Object.keys(props).length) return el("p", { class: "muted" }, "No input.");
    const rows = fieldRows(props, new Set(input.required || []), "", 0);
    // Drop the Default and Notes columns when no field has one.
    const used = [0, 1, 2, 3].map((i) => i < 2 || rows.some((r) => r.children[i].textContent));
    for (const r of rows) for (let i = 3; i >= 2; i--) if (!used[i]) r.children[i].remove();
    const heads = ["Field", "Type", "Default", "Notes"].filter((_, i) => used[i]);
    return el("table", { class: "fields" },
      el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows));
  }

  function renderApi(api, op, open) {
    const input = api.input || {};
    const output = api.output || {};
    const props = input.root_input ? {} : input.properties || {};
    const fileFields = Object.keys(props).filter((k) => isFile(props[k]) || isFileList(props[k]));
    const rootKind = !input.root_input ? null : isFile(input) ? "file" : unwrap(input).type === "string" && unwrap(input).format !== "binary" ? "text" : "json";
    const doc = api.doc || api.description || (op && op.description) || "";

    const card = el("details", { class: "card api", id: "api-" + api.name, "data-api": api.name, open });
    const summaryDoc = doc.split("\n")[0];
    card.append(el("summary", { class: "api-head" },
      el("span", { class: "method" }, "POST"),
      el("code", { class: "route" }, fullPath(api.route)),
      el("span", { class: "api-name" }, api.name),
      api.is_task ? el("span", { class: "tag" }, "task") : null,
      api.batchable ? el("span", { class: "tag" }, "batchable") : null,
      output.is_stream ? el("span", { class: "tag" }, "stream") : null,
      summaryDoc ? el("span", { class: "summary-doc muted" }, summaryDoc) : null));
    if (doc) card.append(el("p", { class: "doc" }, doc));
    card.append(el("h3", {}, "Input"), inputSection(input));
    card.append(el("h3", {}, "Returns"), el("p", {},
      el("span", { class: "out-type" }, typeLabel(output)),
      output.is_stream ? el("span", { class: "muted" }, " — streamed as " + (output.media_type || "chunks")) : null));

    // Try it: a body editor (JSON, or raw text for a root str), file pickers for file fields.
    const pickers = {};
    const files = el("div", { class: "files" });
    const pickerFor = (name, multiple, accept) => {
      const input_ = el("input", { type: "file", name, multiple, accept, "aria-label": name });
      pickers[name] = input_;
      files.append(el("div", { class: "file-row" }, el("label", {}, name), input_));
    };
    for (const name of fileFields) {
      const s = isFileList(props[name]) ? unwrap(unwrap(props[name]).items) : unwrap(props[name]);
      pickerFor(name, isFileList(props[name]), s.content_type || (s.pil || s.format === "image" ? "image/*" : null));
    }
    if (rootKind === "file") pickerFor("body", false, input.content_type || (input.pil ? "image/*" : null));

    const initial = rootKind === "text" ? String(example(input, 0)) : pretty(example(input, 0));
    const editor = el("textarea", { spellcheck: "false", "aria-label": "request body for " + api.name, rows: Math.min(14, initial.split("\n").length + 1) });
    editor.value = initial;
    const hasEditor = rootKind !== "file" && !(fileFields.length && fileFields.length === Object.keys(props).length);
    const send = el("button", { class: "btn btn-primary", type: "button" }, "Send");
    const reset = el("button", { class: "btn", type: "button", onclick: () => { editor.value = initial; } }, "Reset");
    const curlBtn = el("button", { class: "btn", type: "button" }, "curl");
    const curlOut = el("pre", { class: "body", hidden: true });
    const result = el("div", { class: "result", "aria-live": "polite" });

    const ctx = { api, props, fileFields, rootKind, editor, pickers, hasEditor };
    send.addEventListener("click", () => call(ctx, send, result));
    curlBtn.addEventListener("click", () => {
      curlOut.hidden = !curlOut.hidden;
      curlOut.textContent = curlCommand(ctx);
    });
    editor.addEventListener("keydown", (e) => { if ((e.ctrlKey || e.metaKey) && e.key === "Enter") send.click(); });

    card.append(el("div", { class: "try" },
      el("h3", {}, "Try it"),
      fileFields.length || rootKind === "file" ? files : null,
      hasEditor ? editor : null,
      el("div", { class: "row" }, send, hasEditor ? reset : null, curlBtn,
        el("span", { class: "muted", style: "font-size:12px" }, hasEditor ? "Ctrl+Enter sends" : "")),
      curlOut, result));
    return card;
  }

  // --- calling an API ------------------------------------------------------------------------
  function buildRequest(ctx) {
    if (ctx.rootKind === "text") return { body: ctx.editor.value, type: "text/plain; charset=utf-8" };
    if (ctx.rootKind === "file") {
      const file = ctx.pickers.body.files[0];
      if (!file) throw new Error("Choose a file to send.");
      return { body: file, type: file.type || "application/octet-stream" };
    }
    const text = ctx.hasEditor ? ctx.editor.value.trim() : "";
    let values = {};
    try {
      values = text ? JSON.parse(text) : {};
    } catch (e) {
      throw new Error("The body is not valid JSON: " + e.message);
    }
    if (!ctx.fileFields.length) return { body: text || "{}", type: "application/json" };
    // Multipart, as BentoML's client sends it: file parts by field name, other fields as JSON.
    const form = new FormData();
    for (const name of ctx.fileFields) for (const f of ctx.pickers[name].files) form.append(name, f, f.name);
    for (const [k, v] of Object.entries(values || {})) if (!ctx.fileFields.includes(k)) form.append(k, JSON.stringify(v));
    return { body: form, type: null };
  }

  function curlCommand(ctx) {
    const q = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
    const parts = ["curl -X POST " + q(routeUrl(ctx.api.route))];
    if (token) parts.push("-H " + q("Authorization: Bearer " + token));
    if (ctx.rootKind === "file") {
      const f = ctx.pickers.body.files[0];
      parts.push("-H " + q("Content-Type: " + ((f && f.type) || "application/octet-stream")), "--data-binary @" + q(f ? f.name : "FILE"));
    } else if (ctx.fileFields.length) {
      for (const name of ctx.fileFields) {
        const chosen = Array.from(ctx.pickers[name].files);
        for (const f of chosen.length ? chosen : [{ name: "FILE" }]) parts.push("-F " + q(name + "=@" + f.name));
      }
      let values = {};
      try { values = JSON.parse(ctx.editor.value || "{}"); } catch (e) { /* shown on send */ }
      for (const [k, v] of Object.entries(values || {})) if (!ctx.fileFields.includes(k)) parts.push("-F " + q(k + "=" + JSON.stringify(v)));
    } else if (ctx.rootKind === "text") {
      parts.push("-H 'Content-Type: text/plain'", "--data-binary " + q(ctx.editor.value));
    } else {
      let body = ctx.editor.value;
      try { body = JSON.stringify(JSON.parse(body)); } catch (e) { /* send as typed */ }
      parts.push("-H 'Content-Type: application/json'", "-d " + q(body));
    }
    return parts.join(" \\\n  ");
  }

  const fmtMs = (ms) => (ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s");
  const fmtSize = (n) => (n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB");

  async function call(ctx, button, result) {
    if (result._objectUrl) URL.revokeObjectURL(result._objectUrl);
    result.replaceChildren();
    let req;
    try {
      req = buildRequest(ctx);
    } catch (e) {
      result.append(el("div", { class: "result-head" }, el("span", { class: "pill pill-err" }, "not sent"), e.message));
      return;
    }
    button.disabled = true;
    const head = el("div", { class: "result-head" }, el("span", { class: "pill pill-wait" }, "sending…"));
    result.append(head);
    const t0 = performance.now();
    try {
      const resp = await fetch(routeUrl(ctx.api.route), {
        method: "POST",
        headers: authHeaders(req.type ? { "Content-Type": req.type } : {}),
        body: req.body,
      });
      const ctype = resp.headers.get("Content-Type") || "";
      const pill = el("span", { class: "pill " + (resp.ok ? "pill-ok" : "pill-err"), "data-status": resp.status }, resp.status + " " + resp.statusText);
      const latency = el("span", { class: "latency" }, fmtMs(performance.now() - t0));
      const meta = el("span", {}, ctype);
      head.replaceChildren(pill, latency, meta);
      if (resp.status === 401) showAuth();
      const streaming = resp.ok && resp.body && (ctx.api.output.is_stream || /event-stream/.test(ctype));
      if (streaming) await showStream(resp, head, latency, t0, result);
      else await showBody(resp, ctype, head, latency, t0, result);
    } catch (e) {
      head.replaceChildren(el("span", { class: "pill pill-err" }, "network error"), String(e.message || e));
    } finally {
      button.disabled = false;
    }
  }

  async function showStream(resp, head, latency, t0, result) {
    const out = el("pre", { class: "body" });
    const count = el("span", {}, "0 chunks");
    head.append(count);
    result.append(out);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let chunks = 0;
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks += 1;
      size += value.length;
      out.append(document.createTextNode(decoder.decode(value, { stream: true })));
      count.textContent = chunks + (chunks === 1 ? " chunk" : " chunks") + " · " + fmtSize(size);
      out.scrollTop = out.scrollHeight;
    }
    out.append(document.createTextNode(decoder.decode()));
    latency.textContent = fmtMs(performance.now() - t0) + " total";
  }

  function filenameOf(resp) {
    const cd = resp.headers.get("Content-Disposition") || "";
    const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
    return m ? decodeURIComponent(m[1]) : "response";
  }

  async function showBody(resp, ctype, head, latency, t0, result) {
    const blob = await resp.blob();
    latency.textContent = fmtMs(performance.now() - t0);
    head.append(el("span", {}, fmtSize(blob.size)));
    const isImage = /^image\//.test(ctype);
    const isText = /json|^text\/|xml|javascript/.test(ctype) && !/attachment/.test(resp.headers.get("Content-Disposition") || "");
    if (isText) {
      let text = await blob.text();
      if (/json/.test(ctype) && text.length <= MAX_SHOWN) { try { text = pretty(JSON.parse(text)); } catch (e) { /* shown raw */ } }
      const shown = text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) + "\n… (" + (text.length - MAX_SHOWN) + " more characters: use the download link)" : text;
      result.append(el("pre", { class: "body" }, shown));
      if (text.length <= MAX_SHOWN) return;
    }
    const objectUrl = URL.createObjectURL(blob);
    result._objectUrl = objectUrl;
    if (isImage) result.append(el("img", { src: objectUrl, alt: "response image" }));
    result.append(el("div", { class: "row" }, el("a", { href: objectUrl, download: filenameOf(resp), class: "btn" }, "Download " + filenameOf(resp))));
  }

  // --- page ----------------------------------------------------------------------------------
  function showAuth() {
    $("auth").hidden = false;
    $("token").value = token;
  }

  async function getJSON(rel) {
    const resp = await fetch(url(rel), { headers: authHeaders() });
    if (!resp.ok) {
      const err = new Error("GET " + rel + " answered " + resp.status + " " + resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return resp.json();
  }

  let readyTimer = null;
  async function checkReady() {
    clearTimeout(readyTimer);
    const pill = $("ready");
    try {
      const resp = await fetch(url("./readyz"), { headers: authHeaders(), cache: "no-store" });
      pill.className = "pill " + (resp.ok ? "pill-ok" : "pill-wait");
      pill.textContent = resp.ok ? "ready" : "not ready (" + resp.status + ")";
      if (!resp.ok) readyTimer = setTimeout(checkReady, 3000);
    } catch (e) {
      pill.className = "pill pill-err";
      pill.textContent = "unreachable";
      readyTimer = setTimeout(checkReady, 5000);
    }
  }

  async function load() {
    const status = $("status");
    const [schemaRes, openapiRes] = await Promise.allSettled([getJSON("./schema.json"), getJSON("./docs.json")]);
    const openapi = openapiRes.status === "fulfilled" ? openapiRes.value : null;
    if (openapi && openapi.info) {
      const v = openapi.info.version;
      if (v && v !== "None" && v !== "not available") $("svc-version").textContent = "v" + v;
    }
    if (schemaRes.status !== "fulfilled") {
      status.textContent = "Could not load the service description: " + schemaRes.reason.message;
      if (schemaRes.reason.status === 401) showAuth();
      return;
    }
    const schema = schemaRes.value;
    $("svc-doc").textContent = schema.description || (openapi && openapi.info && openapi.info.description) || "";
    const routes = schema.routes || [];
    status.textContent = routes.length ? "" : "This service has no APIs.";
    status.hidden = !!routes.length;
    const paths = (openapi && openapi.paths) || {};
    const apis = $("apis");
    const toc = $("toc");
    apis.replaceChildren();
    toc.replaceChildren();
    for (const api of routes) {
      const item = paths[fullPath(api.route)] || paths[api.route];
      const op = item && item.post;
      // Few APIs: show them all; many: a list of summaries to open one at a time.
      apis.append(renderApi(api, op, routes.length <= 4 || window.location.hash === "#api-" + api.name));
      toc.append(el("li", {}, el("a", { href: "#api-" + api.name, title: fullPath(api.route) }, api.name)));
    }
  }

  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    store.set(token);
    $("auth").hidden = true;
    load();
    checkReady();
  });
  $("ready").addEventListener("click", checkReady);
  // A link to #api-<name> (the sidebar's) opens that API's card.
  const openFromHash = () => {
    const card = window.location.hash.startsWith("#api-") && document.getElementById(window.location.hash.slice(1));
    if (card) card.open = true;
  };
  window.addEventListener("hashchange", openFromHash);
  document.title = config.name + " · nbserve";
  load();
  checkReady();
})();
