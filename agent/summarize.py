"""Where to cut a long history: fold old messages, keep recent ones, never split a tool call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately

from agent.transcript import binary_strings, content_text

#: Tokens an image, file or audio block counts for (OpenAI's low-detail image cost), its
#: base64 data aside: a photo is not a hundred thousand tokens of text.
TOKENS_PER_ATTACHMENT = 85


def message_tokens(message: BaseMessage) -> int:
    """Approximate tokens of one message (content, role, tool calls); each image, file or
    audio block counts `TOKENS_PER_ATTACHMENT`, whatever its size."""
    if isinstance(message.content, str) or not binary_strings(message.content):
        return count_tokens_approximately([message])
    blocks = sum(
        1 for b in message.content if isinstance(b, dict) and b.get("type") not in (None, "text")
    )
    text = message.model_copy(
        update={
            "content": [
                b for b in message.content if not isinstance(b, dict) or b.get("type") == "text"
            ]
        }
    )
    return count_tokens_approximately([text]) + blocks * TOKENS_PER_ATTACHMENT


def is_safe_cut(messages: Sequence[BaseMessage], index: int) -> bool:
    """Whether the kept part may start at `index`.

    Tool messages always follow the AI message that called them, so a cut is safe unless it
    lands on a tool message: that would keep a result whose call was folded away.
    """
    return 0 < index < len(messages) and not isinstance(messages[index], ToolMessage)


def plan_fold(
    messages: Sequence[BaseMessage],
    budget: int,
    keep_tokens: int,
    count: Callable[[BaseMessage], int] = message_tokens,
) -> int:
    """Decide how many of the oldest messages to fold into the summary.

    Args:
        messages: The working messages, oldest first.
        budget: Fold only when the messages hold more tokens than this.
        keep_tokens: After folding, keep at most this many tokens of recent messages, unless
            the newest turn alone is larger (then keep just that turn).
        count: Token counter for one message.

    Returns:
        `cut`: fold `messages[:cut]`, keep `messages[cut:]`; 0 folds nothing.
    """
    sizes = [count(m) for m in messages]
    if sum(sizes) <= budget:
        return 0
    suffix = [0] * (len(messages) + 1)
    for index in range(len(messages) - 1, -1, -1):
        suffix[index] = suffix[index + 1] + sizes[index]
    safe = [i for i in range(1, len(messages)) if is_safe_cut(messages, i)]
    # Prefer cuts before a user message: providers such as Anthropic want the kept
    # conversation to open with one. Fall back to any safe cut.
    candidates = [i for i in safe if isinstance(messages[i], HumanMessage)] or safe
    if not candidates:
        return 0
    fitting = [i for i in candidates if suffix[i] <= keep_tokens]
    return fitting[0] if fitting else candidates[-1]


def transcript_lines(messages: Sequence[AnyMessage], max_chars: int = 600) -> str:
    """Messages as `role: text` lines for the summariser, long texts shortened."""
    lines = []
    for m in messages:
        text = content_text(m.content).strip()
        calls = getattr(m, "tool_calls", None)
        if calls:
            text = (text + " " + "; ".join(f"{c['name']} {c['args']}" for c in calls)).strip()
        if len(text) > max_chars:
            text = text[: max_chars - 3] + "..."
        role = {"human": "user", "ai": "assistant"}.get(m.type, m.type)
        lines.append(f"{role}: {text}")
    return "\n".join(lines)


def clip_summary(summary: str, max_tokens: int) -> str:
    """Bound a summary to about `max_tokens` tokens, keeping its most recent end."""
    max_chars = max_tokens * 4
    if len(summary) <= max_chars:
        return summary
    clipped = summary[-max_chars:]
    cut = clipped.find("\n")
    return clipped[cut + 1 :] if 0 <= cut < len(clipped) // 2 else clipped
