"""The caller's own account: erasing everything stored about them."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import OwnerDep, SessionsDep
from server.schemas import Erased, errors

router = APIRouter(tags=["users"])


@router.delete("/users/me", response_model=Erased, responses=errors(401, 409))
async def erase_me(owner: OwnerDep, sessions: SessionsDep) -> Erased:
    """Erase every thread, transcript and memory of the caller."""
    return Erased.model_validate(await sessions.aerase(owner))
