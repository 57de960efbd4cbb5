"""One langgraph-sdk script against `langgraph dev` and against memory-agent's `/langgraph`:
what comes back has the same shape.

Both serve the same graph (`langgraph.json`) with the offline model. Each test compares one
kind of object (threads, states, history, stream events, `wait` results, runs, store items,
assistants) key by key. Every difference that remains is intended and named below with its
reason; anything else fails, so a change on either side shows up here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.lgserver import langgraph_server

pytestmark = pytest.mark.slow

DEV, OURS = "langgraph dev", "memory-agent"
#: Sent to both: `langgraph dev` needs the user (and takes the model) from the context;
#: memory-agent takes the user from the API key and ignores both.
_CONTEXT = {"user_id": "parity", "model": "offline"}
_STREAM_MODES = ["values", "updates", "messages-tuple"]

# Intended differences. State values: memory-agent shows the thread's transcript view with
# its `summary` (README "From LangGraph clients") and keeps the graph's own bookkeeping
# (`recorded_id`) to itself; `langgraph dev` shows the graph's raw state, where `summary`
# appears only once summarisation has run.
VALUES_ONLY_DEV = {"recorded_id"}
VALUES_ONLY_OURS = {"summary"}
#: Thread fields memory-agent always sends and `langgraph dev` leaves out of a new thread.
NEW_THREAD_ONLY_OURS = {"interrupts", "error"}
#: `langgraph dev` reports a run's LangSmith project; memory-agent has no LangSmith.
RUN_ONLY_DEV = {"langsmith_session_name"}
#: The update answer: both send `checkpoint` (all RemoteGraph and the SDK read);
#: `langgraph dev` repeats it in the older flat forms.
UPDATE_ONLY_DEV = {"checkpoint_id", "configurable"}
#: memory-agent names a checkpoint with every field of the SDK's `Checkpoint`, including
#: `checkpoint_map` (null: there are no subgraphs).
CHECKPOINT_ONLY_OURS = {"checkpoint_map"}


def _human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def _script(client: LangGraphClient) -> dict[str, Any]:
    """What a client does with a LangGraph server; every answer, by name."""
    out: dict[str, Any] = {}
    out["assistants"] = await client.assistants.search(graph_id="agent")
    out["assistant"] = await client.assistants.get(out["assistants"][0]["assistant_id"])
    thread = await client.threads.create(metadata={"topic": "parity"})
    tid = thread["thread_id"]
    out["thread.create"] = thread
    out["history.empty"] = await client.threads.get_history(tid)
    out["state.empty"] = await client.threads.get_state(tid)
    out["stream"] = [
        (part.event, part.data)
        async for part in client.runs.stream(
            tid,
            "agent",
            input=_human("My name is Sam."),
            stream_mode=_STREAM_MODES,
            context=_CONTEXT,
        )
    ]
    out["wait"] = await client.runs.wait(
        tid, "agent", input=_human("what is my name?"), context=_CONTEXT
    )
    run = await client.runs.create(tid, "agent", input=_human("hello"), context=_CONTEXT)
    out["run.create"] = run
    out["join"] = await client.runs.join(tid, run["run_id"])
    out["run.get"] = await client.runs.get(tid, run["run_id"])
    out["runs.list"] = await client.runs.list(tid)
    out["thread.get"] = await client.threads.get(tid)
    out["thread.search"] = await client.threads.search(metadata={"topic": "parity"})
    out["state"] = await client.threads.get_state(tid)
    out["history"] = await client.threads.get_history(tid, limit=3)
    out["update"] = await client.threads.update_state(
        tid, {"messages": [{"type": "ai", "content": "An imported reply."}]}
    )
    other = await client.threads.create()
    out["stream.steps"] = [
        (part.event, part.data)
        async for part in client.runs.stream(
            other["thread_id"],
            "agent",
            input=_human("hi there"),
            stream_mode=["tasks", "checkpoints", "debug"],
            context=_CONTEXT,
        )
    ]
    out["stream.steps.thread"] = other["thread_id"]
    out["stream.events.thread"] = (await client.threads.create())["thread_id"]
    out["stream.events"] = [
        (part.event, part.data)
        async for part in client.runs.stream(
            out["stream.events.thread"],
            "agent",
            input=_human("hi there"),
            stream_mode=["events", "updates"],
            context=_CONTEXT,
        )
    ]
    third = await client.threads.create()
    out["stream.messages"] = [
        (part.event, part.data)
        async for part in client.runs.stream(
            third["thread_id"],
            "agent",
            input=_human("My name is Sam."),
            stream_mode=["messages", "updates"],
            context=_CONTEXT,
        )
    ]
    await client.store.put_item(["parity", "notes"], "first", {"content": "hello"})
    out["store.get"] = await client.store.get_item(["parity", "notes"], "first")
    out["store.search"] = await client.store.search_items(["parity"])
    out["store.namespaces"] = await client.store.list_namespaces(prefix=["parity"])
    return out


@pytest.fixture(scope="module")
def answers(
    tmp_path_factory: pytest.TempPathFactory, langgraph_dev_url: str
) -> Iterator[dict[str, dict[str, Any]]]:
    """The script's answers from each server (ours for the module, the session's dev)."""
    tmp = tmp_path_factory.mktemp("parity")
    dev = langgraph_dev_url
    with langgraph_server(f"sqlite:///{tmp / 'agent.sqlite'}", tmp, runs_per_minute="1000") as ours:

        async def both() -> dict[str, dict[str, Any]]:
            return {
                DEV: await _script(get_client(url=dev, api_key=None)),
                OURS: await _script(get_client(url=ours.url, api_key=ours.keys["alice"])),
            }

        yield asyncio.run(both())


def _keys(value: Any) -> set[str]:
    assert isinstance(value, dict), value
    return set(value)


def _differ(answers: dict[str, dict[str, Any]], name: str) -> tuple[set[str], set[str]]:
    """Keys of answer `name` only `langgraph dev` sends, and only memory-agent sends."""
    dev, ours = _keys(answers[DEV][name]), _keys(answers[OURS][name])
    return dev - ours, ours - dev


def test_assistants_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    assert [_keys(a) for a in answers[DEV]["assistants"]] == [
        _keys(a) for a in answers[OURS]["assistants"]
    ]
    assert _differ(answers, "assistant") == (set(), set())
    for side in (DEV, OURS):
        assert answers[side]["assistant"]["graph_id"] == "agent"


def test_threads_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    assert _differ(answers, "thread.create") == (set(), NEW_THREAD_ONLY_OURS)
    assert _differ(answers, "thread.get") == (set(), set())
    (dev,) = answers[DEV]["thread.search"]
    (ours,) = answers[OURS]["thread.search"]
    assert _keys(dev) == _keys(ours)
    for side in (DEV, OURS):
        created, found = answers[side]["thread.create"], answers[side]["thread.get"]
        assert created["values"] is None and created["status"] == "idle"
        assert created["metadata"]["topic"] == "parity"
        assert found["status"] == "idle" and found["metadata"]["graph_id"] == "agent"
    # A chat UI titles its thread list from the values a search answers.
    assert set(dev["values"]) - VALUES_ONLY_DEV == set(ours["values"]) - VALUES_ONLY_OURS
    assert ours["values"]["messages"][0]["content"] == "My name is Sam."


def _state_keys(dev: dict[str, Any], ours: dict[str, Any]) -> None:
    """A ThreadState of each side: same fields, same kinds of values."""
    assert _keys(dev) == _keys(ours)
    assert {"values", "next", "checkpoint", "metadata", "created_at", "parent_checkpoint"} <= set(
        ours
    )
    assert _keys(ours["checkpoint"]) - _keys(dev["checkpoint"]) == CHECKPOINT_ONLY_OURS
    assert _keys(dev["checkpoint"]) <= _keys(ours["checkpoint"])
    assert _keys(dev["values"]) - VALUES_ONLY_DEV == _keys(ours["values"]) - VALUES_ONLY_OURS
    assert ours["next"] == dev["next"]
    assert [(t["name"], _keys(t)) for t in ours["tasks"]] == [
        (t["name"], _keys(t)) for t in dev["tasks"]
    ]
    for d, o in zip(dev["tasks"], ours["tasks"], strict=True):
        assert (o["path"], o["error"], _keys(o["result"] or {})) == (
            d["path"],
            d["error"],
            _keys(d["result"] or {}),
        )
    assert ours["checkpoint_id"] == ours["checkpoint"]["checkpoint_id"]
    # Checkpoint metadata: memory-agent keeps the graph's own (`source`, `step`, `parents`);
    # langgraph-api also stamps every checkpoint with the run's configuration (run and
    # request ids, host, plan, the caller's context), which memory-agent does not record.
    assert {"source", "step", "parents"} <= _keys(ours["metadata"]) <= _keys(dev["metadata"])


def test_states_and_history_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    _state_keys(answers[DEV]["state"], answers[OURS]["state"])
    dev, ours = answers[DEV]["history"], answers[OURS]["history"]
    assert len(dev) == len(ours) == 3
    for d, o in zip(dev, ours, strict=True):
        _state_keys(d, o)
    assert [h["metadata"]["step"] for h in dev] == [h["metadata"]["step"] for h in ours]
    assert answers[DEV]["history.empty"] == answers[OURS]["history.empty"] == []


def test_a_new_thread_has_a_usable_empty_state(answers: dict[str, dict[str, Any]]) -> None:
    """Intended difference: before its first run, `langgraph dev` answers `checkpoint` and
    `metadata` as null (RemoteGraph.get_state then fails on it); memory-agent names the
    thread with a null checkpoint id and shows empty values."""
    dev, ours = answers[DEV]["state.empty"], answers[OURS]["state.empty"]
    assert _keys(ours) == _keys(dev)
    assert dev["checkpoint"] is None and dev["values"] == {}
    assert ours["checkpoint"]["checkpoint_id"] is None and ours["checkpoint_id"] is None
    assert ours["values"] == {"messages": [], "summary": "", "transcript_len": 0}
    for side in (dev, ours):
        assert side["next"] == [] and side["tasks"] == [] and side["created_at"] is None


def _collapsed(events: list[tuple[str, Any]]) -> list[str]:
    """Event names with repeats in a row folded into one."""
    names: list[str] = []
    for name, _ in events:
        if not names or names[-1] != name:
            names.append(name)
    return names


def test_stream_events_come_in_the_same_order(answers: dict[str, dict[str, Any]]) -> None:
    dev, ours = answers[DEV]["stream"], answers[OURS]["stream"]
    assert _collapsed(ours) == _collapsed(dev)
    assert _collapsed(ours)[0] == "metadata"
    assert {n for n, _ in ours} == {"metadata", "values", "updates", "messages"}
    # The same updates, node by node, with the same keys.
    updates = [[(node, sorted(u)) for node, u in d.items()] for n, d in dev if n == "updates"]
    assert updates == [
        [(node, sorted(u)) for node, u in d.items()] for n, d in ours if n == "updates"
    ]
    assert _keys(dev[0][1]) == _keys(ours[0][1]) == {"run_id", "attempt"}


def test_values_events_differ_only_where_documented(answers: dict[str, dict[str, Any]]) -> None:
    dev = [d for n, d in answers[DEV]["stream"] if n == "values"]
    ours = [d for n, d in answers[OURS]["stream"] if n == "values"]
    assert len(dev) == len(ours)
    # The first one is the input: `langgraph dev` has only the new message there, memory-agent
    # the whole state the client sees (transcript view, summary, length) from the start.
    assert _keys(dev[0]) == {"messages"}
    for d, o in zip(dev[1:], ours[1:], strict=True):
        assert _keys(d) - VALUES_ONLY_DEV == _keys(o) - VALUES_ONLY_OURS
        assert [m["type"] for m in d["messages"]] == [m["type"] for m in o["messages"]]


def test_messages_events_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    def shapes(side: str) -> list[tuple[str, frozenset[str]]]:
        found = []
        for name, data in answers[side]["stream"]:
            if name == "messages":
                chunk, _ = data
                found.append((chunk["type"], frozenset(chunk)))
        return found

    assert shapes(DEV) == shapes(OURS)
    for (dev_name, dev), (our_name, ours) in zip(
        answers[DEV]["stream"], answers[OURS]["stream"], strict=True
    ):
        assert dev_name == our_name
        if dev_name != "messages":
            continue
        dev_meta, our_meta = dev[1], ours[1]
        # The node's metadata and the run's ids as langgraph-api adds them; not the
        # deployment's description (host, plan, versions, the caller's context and thread
        # metadata) that langgraph-api also copies into every event.
        assert {"langgraph_node", "langgraph_step", "run_id", "thread_id", "graph_id"} <= set(
            our_meta
        )
        assert set(our_meta) <= set(dev_meta)
        assert our_meta["langgraph_node"] == dev_meta["langgraph_node"]


def test_wait_and_join_answer_the_final_values(answers: dict[str, dict[str, Any]]) -> None:
    for name in ("wait", "join"):
        dev, ours = answers[DEV][name], answers[OURS][name]
        assert _keys(dev) - VALUES_ONLY_DEV == _keys(ours) - VALUES_ONLY_OURS
        assert _keys(dev["messages"][-1]) == _keys(ours["messages"][-1])
    for side in (DEV, OURS):
        assert answers[side]["wait"]["messages"][-1]["content"] == "Your name is Sam."


def test_runs_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    for name in ("run.create", "run.get"):
        assert _differ(answers, name) == (RUN_ONLY_DEV, set())
    assert [_keys(r) - RUN_ONLY_DEV for r in answers[DEV]["runs.list"]] == [
        _keys(r) for r in answers[OURS]["runs.list"]
    ]
    for side in (DEV, OURS):
        assert answers[side]["run.get"]["status"] == "success"
    # Both queue a second run of a thread by default.
    assert answers[DEV]["run.create"]["multitask_strategy"] == "enqueue"
    assert answers[OURS]["run.create"]["multitask_strategy"] == "enqueue"
    # The run keeps its request (a process that takes it over runs it from the record).
    assert answers[OURS]["run.get"]["kwargs"]["input"]["messages"][0]["content"]


def test_state_updates_answer_the_new_checkpoint(answers: dict[str, dict[str, Any]]) -> None:
    assert _differ(answers, "update") == (UPDATE_ONLY_DEV, set())
    dev, ours = answers[DEV]["update"]["checkpoint"], answers[OURS]["update"]["checkpoint"]
    assert _keys(ours) - _keys(dev) == CHECKPOINT_ONLY_OURS
    assert ours["checkpoint_id"]


def test_store_items_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    assert _differ(answers, "store.get") == (set(), set())
    dev, ours = answers[DEV]["store.search"], answers[OURS]["store.search"]
    assert _keys(dev) == _keys(ours) == {"items"}
    assert [_keys(i) for i in dev["items"]] == [_keys(i) for i in ours["items"]]
    assert ours["items"][0]["namespace"] == ["parity", "notes"]
    assert answers[DEV]["store.namespaces"] == answers[OURS]["store.namespaces"]
    for side in (DEV, OURS):
        item = answers[side]["store.get"]
        assert (item["namespace"], item["key"], item["value"]) == (
            ["parity", "notes"],
            "first",
            {"content": "hello"},
        )


def test_step_events_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    """`tasks`, `checkpoints` and `debug`, as Studio-style tools stream them: the same events
    in the same order with the same fields; a checkpoint's config carries the client's ids
    (langgraph-api also copies the deployment's request and auth entries into it)."""
    dev, ours = answers[DEV]["stream.steps"], answers[OURS]["stream.steps"]
    assert [n for n, _ in ours] == [n for n, _ in dev]
    assert {n for n, _ in ours} == {"metadata", "tasks", "checkpoints", "debug"}
    kinds = [(d["type"], d["step"]) for n, d in dev if n == "debug"]
    assert kinds == [(d["type"], d["step"]) for n, d in ours if n == "debug"]
    assert {k for k, _ in kinds} == {"checkpoint", "task", "task_result"}
    tid = answers[OURS]["stream.steps.thread"]
    for (name, d), (_, o) in zip(dev, ours, strict=True):
        if name == "metadata":
            continue
        if name == "debug":
            assert _keys(d) == _keys(o)
            d, o = d["payload"], o["payload"]
        assert _keys(d) == _keys(o), name
        if "config" in o:  # a checkpoint
            conf = o["config"]["configurable"]
            assert conf["thread_id"] == tid and conf["checkpoint_ns"] == ""
            assert set(conf) <= set(d["config"]["configurable"])
            assert o["next"] == d["next"]
            assert [t["name"] for t in o["tasks"]] == [t["name"] for t in d["tasks"]]
            assert _keys(d["values"]) - VALUES_ONLY_DEV <= _keys(o["values"])
            if "checkpoint" in o:
                assert o["checkpoint"]["checkpoint_id"] == conf["checkpoint_id"]
                assert o["checkpoint"]["thread_id"] == tid
        elif "input" in o:  # a task starting
            assert o["name"] == d["name"] and o["triggers"] == d["triggers"]
            assert o["metadata"]["run_id"] == ours[0][1]["run_id"]
            assert set(o["metadata"]) <= set(d["metadata"])
        else:  # a task's result
            assert o["name"] == d["name"] and o["error"] is None and o["interrupts"] == []
            assert _keys(o["result"]) == _keys(d["result"])


def test_older_messages_events_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    """The older `messages` mode: each message's metadata once, then the message so far
    after each chunk (or whole when it comes whole), in the same order as langgraph-api."""
    dev, ours = answers[DEV]["stream.messages"], answers[OURS]["stream.messages"]
    assert [n for n, _ in ours] == [n for n, _ in dev]
    names = {n for n, _ in ours}
    assert {"messages/metadata", "messages/partial", "updates"} <= names
    seen: set[str] = set()
    for (name, d), (_, o) in zip(dev, ours, strict=True):
        if name == "messages/metadata":
            ((key, meta),) = o.items()
            ((_, dev_meta),) = d.items()
            assert key not in seen  # once per message
            seen.add(key)
            assert {"langgraph_node", "run_id", "thread_id"} <= set(meta["metadata"])
            assert set(meta["metadata"]) <= set(dev_meta["metadata"])
        elif name.startswith("messages/"):
            ((message,),) = (o,)
            ((dev_message,),) = (d,)
            assert message["id"] in seen
            assert _keys(message) == _keys(dev_message)
            assert message["type"] == dev_message["type"]
    partials = [o[0]["content"] for n, o in ours if n == "messages/partial"]
    # Each partial is the one before it and more: the message so far.
    firsts = [p for p in partials if p]
    assert all(b.startswith(a) for a, b in itertools.pairwise(firsts[:-1]) if a)
    replies = [o for n, o in ours if n == "updates" and "call_model" in o]
    final = replies[-1]["call_model"]["messages"][-1]["content"]
    assert final in partials


def _event_name(name: str, data: Any) -> Any:
    return (data["event"], data["name"]) if name == "events" else name


def test_callback_events_have_the_same_shape(answers: dict[str, dict[str, Any]]) -> None:
    """`events`: every callback event of the graph's runnables (its nodes, the chat model),
    in the same order and with the same fields as langgraph-api sends them, the graph's own
    parts beside them."""
    dev, ours = answers[DEV]["stream.events"], answers[OURS]["stream.events"]
    assert [_event_name(n, d) for n, d in ours] == [_event_name(n, d) for n, d in dev]
    kinds = {d["event"] for n, d in ours if n == "events"}
    assert {"on_chain_start", "on_chain_end", "on_chat_model_stream"} <= kinds
    run_id = ours[0][1]["run_id"]
    for (name, d), (_, o) in zip(dev, ours, strict=True):
        if name != "events":
            continue
        assert _keys(o) == _keys(d), o["event"]
        assert set(o["metadata"]) <= set(d["metadata"])
        assert o["metadata"]["run_id"] == run_id
        assert o["metadata"]["thread_id"] == answers[OURS]["stream.events.thread"]
        if o["event"] == "on_chat_model_stream":
            assert o["data"]["chunk"]["content"] == d["data"]["chunk"]["content"]
