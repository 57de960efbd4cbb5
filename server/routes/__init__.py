"""The HTTP routes, one module per resource.

The app includes each module's router directly: a router nested in another costs one
more level of matching on every request.
"""

from fastapi import APIRouter

from server.routes import config, health, memories, runs, threads, ui, users

#: The routers in matching order; runs and threads first, as most requests are theirs.
ROUTERS: list[APIRouter] = [m.router for m in (runs, threads, memories, health, config, users, ui)]

__all__ = ["ROUTERS"]
