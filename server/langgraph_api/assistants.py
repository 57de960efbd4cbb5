"""Assistants (the one agent graph) and the server's own description."""

from __future__ import annotations

from typing import Any

import langgraph.version
from fastapi import APIRouter, Query

from memory.errors import NotFoundError
from server.deps import OwnerDep, SessionsDep
from server.langgraph_api import views
from server.langgraph_api.schemas import AssistantId, AssistantSearch
from server.langgraph_api.views import LangGraphJSON
from server.schemas import errors

router = APIRouter(tags=["langgraph: assistants"])


def _check(assistant_id: str) -> None:
    if not views.is_assistant(assistant_id):
        raise NotFoundError(f"assistant {assistant_id!r} not found")


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
    owner: OwnerDep, sessions: SessionsDep, body: AssistantSearch | None = None
) -> LangGraphJSON:
    """The agent, when it matches the filters."""
    body = body or AssistantSearch()
    found = views.assistant(sessions.graph)
    matches = (
        (body.graph_id in (None, views.GRAPH_ID))
        and (body.name in (None, found["name"]))
        and views.metadata_matches(found["metadata"], body.metadata)
    )
    items = [found] if matches else []
    return LangGraphJSON(items[body.offset : body.offset + body.limit])


@router.post("/assistants/count", response_class=LangGraphJSON, responses=errors(401, 422))
async def count_assistants(
    owner: OwnerDep, sessions: SessionsDep, body: AssistantSearch | None = None
) -> LangGraphJSON:
    """How many assistants match the filters (the agent, or none)."""
    body = body or AssistantSearch()
    found = views.assistant(sessions.graph)
    matches = body.graph_id in (None, views.GRAPH_ID) and views.metadata_matches(
        found["metadata"], body.metadata
    )
    return LangGraphJSON(int(matches))


@router.get("/assistants/{assistant_id}", response_class=LangGraphJSON, responses=errors(401, 404))
async def get_assistant(
    assistant_id: AssistantId, owner: OwnerDep, sessions: SessionsDep
) -> LangGraphJSON:
    """The agent, by graph id (`agent`) or assistant id."""
    _check(assistant_id)
    return LangGraphJSON(views.assistant(sessions.graph))


@router.get(
    "/assistants/{assistant_id}/graph", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_graph(
    assistant_id: AssistantId,
    owner: OwnerDep,
    sessions: SessionsDep,
    xray: bool | int = Query(default=False, description="Include subgraphs (there are none)."),
) -> LangGraphJSON:
    """The graph's nodes and edges."""
    _check(assistant_id)
    return LangGraphJSON(sessions.graph.get_graph(xray=xray).to_json())


@router.get(
    "/assistants/{assistant_id}/schemas", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_schemas(
    assistant_id: AssistantId, owner: OwnerDep, sessions: SessionsDep
) -> LangGraphJSON:
    """JSON schemas of the graph's input, output, state and context."""
    _check(assistant_id)
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
    assistant_id: AssistantId, owner: OwnerDep, sessions: SessionsDep
) -> LangGraphJSON:
    """The graph's subgraphs: none."""
    _check(assistant_id)
    return LangGraphJSON({})
