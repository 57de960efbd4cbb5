"""The graph `langgraph.json` serves: the built-in agent with `MEMORY_AGENT_TOOLS`, or the
graph `MEMORY_AGENT_GRAPH` names, compiled without persistence (the dev server adds its own)."""

from agent.loading import graph_factory
from memory.settings import Settings

_settings = Settings()
graph = graph_factory(tools=_settings.tools, graph=_settings.graph)(None, None)
