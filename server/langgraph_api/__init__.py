"""The LangGraph server API under `/langgraph`: what langgraph-sdk, RemoteGraph and
useStream chat UIs call, served over the same session service as the native routes."""

from fastapi import APIRouter

from server.langgraph_api import assistants, runs, store, threads
from server.langgraph_api.views import PREFIX

router = APIRouter(prefix=PREFIX)
for module in (assistants, threads, runs, store):
    router.include_router(module.router)

__all__ = ["PREFIX", "router"]
