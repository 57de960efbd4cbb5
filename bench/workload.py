"""The benchmark's conversation: fixed-size user turns and a recorder of model inputs."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from agent.graph import make_builder
from agent.state import State

_WORDS = [
    "the",
    "quarterly",
    "report",
    "covers",
    "revenue",
    "churn",
    "support",
    "tickets",
    "onboarding",
    "latency",
    "and",
    "roadmap",
    "items",
    "for",
    "the",
    "platform",
    "team",
    "together",
    "with",
    "notes",
    "from",
    "the",
    "weekly",
    "review",
]


def user_text(turn: int, size: int) -> str:
    """A user message of about `size` bytes that triggers no memory tool."""
    words = [f"Turn {turn}:"]
    i = turn
    while sum(len(w) + 1 for w in words) < size:
        words.append(_WORDS[i % len(_WORDS)])
        i += 7
    return " ".join(words)[:size]


class ModelInputs(BaseCallbackHandler):
    """Keeps what each model call was sent; tokens are counted later, outside the timing."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        """Record the prompt of one chat model call."""
        self.calls.extend(messages)

    def take_tokens(self) -> list[int]:
        """Approximate tokens of each call since the last take, and forget them."""
        tokens = [count_tokens_approximately(call) for call in self.calls]
        self.calls = []
        return tokens


def build_unpersisted_agent(store: BaseStore | None) -> CompiledStateGraph:
    """The agent's own nodes and edges, compiled without a checkpointer.

    Its input is the whole `State`, so the caller passes the working state a checkpoint
    would have loaded: the same work per turn, minus persistence.
    """
    return make_builder(input_schema=State).compile(store=store, name="memory-agent-unpersisted")
