"""Upgrades keep the data: a database the previous release (tag `v0.1.0`) wrote is
upgraded in place and read and continued by this one, on SQLite, Postgres and Redis; a
database of a newer release is refused; `memory-agent migrate` runs the upgrade.

The previous release's code comes from the repository's own history (`git archive`) and
runs in a subprocess with `PYTHONPATH` at that tree, under this venv's interpreter: its
`agent`, `memory` and `server` packages are the old ones (the writer checks), the
third-party packages this venv's. Since v0.1.0 the project only added dependencies and kept
the lower bounds of the old ones, so every package the old code imports is one it accepts,
and no package index or second venv is needed (an install from an index would take minutes
per run).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from memory.errors import SchemaVersionError
from memory.settings import Settings
from memory.stores import migrate, open_backends
from memory.stores.factory import shown_url
from memory.stores.schema import SCHEMA_VERSION
from server.app import create_app
from tests.devservers import start_redis
from tests.plugins.server import running
from tests.test_cli import command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: The previous release: its tag, and the commit it names for checkouts without tags.
PREVIOUS_TAG = "v0.1.0"
PREVIOUS_COMMIT = "80104ff8751e6e272a81819624c52b2222dc382b"
HEADERS = {"Authorization": "Bearer upgrade-key"}
KEYS = "upgrade-key=acme/ada"


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def previous_release() -> str:
    """The commit of the previous release: by its tag, else by the commit recorded here."""
    for rev in (PREVIOUS_TAG, PREVIOUS_COMMIT):
        found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if found.returncode == 0:
            return found.stdout.decode().strip()
    shallow = _git("rev-parse", "--is-shallow-repository")
    if shallow.returncode != 0 or shallow.stdout.decode().strip() == "true":
        # A copy without the history (an archive, a shallow clone) cannot hold the release.
        pytest.skip(
            f"no git history here to take {PREVIOUS_TAG} from: run from a full clone, or "
            "fetch the history with `git fetch --unshallow --tags`"
        )
    pytest.fail(
        f"the previous release is not in this repository's history: neither the tag "
        f"{PREVIOUS_TAG} nor the commit {PREVIOUS_COMMIT} was found"
    )


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's files, exported from git."""
    tree = tmp_path_factory.mktemp("v0.1.0")
    archive = _git("archive", "--format=tar", previous_release())
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _env(url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_AGENT_")}
    env.update(
        MEMORY_AGENT_DATABASE_URL=url,
        MEMORY_AGENT_MODEL="offline",
        MEMORY_AGENT_EMBEDDINGS="none",
        MEMORY_AGENT_API_KEYS=KEYS,
        # Small enough that the first turns are summarised away.
        MEMORY_AGENT_TOKEN_BUDGET="150",
        **more,
    )
    return env


def write_with_previous(tree: Path, url: str) -> dict[str, Any]:
    """Let the previous release write every kind of data into `url`; what it read back."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "upgrade_writer.py")],
        cwd=tree,
        env=_env(url, PYTHONPATH=str(tree), UPGRADE_OLD_TREE=str(tree)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def migrate_command(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "migrate"],
        env=_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def upgrade_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no other test touches, on each persistent backend (Redis: a server of
    its own, as the schema version is one key per server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agent.sqlite'}"
    elif request.param == "postgres":
        yield request.getfixturevalue("fresh_postgres_url")
    else:
        handle = start_redis(tmp_path)
        try:
            yield handle.url
        finally:
            handle.stop()


def _memories(page: dict[str, Any]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in page["items"]}


async def test_a_database_of_the_previous_release_is_upgraded_read_and_continued(
    upgrade_url: str, old_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_with_previous(old_tree, upgrade_url)
    assert old["kept"]["summary"]["summary"], "the previous release summarised nothing"

    first = migrate_command(upgrade_url)
    assert first.returncode == 0, first.stderr
    assert "upgraded from schema version none recorded (v0.1.0 or earlier) to 1" in first.stdout
    again = migrate_command(upgrade_url)
    assert again.returncode == 0, again.stderr
    assert f"at schema version {SCHEMA_VERSION}, nothing to upgrade" in again.stdout

    for name, value in _env(upgrade_url).items():
        if name.startswith("MEMORY_AGENT_"):
            monkeypatch.setenv(name, value)
    async with running(create_app(Settings())) as client:

        async def ok(method: str, path: str, **kwargs: Any) -> Any:
            response = await client.request(method, path, headers=HEADERS, **kwargs)
            assert response.status_code < 300, (path, response.status_code, response.text)
            return response.json() if response.content else None

        # Everything the previous release wrote reads back as it read it.
        for thread in ("kept", "ended"):
            before = old[thread]
            detail = await ok("GET", f"/threads/{thread}")
            for field in ("status", "created_at", "last_active_at", "ended_at", "summary"):
                assert detail[field] == before["detail"][field], (thread, field)
            assert detail["message_count"] == before["detail"]["message_count"]
            messages = await ok("GET", f"/threads/{thread}/messages", params={"limit": 200})
            assert messages == before["messages"], thread
            assert await ok("GET", f"/threads/{thread}/summary") == before["summary"]
            state = await ok("GET", f"/threads/{thread}/state")
            assert state["messages"] == before["state"]["messages"], thread
            assert state["summary"] == before["state"]["summary"], thread
            history = await ok("GET", f"/threads/{thread}/history")
            assert [c["checkpoint_id"] for c in history["items"]] == [
                c["checkpoint_id"] for c in before["history"]["items"]
            ]
        assert old["ended"]["detail"]["status"] == "ended"
        assert _memories(await ok("GET", "/memories")) == _memories(old["memories"])
        assert _memories(await ok("GET", "/memories"))["color"] == {"favourite": "green"}
        session = _memories(await ok("GET", "/threads/kept/memories"))
        assert session == _memories(old["session_memories"]) == {"cart": ["tea", "cups"]}
        lg = old["lg_thread"]
        lg_state = await ok("GET", f"/langgraph/threads/{lg}/state")
        assert lg_state["values"] == old["lg_state"]["values"]
        assert lg_state["checkpoint"] == old["lg_state"]["checkpoint"]
        runs = await ok("GET", f"/langgraph/threads/{lg}/runs")
        assert [(r["run_id"], r["status"]) for r in runs] == [
            (r["run_id"], r["status"]) for r in old["lg_runs"]
        ]
        assert len(runs) == 2 and {r["status"] for r in runs} == {"success"}
        for run in runs:
            assert (await ok("GET", f"/langgraph/threads/{lg}/runs/{run['run_id']}"))[
                "run_id"
            ] == run["run_id"]

        # And goes on: new turns on both kinds of thread, the sessions' ends kept.
        # The name is a user memory: the last one the previous release saved (on the
        # LangGraph thread) answers.
        assert "Cy" in str(_memories(old["memories"])["name"])
        body = await ok("POST", "/threads/kept/runs", json={"message": "what is my name?"})
        assert body["reply"] == "Your name is Cy."
        messages = await ok("GET", "/threads/kept/messages", params={"limit": 200})
        assert (
            messages["items"][: len(old["kept"]["messages"]["items"])]
            == (old["kept"]["messages"]["items"])
        )
        assert len(messages["items"]) > len(old["kept"]["messages"]["items"])
        ended = await client.post(
            "/threads/ended/runs", headers=HEADERS, json={"message": "hello again"}
        )
        assert ended.status_code == 409, ended.text
        # Memories the previous release wrote take conditional and partial writes.
        color = await client.get("/memories/color", headers=HEADERS)
        assert color.status_code == 200, color.text
        written = await client.put(
            "/memories/color",
            headers={**HEADERS, "If-Match": color.headers["ETag"]},
            json={"value": {"favourite": "blue"}},
        )
        assert written.status_code == 200, written.text
        stale = await client.put(
            "/memories/color",
            headers={**HEADERS, "If-Match": color.headers["ETag"]},
            json={"value": {"favourite": "red"}},
        )
        assert stale.status_code == 412, stale.text
        patched = await client.patch(
            "/threads/kept/memories/cart",
            headers={**HEADERS, "Content-Type": "application/json-patch+json"},
            content=json.dumps([{"op": "add", "path": "/-", "value": "pot"}]),
        )
        assert patched.status_code == 200, patched.text
        session = _memories(await ok("GET", "/threads/kept/memories"))
        assert session == {"cart": ["tea", "cups", "pot"]}
        assert (await ok("POST", "/threads/kept/end"))["status"] == "ended"
        waited = await ok(
            "POST",
            f"/langgraph/threads/{lg}/runs/wait",
            json={
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "what is my name?"}]},
            },
        )
        assert waited["messages"][-1]["content"] == "Your name is Cy."
        runs = await ok("GET", f"/langgraph/threads/{lg}/runs")
        assert len(runs) == 3


def _stamp(url: str, version: int) -> None:
    """Record `version` as the database's schema version, as a newer release would."""
    if url.startswith("sqlite"):
        import sqlite3

        store_file = url.removeprefix("sqlite:///").removesuffix(".sqlite") + ".store.sqlite"
        with sqlite3.connect(store_file) as conn:
            conn.execute("UPDATE memory_agent_schema SET version = ?", (version,))
    elif url.startswith("postgres"):
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE memory_agent_schema SET version = %s", (version,))
    else:
        redis.Redis.from_url(url).set("memory_agent:schema", version)


def test_a_database_of_a_newer_release_is_refused_and_left_as_it_is(
    upgrade_url: str, backend_settings: Settings
) -> None:
    created = migrate(upgrade_url, settings=backend_settings)
    assert (created.fresh, str(created)) == (True, f"created at schema version {SCHEMA_VERSION}")
    _stamp(upgrade_url, SCHEMA_VERSION + 1)
    with (
        pytest.raises(SchemaVersionError) as raised,
        open_backends(upgrade_url, settings=backend_settings),
    ):
        pass
    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION}" in message
    assert "written by a newer release" in message
    assert "session database at" in message
    served = subprocess.run(
        [*command(), "serve", "--port", "1"],
        env=_env(upgrade_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert served.returncode == 2
    assert served.stderr.startswith("error: ") and message.split(" at ")[0] in served.stderr
    assert "Traceback" not in served.stderr
    migrated = migrate_command(upgrade_url)
    assert migrated.returncode == 1
    assert "newer release" in migrated.stderr
    # Still the newer release's: nothing was changed.
    with pytest.raises(SchemaVersionError), open_backends(upgrade_url, settings=backend_settings):
        pass


def test_migrate_has_help() -> None:
    shown = subprocess.run(
        [*command(), "migrate", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "schema version" in shown.stdout
    assert "newer release" in shown.stdout


def _forget_version(url: str) -> None:
    """Take the schema version out, leaving the layout v0.1.0 wrote and read."""
    if url.startswith("sqlite"):
        import sqlite3

        store_file = url.removeprefix("sqlite:///").removesuffix(".sqlite") + ".store.sqlite"
        with sqlite3.connect(store_file) as conn:
            conn.execute("DROP TABLE memory_agent_schema")
    elif url.startswith("postgres"):
        with psycopg.connect(url) as conn:
            conn.execute("DROP TABLE memory_agent_schema")
    else:
        redis.Redis.from_url(url).delete("memory_agent:schema")


def test_processes_migrating_at_once_upgrade_the_database_once(
    upgrade_url: str, backend_settings: Settings
) -> None:
    with open_backends(upgrade_url, settings=backend_settings):
        pass
    _forget_version(upgrade_url)
    started = [
        subprocess.Popen(
            [*command(), "migrate"],
            env=_env(upgrade_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    said = []
    for process in started:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        said.append(out)
    # One of them records the version (on Redis, with no data yet, as a new database);
    # the others wait for it and find it done.
    upgraded = [out for out in said if "nothing to upgrade" not in out]
    assert len(upgraded) == 1, said
    assert "to 1" in upgraded[0] or "created at schema version 1" in upgraded[0], said
    assert sum("nothing to upgrade" in out for out in said) == 2, said


def test_a_database_url_is_shown_without_its_password() -> None:
    assert (
        shown_url("postgresql://app:s3cret@db:5432/agent") == "postgresql://app:***@db:5432/agent"
    )
    assert shown_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert shown_url("sqlite:///.data/x.sqlite") == "sqlite:///.data/x.sqlite"
