"""LangGraph's checkpointer conformance suite against every saver as the factory opens it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

from memory.settings import Settings
from memory.stores.factory import aopen_checkpointer, scheme_of

BASE = {capability.value for capability in BASE_CAPABILITIES}
#: Optional capabilities each saver implements. The others (copy_thread, delete_for_runs,
#: and prune on memory and SQLite) are not implemented by the LangGraph savers at all.
EXTENDED = {"memory": set(), "sqlite": set(), "postgres": {"prune"}, "redis": {"prune"}}


async def _validate(url: str, settings: Settings) -> CapabilityReport:
    @checkpointer_test(name=f"memory-agent {scheme_of(url)}")
    async def factory() -> AsyncIterator[BaseCheckpointSaver]:
        async with aopen_checkpointer(url, settings) as saver:
            yield saver

    return await validate(factory)


def _assert_conforms(report: CapabilityReport, kind: str) -> None:
    failures = {
        name: result.failures for name, result in report.results.items() if result.passed is False
    }
    assert failures == {}
    detected = {name for name, result in report.results.items() if result.detected}
    assert detected == BASE | EXTENDED[kind]
    passed = {name for name, result in report.results.items() if result.passed}
    assert passed == detected
    assert report.conformance_level() == "FULL"


async def test_every_saver_conforms(backend_url: str) -> None:
    kind = scheme_of(backend_url)
    report = await _validate(backend_url, Settings(ttl_minutes=None))
    _assert_conforms(report, kind)


async def test_redis_saver_with_ttl_conforms(redis_url: str) -> None:
    report = await _validate(redis_url, Settings(ttl_minutes=60))
    _assert_conforms(report, "redis")


@pytest.mark.parametrize("namespace", ["", "child:1"])
async def test_redis_list_keeps_to_the_namespace_asked_for(redis_url: str, namespace: str) -> None:
    """Upstream treated `checkpoint_ns=""` as any namespace and ignored `before`."""
    async with aopen_checkpointer(redis_url, Settings(ttl_minutes=None)) as saver:
        thread = f"ns-{uuid.uuid4().hex}"
        ids = {}
        for ns in ["", "child:1"]:
            config = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
            saved = []
            for step in range(3):
                checkpoint = empty_checkpoint()
                stored = await saver.aput(config, checkpoint, {"step": step, "score": step}, {})
                config = stored
                saved.append(checkpoint["id"])
            ids[ns] = saved

        wanted = {"configurable": {"thread_id": thread, "checkpoint_ns": namespace}}
        listed = [t.checkpoint["id"] async for t in saver.alist(wanted)]
        assert listed == list(reversed(ids[namespace]))
        before = {"configurable": {"thread_id": thread, "checkpoint_id": ids[namespace][2]}}
        older = [t.checkpoint["id"] async for t in saver.alist(wanted, before=before, limit=1)]
        assert older == [ids[namespace][1]]
        custom = [t.checkpoint["id"] async for t in saver.alist(wanted, filter={"score": 2})]
        assert custom == [ids[namespace][2]]
