"""The agent's own deployment settings, read from `MEMORY_AGENT_*` environment variables:
its model, prompt, tools and budgets. `memory.settings.Settings` adds the databases, the
server and the session service to these."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    """What the graph needs to know of its deployment; an explicit argument beats the
    environment."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="ignore")

    model: str = Field(
        default="offline",
        description="`offline` (deterministic, no network) or any `provider:model` for "
        "LangChain's init_chat_model, e.g. `openai:gpt-4o-mini`.",
    )
    token_budget: int = Field(
        default=2000, ge=100, description="Working-message tokens before summarisation runs."
    )
    user_id: str = Field(default="local", description="The user a run acts for when none is given.")
    tenant_id: str = Field(default="default", description="The tenant of that user.")
    keep_ratio: float = Field(
        default=0.5,
        ge=0.05,
        le=0.95,
        description="Share of the token budget kept as recent messages after summarising.",
    )
    summary_max_tokens: int = Field(default=400, ge=16, description="Longest running summary.")
    memory_search_limit: int = Field(
        default=5, ge=0, le=100, description="User memories retrieved into the prompt."
    )
    system_prompt: str | None = Field(
        default=None, description="The system prompt; placeholders are filled each turn."
    )
    tools: str | None = Field(
        default=None,
        description="`package.module:attribute`: a tool or a list of tools (LangChain tools or "
        "plain functions) the model is offered beside the memory tools.",
    )
    tool_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest an application tool call may take; then an error result.",
    )
    approve_tools: str = Field(
        default="",
        description="Comma-separated names of application tools a person approves before "
        "each call (the run pauses with the call for an approve, edit or reject answer); "
        "`*`: every application tool.",
    )
    graph: str | None = Field(
        default=None,
        description="`package.module:attribute`: a StateGraph builder, a compiled graph or a "
        "factory of either, served instead of the built-in agent.",
    )
