// The Runstep run inspector: a small page over /inspector/api (no framework, no build step).
// The API key lives in this tab's sessionStorage and goes out only as a bearer header.
"use strict";

(() => {
  const BASE = "/inspector";
  const KEY = "runstep.inspector.key";
  const TERMINAL = new Set(["completed", "failed", "cancelled", "expired", "incomplete"]);
  const main = document.getElementById("main");
  const announcer = document.getElementById("announce");
  let leave = () => {}; // stops whatever the current view runs (a live stream, timers)

  // -- DOM ----------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.className = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  /** Replace ``old`` with ``fresh``, keeping keyboard focus on the element with the same key. */
  function swap(old, fresh) {
    const focused = document.activeElement;
    const key = old.contains(focused) ? focused.closest("[data-key]")?.dataset.key : null;
    old.replaceWith(fresh);
    if (key) fresh.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
    return fresh;
  }

  function announce(text) {
    announcer.textContent = text;
  }

  function link(path, ...children) {
    return h("a", { href: BASE + path }, ...children);
  }

  const code = (text) => h("code", {}, text);

  function badge(status) {
    return h("span", { class: `badge status-${status}` }, status.replace("_", " "));
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function when(seconds) {
    if (!seconds) return "—";
    const d = new Date(seconds * 1000);
    const text =
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return h("time", { datetime: d.toISOString() }, text);
  }

  /** A duration in milliseconds; ``precise`` says whether it was measured finer than seconds. */
  function duration(ms, precise) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
    if (precise) return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
    const s = Math.round(ms / 1000);
    if (s < 1) return "<1 s";
    if (s < 60) return `${s} s`;
    return `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  /** A point on a run's time axis: ``ms`` after its origin. */
  function offset(ms, precise) {
    if (precise) return duration(ms, true);
    const s = ms / 1000;
    return s < 60 ? `${Number(s.toFixed(1))} s` : duration(ms, false);
  }

  function tokens(usage) {
    if (!usage) return "—";
    return `${usage.total_tokens} (${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion)`;
  }

  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }

  function block(text, label) {
    return h("pre", { class: "block", tabindex: 0, "aria-label": label }, h("code", {}, text ?? ""));
  }

  function metadata(obj) {
    const pairs = Object.entries(obj || {});
    if (!pairs.length) return h("span", { class: "muted" }, "—");
    return h("ul", { class: "pairs" }, pairs.map(([k, v]) => h("li", {}, code(k), " = ", v)));
  }

  function facts(rows) {
    return h(
      "dl",
      { class: "facts" },
      rows.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
  }

  // -- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function authHeaders() {
    return { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  }

  async function api(path, init = {}) {
    const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
    if (response.status === 401) {
      signOut("The server did not accept the key. Sign in again.");
      throw new ApiError(401, "Signed out");
    }
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json()).error.message;
      } catch {
        // not the error envelope
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  const getJSON = async (path) => (await api(`${BASE}/api${path}`)).json();

  const images = new Map(); // file id -> Promise of an object URL
  const imageUrls = new Map(); // file id -> object URL, once loaded
  const IMAGE_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };

  function fileImage(fileId, name) {
    const label = `Image ${name || fileId}`;
    const img = h("img", { alt: label, class: "image", src: imageUrls.get(fileId) });
    if (!images.has(fileId)) {
      images.set(
        fileId,
        api(`/v1/files/${encodeURIComponent(fileId)}/content`)
          .then((r) => r.arrayBuffer())
          .then((bytes) => {
            const type = IMAGE_TYPES[(name || "").split(".").pop().toLowerCase()] || "image/png";
            const url = URL.createObjectURL(new Blob([bytes], { type }));
            imageUrls.set(fileId, url);
            return url;
          }),
      );
    }
    images.get(fileId).then(
      (url) => (img.src = url),
      () => img.replaceWith(h("span", { class: "muted" }, `${label} could not be loaded.`)),
    );
    return h("figure", {}, img, h("figcaption", {}, name ? [name, " ", code(fileId)] : code(fileId)));
  }

  /** A button that saves a file (fetched with the key: a plain link could not send it). */
  function download(fileId, name) {
    const button = h("button", { type: "button", class: "link" }, `Download ${name || fileId}`);
    button.addEventListener("click", async () => {
      const response = await api(`/v1/files/${encodeURIComponent(fileId)}/content`);
      const url = URL.createObjectURL(await response.blob());
      const a = h("a", { href: url, download: name || fileId, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    });
    return button;
  }

  /** The events of a text/event-stream response, as {event, data, id}. */
  async function* serverEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = { event: "message", data: [], id: null };
        for (const line of buffer.slice(0, end).split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") frame.data.push(text);
          else if (field === "event") frame.event = text;
          else if (field === "id") frame.id = Number(text);
        }
        buffer = buffer.slice(end + 2);
        if (frame.data.length) yield { ...frame, data: frame.data.join("\n") };
      }
    }
  }

  // -- routing ------------------------------------------------------------------------------

  function navigate(path, replace = false) {
    history[replace ? "replaceState" : "pushState"](null, "", path);
    route();
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
    if (url.pathname === location.pathname && url.hash) return; // in-page anchor
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", route);

  function view(title, ...children) {
    leave();
    leave = () => {};
    document.title = `${title} · Runstep inspector`;
    main.replaceChildren(...children.flat());
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }

  function route() {
    const key = sessionStorage.getItem(KEY);
    document.getElementById("who").hidden = !key;
    document.getElementById("sections").hidden = !key;
    if (!key) return signIn();
    const path = location.pathname.replace(/\/+$/, "") || BASE;
    const rest = path.slice(BASE.length);
    let match;
    if (rest === "") return threadsView();
    if (rest === "/assistants") return assistantsView();
    if ((match = rest.match(/^\/threads\/([^/]+)$/))) return threadView(decodeURIComponent(match[1]));
    if ((match = rest.match(/^\/runs\/([^/]+)$/))) return runView(decodeURIComponent(match[1]));
    view("Not found", h("h1", {}, "Not found"), h("p", {}, link("/", "Back to threads")));
  }

  function failure(error, what) {
    if (error.status === 401) return [];
    const text = error.status === 404 ? `No ${what} with that id in this project.` : error.message;
    return h("div", { class: "alert", role: "alert" }, h("strong", {}, error.status === 404 ? "Not found. " : "Error. "), text);
  }

  async function load(title, what, render) {
    view(title, h("h1", {}, title), h("p", { class: "muted", "aria-busy": "true" }, "Loading…"));
    try {
      await render();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      view(title, h("h1", {}, title), failure(error, what));
    }
  }

  // -- sign in ------------------------------------------------------------------------------

  function signIn(message) {
    const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
    const error = h("p", { class: "error", id: "sign-in-error", role: "alert" }, message || "");
    const form = h(
      "form",
      { class: "sign-in", "aria-describedby": "sign-in-help" },
      h("label", { for: "api-key" }, "API key"),
      input,
      h("button", { type: "submit" }, "Sign in"),
      error,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const response = await fetch(`${BASE}/api/session`, { headers: { Authorization: `Bearer ${input.value.trim()}` } });
      if (!response.ok) {
        error.textContent = response.status === 401 ? "That key was not accepted." : `The server answered ${response.status}.`;
        input.focus();
        return;
      }
      sessionStorage.setItem(KEY, input.value.trim());
      showProject((await response.json()).project_id);
      route();
    });
    view(
      "Sign in",
      h("h1", {}, "Sign in"),
      h(
        "p",
        { id: "sign-in-help" },
        "Enter an API key of this server to see its project's assistants, threads and runs. ",
        "The key stays in this browser tab (session storage) and is sent only to this server.",
      ),
      form,
    );
    input.focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    images.clear();
    imageUrls.clear();
    document.getElementById("who").hidden = true;
    document.getElementById("sections").hidden = true;
    signIn(message);
  }

  function showProject(projectId) {
    document.getElementById("project").textContent = projectId;
  }

  document.getElementById("sign-out").addEventListener("click", () => signOut());

  // -- lists --------------------------------------------------------------------------------

  /** A table filled page by page from ``path`` (a list endpoint with ``after``). */
  function pagedTable(caption, headers, path, row, empty) {
    const body = h("tbody");
    const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
    const status = h("p", { class: "muted", role: "status" });
    let after = null;
    async function next() {
      more.disabled = true;
      const sep = path.includes("?") ? "&" : "?";
      const page = await getJSON(after ? `${path}${sep}after=${encodeURIComponent(after)}` : path);
      append(body, page.data.map(row));
      after = page.data.length ? page.data[page.data.length - 1].id : after;
      more.hidden = !page.has_more;
      more.disabled = false;
      status.textContent = body.children.length ? "" : empty;
    }
    more.addEventListener("click", () => next().catch(() => {}));
    const table = h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      body,
    );
    return { element: [h("div", { class: "table-wrap" }, table), status, more], next };
  }

  async function threadsView() {
    const query = new URLSearchParams(location.search).get("q") || "";
    const input = h("input", { id: "thread-search", name: "q", type: "search", value: query, "aria-describedby": "search-help" });
    const form = h(
      "form",
      { role: "search", class: "search", "aria-label": "Threads" },
      h("label", { for: "thread-search" }, "Search threads"),
      input,
      h("button", { type: "submit" }, "Search"),
      h("p", { id: "search-help", class: "help" }, "By id or metadata text; key=value matches one metadata pair exactly."),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const q = input.value.trim();
      navigate(q ? `${BASE}/?q=${encodeURIComponent(q)}` : `${BASE}/`);
    });
    const table = pagedTable(
      query ? `Threads matching “${query}”, most recent first` : "Threads, most recent first",
      ["Thread", "Created", "Metadata", "Runs", "Latest run"],
      `/threads${query ? `?q=${encodeURIComponent(query)}` : ""}`,
      (thread) => {
        const latest = thread.runs.latest;
        return h(
          "tr",
          {},
          h("td", {}, link(`/threads/${thread.id}`, code(thread.id))),
          h("td", {}, when(thread.created_at)),
          h("td", {}, metadata(thread.metadata)),
          h("td", { class: "num" }, thread.runs.count),
          h("td", {}, latest ? [link(`/runs/${latest.id}`, code(latest.id)), " ", badge(latest.status)] : "—"),
        );
      },
      query ? "No thread matches." : "No threads yet.",
    );
    await load("Threads", "threads", async () => {
      await table.next();
      view("Threads", h("h1", {}, "Threads"), form, table.element);
    });
  }

  async function assistantsView() {
    const table = pagedTable(
      "Assistants, newest first",
      ["Assistant", "Model", "Tools", "Created", "Metadata"],
      "/assistants",
      (a) =>
        h(
          "tr",
          {},
          h("td", {}, a.name ? [a.name, h("br"), code(a.id)] : code(a.id)),
          h("td", {}, a.model),
          h("td", {}, (a.tools || []).map((t) => (t.type === "function" ? `function ${t.function.name}` : t.type)).join(", ") || "—"),
          h("td", {}, when(a.created_at)),
          h("td", {}, metadata(a.metadata)),
        ),
      "No assistants yet.",
    );
    await load("Assistants", "assistants", async () => {
      await table.next();
      view("Assistants", h("h1", {}, "Assistants"), table.element);
    });
  }

  function runRow(summary) {
    return h(
      "tr",
      {},
      h("td", {}, link(`/runs/${summary.id}`, code(summary.id))),
      h("td", {}, badge(summary.status)),
      h("td", {}, summary.model),
      h("td", {}, when(summary.created_at)),
      h("td", { class: "num" }, summary.duration_seconds === null ? "—" : duration(summary.duration_seconds * 1000, false)),
      h("td", { class: "num" }, summary.usage ? summary.usage.total_tokens : "—"),
    );
  }

  async function threadView(threadId) {
    await load("Thread", "thread", async () => {
      const data = await getJSON(`/threads/${encodeURIComponent(threadId)}`);
      const runs = pagedTable(
        "Runs of this thread, newest first",
        ["Run", "Status", "Model", "Created", "Duration", "Tokens"],
        `/threads/${encodeURIComponent(threadId)}/runs`,
        runRow,
        "No runs on this thread yet.",
      );
      await runs.next();
      const { thread } = data;
      view(
        `Thread ${thread.id}`,
        breadcrumbs([["Threads", "/"], [thread.id]]),
        h("h1", {}, "Thread ", code(thread.id)),
        facts([
          ["Created", when(thread.created_at)],
          ["Metadata", metadata(thread.metadata)],
          ["Vector stores", (thread.tool_resources?.file_search?.vector_store_ids || []).join(", ") || "—"],
        ]),
        h("section", { "aria-labelledby": "runs-heading" }, h("h2", { id: "runs-heading" }, "Runs"), runs.element),
        h(
          "section",
          { "aria-labelledby": "conversation-heading" },
          h("h2", { id: "conversation-heading" }, "Conversation"),
          data.earlier_messages ? h("p", { class: "muted" }, "Earlier messages are not shown.") : null,
          conversation(data.messages, data.files, null),
        ),
      );
    });
  }

  function breadcrumbs(items) {
    return h(
      "nav",
      { "aria-label": "Breadcrumb", class: "crumbs" },
      h(
        "ol",
        {},
        items.map(([text, path], i) =>
          h("li", {}, path && i < items.length - 1 ? link(path, text) : h("span", { "aria-current": "page" }, text)),
        ),
      ),
    );
  }

  // -- messages -----------------------------------------------------------------------------

  function conversation(messages, files, runId) {
    if (!messages.length) return h("p", { class: "muted" }, "No messages.");
    return h("ol", { class: "messages" }, messages.map((m) => h("li", {}, message(m, files, runId))));
  }

  function message(m, files, runId) {
    const notes = [];
    const parts = (m.content || []).map((part) => {
      if (part.type === "text") return textPart(m.id, part.text, files, notes);
      if (part.type === "image_file") return fileImage(part.image_file.file_id, files[part.image_file.file_id]);
      if (part.type === "image_url") return h("p", { class: "muted" }, "Image at ", code(part.image_url.url.slice(0, 120)));
      return block(JSON.stringify(part, null, 2), "Content part");
    });
    const own = runId && m.run_id === runId;
    return h(
      "article",
      { class: `message role-${m.role}${own ? " own" : ""}`, id: m.id, "aria-label": `${m.role} message` },
      h(
        "header",
        {},
        h("span", { class: "role" }, m.role === "user" ? "User" : "Assistant"),
        " ",
        when(m.created_at),
        own ? h("span", { class: "tag" }, "this run") : null,
        m.status !== "completed" ? [" ", badge(m.status)] : null,
        " ",
        h("code", { class: "id" }, m.id),
      ),
      parts.length ? parts : h("p", { class: "muted" }, m.status === "in_progress" ? "…" : "(empty)"),
      m.incomplete_details ? h("p", { class: "alert inline" }, "Incomplete: ", m.incomplete_details.reason) : null,
      notes.length
        ? h("ol", { class: "citations", "aria-label": "Citations" }, notes.map((n) => h("li", { id: n.anchor }, n.body)))
        : null,
      (m.attachments || []).length
        ? h("p", { class: "muted" }, "Attachments: ", m.attachments.map((a) => [code(files[a.file_id] || a.file_id), " "]))
        : null,
    );
  }

  /** Text with its annotations (indices count code points) marked and listed as citations. */
  function textPart(messageId, text, files, notes) {
    const chars = Array.from(text.value || "");
    const annotations = (text.annotations || []).filter(Boolean).slice().sort((a, b) => a.start_index - b.start_index);
    const out = h("div", { class: "text" });
    let at = 0;
    for (const note of annotations) {
      if (note.start_index < at) continue;
      out.append(chars.slice(at, note.start_index).join(""));
      const number = notes.length + 1;
      const anchor = `${messageId}-cite-${number}`;
      const target = note.file_citation || note.file_path || {};
      const name = files[target.file_id] || target.file_id || "";
      out.append(
        h(
          "mark",
          { class: "cite", title: name },
          chars.slice(note.start_index, note.end_index).join(""),
          h("sup", {}, h("a", { href: `#${anchor}`, "aria-label": `Citation ${number}` }, `[${number}]`)),
        ),
      );
      notes.push({
        anchor,
        body: [
          note.type === "file_citation" ? "Cites " : "File ",
          h("strong", {}, name || "a file"),
          target.file_id && name !== target.file_id ? [" ", code(target.file_id)] : null,
          note.type === "file_path" && target.file_id ? [" ", download(target.file_id, name)] : null,
          target.quote ? h("blockquote", {}, target.quote) : null,
        ],
      });
      at = note.end_index;
    }
    out.append(chars.slice(at).join(""));
    return out;
  }

  // -- the run page -------------------------------------------------------------------------

  async function runView(runId) {
    await load("Run", "run", async () => {
      const snapshot = await getJSON(`/runs/${encodeURIComponent(runId)}`);
      const page = new RunPage(snapshot);
      view(`Run ${runId}`, page.element);
      leave = () => page.stop();
      if (!TERMINAL.has(snapshot.run.status)) page.watch();
    });
  }

  class RunPage {
    constructor(snapshot) {
      this.load(snapshot);
      this.open = new Set(); // keys of expanded tool calls, kept across redraws
      this.live = { on: false, runStart: null, runEnd: null, steps: new Map() }; // arrival times (ms)
      this.dirty = new Set();
      this.controller = null;
      this.timer = null;
      this.sections = {
        summary: h("div"),
        timeline: h("div"),
        steps: h("div"),
        messages: h("div"),
      };
      this.liveBadge = h("span", { class: "live", hidden: true }, h("span", { "aria-hidden": "true" }, "● "), "Live");
      this.element = h(
        "div",
        { class: "run-page" },
        breadcrumbs([["Threads", "/"], [this.run.thread_id, `/threads/${this.run.thread_id}`], [this.run.id]]),
        h("h1", {}, "Run ", code(this.run.id), " ", this.liveBadge),
        this.sections.summary,
        h("section", { "aria-labelledby": "timeline-heading" }, h("h2", { id: "timeline-heading" }, "Timeline"), this.sections.timeline),
        h("section", { "aria-labelledby": "steps-heading" }, h("h2", { id: "steps-heading" }, "Steps"), this.sections.steps),
        h(
          "section",
          { "aria-labelledby": "messages-heading" },
          h("h2", { id: "messages-heading" }, "Conversation"),
          this.sections.messages,
        ),
      );
      for (const name of Object.keys(this.sections)) this.draw(name);
    }

    load(snapshot) {
      this.seq = snapshot.seq;
      this.run = snapshot.run;
      this.summary = snapshot.summary;
      this.steps = snapshot.steps;
      this.messages = snapshot.messages;
      this.history = snapshot.history;
      this.toolArguments = snapshot.tool_arguments;
      this.files = snapshot.files;
    }

    // live updates

    watch() {
      this.live.on = true;
      this.liveBadge.hidden = false;
      this.timer = setInterval(() => this.changed("timeline"), 500);
      this.follow(0);
    }

    stop() {
      this.live.on = false;
      this.liveBadge.hidden = true;
      clearInterval(this.timer);
      this.controller?.abort();
    }

    async follow(failures) {
      this.controller = new AbortController();
      try {
        const response = await api(`${BASE}/api/runs/${encodeURIComponent(this.run.id)}/events?after=${this.seq}`, {
          signal: this.controller.signal,
          headers: { Accept: "text/event-stream" },
        });
        for await (const frame of serverEvents(response)) {
          if (frame.event === "done" || frame.event === "error") break;
          this.apply(frame.event, JSON.parse(frame.data), frame.id);
          failures = 0;
        }
      } catch (error) {
        if (!this.live.on || error.status === 401 || error.status === 404) return this.stop();
        failures += 1;
      }
      if (!this.live.on) return;
      if (TERMINAL.has(this.run.status)) return this.finish();
      setTimeout(() => this.live.on && this.follow(failures), Math.min(5000, 250 * 2 ** failures));
    }

    async finish() {
      this.stop();
      try {
        // The final state from the store: passages, file names and the status history
        // (keeping the arrival times this page saw).
        const seen = new Map(this.history.filter((e) => e.at).map((e) => [e.seq, e.at]));
        this.load(await getJSON(`/runs/${encodeURIComponent(this.run.id)}`));
        for (const e of this.history) if (seen.has(e.seq)) e.at = seen.get(e.seq);
      } catch {
        // keep what the stream showed
      }
      for (const name of Object.keys(this.sections)) this.changed(name);
    }

    apply(name, data, seq) {
      if (seq !== null && seq !== undefined) {
        if (seq <= this.seq) return;
        this.seq = seq;
      }
      const now = performance.timeOrigin + performance.now();
      if (name === "thread.message.delta") {
        this.mergeMessage(data);
        this.changed("messages");
      } else if (name === "thread.run.step.delta") {
        this.mergeStep(data);
        this.changed("steps");
      } else if (name.startsWith("thread.run.step.")) {
        this.putStep(data, now);
      } else if (name.startsWith("thread.message.")) {
        upsert(this.messages, data);
        this.changed("messages");
      } else if (name.startsWith("thread.run.")) {
        if (data.status === "in_progress" && this.live.runStart === null && this.run.status === "queued") {
          this.live.runStart = now;
        }
        if (TERMINAL.has(data.status) && this.live.runEnd === null) this.live.runEnd = now;
        if (data.status !== this.run.status) announce(`Run ${data.status.replace("_", " ")}`);
        this.run = data;
        this.history.push({ seq, event: name, created_at: Math.floor(Date.now() / 1000), at: now });
        this.changed("summary", "timeline", "steps");
      }
    }

    putStep(step, now) {
      const times = this.live.steps.get(step.id) || { start: null, end: null };
      if (step.status === "in_progress" && times.start === null && !this.steps.some((s) => s.id === step.id)) {
        times.start = now;
      }
      if (step.status !== "in_progress" && times.end === null) times.end = now;
      this.live.steps.set(step.id, times);
      const known = this.steps.find((s) => s.id === step.id);
      upsert(this.steps, known ? keepDetails(known, step) : step);
      if (step.status !== "in_progress" && hasSearch(step)) this.refreshStep(step.id, 0);
      this.changed("steps", "timeline");
    }

    /** Streamed steps carry file_search passages only if the run asked for them: read the
     *  stored step (it may lag the stream by one write, so try again briefly). */
    async refreshStep(stepId, attempt) {
      try {
        const step = await getJSON(`/runs/${encodeURIComponent(this.run.id)}/steps/${encodeURIComponent(stepId)}`);
        if (step.status === "in_progress" && attempt < 10) {
          setTimeout(() => this.refreshStep(stepId, attempt + 1), 200);
          return;
        }
        upsert(this.steps, step);
        this.changed("steps");
      } catch {
        // the step stays as streamed
      }
    }

    mergeMessage(delta) {
      const m = this.messages.find((x) => x.id === delta.id);
      if (!m) return;
      for (const part of delta.delta.content || []) {
        const current = (m.content[part.index] ||= { type: part.type });
        if (part.type === "text") {
          current.text ||= { value: "", annotations: [] };
          current.text.value += part.text.value || "";
          for (const note of part.text.annotations || []) {
            const { index, ...rest } = note;
            current.text.annotations[index ?? current.text.annotations.length] = rest;
          }
        } else {
          Object.assign(current, part);
        }
      }
    }

    mergeStep(delta) {
      const step = this.steps.find((s) => s.id === delta.id);
      if (!step) return;
      const calls = (step.step_details.tool_calls ||= []);
      for (const d of delta.delta.step_details?.tool_calls || []) {
        const call = (calls[d.index ?? calls.length] ||= { id: d.id, type: d.type });
        if (d.id) call.id = d.id;
        if (d.type) call.type = d.type;
        if (d.function) {
          call.function ||= { name: "", arguments: "", output: null };
          if (d.function.name) call.function.name = d.function.name;
          if (d.function.arguments) call.function.arguments += d.function.arguments;
          if (d.function.output !== undefined && d.function.output !== null) call.function.output = d.function.output;
        }
        if (d.code_interpreter) {
          call.code_interpreter ||= { input: "", outputs: [] };
          if (d.code_interpreter.input) call.code_interpreter.input += d.code_interpreter.input;
          for (const output of d.code_interpreter.outputs || []) {
            const { index, ...rest } = output;
            call.code_interpreter.outputs[index ?? call.code_interpreter.outputs.length] = rest;
          }
        }
        if (d.file_search) call.file_search = { ...(call.file_search || {}), ...d.file_search };
      }
    }

    changed(...names) {
      const first = this.dirty.size === 0;
      for (const name of names) this.dirty.add(name);
      if (first) requestAnimationFrame(() => this.redraw());
    }

    redraw() {
      const names = [...this.dirty];
      this.dirty.clear();
      for (const name of names) this.draw(name);
    }

    draw(name) {
      const fresh = h("div", { "data-section": name }, this[`${name}View`]());
      this.sections[name] = swap(this.sections[name], fresh);
    }

    // timings (milliseconds since the epoch)

    get precise() {
      // Times the browser saw events arrive are finer than the API's seconds, but only
      // comparable with each other: use them when the whole run was watched from its start.
      return this.live.runStart !== null && this.steps.every((s) => this.live.steps.get(s.id)?.start != null);
    }

    /** Where the run's time axis starts (``origin``), when it started and ended. */
    runTimes() {
      if (this.precise) {
        const start = this.live.runStart;
        return { origin: start, start, end: this.live.runEnd, precise: true };
      }
      const origin = this.run.created_at * 1000;
      const start = this.run.started_at ? this.run.started_at * 1000 : null;
      let end = null;
      if (TERMINAL.has(this.run.status)) {
        const stamps = ["completed_at", "failed_at", "cancelled_at"].map((k) => this.run[k]).filter(Boolean);
        const last = this.history.length ? this.history[this.history.length - 1].created_at : null;
        end = stamps.length ? Math.max(...stamps) * 1000 : last ? last * 1000 : null;
      }
      return { origin, start, end, precise: false };
    }

    stepTimes(step, precise) {
      const live = this.live.steps.get(step.id);
      if (precise && live) return { start: live.start, end: live.end };
      const ends = ["completed_at", "failed_at", "cancelled_at", "expired_at"].map((k) => step[k]).filter(Boolean);
      return { start: step.created_at * 1000, end: ends.length ? Math.max(...ends) * 1000 : null };
    }

    // sections

    summaryView() {
      const run = this.run;
      const times = this.runTimes();
      const alerts = [];
      if (run.last_error) {
        alerts.push(
          h("div", { class: "alert", role: "alert" }, h("strong", {}, `Run ${run.status}: ${run.last_error.code}. `), run.last_error.message),
        );
      }
      if (run.incomplete_details) {
        alerts.push(
          h("div", { class: "alert warn", role: "alert" }, h("strong", {}, "Run incomplete: "), run.incomplete_details.reason),
        );
      }
      const failed = this.steps.filter((s) => s.last_error);
      for (const s of failed) {
        alerts.push(h("div", { class: "alert" }, h("strong", {}, `Step ${s.id} ${s.status}: ${s.last_error.code}. `), s.last_error.message));
      }
      if (run.status === "requires_action") {
        const calls = run.required_action?.submit_tool_outputs?.tool_calls || [];
        alerts.push(
          h("div", { class: "alert info" }, h("strong", {}, "Waiting for tool outputs: "), calls.map((c) => `${c.function.name} (${c.id})`).join(", ")),
        );
      }
      const usage = run.usage || this.summary.usage; // while running: the totals so far
      return [
        alerts,
        facts([
          ["Status", badge(run.status)],
          ["Model", run.model],
          ["Assistant", code(run.assistant_id)],
          ["Created", when(run.created_at)],
          ["Started", when(run.started_at)],
          ["Queued for", run.started_at ? duration((run.started_at - run.created_at) * 1000, false) : "—"],
          ["Duration", times.start && times.end ? duration(times.end - times.start, times.precise) : times.start ? "running…" : "—"],
          ["Tokens", tokens(usage)],
          ["Tools", (run.tools || []).map((t) => (t.type === "function" ? t.function.name : t.type)).join(", ") || "—"],
          Object.keys(run.metadata || {}).length ? ["Metadata", metadata(run.metadata)] : null,
        ]),
      ];
    }

    timelineView() {
      const run = this.runTimes();
      const precise = run.precise;
      const now = Date.now();
      const origin = run.origin;
      const stepTimes = this.steps.map((s) => this.stepTimes(s, precise));
      const ends = [run.end, run.start, ...stepTimes.flatMap((t) => [t.start, t.end])].filter((x) => x != null);
      const finish = run.end ?? Math.max(now, ...ends);
      const span = Math.max(finish - origin, precise ? 50 : 1000);
      const unit = precise ? 1 : 1000;
      const at = (t) => offset(Math.max(0, t - origin), precise);
      const waits = this.waits(precise);
      const rows = [
        this.bar("Run", this.run.status, run.start ?? origin, run.end, origin, span, now, unit, {
          detail: run.start ? `+${at(run.start)} → ${run.end ? `+${at(run.end)}` : "now"}` : "queued",
          waits,
          queued: run.start && !precise ? run.start - origin : null,
        }),
        ...this.steps.map((step, i) => {
          const t = stepTimes[i];
          const label = `${i + 1}. ${step.type === "tool_calls" ? toolSummary(step) : "message"}`;
          return this.bar(label, step.status, t.start, t.end, origin, span, now, unit, {
            detail: `+${at(t.start)} → ${t.end ? `+${at(t.end)}` : "now"}`,
            length: t.end ? duration(t.end - t.start, precise) : "running…",
            tokens: step.usage ? step.usage.total_tokens : null,
            stepId: step.id,
          });
        }),
      ];
      return [
        h(
          "p",
          { class: "help" },
          precise
            ? "Measured as events arrived in this browser (milliseconds)."
            : "Drawn from the run's timestamps (whole seconds: a step shorter than a second shows as <1 s).",
        ),
        h("ol", { class: "timeline", "aria-label": "Run and steps over time" }, rows),
        h("div", { class: "axis", "aria-hidden": "true" }, h("span", {}, "0"), h("span", {}, offset(span / 2, precise)), h("span", {}, offset(span, precise))),
      ];
    }

    waits(precise) {
      // requires_action → queued again: the time the run waited for tool outputs.
      const out = [];
      let since = null;
      for (const e of this.history) {
        const t = precise ? e.at : e.created_at * 1000;
        if (t === undefined) continue;
        if (e.event === "thread.run.requires_action") since = t;
        else if (since !== null) {
          out.push([since, t]);
          since = null;
        }
      }
      if (since !== null) out.push([since, null]);
      return out;
    }

    bar(label, status, start, end, origin, span, now, unit, info) {
      const pct = (t) => `${(Math.max(0, Math.min(1, (t - origin) / span)) * 100).toFixed(2)}%`;
      const width = (a, b) => `max(3px, ${(Math.max(0, (b - a) / span) * 100).toFixed(2)}%)`;
      const track = h("div", { class: "track" });
      if (info.queued) {
        const queued = h("span", { class: "queued", title: "queued" });
        queued.style.left = "0%";
        queued.style.width = width(origin, origin + info.queued);
        track.append(queued);
      }
      const fill = h("span", { class: `fill status-${status}${end ? "" : " running"}` });
      fill.style.left = pct(start);
      fill.style.width = width(start, end ?? now);
      track.append(fill);
      for (const [a, b] of info.waits || []) {
        const wait = h("span", { class: "wait", title: "waiting for tool outputs" });
        wait.style.left = pct(a);
        wait.style.width = width(a, b ?? now);
        track.append(wait);
      }
      return h(
        "li",
        { class: "row", "data-step": info.stepId || "run" },
        h("span", { class: "label" }, label, " ", badge(status)),
        track,
        h(
          "span",
          { class: "times" },
          h("span", { class: "span" }, info.detail),
          info.length ? [" · ", h("span", { class: "length" }, info.length)] : null,
          info.tokens != null ? [" · ", h("span", { class: "tokens" }, `${info.tokens} tokens`)] : null,
          info.waits?.length ? [" · ", "waited for tool outputs"] : null,
        ),
      );
    }

    stepsView() {
      if (!this.steps.length) return h("p", { class: "muted" }, TERMINAL.has(this.run.status) ? "No steps." : "No steps yet.");
      const { origin, precise } = this.runTimes();
      return h(
        "ol",
        { class: "steps" },
        this.steps.map((step, i) => {
          const t = this.stepTimes(step, precise);
          return h(
            "li",
            { class: `step status-edge-${step.status}`, id: step.id },
            h(
              "header",
              {},
              h("h3", {}, `${i + 1}. ${step.type === "tool_calls" ? "Tool calls" : "Message creation"}`),
              " ",
              badge(step.status),
              " ",
              h("code", { class: "id" }, step.id),
            ),
            h(
              "p",
              { class: "times" },
              `started +${offset(t.start - origin, precise)}`,
              t.end ? ` · ended +${offset(t.end - origin, precise)} · took ${duration(t.end - t.start, precise)}` : " · running",
              ` · tokens ${tokens(step.usage)}`,
            ),
            step.last_error ? h("p", { class: "alert inline" }, `${step.last_error.code}: ${step.last_error.message}`) : null,
            step.type === "message_creation"
              ? h("p", {}, "Wrote message ", h("a", { href: `#${step.step_details.message_creation.message_id}` }, code(step.step_details.message_creation.message_id)))
              : h("ul", { class: "calls" }, (step.step_details.tool_calls || []).map((call) => h("li", {}, this.call(call)))),
          );
        }),
      );
    }

    expander(key, summary, ...body) {
      const details = h("details", { class: "call" }, h("summary", { "data-key": key }, summary), h("div", { class: "call-body" }, body));
      details.open = this.open.has(key);
      details.addEventListener("toggle", () => (details.open ? this.open.add(key) : this.open.delete(key)));
      return details;
    }

    call(call) {
      const key = call.id || JSON.stringify(call).slice(0, 40);
      if (call.type === "function") {
        const f = call.function || {};
        const waiting = f.output === null || f.output === undefined;
        return this.expander(
          key,
          [h("span", { class: "kind" }, "function"), " ", h("strong", {}, f.name || "…"), " ", waiting ? h("span", { class: "muted" }, "(no output yet)") : null],
          h("h4", {}, "Arguments"),
          block(pretty(f.arguments || ""), `Arguments of ${f.name}`),
          h("h4", {}, "Output"),
          waiting ? h("p", { class: "muted" }, "Not submitted yet.") : block(pretty(f.output), `Output of ${f.name}`),
          h("p", { class: "muted" }, "Call ", code(call.id || "")),
        );
      }
      if (call.type === "file_search") return this.fileSearch(key, call);
      if (call.type === "code_interpreter") return this.codeInterpreter(key, call);
      return this.expander(key, [h("span", { class: "kind" }, call.type)], block(JSON.stringify(call, null, 2), "Tool call"));
    }

    fileSearch(key, call) {
      const search = call.file_search || {};
      const results = search.results || [];
      let query = this.toolArguments[call.id];
      try {
        const parsed = JSON.parse(query);
        query = parsed.query ?? parsed.queries?.join(" · ") ?? query;
      } catch {
        // the raw text
      }
      const ranking = search.ranking_options;
      return this.expander(
        key,
        [h("span", { class: "kind" }, "file_search"), " ", query ? h("q", {}, query) : null, ` ${results.length} result${results.length === 1 ? "" : "s"}`],
        facts([
          ["Query", query || h("span", { class: "muted" }, "not recorded")],
          ranking ? ["Ranking", `${ranking.ranker}, score threshold ${ranking.score_threshold}`] : null,
          ["Call", code(call.id || "")],
        ]),
        results.length
          ? h(
              "ol",
              { class: "results" },
              results.map((r, i) =>
                h(
                  "li",
                  {},
                  h("p", {}, h("strong", {}, r.file_name || r.file_id), " ", code(r.file_id), " ", h("span", { class: "score" }, `score ${Number(r.score).toFixed(3)}`)),
                  (r.content || []).length
                    ? this.expander(
                        `${key}-r${i}`,
                        "Passage",
                        r.content.map((c) => h("blockquote", { class: "passage" }, c.text ?? JSON.stringify(c))),
                      )
                    : null,
                ),
              ),
            )
          : h("p", { class: "muted" }, call.file_search ? "No results." : "Searching…"),
      );
    }

    codeInterpreter(key, call) {
      const ci = call.code_interpreter || {};
      const outputs = (ci.outputs || []).filter(Boolean);
      return this.expander(
        key,
        [h("span", { class: "kind" }, "code_interpreter"), ` ${outputs.length} output${outputs.length === 1 ? "" : "s"}`],
        h("h4", {}, "Input"),
        block(ci.input || "", "Code"),
        h("h4", {}, "Outputs"),
        outputs.length
          ? outputs.map((o) =>
              o.type === "logs"
                ? block(o.logs, "Logs")
                : o.type === "image"
                  ? fileImage(o.image.file_id, this.files[o.image.file_id])
                  : block(JSON.stringify(o, null, 2), "Output"),
            )
          : h("p", { class: "muted" }, "None."),
      );
    }

    messagesView() {
      return conversation(this.messages, this.files, this.run.id);
    }
  }

  function upsert(list, obj) {
    const i = list.findIndex((x) => x.id === obj.id);
    if (i < 0) list.push(obj);
    else list[i] = obj;
  }

  /** A streamed step object carries no file_search passages: keep the ones already known. */
  function keepDetails(known, step) {
    if (step.type !== "tool_calls") return step;
    const before = new Map((known.step_details.tool_calls || []).map((c) => [c.id, c]));
    const calls = (step.step_details.tool_calls || []).map((call) => {
      const old = before.get(call.id);
      const oldResults = old?.file_search?.results;
      if (call.type !== "file_search" || !oldResults?.some((r) => r.content)) return call;
      return { ...call, file_search: { ...call.file_search, results: oldResults } };
    });
    return { ...step, step_details: { ...step.step_details, tool_calls: calls } };
  }

  function hasSearch(step) {
    return step.type === "tool_calls" && (step.step_details.tool_calls || []).some((c) => c.type === "file_search");
  }

  function toolSummary(step) {
    const calls = step.step_details.tool_calls || [];
    if (!calls.length) return "tool calls";
    return calls.map((c) => (c.type === "function" ? c.function?.name || "function" : c.type)).join(", ");
  }

  // -- start --------------------------------------------------------------------------------

  if (sessionStorage.getItem(KEY)) {
    getJSON("/session").then((s) => showProject(s.project_id), () => {});
  }
  route();
})();
