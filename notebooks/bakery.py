"""The bakery assistant: an FAQ search tool, the bakery's prompt and its graph, on the pieces."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph

from agent.pieces import (
    Context,
    State,
    call_model,
    execute_tools,
    route_model_output,
    route_turn,
    summarize_conversation,
)
from memory.embeddings import local_embeddings

FAQ = Path(__file__).with_name("bakery_faq.md")

#: The bakery's prompt; memory-agent fills the three placeholders every turn.
BAKERY_PROMPT = """You are the assistant of Crumb & Co., a small bakery. Answer questions
about the bakery from its FAQ: call search_faq first and answer from what it returns; say
so when the FAQ does not cover a question. Be brief and friendly.

Save what customers tell you about themselves (name, allergies, favourite bread) with
save_memory, scope "user"; an order being discussed with scope "session". Always take
allergies into account.

## What you remember about the user
{user_memories}

## Notes for this session
{session_memories}

## Summary of the earlier conversation
{summary}
"""


@lru_cache(maxsize=1)
def _sections() -> list[tuple[str, str, list[float]]]:
    """The FAQ's sections as (title, text, embedding), embedded once per process."""
    parts = FAQ.read_text().split("\n## ")[1:]
    sections = [(p.split("\n", 1)[0].strip(), " ".join(p.split("\n")[1:]).strip()) for p in parts]
    vectors = local_embeddings().embed_documents([f"{t}. {b}" for t, b in sections])
    return [(t, b, v) for (t, b), v in zip(sections, vectors, strict=True)]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def search_faq(query: str) -> str:
    """Search the bakery's FAQ (hours, location, allergens, cakes, delivery, breads).

    Returns the two most relevant sections.
    """
    wanted = local_embeddings().embed_query(query)
    ranked = sorted(_sections(), key=lambda s: _cosine(wanted, s[2]), reverse=True)
    return "\n\n".join(f"{title}: {text}" for title, text, _ in ranked[:2])


TOOLS = [search_faq]


def make_graph(chat_model: BaseChatModel | None = None) -> StateGraph:
    """The bakery assistant's graph: memory-agent's pieces with the bakery's tool and prompt."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=TOOLS, system_prompt=BAKERY_PROMPT))
    builder.add_node(execute_tools(TOOLS))
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges(
        "call_model", route_model_output, {"save_memories": "execute_tools", "__end__": END}
    )
    builder.add_conditional_edges("execute_tools", route_turn)
    return builder
