"""The server's configuration as a client needs it: the model in use and the caller."""

from __future__ import annotations

from fastapi import APIRouter, Request

from agent import OfflineChatModel
from agent.model import is_offline
from server.deps import OwnerDep, SettingsDep
from server.schemas import ServerConfig, errors

router = APIRouter(tags=["config"])


@router.get("/config", response_model=ServerConfig, responses=errors(401))
async def get_config(request: Request, owner: OwnerDep, settings: SettingsDep) -> ServerConfig:
    """The model in use (and whether it is the offline one), the mode and the caller."""
    chat_model = request.app.state.chat_model
    if chat_model is None:
        model, offline = settings.model, is_offline(settings.model)
    else:
        model, offline = type(chat_model).__name__, isinstance(chat_model, OfflineChatModel)
    return ServerConfig(
        model=model,
        offline=offline,
        dev_mode=request.app.state.auth.dev_mode,
        tenant=owner.tenant,
        user=owner.user,
        version=request.app.version,
    )
