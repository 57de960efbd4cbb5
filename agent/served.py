"""The graph `langgraph.json` serves: the built-in agent with `MEMORY_AGENT_TOOLS`, or the
graph `MEMORY_AGENT_GRAPH` names, compiled without persistence (the dev server adds its own)."""

from agent.loading import graph_factory
from agent.settings import AgentSettings

_settings = AgentSettings()
graph = graph_factory(tools=_settings.tools, graph=_settings.graph)(None, None)
