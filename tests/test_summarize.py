"""Summarisation never separates a tool call from its results, for any history and budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from agent.summarize import clip_summary, plan_fold


@st.composite
def histories(draw: st.DrawFn) -> list[BaseMessage]:
    """Well-formed histories: user turns, answers, and tool rounds with parallel calls."""
    messages: list[BaseMessage] = []
    for n in range(1, draw(st.integers(1, 25)) + 1):
        messages.append(HumanMessage("u" * draw(st.integers(1, 400)), id=f"h{n}"))
        for _round in range(draw(st.integers(0, 3))):
            calls = [
                {
                    "id": f"c{n}-{_round}-{k}",
                    "name": "save_memory",
                    "args": {"k": "x" * draw(st.integers(0, 200))},
                }
                for k in range(draw(st.integers(1, 4)))
            ]
            messages.append(AIMessage("", tool_calls=calls, id=f"a{n}-{_round}"))
            for call in calls:
                content = "r" * draw(st.integers(1, 300))
                messages.append(ToolMessage(content, tool_call_id=call["id"], id=f"t{call['id']}"))
        if draw(st.booleans()):
            messages.append(AIMessage("a" * draw(st.integers(1, 400)), id=f"a{n}"))
    return messages


def _calls_answered(messages: list[BaseMessage]) -> bool:
    """Every tool message's call is in the list, and every call's results are too."""
    call_ids = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    result_ids = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return call_ids == result_ids


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(20, 3000), st.floats(0.05, 0.95))
def test_fold_never_splits_tool_calls_from_results(
    messages: list[BaseMessage], budget: int, ratio: float
) -> None:
    cut = plan_fold(messages, budget, int(budget * ratio))
    folded, kept = messages[:cut], messages[cut:]
    assert kept, "the newest message is always kept"
    assert _calls_answered(folded)
    assert _calls_answered(kept)
    if cut:
        assert not isinstance(kept[0], ToolMessage)


def test_nothing_folded_within_budget() -> None:
    messages: list[BaseMessage] = [HumanMessage("hello"), AIMessage("hi")]
    assert plan_fold(messages, budget=1000, keep_tokens=500) == 0


def test_fold_keeps_recent_messages_within_keep_budget() -> None:
    messages: list[BaseMessage] = []
    for i in range(20):
        messages += [HumanMessage("x" * 400, id=f"h{i}"), AIMessage("y" * 400, id=f"a{i}")]
    cut = plan_fold(messages, budget=1000, keep_tokens=500)
    assert 0 < cut < len(messages)
    kept_tokens = sum(len(m.content) / 4 + 3 for m in messages[cut:])
    assert kept_tokens <= 500


def test_oversized_tool_round_is_kept_whole() -> None:
    calls = [{"id": f"c{k}", "name": "save_memory", "args": {}} for k in range(3)]
    messages: list[BaseMessage] = [
        HumanMessage("old " * 100, id="h0"),
        HumanMessage("q", id="h1"),
        AIMessage("", tool_calls=calls, id="a1"),
        *[ToolMessage("z" * 4000, tool_call_id=c["id"], id=f"t{c['id']}") for c in calls],
    ]
    cut = plan_fold(messages, budget=100, keep_tokens=50)
    assert messages[cut].id == "h1"  # the whole newest turn, opening with its question
    assert _calls_answered(messages[cut:])


def test_clip_summary_keeps_the_recent_end() -> None:
    summary = "\n".join(f"- line {i}" for i in range(500))
    clipped = clip_summary(summary, max_tokens=50)
    assert len(clipped) <= 200
    assert clipped.endswith("- line 499")
