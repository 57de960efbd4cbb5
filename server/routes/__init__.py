"""The HTTP routes, one module per resource, gathered into one router."""

from fastapi import APIRouter

from server.routes import health, memories, runs, threads, users

router = APIRouter()
for module in (health, threads, runs, memories, users):
    router.include_router(module.router)

__all__ = ["router"]
