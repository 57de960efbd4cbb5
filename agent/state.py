"""The graph's state: a bounded window of working messages plus a running summary."""

from __future__ import annotations

from typing import Annotated, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps
from typing_extensions import TypedDict


class InputState(TypedDict):
    """What a caller sends: new messages for the thread."""

    messages: Annotated[list[AnyMessage], add_messages]


class State(InputState):
    """The state each checkpoint stores.

    `messages` is the working window: summarisation folds older messages into `summary`
    and removes them, so the checkpoint stays bounded however long the thread grows. Every
    message is also recorded in the store's append-only transcript as it enters the state;
    `transcript_len` counts them and `recorded_id` marks the newest one recorded.
    """

    summary: NotRequired[str]
    transcript_len: NotRequired[int]
    recorded_id: NotRequired[str | None]
    remaining_steps: NotRequired[RemainingSteps]
