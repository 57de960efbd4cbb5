"""Where each kind of record lives in the LangGraph store, and who owns it."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Ids a client may choose: threads, memory keys, tenants and users.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-:@]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)


class InvalidIdError(ValueError):
    """An id does not match `ID_PATTERN`."""


def check_id(kind: str, value: str) -> str:
    """Return `value` if it is a valid id, else raise `InvalidIdError` naming `kind`."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidIdError(
            f"invalid {kind} {value!r}: 1-128 characters, letters, digits and _-:@, "
            "starting with a letter or digit"
        )
    return value


def label(value: str) -> str:
    """Escape a value for use as a store namespace label (labels may not contain '.')."""
    return value.replace("%", "%25").replace(".", "%2E")


@dataclass(frozen=True, slots=True)
class Owner:
    """The tenant and user that own a thread or a memory."""

    tenant: str = "default"
    user: str = "local"

    def __post_init__(self) -> None:
        check_id("tenant", self.tenant)
        check_id("user", self.user)

    def thread_key(self, thread_id: str) -> str:
        """The LangGraph thread id of this owner's thread `thread_id`.

        Client-chosen ids are scoped to their owner, so two users may both have a thread
        named `support`; the checkpointer sees them as two threads.
        """
        return f"{self.tenant}/{self.user}/{thread_id}"


def user_memories(tenant: str, user: str) -> tuple[str, ...]:
    """Long-term facts about a user, shared by all of the user's threads."""
    return ("memories", label(tenant), label(user))


def session_memories(tenant: str, user: str, thread_key: str) -> tuple[str, ...]:
    """Facts that belong to one thread only (a shopping cart, a session's preferences)."""
    return ("session_memories", label(tenant), label(user), label(thread_key))


def transcript(thread_key: str) -> tuple[str, ...]:
    """The append-only transcript of one thread."""
    return ("transcript", label(thread_key))


def sessions(tenant: str, user: str) -> tuple[str, ...]:
    """The session registry entries of one user."""
    return ("sessions", label(tenant), label(user))
