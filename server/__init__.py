"""The HTTP server and the command line of memory-agent."""

from memory.settings import Settings
from server.app import create_app

__all__ = ["Settings", "create_app"]
