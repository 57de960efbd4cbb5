// What a `useStream` chat UI (agent-chat-ui) asks of a LangGraph server, done with the
// JavaScript SDK against memory-agent's `/langgraph` API. Prints a JSON summary on stdout;
// tests/test_lg_js_sdk.py starts the server and asserts on it.
//
//   node tests/js/usestream.mjs <url> <api-key> [sdk-package]
//
// <url> is the server's `/langgraph` URL. The server should run a slow model
// (MEMORY_AGENT_MODEL=offline:slow-<seconds>) so that a run can be stopped half way.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";


const GRAPH_ID = "agent";
// [sdk-package]: `@langchain/langgraph-sdk` (the default, the newest) or `sdk-1-8` (the
// version agent-chat-ui's lockfile pins).
const [url, apiKey, sdk = "@langchain/langgraph-sdk"] = process.argv.slice(2);
const { Client } = await import(sdk);
if (!url || !apiKey) {
  console.error("usage: node usestream.mjs <url> <api-key>");
  process.exit(2);
}

const client = new Client({ apiUrl: url, apiKey, callerOptions: { maxRetries: 0 } });

/** A message as the chat UI sends it. */
const human = (text) => ({ id: randomUUID(), type: "human", content: [{ type: "text", text }] });

/** The text of a message's content (a string, or a list of content blocks). */
const text = (content) =>
  typeof content === "string"
    ? content
    : content.map((block) => (block.type === "text" ? block.text : "")).join("");

/** Each name once, in the order it first came. */
const distinct = (names) => [...new Set(names)];

/**
 * Send `message` on the thread and stream the run as the chat UI does. `onPart` sees every
 * part as it arrives (with the run so far) and may act on it, e.g. stop the run.
 */
async function send(threadId, message, onPart = async () => {}) {
  const run = { events: [], values: null, runId: null, headerRunId: null, tokens: [] };
  const started = Date.now();
  const stream = client.runs.stream(threadId, GRAPH_ID, {
    input: { messages: [human(message)] },
    streamMode: ["values", "messages-tuple"],
    streamSubgraphs: true,
    streamResumable: true,
    onDisconnect: "continue",
    onRunCreated: ({ run_id }) => {
      run.headerRunId = run_id;
    },
  });
  for await (const part of stream) {
    run.events.push(part.event);
    if (part.event === "metadata") {
      run.runId = part.data.run_id;
    } else if (part.event === "values") {
      run.values = part.data;
    } else if (part.event === "messages") {
      const [chunk, metadata] = part.data;
      if (chunk.type === "AIMessageChunk" && typeof chunk.content === "string" && chunk.content) {
        run.tokens.push(chunk.content);
      }
      run.messageNode ??= metadata.langgraph_node;
    } else if (part.event === "error") {
      run.error = part.data;
    }
    await onPart(part, run);
  }
  const messages = run.values?.messages ?? [];
  const last = messages.at(-1);
  return {
    runId: run.runId,
    headerRunId: run.headerRunId,
    events: distinct(run.events),
    eventCount: run.events.length,
    tokens: run.tokens,
    messageNode: run.messageNode ?? null,
    messageTypes: messages.map((m) => m.type),
    firstMessage: messages.length ? text(messages[0].content) : null,
    reply: last?.type === "ai" ? text(last.content) : null,
    error: run.error ?? null,
    seconds: (Date.now() - started) / 1000,
    ...(run.cancel ? { cancel: run.cancel } : {}),
  };
}

/**
 * Send `message` as `send` does, and leave after `parts` parts as a page reload does: the
 * fetch is aborted, the run goes on (`onDisconnect: "continue"`). Answers the run's id and
 * the id of the last event seen, which `useStream({reconnectOnMount})` keeps for rejoining.
 */
async function leave(threadId, message, parts) {
  const controller = new AbortController();
  const seen = { runId: null, lastEventId: null, events: [] };
  try {
    for await (const part of client.runs.stream(threadId, GRAPH_ID, {
      input: { messages: [human(message)] },
      streamMode: ["values", "messages-tuple"],
      streamResumable: true,
      onDisconnect: "continue",
      signal: controller.signal,
    })) {
      if (part.event === "metadata") seen.runId = part.data.run_id;
      seen.events.push(part.event);
      seen.lastEventId = part.id ?? null;
      if (seen.events.length >= parts) controller.abort();
    }
  } catch (error) {
    if (error?.name !== "AbortError") throw error;
  }
  return seen;
}

/** Rejoin a run's stream after `lastEventId` (all of it without one), as after a reload. */
async function rejoin(threadId, runId, lastEventId) {
  const events = [];
  let values = null;
  for await (const part of client.runs.joinStream(threadId, runId, { lastEventId })) {
    events.push(part.event);
    if (part.event === "values") values = part.data;
  }
  const last = values?.messages?.at(-1);
  return { events, reply: last?.type === "ai" ? text(last.content) : null };
}

async function main() {
  const pkg = JSON.parse(
    readFileSync(new URL(`./node_modules/${sdk}/package.json`, import.meta.url)),
  );
  const summary = { sdkVersion: pkg.version };

  // Connecting: the UI checks the server, then lists the user's threads of the graph.
  summary.info = await client.assistants.search({ graphId: GRAPH_ID, limit: 1 }).then(
    ([assistant]) => ({ assistantGraphId: assistant?.graph_id ?? null }),
  );
  const before = await client.threads.search({ metadata: { graph_id: GRAPH_ID }, limit: 100 });

  // The first message: create the thread, load its (empty) history, then stream the run.
  const thread = await client.threads.create();
  const threadId = thread.thread_id;
  summary.thread = { keys: Object.keys(thread).sort(), status: thread.status };
  summary.emptyHistory = (await client.threads.getHistory(threadId, { limit: 10 })).length;
  summary.first = await send(threadId, "my name is Sam");
  summary.second = await send(threadId, "what is my name?");

  // The thread list now shows it, with its first message as title; loading it reads history.
  const after = await client.threads.search({ metadata: { graph_id: GRAPH_ID }, limit: 100 });
  const listed = after.find((t) => t.thread_id === threadId);
  summary.threads = {
    before: before.length,
    after: after.length,
    listed: Boolean(listed),
    listedStatus: listed?.status ?? null,
    title: listed?.values?.messages?.length ? text(listed.values.messages[0].content) : null,
  };
  const history = await client.threads.getHistory(threadId, { limit: 10 });
  summary.history = {
    length: history.length,
    keys: history.length ? Object.keys(history[0]).sort() : [],
    newestMessages: history[0]?.values?.messages?.length ?? 0,
    newestReply: history[0] ? text(history[0].values.messages.at(-1).content) : null,
    checkpoints: new Set(history.map((h) => h.checkpoint.checkpoint_id)).size,
  };

  // Stop: the UI cancels the run it learnt from the stream while the model is still writing.
  summary.cancelled = await send(threadId, "what do you remember about me?", async (part, run) => {
    if (part.event === "messages" && !run.cancel) {
      const at = Date.now();
      await client.runs.cancel(threadId, run.runId, true);
      run.cancel = { tokensBefore: run.tokens.length, seconds: (Date.now() - at) / 1000 };
    }
  });
  summary.cancelledRun = await client.runs.get(threadId, summary.cancelled.runId);
  summary.afterCancel = await send(threadId, "what is my name?");

  // A page reload mid-reply: the UI left after three parts, then rejoins from the last one.
  const reload = await leave(threadId, "what is my name?", 3);
  summary.reload = {
    before: reload.events,
    lastEventId: reload.lastEventId,
    after: await rejoin(threadId, reload.runId, reload.lastEventId),
    whole: await rejoin(threadId, reload.runId, undefined),
  };

  // Stop (the fetch aborted, the run goes on), then send at once: the server's default
  // strategy queues the new run behind the old one, and both answer.
  const stopped = await leave(threadId, "my name is Sam", 2);
  summary.stopThenSend = await send(threadId, "what is my name?");
  summary.stoppedRun = await client.runs.join(threadId, stopped.runId).then(async () =>
    client.runs.get(threadId, stopped.runId),
  );
  summary.runs = (await client.runs.list(threadId)).map((r) => r.status);
  const state = await client.threads.getState(threadId);
  summary.state = {
    valueKeys: Object.keys(state.values).sort(),
    messages: state.values.messages.length,
    reply: text(state.values.messages.at(-1).content),
  };
  console.log(JSON.stringify(summary, null, 2));
}

main().catch((error) => {
  console.error(error?.stack ?? String(error));
  process.exit(1);
});
