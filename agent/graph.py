"""The agent graph: summarise, call the model, execute its tool calls, repeat until done."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime, get_runtime
from langgraph.store.base import BaseStore, Item, Op, PutOp, SearchItem, SearchOp
from langgraph.types import Checkpointer, interrupt

from agent import namespaces, prompts, transcript
from agent.context import Context
from agent.memories import Change, aupdate_item, update_item
from agent.model import load_chat_model
from agent.state import InputState, State
from agent.summarize import clip_summary, plan_fold, transcript_lines
from agent.tools import MEMORY_TOOLS, as_tools, plan_tool_calls
from agent.transcript import TRANSCRIPT_KEY, TranscriptSink, content_text

#: Hard cap on steps per run; the router stops the tool loop before reaching it.
RECURSION_LIMIT = 25
_STEP_RESERVE = 3


@dataclass
class _Batch:
    ops: Sequence[Op]
    #: Memory writes: each put applied through the store's atomic update of its item, so it
    #: is ordered with concurrent patches of that memory from any run or process.
    atomic: bool = False


@dataclass
class _Invoke:
    messages: list[BaseMessage]
    #: Tools bound to the model (None: none, and the reply is not streamed).
    tools: tuple[BaseTool, ...] | None
    stream: bool


@dataclass
class _RunTools:
    """Application tool calls to execute, each within `timeout` seconds."""

    calls: list[tuple[BaseTool, ToolCall]]
    timeout: float


@dataclass
class _Append:
    """Transcript records for the run's sink, fenced by the run's lease token."""

    sink: TranscriptSink
    thread_key: str
    start: int
    records: list[dict[str, Any]]
    token: str | None


# Each node is written once as a generator that yields the I/O it needs (store batches,
# transcript appends and model calls) and returns its state update; `_drive` and `_adrive`
# perform that I/O with the sync or async APIs, so `invoke` and `ainvoke` share every line
# of node logic.
_Steps = Generator[_Batch | _Invoke | _Append | _RunTools, Any, dict[str, Any]]

#: The `configurable` key under which the session service passes a run's lease token;
#: keys starting with `__` stay out of checkpoint metadata.
LEASE_KEY = "__memory_agent_lease"


@dataclass(frozen=True)
class _Where:
    """Where a node's run records its transcript and memories."""

    thread_key: str | None
    has_store: bool
    #: Where transcripts go when the run was given one (the session service passes its
    #: session database); without one, transcripts go into the store in blocks.
    sink: TranscriptSink | None
    token: str | None


def _where(config: RunnableConfig, store: BaseStore | None) -> _Where:
    configurable = config.get("configurable") or {}
    return _Where(
        thread_key=configurable.get("thread_id"),
        has_store=store is not None,
        sink=transcript.sink_for(configurable.get(TRANSCRIPT_KEY), store),
        token=configurable.get(LEASE_KEY),
    )


def _record(
    state: State, where: _Where, new: Sequence[BaseMessage]
) -> Generator[_Batch, Any, tuple[list[_Batch | _Append], dict[str, Any]]]:
    """The requests and state update that append `new` to the transcript."""
    if not new:
        return [], {}
    start = state.get("transcript_len", 0)
    update = {"transcript_len": start + len(new), "recorded_id": new[-1].id}
    if not (where.thread_key and where.has_store):
        return [], update
    if where.sink is not None:
        records = [transcript.message_to_record(m, start + i) for i, m in enumerate(new)]
        return [_Append(where.sink, where.thread_key, start, records, where.token)], update
    prepare = transcript.prepare_ops(where.thread_key, start)
    found = (yield _Batch(prepare)) if prepare else []
    return [_Batch(transcript.record_ops(where.thread_key, start, new, found))], update


def _summarize_steps(state: State, ctx: Context, where: _Where) -> _Steps:
    new = transcript.unrecorded(state)
    requests, update = yield from _record(state, where, new)
    for request in requests:  # noqa: UP028 - the driver sends results back
        yield request
    messages = state["messages"]
    keep = int(ctx.token_budget * ctx.keep_ratio)
    cut = plan_fold(messages, ctx.token_budget, keep)
    if cut == 0:
        return update
    folded = messages[:cut]
    ask = (
        f"Existing summary:\n{state.get('summary') or prompts.NONE}\n\n"
        f"Conversation:\n{transcript_lines(folded)}"
    )
    instruction = prompts.SUMMARY_PROMPT.format(max_words=int(ctx.summary_max_tokens * 0.7))
    reply = yield _Invoke([SystemMessage(instruction), HumanMessage(ask)], None, False)
    summary = clip_summary(content_text(reply.content).strip(), ctx.summary_max_tokens)
    update["summary"] = summary
    update["messages"] = [RemoveMessage(id=m.id) for m in folded if m.id]
    return update


def _format_memories(items: Sequence[Item | SearchItem]) -> str:
    lines = [f"- [{i.key}] {i.value.get('content', '')}" for i in items]
    return "\n".join(lines) or prompts.NONE


def _answer_interrupted(messages: Sequence[BaseMessage]) -> list[AIMessage]:
    """Replacements for assistant messages whose tool calls were never answered.

    A process killed between the model's tool call and its execution leaves the call in
    the window; the next run starts from new input, so the call would stay unanswered and
    a provider rejects such a history. The model is about to be called, so every call
    before this point should have its results: each unanswered one is dropped from its
    message, which says that the call was interrupted.
    """
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    fixed = []
    for message in messages:
        if not isinstance(message, AIMessage) or not message.tool_calls:
            continue
        missing = [c for c in message.tool_calls if c["id"] not in answered]
        if not missing:
            continue
        names = ", ".join(c["name"] for c in missing)
        note = f"(interrupted before these tool calls ran: {names})"
        text = content_text(message.content)
        fixed.append(
            AIMessage(
                id=message.id,
                content=f"{text} {note}".strip(),
                tool_calls=[c for c in message.tool_calls if c["id"] in answered],
                response_metadata=message.response_metadata,
            )
        )
    return fixed


def _record_steps(state: State, ctx: Context, where: _Where) -> _Steps:
    requests, update = yield from _record(state, where, transcript.unrecorded(state))
    for request in requests:  # noqa: UP028 - the driver sends results back
        yield request
    return update


def _call_model_steps(
    state: State,
    ctx: Context,
    where: _Where,
    *,
    tools: tuple[BaseTool, ...] = (),
    system_prompt: str | None = None,
) -> _Steps:
    repaired = _answer_interrupted(state["messages"])
    if repaired:
        by_id = {m.id: m for m in repaired}
        messages: list[BaseMessage] = [by_id.get(m.id, m) for m in state["messages"]]
    else:
        messages = list(state["messages"])
    query = next(
        (content_text(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), ""
    )
    user_items: list[SearchItem] = []
    session_items: list[SearchItem] = []
    thread_key = where.thread_key
    if where.has_store:
        searches: list[Op] = [
            SearchOp(
                namespaces.user_memories(ctx.tenant_id, ctx.user_id),
                query=query[:2000] or None,
                limit=ctx.memory_search_limit,
            )
        ]
        if thread_key:
            searches.append(
                SearchOp(
                    namespaces.session_memories(ctx.tenant_id, ctx.user_id, thread_key), limit=50
                )
            )
        found = yield _Batch(searches)
        user_items = found[0]
        session_items = found[1] if thread_key else []
    system = (system_prompt or ctx.system_prompt).format(
        user_memories=_format_memories(user_items),
        session_memories=_format_memories(session_items),
        summary=state.get("summary") or prompts.NONE,
    )
    reply: AIMessage = yield _Invoke([SystemMessage(system), *messages], tools, True)
    if reply.tool_calls and state.get("remaining_steps", RECURSION_LIMIT) <= _STEP_RESERVE:
        reply = AIMessage(content="Sorry, I ran out of steps for this turn before finishing.")
    if not reply.id:
        reply.id = f"ai-{uuid.uuid4()}"
    # The turn's new input is recorded here, with the reply, when no summarisation ran first.
    new = [*transcript.unrecorded(state), reply]
    requests, update = yield from _record(state, where, new)
    for request in requests:  # noqa: UP028 - the driver sends results back
        yield request
    return {"messages": [*repaired, reply], **update}


def _tool_error(call: ToolCall, text: str) -> ToolMessage:
    return ToolMessage(
        content=f"error: {text}", tool_call_id=call["id"] or "", name=call["name"], status="error"
    )


def _execute_tools_steps(
    state: State, ctx: Context, where: _Where, *, tools: tuple[BaseTool, ...] = ()
) -> _Steps:
    last = state["messages"][-1]
    calls = last.tool_calls if isinstance(last, AIMessage) else []
    thread_key = where.thread_key
    by_name = {t.name: t for t in tools}
    reviewed, refused = _review(calls, ctx, by_name)
    edited = [c for c, r in zip(calls, reviewed, strict=True) if c is not r]
    calls = [c for c in reviewed if c["id"] not in refused]
    memory_calls = [c for c in calls if c["name"] not in by_name]
    ops, memory_answers = plan_tool_calls(
        memory_calls, ctx.tenant_id, ctx.user_id, thread_key or ""
    )
    for answer in memory_answers:
        if not where.has_store or (thread_key is None and "session" in str(answer.content)):
            answer.content = "error: memory is unavailable in this run (no store or no thread)"
            answer.status = "error"
        elif answer.status == "error" and "unknown tool" in str(answer.content) and tools:
            known = ", ".join(["save_memory", "delete_memory", *by_name])
            answer.content = f"error: unknown tool {answer.name!r}; the tools are {known}"
    app_calls = [(by_name[c["name"]], c) for c in calls if c["name"] in by_name]
    app_answers: list[ToolMessage] = (
        (yield _RunTools(app_calls, ctx.tool_timeout_seconds)) if app_calls else []
    )
    # One answer per call, in the order of the calls.
    by_call = {id(c): a for c, a in zip(memory_calls, memory_answers, strict=True)}
    by_call.update({id(c): a for (_, c), a in zip(app_calls, app_answers, strict=True)})
    by_id = {c["id"]: by_call[id(c)] for c in calls} | refused
    answers = [by_id[c["id"]] for c in reviewed]
    for answer in answers:
        answer.id = f"tool-{uuid.uuid4()}"
    if where.has_store and ops:
        yield _Batch(ops, atomic=True)
    requests, update = yield from _record(state, where, answers)
    for request in requests:  # noqa: UP028 - the driver sends results back
        yield request
    if edited:  # the window holds the calls as they ran (the transcript, as the model made them)
        assert isinstance(last, AIMessage)
        return {
            "messages": [last.model_copy(update={"tool_calls": reviewed}), *answers],
            **update,
        }
    return {"messages": answers, **update}


#: What a person may answer to a call that waits for approval.
DECISIONS = ("approve", "edit", "reject")


def _review(
    calls: list[ToolCall], ctx: Context, by_name: dict[str, BaseTool]
) -> tuple[list[ToolCall], dict[str | None, ToolMessage]]:
    """Ask a person about the calls of the application tools `ctx.approve_tools` names.

    The run pauses (`interrupt`) with LangChain's human-in-the-loop request:
    `{"action_requests": [{name, args, description}], "review_configs": [{action_name,
    allowed_decisions}]}`, answered by `{"decisions": [...]}`, one per request in order:
    `{"type": "approve"}`, `{"type": "edit", "edited_action": {"name", "args"}}` (the call
    runs with those arguments) or `{"type": "reject", "message": ...}` (it does not run; the
    model reads why). An answer not understood rejects the call, saying so.

    Answers the calls as they will run and the results of those that will not, by call id.
    """
    wanted = set(ctx.approve_tools)
    pending = [
        i
        for i, c in enumerate(calls)
        if c["name"] in by_name and ("*" in wanted or c["name"] in wanted)
    ]
    if not pending:
        return list(calls), {}
    answer = interrupt(
        {
            "action_requests": [
                {
                    "name": calls[i]["name"],
                    "args": calls[i]["args"],
                    "description": f"{calls[i]['name']} waits for approval",
                }
                for i in pending
            ],
            "review_configs": [
                {"action_name": calls[i]["name"], "allowed_decisions": list(DECISIONS)}
                for i in pending
            ],
        }
    )
    decisions = answer.get("decisions") if isinstance(answer, dict) else None
    reviewed = list(calls)
    refused: dict[str | None, ToolMessage] = {}
    for n, i in enumerate(pending):
        call = calls[i]
        decision = decisions[n] if isinstance(decisions, list) and n < len(decisions) else None
        kind = decision.get("type") if isinstance(decision, dict) else None
        action = decision.get("edited_action") if isinstance(decision, dict) else None
        if kind == "approve":
            continue
        if kind == "edit" and isinstance(action, dict) and isinstance(action.get("args"), dict):
            reviewed[i] = {**call, "args": action["args"]}
            continue
        if kind == "reject":
            why = decision.get("message") if isinstance(decision, dict) else None
            reason = f"the user rejected it: {why}" if why else "the user rejected it"
        else:
            reason = (
                "the answer to its approval was not understood (expected decisions of "
                f"type {', '.join(DECISIONS)}, one per call)"
            )
        refused[call["id"]] = _tool_error(call, f"{call['name']} was not run: {reason}")
    return reviewed, refused


def _tool_answer(call: ToolCall, output: Any) -> ToolMessage:
    """The tool message of a finished call, whatever the tool returned."""
    if isinstance(output, ToolMessage):
        output.tool_call_id = call["id"] or ""
        output.name = output.name or call["name"]
        return output
    content = output if isinstance(output, str | list) else str(output)
    return ToolMessage(content=content, tool_call_id=call["id"] or "", name=call["name"])


def _failed(call: ToolCall, exc: BaseException, timeout: float) -> ToolMessage:
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
        return _tool_error(call, f"{call['name']} did not finish within {timeout:g} s")
    return _tool_error(call, f"{call['name']} failed: {type(exc).__name__}: {exc}")


def _tool_input(call: ToolCall) -> dict[str, Any]:
    return {**call, "type": "tool_call"}


def _call_sync(tool: BaseTool, call: ToolCall, config: RunnableConfig) -> Any:
    if getattr(tool, "func", True) is None and getattr(tool, "coroutine", None) is not None:
        return asyncio.run(tool.ainvoke(_tool_input(call), config))  # an async-only tool
    return tool.invoke(_tool_input(call), config)


def _run_tool(
    tool: BaseTool, call: ToolCall, timeout: float, config: RunnableConfig
) -> ToolMessage:
    # A worker thread of its own, so a tool that hangs is abandoned after `timeout`
    # instead of holding the turn.
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tool-{call['name']}")
    try:
        future = pool.submit(contextvars.copy_context().run, _call_sync, tool, call, config)
        return _tool_answer(call, future.result(timeout=timeout))
    except Exception as exc:  # any failure of the tool becomes its error result
        return _failed(call, exc, timeout)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def _arun_tool(
    tool: BaseTool, call: ToolCall, timeout: float, config: RunnableConfig
) -> ToolMessage:
    try:
        output = await asyncio.wait_for(tool.ainvoke(_tool_input(call), config), timeout)
        return _tool_answer(call, output)
    except Exception as exc:  # any failure of the tool becomes its error result
        return _failed(call, exc, timeout)


#: Bound models by (model identity, tools): converting the tool schemas on every call
#: cost about a millisecond a turn. The model and tools are kept with their binding so
#: their ids stay valid.
_BOUND: dict[tuple[int, tuple[int, ...] | None], tuple[Any, Any]] = {}
_BOUND_MAX = 64


def _model_for(ctx: Context, request: _Invoke, chat_model: BaseChatModel | None) -> Any:
    model = chat_model or load_chat_model(ctx.model)
    tools = request.tools
    key = (id(model), None if tools is None else tuple(id(t) for t in tools))
    cached = _BOUND.get(key)
    if cached is not None and cached[0][0] is model and cached[0][1] is tools:
        return cached[1]
    if tools is not None:
        bound = model.bind_tools([*MEMORY_TOOLS, *tools])
    else:
        bound = model.with_config(tags=[TAG_NOSTREAM])
    if len(_BOUND) >= _BOUND_MAX:
        _BOUND.clear()
    _BOUND[key] = ((model, tools), bound)
    return bound


def _replacing(op: PutOp) -> Change:
    """The change that gives an item the value `op` writes (None: delete it)."""
    return lambda _current: None if op.value is None else dict(op.value)


def _drive(
    steps: _Steps,
    store: BaseStore | None,
    ctx: Context,
    config: RunnableConfig,
    chat_model: BaseChatModel | None,
) -> dict[str, Any]:
    result: Any = None
    try:
        while True:
            request = steps.send(result)
            if isinstance(request, _Batch) and request.atomic and store is not None:
                result = [
                    update_item(store, op.namespace, op.key, _replacing(op))
                    for op in request.ops
                    if isinstance(op, PutOp)
                ]
            elif isinstance(request, _Batch):
                result = store.batch(request.ops) if store is not None else []
            elif isinstance(request, _Append):
                request.sink.append(
                    request.thread_key, request.start, request.records, request.token
                )
                result = None
            elif isinstance(request, _RunTools):
                result = [_run_tool(t, c, request.timeout, config) for t, c in request.calls]
            else:
                result = _model_for(ctx, request, chat_model).invoke(request.messages, config)
    except StopIteration as done:
        return done.value


async def _adrive(
    steps: _Steps,
    store: BaseStore | None,
    ctx: Context,
    config: RunnableConfig,
    chat_model: BaseChatModel | None,
) -> dict[str, Any]:
    result: Any = None
    try:
        while True:
            request = steps.send(result)
            if isinstance(request, _Batch) and request.atomic and store is not None:
                result = [
                    await aupdate_item(store, op.namespace, op.key, _replacing(op))
                    for op in request.ops
                    if isinstance(op, PutOp)
                ]
            elif isinstance(request, _Batch):
                result = await store.abatch(request.ops) if store is not None else []
            elif isinstance(request, _Append):
                await request.sink.aappend(
                    request.thread_key, request.start, request.records, request.token
                )
                result = None
            elif isinstance(request, _RunTools):
                result = await asyncio.gather(
                    *(_arun_tool(t, c, request.timeout, config) for t, c in request.calls)
                )
            else:
                result = await _model_for(ctx, request, chat_model).ainvoke(
                    request.messages, config
                )
    except StopIteration as done:
        return done.value


#: Marks the nodes that record the messages they add (every node made here).
RECORDS_TRANSCRIPT = "memory_agent_records_transcript"


def _node(name: str, steps_fn: Any, chat_model: BaseChatModel | None) -> RunnableLambda:
    """A graph node running `steps_fn` with the sync or async APIs, as the graph is run."""

    def sync_node(state: State, config: RunnableConfig) -> dict[str, Any]:
        runtime: Runtime[Context] = get_runtime(Context)
        ctx = runtime.context or Context()
        steps = steps_fn(state, ctx, _where(config, runtime.store))
        return _drive(steps, runtime.store, ctx, config, chat_model)

    async def async_node(state: State, config: RunnableConfig) -> dict[str, Any]:
        runtime: Runtime[Context] = get_runtime(Context)
        ctx = runtime.context or Context()
        steps = steps_fn(state, ctx, _where(config, runtime.store))
        return await _adrive(steps, runtime.store, ctx, config, chat_model)

    sync_node.__name__ = async_node.__name__ = name
    node = RunnableLambda(sync_node, afunc=async_node, name=name)
    setattr(node, RECORDS_TRANSCRIPT, True)
    return node


def _tools(tools: Iterable[Any]) -> tuple[BaseTool, ...]:
    return tuple(as_tools(list(tools)))


def summarize_conversation(
    chat_model: BaseChatModel | None = None, *, name: str = "summarize_conversation"
) -> RunnableLambda:
    """The summarisation node: records new input, then folds the oldest messages into
    `summary` when the window is over `Context.token_budget`, never between a tool call
    and its results.

    Args:
        chat_model: The model that writes the summary (default: the one `Context.model` names).
        name: The node's name.
    """
    return _node(name, _summarize_steps, chat_model)


def call_model(
    chat_model: BaseChatModel | None = None,
    *,
    tools: Iterable[Any] = (),
    system_prompt: str | None = None,
    name: str = "call_model",
) -> RunnableLambda:
    """The model node: assembles the prompt and records the new input and the reply.

    The prompt is the system prompt with its placeholders filled (`{user_memories}`: the
    user's memories most relevant to the last user message; `{session_memories}`: this
    thread's; `{summary}`: the running summary) followed by the working messages. The
    model is offered the memory tools and `tools`.

    Args:
        chat_model: The model (default: the one `Context.model` names).
        tools: The application's tools, offered beside the memory tools.
        system_prompt: A prompt of this graph's own, beating `Context.system_prompt`.
        name: The node's name; the session service streams tokens from and adds messages
            as the node named `call_model`.
    """
    bound = _tools(tools)

    def steps(state: State, ctx: Context, where: _Where) -> _Steps:
        return _call_model_steps(state, ctx, where, tools=bound, system_prompt=system_prompt)

    return _node(name, steps, chat_model)


def execute_tools(tools: Iterable[Any] = (), *, name: str = "execute_tools") -> RunnableLambda:
    """The tool node: executes the last reply's tool calls and records their results.

    Memory tools write to the user's or the thread's memory namespace; the application's
    `tools` are invoked (sync or async) within `Context.tool_timeout_seconds` each, in
    parallel when the graph runs async. Every call gets exactly one result, in order: an
    exception, a timeout, bad arguments or an unknown tool name become an error result
    (`status="error"`) the model can read, never a failed turn.

    Args:
        tools: The application's tools (the same list given to `call_model`).
        name: The node's name.
    """
    bound = _tools(tools)

    def steps(state: State, ctx: Context, where: _Where) -> _Steps:
        return _execute_tools_steps(state, ctx, where, tools=bound)

    return _node(name, steps, None)


def record_messages(*, name: str = "record_messages") -> RunnableLambda:
    """The recording node: appends the messages that entered the state since the last
    recording to the thread's transcript, and advances `transcript_len`/`recorded_id`.

    The other nodes made here record what they add; place this node after a node of
    your own that adds messages, before the run can end.
    """
    return _node(name, _record_steps, None)


def _needs_fold(state: State, ctx: Context) -> bool:
    keep = int(ctx.token_budget * ctx.keep_ratio)
    return plan_fold(state["messages"], ctx.token_budget, keep) > 0


def route_turn(state: State) -> Literal["summarize_conversation", "call_model"]:
    """Summarise first only when the working window is over the token budget.

    Most turns go straight to the model, so a turn writes one checkpoint per model call
    plus the input checkpoint, rather than one more for a summarisation that does nothing.
    """
    # `update_state` runs the router outside a run, where there is no runtime to read.
    runtime = get_runtime(Context)
    ctx = (runtime.context if runtime is not None else None) or Context()
    return "summarize_conversation" if _needs_fold(state, ctx) else "call_model"


def route_model_output(state: State) -> Literal["save_memories", "__end__"]:
    """Execute the model's tool calls, or end the turn when it made none.

    In a graph whose tool node has another name, map it:
    `add_conditional_edges("call_model", route_model_output, {"save_memories": "tools",
    "__end__": END})`.
    """
    # A thread that never ran has no messages: an update of its summary (`update_state`
    # as `call_model`) routes from here with an empty window, and ends.
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and last.tool_calls:
        return "save_memories"
    return "__end__"


def make_builder(
    chat_model: BaseChatModel | None = None,
    *,
    tools: Iterable[Any] = (),
    input_schema: type[Any] = InputState,
) -> StateGraph[Any, Any, Any, Any]:
    """The agent's graph builder.

    Args:
        chat_model: Overrides the model named in the context.
        tools: The application's tools, offered and executed beside the memory tools.
        input_schema: What a run accepts: new messages (the default), or the whole `State`.
    """
    bound = _tools(tools)
    builder = StateGraph(State, context_schema=Context, input_schema=input_schema)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=bound))
    builder.add_node(execute_tools(bound, name="save_memories"))
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges("call_model", route_model_output)
    builder.add_conditional_edges("save_memories", route_turn)
    return builder


builder = make_builder()


def build_graph(
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    *,
    chat_model: BaseChatModel | None = None,
    tools: Iterable[Any] = (),
) -> CompiledStateGraph:
    """Compile the agent with the given persistence.

    Args:
        checkpointer: Saver for the thread's working state (None: no persistence, as the
            `langgraph dev` server supplies its own).
        store: Store for memories, the transcript and the session registry.
        chat_model: A chat model instance to use instead of the one `Context.model` names
            (tests pass a scripted model here).
        tools: The application's tools (LangChain tools, or plain functions converted with
            `langchain_core.tools.tool`), offered to the model beside the memory tools.
    """
    bound = tuple(tools)
    graph_builder = (
        builder if chat_model is None and not bound else make_builder(chat_model, tools=bound)
    )
    return graph_builder.compile(checkpointer=checkpointer, store=store, name="memory-agent")


#: The built-in agent compiled without persistence (`agent/served.py` is what
#: `langgraph.json` serves: this graph, or the application's, as the settings say).
graph = build_graph()
