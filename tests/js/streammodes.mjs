// Stream modes beyond a chat UI's, read with the JavaScript SDK from memory-agent's
// `/langgraph` API: the older `messages` mode, the step-by-step `tasks`, `checkpoints` and
// `debug`, a subgraph's parts with `streamSubgraphs`, and runs without a thread. Prints a
// JSON summary on stdout; tests/test_lg_js_sdk.py starts the server (on a graph with a
// subgraph) and asserts on it.
//
//   node tests/js/streammodes.mjs <sdk-package> <url> <api-key>
import { randomUUID } from "node:crypto";

const [sdk, url, apiKey] = process.argv.slice(2);
if (!sdk || !url || !apiKey) {
  console.error("usage: node streammodes.mjs <sdk-package> <url> <api-key>");
  process.exit(2);
}
const { Client } = await import(sdk);
const client = new Client({ apiUrl: url, apiKey, callerOptions: { maxRetries: 0 } });

const human = (text) => ({ id: randomUUID(), type: "human", content: text });

/** One run's stream on a new thread: the event names and data, in order. */
async function stream(text, options) {
  const thread = await client.threads.create();
  const events = [];
  for await (const part of client.runs.stream(thread.thread_id, "agent", {
    input: { messages: [human(text)] },
    ...options,
  })) {
    events.push([part.event, part.data]);
  }
  return { threadId: thread.thread_id, events };
}

const summary = {};

const partial = await stream("hi there", { streamMode: ["messages"] });
summary.messages = {
  names: [...new Set(partial.events.map(([name]) => name))],
  described: partial.events.filter(([name]) => name === "messages/metadata").length,
  last: partial.events.filter(([name]) => name === "messages/partial").map(([, d]) => d[0])
    .filter((m) => m.content).at(-1)?.content ?? null,
};

const steps = await stream("hi there", { streamMode: ["tasks", "checkpoints", "debug"] });
summary.steps = {
  names: [...new Set(steps.events.map(([name]) => name))],
  threadIds: [...new Set(steps.events.filter(([name]) => name === "checkpoints")
    .map(([, d]) => d.config.configurable.thread_id === steps.threadId))],
  tasks: steps.events.filter(([name, d]) => name === "tasks" && "input" in d).map(([, d]) => d.name),
};

const sub = await stream("hi there", { streamMode: ["updates", "custom"], streamSubgraphs: true });
summary.subgraphs = sub.events.filter(([name]) => name !== "metadata")
  .map(([name, d]) => [name.replace(/:[0-9a-f-]+$/, ""), Object.keys(d)[0]]);

// A run without a thread: on one made for it, gone once the run ends.
const before = (await client.threads.search({ limit: 100 })).length;
const waited = await client.runs.wait(null, "agent", { input: { messages: [human("hello")] } });
const streamed = [];
for await (const part of client.runs.stream(null, "agent", {
  input: { messages: [human("hello again")] },
})) {
  streamed.push(part.event);
}
summary.stateless = {
  reply: waited.messages.at(-1).type,
  streamed: [...new Set(streamed)],
  threadsAdded: (await client.threads.search({ limit: 100 })).length - before,
};

console.log(JSON.stringify(summary));
