"""Per-run settings of the agent, passed as the graph's context schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import prompts
from agent.settings import AgentSettings


def _env(name: str) -> Callable[[], Any]:
    """A default taken from the deployment settings (`MEMORY_AGENT_<NAME>`, then the
    settings' own default) when the field is not given explicitly."""

    def read() -> Any:
        value = getattr(AgentSettings(), name)
        return prompts.SYSTEM_PROMPT if name == "system_prompt" and value is None else value

    return read


@dataclass(kw_only=True)
class Context:
    """What one run needs to know: who is talking, which model, and the token budget.

    A value passed explicitly beats the `MEMORY_AGENT_*` environment variable, which beats
    the default.
    """

    user_id: str = field(
        default_factory=_env("user_id"),
        metadata={"description": "The user the run acts for."},
    )
    tenant_id: str = field(
        default_factory=_env("tenant_id"), metadata={"description": "The user's tenant."}
    )
    model: str = field(
        default_factory=_env("model"),
        metadata={"description": "`offline` or a `provider:model` for init_chat_model."},
    )
    token_budget: int = field(
        default_factory=_env("token_budget"),
        metadata={"description": "Tokens of working messages allowed before summarisation."},
    )
    keep_ratio: float = field(
        default_factory=_env("keep_ratio"),
        metadata={"description": "Share of the budget kept as recent messages after summarising."},
    )
    summary_max_tokens: int = field(
        default_factory=_env("summary_max_tokens"),
        metadata={"description": "Longest running summary, in tokens."},
    )
    memory_search_limit: int = field(
        default_factory=_env("memory_search_limit"),
        metadata={"description": "User memories retrieved into the prompt."},
    )
    tool_timeout_seconds: float = field(
        default_factory=_env("tool_timeout_seconds"),
        metadata={"description": "Longest an application tool call may take."},
    )
    approve_tools: tuple[str, ...] = field(
        default=(),
        metadata={
            "description": "Application tools a person approves before each call (`*`: all)."
        },
    )
    system_prompt: str = field(
        default_factory=_env("system_prompt"),
        metadata={"description": "The system prompt; placeholders are filled each turn."},
    )

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> Context:
        """The run defaults of a deployment: every field from `settings` itself, so an
        explicit `Settings(...)` or `AgentSettings(...)` is honoured, not only the environment."""
        return cls(
            user_id=settings.user_id,
            tenant_id=settings.tenant_id,
            model=settings.model,
            token_budget=settings.token_budget,
            keep_ratio=settings.keep_ratio,
            summary_max_tokens=settings.summary_max_tokens,
            memory_search_limit=settings.memory_search_limit,
            tool_timeout_seconds=settings.tool_timeout_seconds,
            approve_tools=tuple(n.strip() for n in settings.approve_tools.split(",") if n.strip()),
            system_prompt=(
                prompts.SYSTEM_PROMPT if settings.system_prompt is None else settings.system_prompt
            ),
        )

    def __post_init__(self) -> None:
        if self.token_budget < 100:
            raise ValueError("token_budget must be at least 100 tokens")
        if not 0.05 <= self.keep_ratio <= 0.95:
            raise ValueError("keep_ratio must be between 0.05 and 0.95")
        if not self.tool_timeout_seconds > 0:
            raise ValueError("tool_timeout_seconds must be above 0")
