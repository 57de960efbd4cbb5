"""Per-run settings of the agent, passed as the graph's context schema."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from agent import prompts

T = TypeVar("T", str, int, float)


def _env(name: str, default: T) -> Callable[[], T]:
    """A default read from `MEMORY_AGENT_<NAME>` when the field is not given explicitly."""

    def read() -> T:
        raw = os.environ.get(f"MEMORY_AGENT_{name.upper()}")
        return default if raw is None else type(default)(raw)

    return read


@dataclass(kw_only=True)
class Context:
    """What one run needs to know: who is talking, which model, and the token budget.

    A value passed explicitly beats the `MEMORY_AGENT_*` environment variable, which beats
    the default.
    """

    user_id: str = field(
        default_factory=_env("user_id", "local"),
        metadata={"description": "The user the run acts for."},
    )
    tenant_id: str = field(
        default_factory=_env("tenant_id", "default"), metadata={"description": "The user's tenant."}
    )
    model: str = field(
        default_factory=_env("model", "offline"),
        metadata={"description": "`offline` or a `provider:model` for init_chat_model."},
    )
    token_budget: int = field(
        default_factory=_env("token_budget", 2000),
        metadata={"description": "Tokens of working messages allowed before summarisation."},
    )
    keep_ratio: float = field(
        default_factory=_env("keep_ratio", 0.5),
        metadata={"description": "Share of the budget kept as recent messages after summarising."},
    )
    summary_max_tokens: int = field(
        default_factory=_env("summary_max_tokens", 400),
        metadata={"description": "Longest running summary, in tokens."},
    )
    memory_search_limit: int = field(
        default_factory=_env("memory_search_limit", 5),
        metadata={"description": "User memories retrieved into the prompt."},
    )
    system_prompt: str = field(
        default_factory=_env("system_prompt", prompts.SYSTEM_PROMPT),
        metadata={"description": "The system prompt; placeholders are filled each turn."},
    )

    def __post_init__(self) -> None:
        if self.token_budget < 100:
            raise ValueError("token_budget must be at least 100 tokens")
        if not 0.05 <= self.keep_ratio <= 0.95:
            raise ValueError("keep_ratio must be between 0.05 and 0.95")
