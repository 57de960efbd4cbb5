"""The caller's own account: erasing everything stored about them."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.deps import OwnerDep, SessionsDep
from server.schemas import errors

router = APIRouter(tags=["users"])


@router.delete("/users/me", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 409))
async def erase_me(owner: OwnerDep, sessions: SessionsDep) -> Response:
    """Erase every thread, transcript and memory of the caller."""
    await sessions.aerase(owner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
