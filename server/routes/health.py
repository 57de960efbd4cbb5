"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from memory.stores.factory import Backends, backend_urls, scheme_of
from memory.stores.outages import within
from server.schemas import Health, Readiness

router = APIRouter(tags=["health"])

#: Longest a readiness probe waits for one backend: `/readyz` answers within a second.
PROBE_TIMEOUT_SECONDS = 0.9
_PROBE_THREAD = "readyz-probe"


async def _probe(name: str, kind: str, check: Any) -> tuple[str, dict[str, Any]]:
    try:
        await within(check, PROBE_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure of the backend means "not ready", with its reason
        reason = str(exc) or f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
        return name, {"backend": kind, "ok": False, "error": f"{type(exc).__name__}: {reason}"}
    return name, {"backend": kind, "ok": True}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "A backend is unreachable, or the process is stopping.",
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Each backend is reachable, reported by name (503 when one is not, while the
    database has not been reached since the start, and once the process is stopping)."""
    backends: Backends | None = getattr(request.app.state, "backends", None)
    if getattr(request.app.state, "stopping", False):  # SIGTERM came: send no new work
        body = Readiness(status="stopping", backends={})
        return JSONResponse(body.model_dump(), status_code=503)
    if backends is None:
        database_url, store_url = backend_urls(request.app.state.settings)
        down = {"ok": False, "error": request.app.state.connector.reason}
        body = Readiness(
            status="unavailable",
            backends={
                "checkpointer": {"backend": scheme_of(database_url), **down},
                "store": {"backend": scheme_of(store_url), **down},
            },
        )
        return JSONResponse(body.model_dump(), status_code=503)
    results = dict(
        await asyncio.gather(
            _probe(
                "checkpointer",
                backends.name,
                backends.checkpointer.aget_tuple({"configurable": {"thread_id": _PROBE_THREAD}}),
            ),
            _probe("store", backends.store_name, backends.store.asearch(("readyz",), limit=1)),
        )
    )
    ok = all(r["ok"] for r in results.values())
    body = Readiness(status="ok" if ok else "unavailable", backends=results)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
