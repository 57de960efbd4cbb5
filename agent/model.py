"""Choosing the chat model from one setting: `offline` or any `provider:model`."""

from __future__ import annotations

import math
from functools import lru_cache

from langchain_core.language_models import BaseChatModel

from agent.offline import OfflineChatModel


class ModelConfigError(ValueError):
    """`MEMORY_AGENT_MODEL` names a model that cannot be loaded."""


_OFFLINE = "offline"
_SLOW_PREFIX = "offline:slow-"


def is_offline(spec: str) -> bool:
    """Whether `spec` selects the deterministic offline model (paced or not)."""
    name = spec.strip().lower()
    return name in ("", _OFFLINE) or name.startswith(f"{_OFFLINE}:")


def offline_pace(spec: str) -> float:
    """Seconds the offline model named by `spec` spreads each reply over.

    `offline` answers at once; `offline:slow-<seconds>` (e.g. `offline:slow-1.0`) streams
    the same chunks evenly over that many seconds per model call, standing in for a real
    model's latency in load tests without a network or a key.

    Raises:
        ModelConfigError: `spec` is not `offline` or a valid `offline:slow-<seconds>`.
    """
    name = spec.strip().lower()
    if name in ("", _OFFLINE):
        return 0.0
    if not name.startswith(_SLOW_PREFIX):
        raise ModelConfigError(
            f"MEMORY_AGENT_MODEL={spec!r}: the offline model is 'offline' or "
            "'offline:slow-<seconds>', e.g. 'offline:slow-1.0'"
        )
    raw = name.removeprefix(_SLOW_PREFIX)
    try:
        pace = float(raw)
    except ValueError:
        pace = math.nan
    if not math.isfinite(pace) or pace < 0:
        raise ModelConfigError(
            f"MEMORY_AGENT_MODEL={spec!r}: {raw!r} is not a number of seconds >= 0; "
            "use e.g. 'offline:slow-1.0'"
        )
    return pace


@lru_cache(maxsize=16)
def load_chat_model(spec: str) -> BaseChatModel:
    """The chat model for `spec`: `offline`, or `provider:model` for init_chat_model.

    Args:
        spec: e.g. `offline`, `offline:slow-1.0` (the offline model, each reply paced over
            one second), `openai:gpt-4o-mini`, `anthropic:claude-sonnet-4-5`,
            `ollama:llama3.2`.
    """
    if is_offline(spec):
        return OfflineChatModel(pace_seconds=offline_pace(spec))
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
            f"MEMORY_AGENT_MODEL={spec!r}: {exc}. Install the provider's extra, e.g. "
            f"pip install 'memory-agent[{provider}]'"
        ) from exc
    except Exception as exc:  # an unknown provider, a missing API key, a bad option
        raise ModelConfigError(f"MEMORY_AGENT_MODEL={spec!r} cannot be loaded: {exc}") from exc
