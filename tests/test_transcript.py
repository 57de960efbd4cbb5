"""The transcript in blocks: appends across block edges, idempotent re-recording, pages."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.store.memory import InMemoryStore

from agent import namespaces, transcript
from agent.transcript import BLOCK


def _append(store: InMemoryStore, key: str, start: int, count: int, tag: str = "m") -> None:
    messages = [
        HumanMessage(f"{tag}{start + i}", id=f"id{start + i}")
        if (start + i) % 2 == 0
        else AIMessage(f"{tag}{start + i}", id=f"id{start + i}")
        for i in range(count)
    ]
    prepare = transcript.prepare_ops(key, start)
    found = store.batch(prepare) if prepare else []
    store.batch(transcript.record_ops(key, start, messages, found))


def _page(store: InMemoryStore, key: str, offset: int, limit: int, total: int) -> list[dict]:
    found = store.batch(transcript.page_ops(key, offset, limit, total))
    return transcript.page_records(found, offset, limit)


def test_appends_across_block_edges_keep_every_message_once() -> None:
    store = InMemoryStore()
    total = 0
    for count in (1, 3, BLOCK - 1, 2, BLOCK * 2 + 5, 1):
        _append(store, "t", total, count)
        total += count
    everything = _page(store, "t", 0, total, total)
    assert [r["seq"] for r in everything] == list(range(total))
    assert [r["content"] for r in everything] == [f"m{i}" for i in range(total)]
    blocks = store.search(namespaces.transcript("t"), limit=100)
    assert len(blocks) == -(-total // BLOCK)


def test_re_recording_replaces_instead_of_duplicating() -> None:
    store = InMemoryStore()
    _append(store, "t", 0, BLOCK + 3)
    _append(store, "t", BLOCK + 1, 2, tag="again")  # a replayed node writes the same seqs
    page = _page(store, "t", BLOCK - 1, 10, BLOCK + 3)
    assert [r["seq"] for r in page] == list(range(BLOCK - 1, BLOCK + 3))
    assert [r["content"] for r in page][-2:] == [f"again{BLOCK + 1}", f"again{BLOCK + 2}"]


def test_a_page_reads_at_most_two_blocks_however_long_the_thread() -> None:
    for total in (40, 10_000):
        ops = transcript.page_ops("t", max(0, total - 20), 20, total)
        assert 1 <= len(ops) <= 2
