"""The Postgres prune, checked row by row against the tables it deletes from.

`keep_latest` prunes a Postgres thread in a single statement. These tests read the tables
directly: which blob rows go and which stay (per namespace, shared blobs included), that the
kept checkpoints still load exactly as before, and that a prune costs one statement per
thread whatever number of namespaces the thread has.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore
from psycopg.rows import dict_row
from typing_extensions import TypedDict

from agent import build_graph
from memory.settings import Settings
from memory.stores import retention
from memory.stores.factory import aopen_checkpointer, open_checkpointer
from memory.stores.postgres_saver import AsyncKeyedPostgresSaver, KeyedPostgresSaver
from memory.stores.retention import RetentionSaver, akeep_latest, keep_latest

SETTINGS = Settings(embeddings="none")
KEEP = 6

BlobKey = tuple[str, str, str]  # checkpoint_ns, channel, version


@dataclass(frozen=True)
class Rows:
    """What the three checkpoint tables hold for one thread."""

    #: checkpoint_ns -> checkpoint_id -> the checkpoint's channel versions (as text).
    checkpoints: dict[str, dict[str, dict[str, str]]]
    blobs: set[BlobKey]
    #: checkpoint_ns, checkpoint_id, task_id, idx
    writes: set[tuple[str, str, str, int]]

    def referenced(self, ns: str, ids: Iterable[str]) -> set[BlobKey]:
        """The blob keys the given checkpoints of namespace `ns` reference."""
        return {
            (ns, channel, version)
            for checkpoint_id in ids
            for channel, version in self.checkpoints[ns][checkpoint_id].items()
        }

    def newest(self, ns: str, keep: int) -> list[str]:
        """The ids of the `keep` newest checkpoints of namespace `ns`."""
        return sorted(self.checkpoints[ns])[-keep:]


def _rows(url: str, thread_id: str) -> Rows:
    with psycopg.connect(url, autocommit=True) as conn:
        checkpoints: dict[str, dict[str, dict[str, str]]] = {}
        for ns, checkpoint_id, versions in conn.execute(
            "SELECT checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions'"
            " FROM checkpoints WHERE thread_id = %s",
            (thread_id,),
        ):
            checkpoints.setdefault(ns, {})[checkpoint_id] = {
                channel: str(version) for channel, version in versions.items()
            }
        blobs = {
            (ns, channel, version)
            for ns, channel, version in conn.execute(
                "SELECT checkpoint_ns, channel, version FROM checkpoint_blobs WHERE thread_id = %s",
                (thread_id,),
            )
        }
        writes = {
            (ns, checkpoint_id, task_id, idx)
            for ns, checkpoint_id, task_id, idx in conn.execute(
                "SELECT checkpoint_ns, checkpoint_id, task_id, idx FROM checkpoint_writes"
                " WHERE thread_id = %s",
                (thread_id,),
            )
        }
    return Rows(checkpoints, blobs, writes)


def _expected_after(before: Rows, keep: int) -> Rows:
    """The rows a correct prune to `keep` checkpoints per namespace leaves behind."""
    kept = {ns: before.newest(ns, keep) for ns in before.checkpoints}
    referenced = set().union(*(before.referenced(ns, ids) for ns, ids in kept.items()))
    return Rows(
        checkpoints={ns: {i: before.checkpoints[ns][i] for i in ids} for ns, ids in kept.items()},
        blobs=before.blobs & referenced,
        writes={w for w in before.writes if w[1] in kept.get(w[0], [])},
    )


def _config(thread_id: str, ns: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if ns is not None:
        configurable["checkpoint_ns"] = ns
    return {"configurable": configurable}


def _unwrapped(saver: BaseCheckpointSaver) -> Any:
    """The saver itself, so that only the explicit `keep_latest` calls prune."""
    return saver.inner if isinstance(saver, RetentionSaver) else saver


def _turn(i: int) -> dict[str, Any]:
    return {"messages": [HumanMessage(f"message number {i} about the weather")]}


# -- the agent's own thread ----------------------------------------------------------------


def test_prune_removes_exactly_the_blobs_no_kept_checkpoint_references(postgres_url: str) -> None:
    """Blobs of dropped checkpoints go unless a kept checkpoint shares them; no other row."""
    with open_checkpointer(postgres_url, SETTINGS) as opened:
        saver = _unwrapped(opened)
        graph = build_graph(saver, InMemoryStore())
        thread = f"prune-{uuid.uuid4().hex}"
        for i in range(12):
            graph.invoke(_turn(i), _config(thread))
        before = _rows(postgres_url, thread)
        assert len(before.checkpoints[""]) > 3 * KEEP
        expected = _expected_after(before, KEEP)
        # The case that makes the blob rule matter: both kinds of blobs of dropped checkpoints.
        dropped = sorted(before.checkpoints[""])[:-KEEP]
        dropped_blobs = before.blobs & before.referenced("", dropped)
        assert dropped_blobs - expected.blobs, "no blob only dropped checkpoints reference"
        assert dropped_blobs & expected.blobs, "no blob shared by a dropped and a kept checkpoint"

        removed = retention._prune_postgres(saver, thread, KEEP)

        after = _rows(postgres_url, thread)
        assert removed == len(dropped)
        assert after == expected
        # No orphans: every blob left is referenced by a checkpoint of its namespace.
        assert after.blobs <= after.referenced("", list(after.checkpoints[""]))
        assert retention._prune_postgres(saver, thread, KEEP) == 0  # nothing left to do


async def test_kept_checkpoints_load_as_before(postgres_url: str) -> None:
    """Every channel value and pending write of the kept checkpoints survives the prune."""
    async with aopen_checkpointer(postgres_url, SETTINGS) as opened:
        saver = _unwrapped(opened)
        graph = build_graph(saver, InMemoryStore())
        thread = f"prune-{uuid.uuid4().hex}"
        for i in range(10):
            await graph.ainvoke(_turn(i), _config(thread))
        state = await graph.aget_state(_config(thread))
        kept = [t async for t in saver.alist(_config(thread), limit=KEEP)]
        assert len([t async for t in saver.alist(_config(thread))]) > KEEP

        await akeep_latest(saver, [thread], KEEP)

        listed = [t async for t in saver.alist(_config(thread))]
        assert [t.config for t in listed] == [t.config for t in kept]
        for old, new in zip(kept, listed, strict=True):
            assert new.checkpoint["channel_values"] == old.checkpoint["channel_values"]
            assert new.pending_writes == old.pending_writes
            assert new.checkpoint["channel_versions"] == old.checkpoint["channel_versions"]
        reloaded = await graph.aget_state(_config(thread))
        assert reloaded.values == state.values
        assert reloaded.values["transcript_len"] == 20
        history = [s async for s in graph.aget_state_history(_config(thread))]
        assert len(history) == KEEP
        for snapshot in history:  # each retained step loads through the graph, too
            assert (await graph.aget_state(snapshot.config)).values == snapshot.values
        await graph.ainvoke(_turn(10), _config(thread))  # and the thread goes on
        assert (await graph.aget_state(_config(thread))).values["transcript_len"] == 22


# -- several namespaces --------------------------------------------------------------------


class _Loop(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _looping_parent() -> StateGraph:
    """A parent graph whose subgraph counts up to the next multiple of ten, a step a time.

    Each run of the subgraph checkpoints in a namespace of its own, one checkpoint a step, so
    the thread's namespaces hold different numbers of checkpoints with interleaved ids.
    """

    def step(state: _Loop) -> dict[str, Any]:
        return {"count": state["count"] + 1, "log": [f"step {state['count']}"]}

    def again(state: _Loop) -> str:
        return "step" if state["count"] % 10 else END

    child = StateGraph(_Loop)
    child.add_node("step", step)
    child.add_edge(START, "step")
    child.add_conditional_edges("step", again)
    parent = StateGraph(_Loop)
    parent.add_node("tick", lambda state: {"log": ["tick"]})
    parent.add_node("child", child.compile())
    parent.add_edge(START, "tick")
    parent.add_edge("tick", "child")
    return parent


async def test_subgraph_namespaces_are_pruned_independently(postgres_url: str) -> None:
    async with aopen_checkpointer(postgres_url, SETTINGS) as opened:
        saver = _unwrapped(opened)
        graph = _looping_parent().compile(checkpointer=saver)
        thread = f"prune-sub-{uuid.uuid4().hex}"
        for start in (0, 5, 8, 1):  # 10, 5, 2 and 9 subgraph steps
            await graph.ainvoke(_Loop(count=start, log=[]), _config(thread))
        before = _rows(postgres_url, thread)
        sizes = sorted(len(ids) for ids in before.checkpoints.values())
        assert len(sizes) == 5
        assert sizes[0] < KEEP < sizes[-1]  # some namespaces are pruned, one is not
        expected = _expected_after(before, KEEP)
        latest = await graph.aget_state(_config(thread))

        await akeep_latest(saver, [thread], KEEP)

        after = _rows(postgres_url, thread)
        assert after == expected
        for ns, ids in after.checkpoints.items():
            assert len(ids) == min(KEEP, len(before.checkpoints[ns]))
            assert {b for b in after.blobs if b[0] == ns} <= after.referenced(ns, ids)
            listed = [t async for t in saver.alist(_config(thread, ns))]
            assert len(listed) == len(ids)
        assert (await graph.aget_state(_config(thread))).values == latest.values


def _put(saver: Any, thread: str, ns: str, versions: dict[str, Any]) -> None:
    """Store a checkpoint of namespace `ns` whose channels have the given versions."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_versions"] = dict(versions)
    checkpoint["channel_values"] = {channel: [channel, v] for channel, v in versions.items()}
    saver.put(_config(thread, ns), checkpoint, {"source": "loop", "step": 0}, dict(versions))


def _two_namespaces(saver: Any, thread: str) -> None:
    """Checkpoints in two namespaces that use the same channel names and versions.

    The root namespace has eight checkpoints and `child:1` five, written alternately; in
    both, `x` takes versions 1, 2, ... and `shared` keeps version 1 throughout, so the keys
    (channel, version) of the blobs one namespace drops are ones the other keeps.
    """
    for i in range(1, 9):
        _put(saver, thread, "", {"x": f"{i:02}", "shared": "01"})
        if i <= 5:
            _put(saver, thread, "child:1", {"x": f"{i:02}", "shared": "01"})


def test_blobs_are_matched_within_their_namespace(postgres_url: str) -> None:
    keep = 3
    with open_checkpointer(postgres_url, SETTINGS) as opened:
        saver = _unwrapped(opened)
        thread = f"prune-ns-{uuid.uuid4().hex}"
        _two_namespaces(saver, thread)

        keep_latest(saver, [thread], keep)

        after = _rows(postgres_url, thread)
        assert {ns: len(ids) for ns, ids in after.checkpoints.items()} == {"": 3, "child:1": 3}
        # Root keeps x 06-08, the child x 03-05: the child's kept x 04 and 05 do not keep
        # the root's blobs of those versions, and the root's dropped ones do not take the
        # child's. The shared blob stays in both.
        assert after.blobs == {
            ("", "x", "06"),
            ("", "x", "07"),
            ("", "x", "08"),
            ("", "shared", "01"),
            ("child:1", "x", "03"),
            ("child:1", "x", "04"),
            ("child:1", "x", "05"),
            ("child:1", "shared", "01"),
        }
        for ns in ("", "child:1"):
            for stored in saver.list(_config(thread, ns)):
                values = stored.checkpoint["channel_values"]
                assert values == {
                    c: [c, v] for c, v in stored.checkpoint["channel_versions"].items()
                }


# -- round trips ---------------------------------------------------------------------------


@contextmanager
def _counting_saver(url: str, statements: list[str]) -> Iterator[KeyedPostgresSaver]:
    """A sync saver on a real connection whose cursors record each statement they execute."""

    class Counting(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            statements.append(str(query))
            return super().execute(query, params, **kwargs)

    with psycopg.connect(
        url, autocommit=True, prepare_threshold=0, row_factory=dict_row, cursor_factory=Counting
    ) as conn:
        yield KeyedPostgresSaver(conn)  # type: ignore[arg-type]


@asynccontextmanager
async def _acounting_saver(url: str, statements: list[str]) -> AsyncIterator[Any]:
    """Async `_counting_saver`."""

    class Counting(psycopg.AsyncCursor[Any]):
        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            statements.append(str(query))
            return await super().execute(query, params, **kwargs)

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, prepare_threshold=0, row_factory=dict_row, cursor_factory=Counting
    ) as conn:
        yield AsyncKeyedPostgresSaver(conn)  # type: ignore[arg-type]


def test_prune_is_one_statement_per_thread(postgres_url: str) -> None:
    with open_checkpointer(postgres_url, SETTINGS) as opened:
        threads = [f"prune-rt-{uuid.uuid4().hex}" for _ in range(2)]
        for thread in threads:
            _two_namespaces(_unwrapped(opened), thread)
    statements: list[str] = []
    with _counting_saver(postgres_url, statements) as saver:
        keep_latest(saver, threads, 2)
    assert statements == [retention._PG_PRUNE] * len(threads)
    for thread in threads:
        after = _rows(postgres_url, thread)
        assert {ns: len(ids) for ns, ids in after.checkpoints.items()} == {"": 2, "child:1": 2}
        assert len(after.blobs) == 6  # x twice and shared, in each namespace


async def test_async_prune_is_one_statement_per_thread(postgres_url: str) -> None:
    with open_checkpointer(postgres_url, SETTINGS) as opened:
        threads = [f"prune-rt-{uuid.uuid4().hex}" for _ in range(2)]
        for thread in threads:
            _two_namespaces(_unwrapped(opened), thread)
    statements: list[str] = []
    async with _acounting_saver(postgres_url, statements) as saver:
        await akeep_latest(saver, threads, 2)
        assert await retention._aprune_postgres(saver, threads[0], 1) == 2  # one per namespace
    assert statements == [retention._PG_PRUNE] * (len(threads) + 1)
    after = _rows(postgres_url, threads[1])
    assert {ns: len(ids) for ns, ids in after.checkpoints.items()} == {"": 2, "child:1": 2}
    assert len(after.blobs) == 6


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_prune_reads_the_checkpoints_once_and_probes_blobs_by_key(postgres_url: str) -> None:
    """The cost of a prune must not follow the rows earlier prunes left for vacuum.

    Until autovacuum runs, the `thread_id` indexes still list every row a prune deleted; a
    bitmap scan of them revisits those rows' pages. The statement scans the thread's
    checkpoints once, and never answers a blob probe with a scan of the thread's blobs.
    """
    with open_checkpointer(postgres_url, SETTINGS) as saver:
        graph = build_graph(_unwrapped(saver), InMemoryStore())
        thread = f"plan-{uuid.uuid4().hex}"
        for i in range(12):
            graph.invoke(_turn(i), _config(thread))
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + retention._PG_PRUNE,
            {"thread_id": thread, "keep": 5, "most": retention._PG_PRUNE_MOST},
        ).fetchone()
        conn.rollback()
    assert row is not None
    nodes = list(_plan_nodes(row[0][0]["Plan"]))
    # Deletes go by row id (a TID scan, or a sequential one on a table this small).
    thread_reads = [
        n
        for n in nodes
        if n.get("Relation Name") == "checkpoints"
        and n["Node Type"] in ("Bitmap Heap Scan", "Index Scan", "Index Only Scan")
    ]
    assert len(thread_reads) == 1, [n["Node Type"] for n in thread_reads]
    blob_probes = [
        n
        for n in nodes
        if n.get("Relation Name") == "checkpoint_blobs"
        and n["Node Type"] not in ("Tid Scan", "Seq Scan", "ModifyTable")
    ]
    assert blob_probes, "the plan probes no blobs"
    for probe in blob_probes:
        assert probe["Node Type"] in ("Index Scan", "Index Only Scan"), probe["Node Type"]
    deleted = [n for n in nodes if n["Node Type"] == "ModifyTable"]
    assert {n["Relation Name"] for n in deleted} == {
        "checkpoints",
        "checkpoint_writes",
        "checkpoint_blobs",
    }
