"""A scripted chat model: replies from a list, records every prompt it was sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from agent.prompts import SUMMARY_PROMPT

_SUMMARY_HEAD = SUMMARY_PROMPT.split("{", 1)[0]


class ScriptedChatModel(BaseChatModel):
    """Answers agent calls from `replies` in order (then a fixed text); summaries by rule."""

    replies: list[AIMessage] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    summaries: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self

    def prompt_tokens(self) -> list[int]:
        """Approximate tokens of each agent prompt received, in order."""
        return [count_tokens_approximately(p) for p in self.prompts]

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        first = messages[0] if messages else None
        if isinstance(first, SystemMessage) and str(first.content).startswith(_SUMMARY_HEAD):
            self.summaries += 1
            reply = AIMessage(f"summary #{self.summaries}")
        else:
            self.prompts.append(list(messages))
            reply = self.replies.pop(0) if self.replies else AIMessage("ok")
        return ChatResult(generations=[ChatGeneration(message=reply)])
