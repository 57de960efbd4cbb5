"""Choosing the chat model from one setting: `offline` or any `provider:model`."""

from __future__ import annotations

from functools import lru_cache

from langchain_core.language_models import BaseChatModel

from agent.offline import OfflineChatModel


class ModelConfigError(ValueError):
    """`MEMORY_AGENT_MODEL` names a model that cannot be loaded."""


def is_offline(spec: str) -> bool:
    """Whether `spec` selects the deterministic offline model."""
    return spec.strip().lower() in ("", "offline")


@lru_cache(maxsize=16)
def load_chat_model(spec: str) -> BaseChatModel:
    """The chat model for `spec`: `offline`, or `provider:model` for init_chat_model.

    Args:
        spec: e.g. `offline`, `openai:gpt-4o-mini`, `anthropic:claude-sonnet-4-5`,
            `ollama:llama3.2`.
    """
    if is_offline(spec):
        return OfflineChatModel()
    if ":" not in spec:
        raise ModelConfigError(
            f"MEMORY_AGENT_MODEL={spec!r}: use 'offline' or 'provider:model', "
            "e.g. 'openai:gpt-4o-mini'"
        )
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(spec)
    except ImportError as exc:
        provider = spec.split(":", 1)[0]
        raise ModelConfigError(
            f"{exc}. Install the provider's extra, e.g. pip install 'memory-agent[{provider}]'"
        ) from exc
