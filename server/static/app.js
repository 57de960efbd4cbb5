// The chat page: sessions, a streamed conversation and the agent's memories, through the
// server's own HTTP API. Every text from the server or the user goes into the page as
// text (textContent), never as markup.
"use strict";

(() => {
  const KEY_STORAGE = "memory-agent.api-key";
  const $ = (id) => document.getElementById(id);
  const state = { threadId: null, thread: null, busy: false, config: null, pending: [] };

  class HttpError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // -- HTTP ----------------------------------------------------------------------------

  function authHeaders() {
    const key = localStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  let keyPrompt = null;

  // Asks for the API key once; every request that got a 401 meanwhile waits for the answer.
  function askForKey(message) {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => {
      const dialog = $("key-dialog");
      const error = $("key-error");
      error.textContent = message || "";
      error.hidden = !message;
      $("key-input").value = "";
      const onSubmit = (event) => {
        event.preventDefault();
        const key = $("key-input").value.trim();
        if (!key) return;
        localStorage.setItem(KEY_STORAGE, key);
        $("key-form").removeEventListener("submit", onSubmit);
        dialog.close();
        keyPrompt = null;
        resolve();
      };
      $("key-form").addEventListener("submit", onSubmit);
      dialog.showModal();
      $("key-input").focus();
    });
    return keyPrompt;
  }

  // fetch with the stored key; a 401 asks for a key and tries again.
  async function request(method, path, body) {
    for (;;) {
      const init = { method, headers: authHeaders() };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const response = await fetch(path, init);
      if (response.status !== 401) return response;
      const hadKey = localStorage.getItem(KEY_STORAGE) !== null;
      localStorage.removeItem(KEY_STORAGE);
      await askForKey(hadKey ? "That key was not accepted; enter another." : "");
    }
  }

  async function errorOf(response) {
    let detail = response.statusText || `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && body.detail !== undefined) {
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch (_) {
      // not JSON: keep the status text
    }
    return new HttpError(response.status, detail);
  }

  async function api(method, path, body) {
    const response = await request(method, path, body);
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? null : response.json();
  }

  const threadPath = (id) => `threads/${encodeURIComponent(id)}`;

  // Server-sent events from a fetch body: yields {event, data} with data parsed as JSON.
  async function* sseEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  // -- rendering -----------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const asText = (value) => (typeof value === "string" ? value : JSON.stringify(value));

  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
  }

  function showNotice(text) {
    const notice = $("notice");
    notice.textContent = text || "";
    notice.hidden = !text;
  }

  const ROLE_NAMES = { user: "You", assistant: "Agent", tool: "Tool", system: "System" };

  function messageItem(role, text) {
    const item = el("li", `message ${role}`);
    item.dataset.role = role;
    item.append(el("span", "who", ROLE_NAMES[role] || role), el("div", "text", text));
    return item;
  }

  function renderMessage(message) {
    const items = [];
    const text = asText(message.content ?? "");
    if (message.role === "tool") {
      items.push(messageItem("tool", text));
      return items;
    }
    if (text) items.push(messageItem(message.role, text));
    for (const call of message.tool_calls || []) {
      items.push(messageItem("tool", `${call.name}(${JSON.stringify(call.args ?? {})})`));
    }
    return items;
  }

  function scrollToEnd() {
    const transcript = $("transcript");
    transcript.scrollTop = transcript.scrollHeight;
  }

  function renderHeader() {
    const thread = state.thread;
    $("session-title").textContent = state.threadId || "No session selected";
    const status = $("session-status");
    status.hidden = !thread;
    status.textContent = thread ? thread.status : "";
    status.className = `badge ${thread ? thread.status : ""}`;
    const ended = Boolean(thread && thread.status === "ended");
    $("end-session").disabled = !thread || ended || state.busy;
    $("delete-session").disabled = !thread || state.busy;
    const waiting = state.pending.length > 0;
    $("message").disabled = ended || state.busy || waiting;
    $("send").disabled = ended || state.busy || waiting;
    $("message").placeholder = waiting
      ? "Answer the tool call waiting for approval first."
      : "Write a message… (Enter sends, Shift+Enter for a new line)";
    $("placeholder").hidden = Boolean(state.threadId);
    if (ended) showNotice("This session has ended: start a new session to keep talking.");
  }

  function markSelected() {
    for (const item of $("sessions").children) {
      item.classList.toggle("selected", item.dataset.threadId === state.threadId);
    }
  }

  // -- loading -------------------------------------------------------------------------

  async function loadConfig() {
    const config = await api("GET", "config");
    state.config = config;
    const label = $("model-label");
    label.hidden = false;
    if (config.offline) {
      label.textContent = "offline model";
      label.classList.add("offline");
      label.title =
        "The deterministic offline model answers (not an LLM). " +
        "Set MEMORY_AGENT_MODEL=provider:model for a real one.";
    } else {
      label.textContent = config.model;
      label.classList.remove("offline");
      label.title = "The chat model in use";
    }
    $("mode-label").textContent = config.dev_mode
      ? "development mode: no API key needed"
      : `signed in as ${config.user}`;
    $("change-key").hidden = config.dev_mode;
  }

  async function loadSessions() {
    const page = await api("GET", "threads?limit=100");
    const list = $("sessions");
    list.replaceChildren();
    for (const thread of page.items) {
      const item = el("li", `session ${thread.status}`);
      item.dataset.threadId = thread.thread_id;
      const button = el("button", "session-button");
      button.type = "button";
      button.title = thread.thread_id;
      const meta = el("span", "session-meta");
      meta.append(
        el("span", "session-count", String(thread.message_count)),
        ` messages · ${when(thread.last_active_at)}`,
      );
      button.append(el("span", "session-id", thread.thread_id), meta);
      if (thread.status === "ended") button.append(el("span", "badge ended", "ended"));
      button.addEventListener("click", guarded(() => openThread(thread.thread_id)));
      item.append(button);
      list.append(item);
    }
    $("sessions-total").textContent = page.total ? `(${page.total})` : "";
    $("sessions-empty").hidden = page.items.length > 0;
    markSelected();
  }

  // The session list's count of a session, moved on by `n` before the list is read again.
  function bumpCount(threadId, n) {
    const item = [...$("sessions").children].find((li) => li.dataset.threadId === threadId);
    if (!item) return;
    const count = item.querySelector(".session-count");
    count.textContent = String(Number(count.textContent) + n);
  }

  async function loadMemories() {
    const page = await api("GET", "memories?limit=100");
    const list = $("memories");
    list.replaceChildren();
    for (const memory of page.items) {
      const item = el("li", "memory");
      item.append(el("span", "memory-key", memory.key), el("span", "memory-text", memory.content ?? asText(memory.value)));
      list.append(item);
    }
    $("memories-total").textContent = page.total ? `(${page.total})` : "";
    $("memories-empty").hidden = page.items.length > 0;
  }

  async function loadTranscript() {
    const threadId = state.threadId;
    const items = [];
    for (let offset = 0; ; ) {
      const page = await api("GET", `${threadPath(threadId)}/messages?limit=500&offset=${offset}`);
      for (const message of page.items) items.push(...renderMessage(message));
      offset += page.items.length;
      if (!page.items.length || offset >= page.total) break;
    }
    if (threadId !== state.threadId) return; // another session was picked meanwhile
    $("transcript").replaceChildren(...items);
    scrollToEnd();
  }

  // A session the user picks: a new entry in the browser's history, so Back returns to the
  // one before (and Forward comes back), as `hashchange` selects what the address names.
  async function openThread(threadId) {
    const hash = threadId ? `#${encodeURIComponent(threadId)}` : "";
    if (location.hash !== hash) history.pushState(null, "", hash || location.pathname);
    await selectThread(threadId);
  }

  // The session in view again, as recorded, without clearing it first (no blank frame).
  async function refreshThread(threadId) {
    if (threadId !== state.threadId) return;
    try {
      state.thread = await api("GET", threadPath(threadId));
    } catch (error) {
      if (error.status === 404) return selectThread(threadId); // deleted meanwhile
      throw error;
    }
    renderHeader();
    await loadTranscript();
    await loadPending();
  }

  async function selectThread(threadId) {
    state.threadId = threadId;
    state.thread = null;
    state.pending = [];
    $("approvals").replaceChildren();
    showNotice("");
    history.replaceState(null, "", threadId ? `#${encodeURIComponent(threadId)}` : location.pathname);
    $("transcript").replaceChildren();
    markSelected();
    renderHeader();
    if (!threadId) return;
    try {
      state.thread = await api("GET", threadPath(threadId));
    } catch (error) {
      if (error.status === 404) {
        showNotice(`Session ${threadId} does not exist (it may have been deleted).`);
        state.threadId = null;
        history.replaceState(null, "", location.pathname);
        renderHeader();
        return;
      }
      throw error;
    }
    renderHeader();
    await loadTranscript();
    await loadPending();
  }

  // -- tool calls waiting for approval --------------------------------------------------

  // The pauses the session waits at (`interrupts` of its state), as one card per call.
  async function loadPending() {
    const threadId = state.threadId;
    const snapshot = await api("GET", `${threadPath(threadId)}/state`);
    if (threadId !== state.threadId) return;
    state.pending = (snapshot.interrupts || []).filter(
      (pause) => pause.value && Array.isArray(pause.value.action_requests),
    );
    const cards = [];
    const answers = state.pending.map((pause) => new Array(pause.value.action_requests.length));
    state.pending.forEach((pause, p) => {
      const configs = pause.value.review_configs || [];
      pause.value.action_requests.forEach((action, a) => {
        const allowed = (configs.find((c) => c.action_name === action.name) || {})
          .allowed_decisions || ["approve", "edit", "reject"];
        cards.push(approvalCard(action, allowed, (decision) => {
          answers[p][a] = decision;
          if (answers.every((list) => list.every(Boolean))) answerPending(answers);
        }));
      });
    });
    $("approvals").replaceChildren(...cards);
    renderHeader();
    scrollToEnd();
  }

  function approvalCard(action, allowed, decide) {
    const card = el("li", "approval");
    card.dataset.tool = action.name;
    card.append(el("span", "who", "Waiting for your approval"));
    card.append(el("div", "approval-tool", action.name));
    if (action.description) card.append(el("div", "muted small", action.description));
    const args = el("textarea", "approval-args");
    args.rows = 3;
    args.setAttribute("aria-label", `Arguments of ${action.name}`);
    args.value = JSON.stringify(action.args ?? {}, null, 2);
    args.readOnly = !allowed.includes("edit");
    const reason = el("input", "approval-reason");
    reason.placeholder = "Why not (sent to the agent)";
    reason.setAttribute("aria-label", `Why not run ${action.name}`);
    const buttons = el("div", "approval-buttons");
    const chosen = (decision, label) => {
      for (const button of buttons.querySelectorAll("button")) button.disabled = true;
      args.readOnly = true;
      reason.disabled = true;
      card.dataset.decision = decision.type;
      card.querySelector(".who").textContent = label;
      decide(decision);
    };
    const button = (text, className, onClick) => {
      const node = el("button", className, text);
      node.type = "button";
      node.addEventListener("click", guarded(onClick));
      buttons.append(node);
    };
    if (allowed.includes("approve")) {
      button("Approve", "primary", () => {
        const edited = args.value.trim() !== JSON.stringify(action.args ?? {}, null, 2);
        if (edited && allowed.includes("edit")) throw new Error("The arguments were changed: use Run edited.");
        chosen({ type: "approve" }, "Approved");
      });
    }
    if (allowed.includes("edit")) {
      button("Run edited", "", () => {
        let edited;
        try {
          edited = JSON.parse(args.value);
        } catch (error) {
          throw new Error(`The arguments are not JSON: ${error.message}`);
        }
        if (!edited || typeof edited !== "object" || Array.isArray(edited)) {
          throw new Error("The arguments must be a JSON object.");
        }
        chosen({ type: "edit", edited_action: { name: action.name, args: edited } }, "Edited");
      });
    }
    if (allowed.includes("reject")) {
      button("Reject", "danger", () => {
        const message = reason.value.trim();
        chosen(message ? { type: "reject", message } : { type: "reject" }, "Rejected");
      });
    }
    card.append(args);
    if (allowed.includes("reject")) card.append(reason);
    card.append(buttons);
    return card;
  }

  // Every call has its decision: the run goes on with them (one pause, or a map by id).
  async function answerPending(answers) {
    const pending = state.pending;
    const resume = pending.length === 1
      ? { decisions: answers[0] }
      : Object.fromEntries(pending.map((pause, p) => [pause.id, { decisions: answers[p] }]));
    await runTurn({ resume }, null);
  }

  // -- actions -------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    $("new-session").disabled = busy;
    renderHeader();
  }

  async function newSession() {
    const thread = await api("POST", "threads", {});
    await loadSessions();
    await openThread(thread.thread_id);
    $("message").focus();
  }

  async function send(text) {
    if (!state.threadId) await newSession();
    await runTurn({ message: text }, text);
  }

  // One streamed run: a message (shown as the user's) or an answer to a pause.
  async function runTurn(body, text) {
    const threadId = state.threadId;
    showNotice("");
    setBusy(true);
    const transcript = $("transcript");
    if (text !== null) {
      transcript.append(messageItem("user", text));
      bumpCount(threadId, 1);
    }
    const reply = messageItem("assistant", "");
    reply.classList.add("streaming");
    reply.dataset.state = "streaming";
    const replyText = reply.querySelector(".text");
    transcript.append(reply);
    scrollToEnd();
    let failed = null;
    try {
      const response = await request("POST", `${threadPath(threadId)}/runs/stream`, body);
      if (!response.ok) throw await errorOf(response);
      let streamed = "";
      for await (const { event, data } of sseEvents(response)) {
        if (event === "token") {
          if (!streamed) bumpCount(threadId, 1); // the reply being written counts already
          streamed += data.text;
          replyText.textContent = streamed;
          scrollToEnd();
        } else if (event === "done") {
          replyText.textContent = data.reply || "";
        } else if (event === "error") {
          throw new HttpError(data.status_code, data.detail);
        }
      }
    } catch (error) {
      failed = error;
    } finally {
      reply.classList.remove("streaming");
      reply.dataset.state = "done";
      setBusy(false);
    }
    // The transcript as recorded (tool calls included), the session's counts, new memories.
    await Promise.all([refreshThread(threadId), loadSessions(), loadMemories()]);
    if (failed) {
      showNotice(`The ${text === null ? "answer" : "message"} was not taken: ${failed.message}`);
      if (text !== null) $("message").value = text;
    }
    // How many messages this page has sent and shown the outcome of (tests wait on it).
    document.body.dataset.sent = String(Number(document.body.dataset.sent || 0) + 1);
  }

  async function endSession() {
    if (!state.threadId) return;
    state.thread = await api("POST", `${threadPath(state.threadId)}/end`);
    renderHeader();
    await Promise.all([loadSessions(), loadMemories()]);
  }

  async function deleteSession() {
    const threadId = state.threadId;
    if (!threadId) return;
    if (!window.confirm(`Delete session ${threadId}, its transcript and its memories?`)) return;
    await api("DELETE", threadPath(threadId));
    await selectThread(null);
    await Promise.all([loadSessions(), loadMemories()]);
  }

  // Runs an action from the page; failures are shown, never lost in the console.
  function guarded(action) {
    return async (...args) => {
      try {
        await action(...args);
      } catch (error) {
        showNotice(error instanceof HttpError ? `${error.status}: ${error.message}` : String(error));
      }
    };
  }

  async function start() {
    $("key-dialog").addEventListener("cancel", (event) => event.preventDefault());
    $("new-session").addEventListener("click", guarded(newSession));
    $("end-session").addEventListener("click", guarded(endSession));
    $("delete-session").addEventListener("click", guarded(deleteSession));
    $("change-key").addEventListener("click", guarded(async () => {
      localStorage.removeItem(KEY_STORAGE);
      await askForKey("");
      await loadConfig();
      await selectThread(null);
      await Promise.all([loadSessions(), loadMemories()]);
    }));
    const sendFromComposer = guarded(async () => {
      const box = $("message");
      const text = box.value.trim();
      if (!text || state.busy) return;
      box.value = "";
      await send(text);
      box.focus(); // the next message goes where the last one went
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      sendFromComposer();
    });
    $("message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        sendFromComposer();
      }
    });
    window.addEventListener("hashchange", guarded(() => selectThread(decodeURIComponent(location.hash.slice(1)) || null)));
    await loadConfig();
    await Promise.all([loadSessions(), loadMemories()]);
    const fromHash = decodeURIComponent(location.hash.slice(1));
    await selectThread(fromHash || null);
    document.body.dataset.ready = "true";
  }

  guarded(start)();
})();
