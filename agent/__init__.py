"""The memory agent: a LangGraph graph with summarised working memory and memory tools."""

from agent.context import Context
from agent.graph import RECURSION_LIMIT, build_graph, builder, graph
from agent.model import load_chat_model
from agent.offline import OFFLINE_NOTICE, OfflineChatModel
from agent.state import InputState, State

__all__ = [
    "OFFLINE_NOTICE",
    "RECURSION_LIMIT",
    "Context",
    "InputState",
    "OfflineChatModel",
    "State",
    "build_graph",
    "builder",
    "graph",
    "load_chat_model",
]
