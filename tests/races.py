"""Race scenarios run against one server process and against several sharing one database.

Each scenario fires its requests concurrently through a `Client` (an in-process app, or
requests spread over server processes) and asserts what must hold whatever the
interleaving: statuses, the session registry, the transcript and the working state.
Scenarios use thread ids of their own; the caller picks users so that per-user limits
(runs per minute, open sessions) do not interfere unless the scenario is about them.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import httpx

from tests.plugins.server import fresh_id

T = TypeVar("T")

#: Longest random delay before a racing request: about one offline run, so either can win.
MAX_JITTER_SECONDS = 0.05
_PAGE = "?limit=500"
_ROUND = re.compile(r"^round (\d+) ")


class Client(Protocol):
    """Sends requests as a user; `tests.plugins.server.Api` and the scale-out client are ones."""

    async def request(self, user: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request as `user`."""
        ...

    async def run(self, user: str, thread_id: str, text: str) -> httpx.Response:
        """Send one message on a thread as `user`."""
        ...


async def after(delay: float, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` once `delay` seconds have passed (close it unstarted if cancelled before)."""
    try:
        await asyncio.sleep(delay)
    except BaseException:
        work.close()
        raise
    return await work


async def in_batches(
    scenario: Callable[[], Coroutine[Any, Any, T]], count: int, at_once: int = 4
) -> list[T]:
    """Run `scenario` `count` times, `at_once` concurrently; a failure cancels the others."""
    results: list[T] = []
    for start in range(0, count, at_once):
        async with asyncio.TaskGroup() as group:
            batch = [group.create_task(scenario()) for _ in range(min(at_once, count - start))]
        results += [task.result() for task in batch]
    return results


def jitter(rng: random.Random) -> float:
    """A random head start of up to `MAX_JITTER_SECONDS`."""
    return rng.uniform(0, MAX_JITTER_SECONDS)


async def transcript(client: Client, user: str, thread_id: str) -> tuple[list[str], list[str]]:
    """The thread's transcript as `(roles, contents)`, checked against its `total`."""
    response = await client.request(user, "GET", f"/threads/{thread_id}/messages{_PAGE}")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["items"]), page
    return [m["role"] for m in page["items"]], [m["content"] for m in page["items"]]


async def window(client: Client, user: str, thread_id: str) -> dict[str, Any]:
    """The thread's working state."""
    response = await client.request(user, "GET", f"/threads/{thread_id}/state")
    assert response.status_code == 200, response.text
    return response.json()


async def completed_turn(client: Client, user: str, thread_id: str, text: str) -> list[str]:
    """Run one turn that must succeed; its `[text, reply]`."""
    response = await client.run(user, thread_id, text)
    assert response.status_code == 200, response.text
    return [text, response.json()["reply"]]


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    """How many responses had each status code."""
    return Counter(r.status_code for r in responses)


def _explain(responses: list[httpx.Response]) -> str:
    return "; ".join(f"{r.status_code} {r.text[:120]}" for r in responses)


# -- creating sessions -------------------------------------------------------------------------


async def racing_creates_of_one_id(client: Client, user: str, count: int = 50) -> None:
    """`count` concurrent creates of one id: one 201, every other one 409, one session."""
    thread = fresh_id("same")
    responses = await asyncio.gather(
        *(
            client.request(user, "POST", "/threads", json={"thread_id": thread})
            for _ in range(count)
        )
    )
    assert statuses(responses) == {201: 1, 409: count - 1}, statuses(responses)
    listed = (await client.request(user, "GET", "/threads?limit=100")).json()
    assert listed["total"] == 1
    assert [item["thread_id"] for item in listed["items"]] == [thread]


async def racing_creates_within_cap(client: Client, user: str, cap: int, via_runs: int) -> None:
    """`3 * cap` concurrent creates, `via_runs` of them by a run on a new id: exactly `cap` open.

    `user` must have no open session yet.
    """
    ids = [fresh_id("cap") for _ in range(3 * cap)]
    requests = [
        client.run(user, thread, f"opening {thread}")
        if i < via_runs
        else client.request(user, "POST", "/threads", json={"thread_id": thread})
        for i, thread in enumerate(ids)
    ]
    responses = await asyncio.gather(*requests)
    made = {thread for thread, r in zip(ids, responses, strict=True) if r.status_code in (200, 201)}
    assert len(made) == cap, statuses(responses)
    for i, response in enumerate(responses):
        assert response.status_code in ((200, 409) if i < via_runs else (201, 409)), response.text
    listed = (await client.request(user, "GET", "/threads?limit=100")).json()
    assert listed["total"] == cap
    assert {item["thread_id"] for item in listed["items"]} == made
    assert {item["status"] for item in listed["items"]} == {"active"}


# -- one run at a time -------------------------------------------------------------------------


async def rounds_of_racing_runs(client: Client, user: str, rounds: int, rng: random.Random) -> None:
    """Rounds of 2, 3, 4, 2, ... concurrent runs on one thread; each acknowledged turn once.

    A run that overlapped another on the thread would lose or mix up messages: the
    transcript must hold exactly the acknowledged turns, each request followed by its own
    reply, in round order, and the registry and the working state must count them all.
    """
    thread = fresh_id("turns")
    acknowledged: list[tuple[str, str]] = []
    for number in range(rounds):
        texts = [f"round {number} attempt {i} on {thread}" for i in range(2 + number % 3)]
        responses = await asyncio.gather(
            *(after(rng.uniform(0, 0.01), client.run(user, thread, text)) for text in texts)
        )
        assert set(statuses(responses)) <= {200, 409}, _explain(responses)
        # Nothing else runs on the thread, so a round where every run is refused means a
        # claim outlived its run.
        assert 200 in statuses(responses), f"round {number}: {_explain(responses)}"
        for text, response in zip(texts, responses, strict=True):
            if response.status_code != 200:
                continue
            body = response.json()
            mine = [m["content"] for m in body["messages"] if m["role"] == "user"]
            assert mine == [text], f"the run sent {text!r} answered for {mine}"
            assert text in body["reply"], body  # the offline model quotes what it answers
            acknowledged.append((text, body["reply"]))

    roles, contents = await transcript(client, user, thread)
    assert len(contents) == 2 * len(acknowledged), (contents, acknowledged)
    assert roles == ["user", "assistant"] * len(acknowledged)
    turns = list(zip(contents[::2], contents[1::2], strict=True))
    assert Counter(turns) == Counter(acknowledged)
    order = [int(match.group(1)) for text, _ in turns if (match := _ROUND.match(text))]
    assert order == sorted(order), order
    detail = (await client.request(user, "GET", f"/threads/{thread}")).json()
    assert detail["message_count"] == len(contents), detail
    assert (await window(client, user, thread))["transcript_len"] == len(contents)


# -- ending and deleting against a run ---------------------------------------------------------


async def end_against_run(client: Client, user: str, rng: random.Random) -> tuple[int, int]:
    """A run and an end racing on a thread with one completed turn.

    An end that answered 200 is final: the thread shows `ended` and refuses every later run.
    A run that answered 200 has its turn in the transcript; one that answered 409 left
    nothing. Sends up to three runs for `user`; leaves the thread ended.

    Returns:
        `(run status, end status)`.
    """
    thread = fresh_id("end")
    expected = await completed_turn(client, user, thread, f"setup of {thread}")
    text = f"racing run on {thread}"
    run, end = await asyncio.gather(
        after(jitter(rng), client.run(user, thread, text)),
        after(jitter(rng), client.request(user, "POST", f"/threads/{thread}/end")),
    )
    outcome = f"run {run.status_code} {run.text[:200]} / end {end.status_code} {end.text[:200]}"
    assert run.status_code in (200, 409), outcome
    assert end.status_code in (200, 409), outcome
    # The end is refused only for a run in progress, and that run is this one.
    assert 200 in (run.status_code, end.status_code), outcome
    if run.status_code == 200:
        expected += [text, run.json()["reply"]]
    if end.status_code == 200:
        assert end.json()["status"] == "ended", outcome
        detail = (await client.request(user, "GET", f"/threads/{thread}")).json()
        assert detail["status"] == "ended", (outcome, detail)
        late = await client.run(user, thread, f"after the end of {thread}")
        assert late.status_code == 409, (outcome, late.text)
    else:
        # The run held the thread when the end came; it has finished, so an end goes through.
        again = await client.request(user, "POST", f"/threads/{thread}/end")
        assert again.status_code == 200, (outcome, again.text)
    _, contents = await transcript(client, user, thread)
    assert contents == expected, outcome
    detail = (await client.request(user, "GET", f"/threads/{thread}")).json()
    assert detail["status"] == "ended", (outcome, detail)
    assert detail["message_count"] == len(expected), (outcome, detail)
    return run.status_code, end.status_code


async def delete_against_run(client: Client, user: str, rng: random.Random) -> tuple[int, int]:
    """A run and a delete racing on a thread with one completed turn.

    After a 204 the thread is gone whole (404 for it, its transcript and its state), unless
    the run came after the delete and started a fresh thread holding only its own turn;
    never a thread that lost the earlier turn but kept the run's. A delete refused with
    409 was refused for the run, which then completed on the intact thread. Either way a
    new run on the id after a delete starts from nothing. Sends up to two runs for `user`
    and leaves the thread deleted.

    Returns:
        `(run status, delete status)`.
    """
    thread = fresh_id("del")
    setup = await completed_turn(client, user, thread, f"setup of {thread}")
    text = f"racing run on {thread}"
    run, deleted = await asyncio.gather(
        after(jitter(rng), client.run(user, thread, text)),
        after(jitter(rng), client.request(user, "DELETE", f"/threads/{thread}")),
    )
    outcome = (
        f"run {run.status_code} {run.text[:200]} / delete {deleted.status_code} {deleted.text}"
    )
    assert run.status_code in (200, 409), outcome
    assert deleted.status_code in (204, 409), outcome
    if deleted.status_code == 409:
        assert run.status_code == 200, outcome
        _, contents = await transcript(client, user, thread)
        assert contents == [*setup, text, run.json()["reply"]], outcome
        assert (await client.request(user, "DELETE", f"/threads/{thread}")).status_code == 204
        return run.status_code, deleted.status_code

    detail = await client.request(user, "GET", f"/threads/{thread}")
    if detail.status_code == 404:
        for part in ("messages", "state"):
            leftover = await client.request(user, "GET", f"/threads/{thread}/{part}")
            assert leftover.status_code == 404, (outcome, part, leftover.text)
    else:
        # Only a run that started after the delete may have made the thread again, fresh.
        assert detail.status_code == 200, (outcome, detail.text)
        assert run.status_code == 200, (outcome, detail.text)
        _, contents = await transcript(client, user, thread)
        assert contents == [text, run.json()["reply"]], (outcome, contents)
        assert (await window(client, user, thread))["transcript_len"] == 2, outcome
        assert (await client.request(user, "DELETE", f"/threads/{thread}")).status_code == 204

    fresh = await completed_turn(client, user, thread, f"fresh start on {thread}")
    _, contents = await transcript(client, user, thread)
    assert contents == fresh, (outcome, contents)
    state = await window(client, user, thread)
    assert [m["content"] for m in state["messages"]] == fresh, (outcome, state)
    assert state["transcript_len"] == 2, (outcome, state)
    assert (await client.request(user, "DELETE", f"/threads/{thread}")).status_code == 204
    return run.status_code, deleted.status_code


# -- rate limit --------------------------------------------------------------------------------


async def rate_limit_under_concurrency(client: Client, user: str, limit: int) -> None:
    """`3 * limit` concurrent runs of a user on distinct threads: exactly `limit` run.

    `user` must not have run anything in the last minute.
    """
    responses = await asyncio.gather(
        *(client.run(user, fresh_id("rate"), f"run {i} of a burst") for i in range(3 * limit))
    )
    assert statuses(responses) == {200: limit, 429: 2 * limit}, statuses(responses)
    for response in responses:
        if response.status_code == 429:
            assert 1 <= int(response.headers["retry-after"]) <= 60, response.headers


_PATCH = {"content-type": "application/json-patch+json"}


async def concurrent_patch_adds(
    client: Client, user: str, count: int = 50, thread_id: str | None = None
) -> None:
    """`count` concurrent JSON Patch `add`s to one memory's list all land: `count` items."""
    base = f"/threads/{thread_id}/memories" if thread_id else "/memories"
    url = f"{base}/{fresh_id('cart')}"
    created = await client.request(user, "PUT", url, json={"value": {"items": []}})
    assert created.status_code == 200, created.text
    responses = await asyncio.gather(
        *(
            client.request(
                user,
                "PATCH",
                url,
                headers=_PATCH,
                json=[{"op": "add", "path": "/items/-", "value": n}],
            )
            for n in range(count)
        )
    )
    assert statuses(responses) == {200: count}, _explain(responses)
    final = await client.request(user, "GET", url)
    assert sorted(final.json()["value"]["items"]) == list(range(count))
    assert final.headers["etag"] == final.json()["etag"]
