"""The session database's schema version, and the numbered upgrades that bring an older
database to it.

Each database records one version (a row of `memory_agent_schema` on SQLite and Postgres,
the key `memory_agent:schema` on Redis). Opening a database runs the upgrades above its
version in order, under the backend's single-writer rule (SQLite's write lock, the
Postgres setup advisory lock, a Redis lock key), then records `SCHEMA_VERSION`; a version
above it is refused with `memory.errors.SchemaVersionError`. No recorded version means a
new database or one written before versions were recorded (release v0.1.0), whose
layout every upgrade from version 0 accepts. Every upgrade is idempotent: run twice, or
on a new database, it changes nothing more.

The LangGraph savers and stores keep their own tables and migrate them in their
`setup()`, which the factory runs on every open.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.errors import SchemaVersionError


@dataclass(frozen=True)
class Upgrade:
    """What brings a database from `version - 1` to `version`.

    Attributes:
        version: The version a database has once this upgrade has run.
        summary: What changes, for the log and `memory-agent migrate`.
        sql: Statements run on SQLite and Postgres, in the transaction that records the
            version.
        redis: Lua scripts run on Redis (no keys passed), under the upgrade lock.
    """

    version: int
    summary: str
    sql: tuple[str, ...] = ()
    redis: tuple[str, ...] = ()


#: The upgrades, oldest first; the n-th brings a database to version n. Never edit one.
UPGRADES: tuple[Upgrade, ...] = (
    Upgrade(
        1,
        "record the schema version of a database written before versions were recorded "
        "(v0.1.0, whose layout is version 1's)",
    ),
)

#: The layout this release reads and writes.
SCHEMA_VERSION = len(UPGRADES)


@dataclass(frozen=True)
class SchemaChange:
    """What opening a database did to its schema version.

    Attributes:
        found: The version recorded before (0: none was).
        version: The version recorded now.
        fresh: Whether the database held none of the session tables before.
    """

    found: int
    version: int
    fresh: bool = False

    def __str__(self) -> str:
        if self.fresh:
            return f"created at schema version {self.version}"
        if self.found == self.version:
            return f"at schema version {self.version}, nothing to upgrade"
        before = self.found or "none recorded (v0.1.0 or earlier)"
        return f"upgraded from schema version {before} to {self.version}"


def pending(found: int | None) -> tuple[Upgrade, ...]:
    """The upgrades a database at version `found` (None: none recorded) needs, in order.

    Raises:
        SchemaVersionError: `found` is above `SCHEMA_VERSION`.
    """
    have = found or 0
    if have > SCHEMA_VERSION:
        raise SchemaVersionError(have, SCHEMA_VERSION)
    return UPGRADES[have:]
