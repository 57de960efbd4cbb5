"""A `langgraph_sdk.Auth` object for tests: tokens `user:<tenant>:<id>`, anything else a 401."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None, headers: dict[bytes, bytes]) -> dict[str, str]:
    scheme, _, token = (authorization or "").partition(" ")
    kind, _, rest = token.partition(":")
    tenant, _, user = rest.partition(":")
    if scheme.lower() != "bearer" or kind != "user" or not user:
        raise Auth.exceptions.HTTPException(status_code=401, detail="no such user token")
    return {"identity": user, "tenant": tenant, "agent": headers.get(b"x-agent", b"").decode()}


not_auth = object()

no_handler = Auth()

wants_request = Auth()


@wants_request.authenticate
async def _needs_request(request: object) -> str:
    return "x"
