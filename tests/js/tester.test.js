// Unit tests of the request tester's ES module (nbserve/_notebook/tester/static/tester.js) in
// jsdom, with a fake anywidget model: form building from a schema, the request messages the
// form sends, the rendering of every answer type, code snippets and the dashboard.
import { describe, expect, it, vi } from "vitest";
import widget, {
  answerKind, buildForm, createTester, curlFor, fieldKind, pythonFor, renderAnswer,
  renderDashboard, requestMessage, tableOf,
} from "../../nbserve/_notebook/tester/static/tester.js";

const enc = (s) => new TextEncoder().encode(s);

// A route of each shape, as /schema.json describes them (see tests/unit for the Python side).
const ROUTES = {
  classify: {
    name: "classify", route: "/classify", doc: "Label a text.",
    input: {
      type: "object", required: ["text"],
      properties: {
        text: { type: "string", title: "Text" },
        n: { type: "integer", default: 2 },
        t: { type: "number", default: 0.5 },
        loud: { type: "boolean", default: false },
        mode: { type: "string", enum: ["fast", "slow"], default: "slow" },
        tags: { type: "array", items: { type: "string" }, default: [] },
        person: { type: "object", title: "Person", properties: { name: { type: "string" } }, nullable: true, default: null },
        x: { type: "tensor", shape: [-1, 2], dtype: "float32" },
        df: { type: "dataframe", orient: "records" },
        note: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
      },
    },
    output: { type: "object" },
  },
  upload: {
    name: "upload", route: "/upload",
    input: { type: "object", required: ["f"], properties: {
      f: { type: "file", format: "binary" },
      imgs: { type: "array", items: { type: "file", format: "image" } },
      note: { type: "string", default: "hi" },
    } },
    output: { type: "file", format: "image" },
  },
  shout: { name: "shout", route: "/shout", input: { type: "string", root_input: true }, output: { type: "string" } },
  stream: { name: "stream", route: "/stream", input: { type: "object", properties: { prompt: { type: "string" } } }, output: { type: "string", is_stream: true, media_type: "text/event-stream" } },
  table: { name: "table", route: "/table", input: { type: "object", properties: {} }, output: { type: "dataframe", orient: "records" } },
};
const EXAMPLES = {
  classify: { text: "string", n: 2, t: 0.5, loud: false, mode: "slow", tags: [], person: { name: "string" }, x: [[0, 0]], df: [{ a: 0 }], note: "" },
  upload: { note: "hi" },
  shout: { "": "string" },
  stream: { prompt: "string" },
  table: {},
};

function fakeModel(state) {
  const handlers = {};
  return {
    sent: [],
    get: (k) => state[k],
    on: (ev, f) => { (handlers[ev] ||= []).push(f); },
    off: (ev, f) => { handlers[ev] = (handlers[ev] || []).filter((g) => g !== f); },
    send(content, callbacks, buffers) { this.sent.push({ content, buffers }); },
    emit(ev, ...args) { for (const f of handlers[ev] || []) f(...args); },
    handlers,
  };
}

describe("form building", () => {
  it("picks a control per field type", () => {
    const kinds = Object.fromEntries(Object.entries(ROUTES.classify.input.properties).map(([k, p]) => [k, fieldKind(p)]));
    expect(kinds).toEqual({ text: "text", n: "integer", t: "number", loud: "checkbox", mode: "select", tags: "json", person: "json", x: "json", df: "json", note: "text" });
    expect(fieldKind(ROUTES.upload.input.properties.f)).toBe("file");
    expect(fieldKind(ROUTES.upload.input.properties.imgs)).toBe("files");
  });

  it("pre-fills defaults and examples, JSON editors pretty-printed", () => {
    const form = buildForm(ROUTES.classify, EXAMPLES.classify);
    const q = (name) => form.el.querySelector(`[name=${name}]`);
    expect(q("text").value).toBe("string");
    expect(q("n").type).toBe("number");
    expect(q("n").value).toBe("2");
    expect(q("loud").type).toBe("checkbox");
    expect(q("mode").value).toBe("slow");
    expect(JSON.parse(q("person").value)).toEqual({ name: "string" });
    expect(q("x").value).toBe(JSON.stringify([[0, 0]], null, 2));
    expect(form.el.querySelector("[data-field=text] .nbs-required")).not.toBeNull();
    expect(form.el.querySelector("[data-field=x] .nbs-type").textContent).toBe("ndarray [-1, 2] float32");
  });

  it("collects a JSON request with typed values", async () => {
    const form = buildForm(ROUTES.classify, EXAMPLES.classify);
    form.el.querySelector("[name=text]").value = "I love it";
    form.el.querySelector("[name=n]").value = "3";
    form.el.querySelector("[name=loud]").checked = true;
    const { message, buffers } = await form.collect();
    expect(message).toMatchObject({ type: "send", api: "classify", path: "/classify", kind: "json" });
    expect(JSON.parse(message.body)).toEqual({ text: "I love it", n: 3, t: 0.5, loud: true, mode: "slow", tags: [], person: { name: "string" }, x: [[0, 0]], df: [{ a: 0 }] });
    expect(buffers).toEqual([]);
  });

  it("shows invalid JSON and numbers next to their field and sends nothing", async () => {
    const form = buildForm(ROUTES.classify, EXAMPLES.classify);
    form.el.querySelector("[name=person]").value = "{nope";
    form.el.querySelector("[name=n]").value = "1.5";
    await expect(form.collect()).rejects.toThrow(/person: not valid JSON/);
    expect(form.el.querySelector("[data-field=person] .nbs-field-error").textContent).toMatch(/not valid JSON/);
    expect(form.el.querySelector("[data-field=n] .nbs-field-error").textContent).toBe("not an integer: 1.5");
  });

  it("sends files as multipart parts with buffers, other fields JSON-encoded", async () => {
    const form = buildForm(ROUTES.upload, EXAMPLES.upload);
    const dt = { files: [new File(["x,y\n"], "a.csv", { type: "text/csv" })] };
    Object.defineProperty(form.el.querySelector("[name=f]"), "files", { value: dt.files });
    Object.defineProperty(form.el.querySelector("[name=imgs]"), "files", { value: [new File(["P"], "b.png", { type: "image/png" }), new File(["Q"], "c.png", { type: "image/png" })] });
    expect(form.el.querySelector("[name=imgs]").multiple).toBe(true);
    expect(form.el.querySelector("[name=imgs]").accept).toBe("image/*");
    const { message, buffers } = await form.collect();
    expect(message.kind).toBe("multipart");
    expect(message.fields).toEqual({ note: '"hi"' });
    expect(message.files).toEqual([
      { field: "f", filename: "a.csv", content_type: "text/csv" },
      { field: "imgs", filename: "b.png", content_type: "image/png" },
      { field: "imgs", filename: "c.png", content_type: "image/png" },
    ]);
    expect(new TextDecoder().decode(buffers[0])).toBe("x,y\n");
  });

  it("requires a file for a required file field", async () => {
    const form = buildForm(ROUTES.upload, EXAMPLES.upload);
    await expect(form.collect()).rejects.toThrow("f: pick a file");
  });

  it("sends a root text input as the raw body", async () => {
    const form = buildForm(ROUTES.shout, EXAMPLES.shout);
    form.el.querySelector("textarea").value = "hey";
    const { message } = await form.collect();
    expect(message).toMatchObject({ kind: "text", body: "hey" });
  });

  it("puts a 400's detail next to the fields its loc names", () => {
    const form = buildForm(ROUTES.classify, EXAMPLES.classify);
    const missed = form.showFieldErrors([
      { loc: ["text"], msg: "Field required" },
      { loc: ["person", "name"], msg: "Input should be a valid string" },
      { loc: ["nowhere"], msg: "?" },
    ]);
    expect(form.el.querySelector("[data-field=text] .nbs-field-error").textContent).toBe("Field required");
    expect(form.el.querySelector("[data-field=person] .nbs-field-error").textContent).toBe("name: Input should be a valid string");
    expect(form.el.querySelector("[data-field=person]").classList.contains("nbs-invalid")).toBe(true);
    expect(missed).toHaveLength(1);
  });
});

describe("answers", () => {
  const done = (status, type, body, extra = {}) => ({
    status, reason: status === 200 ? "OK" : "Bad Request", headers: { "content-type": type },
    chunks: [enc(body)], done: true, ms: 12.345, size: body.length, requestId: "abc123", ...extra,
  });

  it("pretty-prints JSON with status, latency and size", () => {
    const el = document.createElement("div");
    expect(renderAnswer(el, done(200, "application/json", '{"label":"positive","score":1}'), ROUTES.classify)).toBe("json");
    expect(el.querySelector("[data-status]").textContent).toBe("200 OK");
    expect(el.querySelector(".nbs-latency").textContent).toBe("12.3 ms");
    expect(el.querySelector(".nbs-size").textContent).toBe("30 B");
    expect(el.querySelector("pre").textContent).toBe('{\n  "label": "positive",\n  "score": 1\n}');
  });

  it("shows text as text", () => {
    const el = document.createElement("div");
    expect(renderAnswer(el, done(200, "text/plain; charset=utf-8", "HEY"), ROUTES.shout)).toBe("text");
    expect(el.querySelector("pre").textContent).toBe("HEY");
  });

  it("shows an image", () => {
    URL.createObjectURL = vi.fn(() => "blob:fake");
    const el = document.createElement("div");
    expect(renderAnswer(el, done(200, "image/png", "\x89PNG"), ROUTES.upload)).toBe("image");
    expect(el.querySelector("img").getAttribute("src")).toBe("blob:fake");
    expect(URL.createObjectURL.mock.calls[0][0].type).toBe("image/png");
  });

  it("shows a DataFrame as a table, records or columns", () => {
    const el = document.createElement("div");
    expect(renderAnswer(el, done(200, "application/json", '[{"a":1,"b":"x"},{"a":2,"b":"y"}]'), ROUTES.table)).toBe("dataframe");
    expect([...el.querySelectorAll("th")].map((t) => t.textContent)).toEqual(["a", "b"]);
    expect([...el.querySelectorAll("tbody tr")].map((r) => r.textContent)).toEqual(["1x", "2y"]);
    expect(tableOf({ a: [1, 2], b: [3, 4] })).toEqual({ columns: ["a", "b"], rows: [[1, 3], [2, 4]] });
  });

  it("grows a stream chunk by chunk", () => {
    const el = document.createElement("div");
    const a = { status: 200, reason: "OK", headers: { "content-type": "text/event-stream" }, chunks: [enc("tok0 ")] };
    expect(renderAnswer(el, a, ROUTES.stream)).toBe("stream");
    expect(el.querySelector("pre").textContent).toBe("tok0 ");
    expect(el.querySelector(".nbs-pending").textContent).toBe("receiving…");
    a.chunks.push(enc("tok1 "));
    renderAnswer(el, a, ROUTES.stream);
    expect(el.querySelector("pre").textContent).toBe("tok0 tok1 ");
    expect(el.querySelector(".nbs-chunks").textContent).toBe("2 chunks");
  });

  it("shows an error's status, message and request id, and its fields in the form", () => {
    const form = buildForm(ROUTES.classify, EXAMPLES.classify);
    const el = document.createElement("div");
    const body = JSON.stringify({ error: "field 'text' is required", detail: [{ loc: ["text"], msg: "Field required" }] });
    expect(renderAnswer(el, done(400, "application/json", body), ROUTES.classify, form)).toBe("error");
    expect(el.querySelector(".nbs-error-title").textContent).toBe("400 Bad Request");
    expect(el.querySelector(".nbs-error-message").textContent).toBe("field 'text' is required");
    expect(el.querySelector(".nbs-error-rid").textContent).toContain("abc123");
    expect(form.el.querySelector("[data-field=text] .nbs-field-error").textContent).toBe("Field required");
  });

  it("shows a 500's message and a transport failure", () => {
    const el = document.createElement("div");
    renderAnswer(el, done(500, "application/json", '{"error":"kaboom (request id r1)"}', { reason: "Internal Server Error" }), ROUTES.classify);
    expect(el.querySelector(".nbs-error-title").textContent).toBe("500 Internal Server Error");
    expect(el.querySelector(".nbs-error-message").textContent).toBe("kaboom (request id r1)");
    expect(renderAnswer(el, { failed: true, message: "no answer from http://127.0.0.1:1/x: refused", chunks: [] })).toBe("failed");
    expect(el.textContent).toContain("refused");
  });

  it("classifies answers by content type", () => {
    expect(answerKind({ status: 200, headers: { "Content-Type": "application/octet-stream" } })).toBe("binary");
    expect(answerKind({ status: 401, headers: { "content-type": "application/json" } })).toBe("error");
  });
});

describe("code snippets", () => {
  it("writes curl and Python for a JSON request", () => {
    const message = requestMessage({ ...ROUTES.classify, fullPath: "/v1/classify" }, { text: "it's good", n: 2, flags: [true, null] });
    expect(message.path).toBe("/classify");
    expect(curlFor(message, "http://127.0.0.1:8000/v1")).toBe(
      "curl -s -X POST http://127.0.0.1:8000/v1/classify \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"text\":\"it'\"'\"'s good\",\"n\":2,\"flags\":[true,null]}'");
    expect(pythonFor(message, "http://127.0.0.1:8000/v1", "Sentiment")).toBe(
      'import nbserve\n\nwith nbserve.SyncHTTPClient("http://127.0.0.1:8000/v1") as client:\n    result = client.classify(text="it\'s good", n=2, flags=[True, None])');
  });

  it("adds the token and writes multipart uploads", () => {
    const message = requestMessage(ROUTES.upload, { note: "hi" }, [{ field: "f", filename: "a.csv", content_type: "text/csv" }]);
    expect(curlFor(message, "http://h:1", true)).toBe(
      "curl -s -X POST http://h:1/upload \\\n  -H \"Authorization: Bearer $NBSERVE_TOKEN\" \\\n  -F 'note=\"hi\"' \\\n  -F 'f=@a.csv'");
    expect(pythonFor(message, "http://h:1", "Up", true)).toContain('token=nbserve.services()["Up"].token');
    expect(pythonFor(message, "http://h:1", "Up", true)).toContain('client.upload(note="hi", f=Path("a.csv"))');
  });
});

describe("dashboard", () => {
  it("renders totals, per-route percentiles, batch sizes and workers", () => {
    const el = document.createElement("div");
    renderDashboard(el, {
      state: "running", total: 10, total_errors: 1,
      routes: [{ route: "/classify", count: 10, errors: 1, error_rate: 0.1, p50_ms: 1.5, p95_ms: 20, p99_ms: 1500 }],
      batches: { classify: [[1, 3], [2, 0], [4, 5]] },
      workers: [{ index: 0, state: "ready", pid: "42", devices: "cuda:0" }],
    });
    expect(el.querySelector("[data-metric=requests]").textContent).toBe("10");
    expect(el.querySelector("[data-metric=error-rate]").textContent).toBe("10.0%");
    expect([...el.querySelectorAll("[data-route='/classify'] td")].map((t) => t.textContent)).toEqual(["/classify", "10", "1 (10.0%)", "1.50 ms", "20.0 ms", "1.50 s"]);
    expect(el.querySelectorAll("[data-api=classify] .nbs-bar-row")).toHaveLength(2);
    expect(el.querySelector(".nbs-workers tbody").textContent).toContain("cuda:0");
  });
});

describe("the widget", () => {
  function model() {
    return fakeModel({
      service_name: "Demo", schema: { routes: Object.values(ROUTES) }, examples: EXAMPLES, prefix: "",
      urls: { local: "http://127.0.0.1:5000", public: "http://127.0.0.1:5000" }, token_required: false,
      view: "tester", history: [],
    });
  }

  it("shows one tab per API plus the dashboard, and sends the form over the comm", async () => {
    const m = model();
    const el = document.createElement("div");
    const cleanup = widget.render({ model: m, el });
    expect([...el.querySelectorAll(".nbs-tab")].map((b) => b.textContent)).toEqual(["classify", "upload", "shout", "stream", "table", "Dashboard"]);
    expect(el.querySelector("[data-panel=classify]").hidden).toBe(false);
    el.querySelector("[data-api=shout] textarea").value = "hey";
    el.querySelector("[data-tab=shout]").click();
    el.querySelector("[data-api=shout] .nbs-send").click();
    await vi.waitFor(() => expect(m.sent).toHaveLength(1));
    const { content } = m.sent[0];
    expect(content).toMatchObject({ type: "send", api: "shout", kind: "text", body: "hey" });
    expect(el.querySelector("[data-api=shout] .nbs-curl").textContent).toContain("--data-binary 'hey'");

    m.emit("msg:custom", { type: "head", id: content.id, status: 200, reason: "OK", headers: { "content-type": "text/plain" } });
    m.emit("msg:custom", { type: "chunk", id: content.id, seq: 0 }, [new DataView(enc("HEY").buffer)]);
    m.emit("msg:custom", { type: "done", id: content.id, ms: 3, size: 3, request_id: "q1" });
    expect(el.querySelector("[data-api=shout] .nbs-answer pre").textContent).toBe("HEY");
    expect(el.querySelector("[data-api=shout] [data-status]").textContent).toBe("200 OK");
    cleanup();
    expect(m.handlers["msg:custom"]).toEqual([]);
  });

  it("watches the dashboard only while it is shown, and re-sends from the history", () => {
    vi.useFakeTimers();
    const m = model();
    const el = document.createElement("div");
    const t = createTester({ model: m, el });
    el.querySelector("[data-tab=__dashboard]").click();
    expect(m.sent.map((s) => s.content)).toEqual([{ type: "watch", on: true }]);
    vi.advanceTimersByTime(5000);
    expect(m.sent).toHaveLength(2);
    t.onMessage({ type: "stats", stats: { state: "running", total: 3, total_errors: 0, routes: [], batches: {}, workers: [] } });
    expect(el.querySelector("[data-metric=requests]").textContent).toBe("3");
    el.querySelector("[data-tab=classify]").click();
    expect(m.sent.at(-1).content).toEqual({ type: "watch", on: false });
    vi.advanceTimersByTime(20000);
    expect(m.sent.at(-1).content).toEqual({ type: "watch", on: false });
    vi.useRealTimers();

    m.get = ((get) => (k) => (k === "history" ? [{ id: "r1", api: "classify", path: "/classify", status: 200, ms: 4.2, size: 30 }] : get(k)))(m.get);
    m.emit("change:history");
    expect(el.querySelector(".nbs-history-row").textContent).toContain("4.20 ms");
    el.querySelector(".nbs-resend").click();
    expect(m.sent.at(-1).content).toMatchObject({ type: "resend", of: "r1" });
    t.cleanup();
  });

  it("rebuilds after a swap and still shows the answer in flight", async () => {
    const state = {
      service_name: "Demo", schema: { routes: [ROUTES.shout] }, examples: EXAMPLES, prefix: "",
      urls: { local: "http://127.0.0.1:5000" }, token_required: false, view: "tester", history: [],
    };
    const m = fakeModel(state);
    const el = document.createElement("div");
    const cleanup = widget.render({ model: m, el });
    el.querySelector("[data-api=shout] .nbs-send").click();
    await vi.waitFor(() => expect(m.sent).toHaveLength(1));
    const id = m.sent[0].content.id;
    state.schema = { routes: [ROUTES.shout, ROUTES.stream] }; // the kernel saw a re-run cell
    m.emit("change:schema");
    expect([...el.querySelectorAll(".nbs-tab")].map((b) => b.textContent)).toEqual(["shout", "stream", "Dashboard"]);
    m.emit("msg:custom", { type: "head", id, status: 200, reason: "OK", headers: { "content-type": "text/plain" } });
    m.emit("msg:custom", { type: "chunk", id, seq: 0 }, [new DataView(enc("STRING").buffer)]);
    m.emit("msg:custom", { type: "done", id, ms: 1, size: 6 });
    expect(el.querySelector("[data-api=shout] .nbs-answer pre").textContent).toBe("STRING");
    cleanup();
    expect(m.handlers["change:schema"]).toEqual([]);
  });

  it("stops watching while the dashboard is scrolled out of view", () => {
    let report;
    globalThis.IntersectionObserver = class {
      constructor(callback) { report = callback; }
      observe() {}
      disconnect() { report = null; }
    };
    try {
      const state = { ...Object.fromEntries(["service_name", "schema", "examples", "prefix", "urls", "token_required", "history"].map((k) => [k, model().get(k)])), view: "dashboard" };
      const d = fakeModel(state);
      const t = createTester({ model: d, el: document.createElement("div") });
      expect(d.sent.map((m) => m.content.on)).toEqual([true]);
      report([{ isIntersecting: false }]);
      expect(d.sent.map((m) => m.content.on)).toEqual([true, false]);
      report([{ isIntersecting: true }]);
      expect(d.sent.map((m) => m.content.on)).toEqual([true, false, true]);
      t.cleanup();
      expect(report).toBeNull();
      expect(d.sent.at(-1).content).toEqual({ type: "watch", on: false });
    } finally {
      delete globalThis.IntersectionObserver;
    }
  });

  it("shows only the dashboard in the dashboard view", () => {
    const m = model();
    const state = { ...Object.fromEntries(["service_name", "schema", "examples", "prefix", "urls", "token_required", "history"].map((k) => [k, m.get(k)])), view: "dashboard" };
    const d = fakeModel(state);
    const el = document.createElement("div");
    createTester({ model: d, el });
    expect([...el.querySelectorAll(".nbs-tab")].map((b) => b.textContent)).toEqual(["Dashboard"]);
    expect(d.sent[0].content).toEqual({ type: "watch", on: true });
  });
});
