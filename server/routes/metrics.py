"""`GET /metrics`: the Prometheus metrics of every process of this server."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from server import metrics
from server.deps import get_owner

# An API key is needed when keys are set, as on every other route.
router = APIRouter(include_in_schema=False, dependencies=[Depends(get_owner)])


@router.get("/metrics")
def get_metrics() -> Response:
    """The metrics in Prometheus text format (in a worker thread: with several processes
    it reads their files)."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
