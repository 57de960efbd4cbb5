"""Races in one server process on every backend: creates, cap, runs, end, delete, rate limit."""

from __future__ import annotations

import random

from tests import races
from tests.plugins.server import ApiFactory

#: Racing rounds per scenario, run a few at a time on threads of their own.
_ROUNDS = 20
#: High enough that the scenarios which are not about the rate limit never meet it.
_UNLIMITED_RUNS = 100_000


async def test_racing_creates_of_one_id_make_one_session(make_api: ApiFactory) -> None:
    async with make_api(users=("alice",)) as api:
        await races.racing_creates_of_one_id(api, "alice", count=50)


async def test_concurrent_creates_never_exceed_the_open_session_cap(
    make_api: ApiFactory,
) -> None:
    async with make_api(
        users=("alice",), max_open_sessions=5, runs_per_minute=_UNLIMITED_RUNS
    ) as api:
        await races.racing_creates_within_cap(api, "alice", cap=5, via_runs=5)


async def test_concurrent_runs_on_one_thread_are_recorded_once_each(
    make_api: ApiFactory,
) -> None:
    async with make_api(users=("alice",), runs_per_minute=_UNLIMITED_RUNS) as api:
        rng = random.Random()
        await races.in_batches(
            lambda: races.rounds_of_racing_runs(api, "alice", rounds=6, rng=rng), count=3
        )


async def test_an_end_racing_a_run_is_final_and_loses_no_turn(make_api: ApiFactory) -> None:
    async with make_api(users=("alice",), runs_per_minute=_UNLIMITED_RUNS) as api:
        rng = random.Random()
        await races.in_batches(lambda: races.end_against_run(api, "alice", rng), _ROUNDS)


async def test_a_delete_racing_a_run_leaves_nothing_behind(make_api: ApiFactory) -> None:
    async with make_api(users=("alice",), runs_per_minute=_UNLIMITED_RUNS) as api:
        rng = random.Random()
        await races.in_batches(lambda: races.delete_against_run(api, "alice", rng), _ROUNDS)


async def test_rate_limit_is_exact_under_concurrent_runs(make_api: ApiFactory) -> None:
    async with make_api(users=("alice",), runs_per_minute=10) as api:
        await races.rate_limit_under_concurrency(api, "alice", limit=10)


async def test_concurrent_json_patch_adds_to_one_memory_all_land(make_api: ApiFactory) -> None:
    async with make_api(users=("alice",), runs_per_minute=_UNLIMITED_RUNS) as api:
        await races.concurrent_patch_adds(api, "alice", count=50)
        thread = "cart-thread-" + random.randbytes(4).hex()
        assert (await api.run("alice", thread, "hello")).status_code == 200
        await races.concurrent_patch_adds(api, "alice", count=50, thread_id=thread)
