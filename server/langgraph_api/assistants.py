"""Assistants (the one agent graph) and the server's own description."""

from __future__ import annotations

from typing import Any

import langgraph.version
from fastapi import APIRouter, Query

from memory.errors import NotFoundError
from server.deps import OwnerDep, PolicyDep, SessionsDep
from server.langgraph_api import views
from server.langgraph_api.schemas import AssistantId, AssistantSearch
from server.langgraph_api.views import LangGraphJSON
from server.schemas import errors
from server.sdk_auth import Policy, matches

router = APIRouter(tags=["langgraph: assistants"])


async def _check(assistant_id: str, policy: Policy, sessions: Any) -> None:
    """The assistant exists, and the `assistants` read handler lets the caller see it."""
    if not views.is_assistant(assistant_id):
        raise NotFoundError(f"assistant {assistant_id!r} not found")
    wanted = await policy.check("assistants", "read", {"assistant_id": assistant_id})
    if not matches(views.assistant(sessions.graph)["metadata"], wanted):
        raise NotFoundError(f"assistant {assistant_id!r} not found")


async def _searched(policy: Policy, body: AssistantSearch) -> Any:
    asked = {"graph_id": body.graph_id, "metadata": body.metadata, "limit": body.limit}
    asked["offset"] = body.offset
    return await policy.check("assistants", "search", asked)


@router.get("/info", responses=errors(401))
async def info(owner: OwnerDep) -> dict[str, Any]:
    """What this server is and which optional features it has.

    Behind the key when keys are on, as a hosted LangGraph server answers it: clients (the
    SDK's callers, agent-chat-ui) check the connection with this call, and a wrong key
    must fail it rather than show an empty, silently refused app.
    """
    del owner
    return {
        "version": "0.1.0",
        "langgraph_py_version": langgraph.version.__version__,
        "flags": {"assistants": True, "crons": False, "langsmith": False},
        "host": {"kind": "memory-agent"},
    }


@router.get("/ok")
async def ok() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}


@router.post("/assistants/search", response_class=LangGraphJSON, responses=errors(401, 422))
async def search_assistants(
    owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep, body: AssistantSearch | None = None
) -> LangGraphJSON:
    """The agent, when it matches the filters."""
    body = body or AssistantSearch()
    wanted = await _searched(policy, body)
    found = views.assistant(sessions.graph)
    hit = (
        (body.graph_id in (None, views.GRAPH_ID))
        and (body.name in (None, found["name"]))
        and views.metadata_matches(found["metadata"], body.metadata)
        and matches(found["metadata"], wanted)
    )
    items = [found] if hit else []
    return LangGraphJSON(items[body.offset : body.offset + body.limit])


@router.post("/assistants/count", response_class=LangGraphJSON, responses=errors(401, 422))
async def count_assistants(
    owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep, body: AssistantSearch | None = None
) -> LangGraphJSON:
    """How many assistants match the filters (the agent, or none)."""
    body = body or AssistantSearch()
    wanted = await _searched(policy, body)
    found = views.assistant(sessions.graph)
    hit = (
        body.graph_id in (None, views.GRAPH_ID)
        and views.metadata_matches(found["metadata"], body.metadata)
        and matches(found["metadata"], wanted)
    )
    return LangGraphJSON(int(hit))


@router.get("/assistants/{assistant_id}", response_class=LangGraphJSON, responses=errors(401, 404))
async def get_assistant(
    assistant_id: AssistantId, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep
) -> LangGraphJSON:
    """The agent, by graph id (`agent`) or assistant id."""
    await _check(assistant_id, policy, sessions)
    return LangGraphJSON(views.assistant(sessions.graph))


@router.get(
    "/assistants/{assistant_id}/graph", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_graph(
    assistant_id: AssistantId,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    xray: bool | int = Query(default=False, description="Include subgraphs (there are none)."),
) -> LangGraphJSON:
    """The graph's nodes and edges."""
    await _check(assistant_id, policy, sessions)
    return LangGraphJSON(sessions.graph.get_graph(xray=xray).to_json())


@router.get(
    "/assistants/{assistant_id}/schemas", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_schemas(
    assistant_id: AssistantId, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep
) -> LangGraphJSON:
    """JSON schemas of the graph's input, output, state and context."""
    await _check(assistant_id, policy, sessions)
    graph = sessions.graph
    output = graph.get_output_jsonschema()
    return LangGraphJSON(
        {
            "graph_id": views.GRAPH_ID,
            "input_schema": graph.get_input_jsonschema(),
            "output_schema": output,
            "state_schema": output,
            "config_schema": graph.get_config_jsonschema(),
            "context_schema": graph.get_context_jsonschema(),
        }
    )


@router.get(
    "/assistants/{assistant_id}/subgraphs",
    response_class=LangGraphJSON,
    responses=errors(401, 404),
)
async def get_subgraphs(
    assistant_id: AssistantId, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep
) -> LangGraphJSON:
    """The graph's subgraphs: none."""
    await _check(assistant_id, policy, sessions)
    return LangGraphJSON({})
