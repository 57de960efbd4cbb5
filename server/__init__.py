"""The HTTP server and the command line of memory-agent."""

from server.app import create_app
from server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
