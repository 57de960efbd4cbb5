"""A `langgraph_sdk.Auth` object with `on` handlers, served alike by memory-agent
(`MEMORY_AGENT_AUTH=tests.authpolicy:auth`) and `langgraph dev` (`auth.path`).

Tokens are `user:<tenant>:<id>:<org>[:admin]`: the user works in one org at a time; what
they make carries the org, they see only their org's, only an admin deletes threads, and
each user's store items live under their own id."""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> dict[str, Any]:
    scheme, _, token = (authorization or "").partition(" ")
    parts = token.split(":")
    if scheme.lower() != "bearer" or len(parts) < 4 or parts[0] != "user":
        raise Auth.exceptions.HTTPException(status_code=401, detail="no such user token")
    _, tenant, user, org, *roles = parts
    return {"identity": user, "tenant": tenant, "org": org, "permissions": [*roles]}


@auth.on
async def same_org(ctx: Auth.types.AuthContext, value: Any) -> dict[str, Any]:
    """What a user makes carries their org; what they read must be of it."""
    filters = {"org": ctx.user["org"]}
    if ctx.action in ("create", "create_run"):
        metadata = value.setdefault("metadata", {})
        if metadata is None:
            metadata = value["metadata"] = {}
        metadata.update(filters)
    return filters


@auth.on.threads.delete
async def admins_delete(ctx: Auth.types.AuthContext, value: Any) -> Any:
    assert "admin" in ctx.permissions, "only an admin deletes threads"
    return {"org": ctx.user.org}


@auth.on.assistants
async def assistants_for_all(ctx: Auth.types.AuthContext, value: Any) -> None:
    return None


@auth.on.store
async def own_items(ctx: Auth.types.AuthContext, value: Any) -> None:
    value["namespace"] = (ctx.user.identity, *(value.get("namespace") or ()))
