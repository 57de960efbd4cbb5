"""The HTTP routes, one module per resource, gathered into one router."""

from fastapi import APIRouter

from server.routes import config, health, memories, runs, threads, ui, users

router = APIRouter()
for module in (health, config, threads, runs, memories, users, ui):
    router.include_router(module.router)

__all__ = ["router"]
