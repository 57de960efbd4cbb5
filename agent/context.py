"""Per-run settings of the agent, passed as the graph's context schema."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from agent import prompts


@dataclass(kw_only=True)
class Context:
    """What one run needs to know: who is talking, which model, and the token budget.

    A value passed explicitly beats the `MEMORY_AGENT_*` environment variable, which beats
    the default.
    """

    user_id: str = field(default="local", metadata={"description": "The user the run acts for."})
    tenant_id: str = field(default="default", metadata={"description": "The user's tenant."})
    model: str = field(
        default="offline",
        metadata={"description": "`offline` or a `provider:model` for init_chat_model."},
    )
    token_budget: int = field(
        default=2000,
        metadata={"description": "Tokens of working messages allowed before summarisation."},
    )
    keep_ratio: float = field(
        default=0.5,
        metadata={"description": "Share of the budget kept as recent messages after summarising."},
    )
    summary_max_tokens: int = field(
        default=400, metadata={"description": "Longest running summary, in tokens."}
    )
    memory_search_limit: int = field(
        default=5, metadata={"description": "User memories retrieved into the prompt."}
    )
    system_prompt: str = field(
        default=prompts.SYSTEM_PROMPT,
        metadata={"description": "The system prompt; placeholders are filled each turn."},
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            env = os.environ.get(f"MEMORY_AGENT_{f.name.upper()}")
            if env is None or getattr(self, f.name) != f.default:
                continue
            setattr(self, f.name, type(getattr(self, f.name))(env))
        if self.token_budget < 100:
            raise ValueError("token_budget must be at least 100 tokens")
        if not 0.05 <= self.keep_ratio <= 0.95:
            raise ValueError("keep_ratio must be between 0.05 and 0.95")
