// The checkpoints a `useStream` chat UI (agent-chat-ui) sends with its submits, done with
// the JavaScript SDK against memory-agent's `/langgraph` API: every message with the
// thread's latest checkpoint (what SDK 1.8 sends once history has loaded), Regenerate (no
// input, from the checkpoint before the reply first appeared) and Edit (a new message from
// the checkpoint before the edited one first appeared). Prints a JSON summary on stdout;
// tests/test_lg_js_sdk.py starts the server and asserts on it.
//
//   node tests/js/forks.mjs <sdk-package> <url> <api-key>
//
// <sdk-package> is `@langchain/langgraph-sdk` (the newest) or `sdk-1-8` (the version
// agent-chat-ui's lockfile pins).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [sdk, url, apiKey] = process.argv.slice(2);
if (!sdk || !url || !apiKey) {
  console.error("usage: node forks.mjs <sdk-package> <url> <api-key>");
  process.exit(2);
}
const { Client } = await import(sdk);
const require = createRequire(import.meta.url);
const sdkVersion = JSON.parse(readFileSync(require.resolve(`${sdk}/package.json`))).version;

const GRAPH_ID = "agent";
const client = new Client({ apiUrl: url, apiKey, callerOptions: { maxRetries: 0 } });

const human = (text) => ({ id: randomUUID(), type: "human", content: [{ type: "text", text }] });
const text = (content) =>
  typeof content === "string"
    ? content
    : content.map((block) => (block.type === "text" ? block.text : "")).join("");

/** Stream one submit as the UI does; answers the last values and any error event. */
async function submit(threadId, messages, checkpoint) {
  const options = { streamMode: ["values", "messages-tuple"], onDisconnect: "continue" };
  options.input = messages === null ? null : { messages };
  if (checkpoint) options.checkpoint = checkpoint;
  let values = null;
  let error = null;
  for await (const part of client.runs.stream(threadId, GRAPH_ID, options)) {
    if (part.event === "values") values = part.data;
    if (part.event === "error") error = part.data;
  }
  return { values, error };
}

/** The state where a message first appears (history is newest first), as useStream finds it. */
async function firstSeen(threadId, messageId) {
  const history = await client.threads.getHistory(threadId, { limit: 100 });
  const seen = history.filter((s) => (s.values.messages ?? []).some((m) => m.id === messageId));
  return seen[seen.length - 1];
}

const summary = { sdkVersion, latest: [], errors: [] };
const thread = await client.threads.create();
const threadId = thread.thread_id;

for (const words of ["one", "two", "three"]) {
  const state = await client.threads.getState(threadId);
  // With history loaded, SDK 1.8 sends the head's checkpoint; the first has none yet.
  const head = state.checkpoint?.checkpoint_id
    ? { checkpoint_id: state.checkpoint.checkpoint_id, checkpoint_ns: "", checkpoint_map: null }
    : undefined;
  const run = await submit(threadId, [human(words)], head);
  if (run.error) summary.errors.push(run.error);
  summary.latest.push(run.values.messages.map((m) => text(m.content)));
}

let values = (await client.threads.getState(threadId)).values;
const reply = values.messages[values.messages.length - 1];
const replyState = await firstSeen(threadId, reply.id);
const regenerated = await submit(threadId, null, replyState.parent_checkpoint);
if (regenerated.error) summary.errors.push(regenerated.error);
const newReply = regenerated.values.messages[regenerated.values.messages.length - 1];
summary.regenerate = {
  messages: regenerated.values.messages.length,
  sameText: text(newReply.content) === text(reply.content),
  newId: newReply.id !== reply.id,
  type: newReply.type,
};
const old = await client.threads.getState(threadId, replyState.checkpoint.checkpoint_id);
summary.oldBranchLast = old.values.messages[old.values.messages.length - 1].id === reply.id;

values = regenerated.values;
const two = values.messages.find((m) => text(m.content) === "two");
const twoState = await firstSeen(threadId, two.id);
const edited = await submit(threadId, [human("two, edited")], twoState.parent_checkpoint);
if (edited.error) summary.errors.push(edited.error);
summary.edit = edited.values.messages.map((m) => [m.type, text(m.content)]);

const transcript = await fetch(`${url.replace(/\/langgraph$/, "")}/threads/${threadId}/messages`, {
  headers: { "x-api-key": apiKey },
});
summary.transcript = (await transcript.json()).items.map((m) => [m.role, text(m.content)]);
console.log(JSON.stringify(summary));
