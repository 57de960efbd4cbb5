"""The application's `Auth` `on` handlers applied to `/langgraph` routes, as LangGraph's
server applies them: each thread route asks the `threads` handler for its action, and a
thread whose metadata fails the filter it returns answers like a missing one."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from agent.namespaces import Owner
from memory.errors import NotFoundError
from memory.sessions import SessionManager
from server.deps import OwnerDep, PolicyDep, SessionsDep
from server.langgraph_api import views
from server.sdk_auth import Filter, Policy, matches

#: Thread routes (by what follows `/threads/{id}`) whose POST reads, or changes, the thread.
_POST_READS = ("/history", "/state/checkpoint", "/copy")
#: Routes that ask `create_run` themselves (with the run's fields).
_RUNS = ("/runs", "/runs/stream", "/runs/wait")


def _action(method: str, rest: str) -> str | None:
    if method in ("GET", "HEAD"):
        return "read"
    if method == "DELETE":
        return "delete"
    if method == "PATCH":
        return "update"
    if rest in _RUNS:
        return None
    if rest in _POST_READS:
        return "read"
    return "update"  # a state update, a run's cancel


async def thread_route(
    request: Request, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep
) -> None:
    """A router dependency: the thread route's action, asked of the `threads` handler."""
    thread_id = request.path_params.get("thread_id")
    if not policy.active or thread_id is None:
        return
    rest = request.url.path.split(f"/threads/{thread_id}", 1)[-1]
    action = _action(request.method, rest)
    if action is None:
        return
    value: dict[str, Any] = {"thread_id": thread_id, "run_id": request.path_params.get("run_id")}
    await thread(policy, owner, sessions, thread_id, action, value)


async def thread(
    policy: Policy,
    owner: Owner,
    sessions: SessionManager,
    thread_id: str,
    action: str,
    value: dict[str, Any],
) -> Filter | None:
    """Ask the `threads` handler about `action` on the thread; when it answers a filter
    the thread's metadata fails, the thread is not found. A thread not there yet passes."""
    wanted = await policy.check("threads", action, value)
    if wanted:
        try:
            record = await sessions.aget(owner, thread_id)
        except NotFoundError:
            return wanted
        if not matches(views.thread_metadata(record), wanted):
            raise NotFoundError(f"thread {thread_id!r} not found")
    return wanted


# -- the native API: the same `threads` handlers on its session routes ------------------

#: Native routes (by what follows `/threads/{id}`) that start a run.
_NATIVE_RUNS = ("/runs", "/runs/stream")


def _native_action(method: str, rest: str) -> str:
    if method in ("GET", "HEAD"):
        return "read"
    if method == "POST" and rest in _NATIVE_RUNS:
        return "create_run"
    if method == "DELETE" and rest == "":
        return "delete"
    return "update"  # appends, undo, end, summary and session-memory writes


async def native_thread_route(
    request: Request, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep
) -> None:
    """A router dependency of the native API: its thread routes ask the `threads`
    handler as the LangGraph routes do; a run asks `create_run` (see `native_run`)."""
    thread_id = request.path_params.get("thread_id")
    if not policy.active or thread_id is None:
        return
    rest = request.url.path.split(f"/threads/{thread_id}", 1)[-1]
    action = _native_action(request.method, rest)
    if action == "create_run":
        await native_run(policy, owner, sessions, thread_id)
        return
    value: dict[str, Any] = {"thread_id": thread_id, "run_id": request.path_params.get("run_id")}
    await thread(policy, owner, sessions, thread_id, action, value)


async def native_run(
    policy: Policy, owner: Owner, sessions: SessionManager, thread_id: str
) -> None:
    """A native run on the thread, asked of the `threads` `create_run` handler; a thread
    the run creates holds the metadata the handler gave the run (its owner's org, say)."""
    if not policy.active:
        return
    asked: dict[str, Any] = {
        "thread_id": thread_id,
        "assistant_id": views.GRAPH_ID,
        "run_id": None,
        "status": "pending",
        "metadata": {},
        "prevent_insert_if_inflight": True,
        "multitask_strategy": "reject",
        "if_not_exists": "create",
        "after_seconds": None,
        "kwargs": {},
    }
    await thread(policy, owner, sessions, thread_id, "create_run", asked)
    if asked.get("metadata"):
        await sessions.aget_or_create(owner, thread_id, asked["metadata"])
