"""The store, as each client sees it: a namespace tree of its own inside its tenant and user.

A client's namespace `("a", "b")` is stored as `("client", tenant, user, "a", "b")` and
answered without the prefix, so no client reads or writes another's items nor the
agent's own records (transcripts, memories, sessions), which live under other roots.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response, status
from langgraph.store.base import PutOp

from agent.namespaces import Owner, label
from memory.errors import InvalidInputError
from memory.stores.values import StoreValueError, check_put
from server.deps import BackendsDep, OwnerDep, PolicyDep
from server.langgraph_api.schemas import (
    DOTTED_NAMESPACE,
    StoreDelete,
    StoreNamespaces,
    StorePut,
    StoreSearch,
    check_namespace,
)
from server.langgraph_api.views import LangGraphJSON
from server.schemas import errors
from server.sdk_auth import Policy

router = APIRouter(tags=["langgraph: store"])

#: The root of every client's namespaces.
CLIENT_ROOT = "client"


def _base(owner: Owner) -> tuple[str, ...]:
    return (CLIENT_ROOT, label(owner.tenant), label(owner.user))


def _inside(owner: Owner, namespace: list[str] | tuple[str, ...], field: str) -> tuple[str, ...]:
    return (*_base(owner), *check_namespace(namespace, field))


async def _asked(policy: Policy, action: str, namespace: Any, **value: Any) -> tuple[str, ...]:
    """The namespace the store handler leaves for `action` (handlers scope the store by
    rewriting it, as with LangGraph's server)."""
    asked = {"namespace": tuple(namespace), **value}
    await policy.check("store", action, asked)
    return tuple(asked["namespace"])


def _item(owner: Owner, item: Any) -> dict[str, Any]:
    out = item.dict()
    out["namespace"] = list(item.namespace[len(_base(owner)) :])
    return out


@router.put("/store/items", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 413, 422))
async def put_item(
    body: StorePut, owner: OwnerDep, policy: PolicyDep, backends: BackendsDep
) -> Response:
    """Store or replace an item in one of the caller's namespaces (`ttl` is not applied)."""
    asked = await _asked(
        policy, "put", body.namespace, key=body.key, value=body.value, index=body.index
    )
    namespace = _inside(owner, asked, "namespace")
    index = body.index
    try:
        check_put(PutOp(namespace, body.key, body.value, index=index))
    except StoreValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    await backends.store.aput(namespace, body.key, body.value, index=index)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/store/items", response_class=LangGraphJSON, responses=errors(401, 422))
async def get_item(
    owner: OwnerDep,
    policy: PolicyDep,
    backends: BackendsDep,
    key: str = Query(min_length=1, max_length=1024),
    namespace: str = Query(
        default="",
        max_length=2000,
        description="Labels joined by dots.",
        json_schema_extra={"pattern": DOTTED_NAMESPACE},
    ),
) -> LangGraphJSON:
    """One item, or null when absent."""
    labels = namespace.split(".") if namespace else []
    asked = await _asked(policy, "get", labels, key=key)
    item = await backends.store.aget(_inside(owner, asked, "namespace"), key)
    return LangGraphJSON(None if item is None else _item(owner, item))


@router.delete("/store/items", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 422))
async def delete_item(
    body: StoreDelete, owner: OwnerDep, policy: PolicyDep, backends: BackendsDep
) -> Response:
    """Delete an item (absent ones too)."""
    asked = await _asked(policy, "delete", body.namespace, key=body.key)
    await backends.store.adelete(_inside(owner, asked, "namespace"), body.key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/store/items/search", response_class=LangGraphJSON, responses=errors(401, 422))
async def search_items(
    owner: OwnerDep, policy: PolicyDep, backends: BackendsDep, body: StoreSearch | None = None
) -> LangGraphJSON:
    """Items under a namespace prefix: filtered, and by meaning when `query` is given."""
    body = body or StoreSearch()
    asked = await _asked(
        policy,
        "search",
        body.namespace_prefix,
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
        query=body.query,
    )
    items = await backends.store.asearch(
        _inside(owner, asked, "namespace_prefix"),
        query=body.query or None,
        filter=body.filter,
        limit=body.limit,
        offset=body.offset,
    )
    return LangGraphJSON({"items": [_item(owner, i) for i in items]})


@router.post("/store/namespaces", response_class=LangGraphJSON, responses=errors(401, 422))
async def list_namespaces(
    owner: OwnerDep, policy: PolicyDep, backends: BackendsDep, body: StoreNamespaces | None = None
) -> LangGraphJSON:
    """The caller's namespaces, by prefix, suffix and depth."""
    body = body or StoreNamespaces()
    base = _base(owner)
    asked = await _asked(
        policy,
        "list_namespaces",
        body.prefix or [],
        suffix=body.suffix,
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
    )
    found = await backends.store.alist_namespaces(
        prefix=_inside(owner, asked, "prefix"),
        suffix=check_namespace(body.suffix, "suffix") if body.suffix else None,
        max_depth=len(base) + body.max_depth if body.max_depth else None,
        limit=body.limit,
        offset=body.offset,
    )
    return LangGraphJSON({"namespaces": [list(ns[len(base) :]) for ns in found]})
