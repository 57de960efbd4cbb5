"""Where each kind of record lives in the LangGraph store, and who owns it."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Ids a client may choose: threads, memory keys, tenants and users.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-:@]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)


#: The longest tenant or user id (an e-mail address is at most 254 characters).
MAX_OWNER_ID = 256

#: Characters kept as they are in storage keys; every other one is percent-encoded (UTF-8),
#: so the ids `ID_PATTERN` allows keep the keys they always had.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:@")


class InvalidIdError(ValueError):
    """An id does not match `ID_PATTERN` (or, for a tenant or user, is empty or too long)."""


def check_id(kind: str, value: str) -> str:
    """Return `value` if it is a valid id, else raise `InvalidIdError` naming `kind`."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidIdError(
            f"invalid {kind} {value!r}: 1-128 characters, letters, digits and _-:@, "
            "starting with a letter or digit"
        )
    return value


def _escape(value: str, keep: frozenset[str]) -> str:
    if all(char in keep for char in value):
        return value
    return "".join(
        char
        if char in keep
        else "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
        for char in value
    )


def key_part(value: str) -> str:
    """Escape an id for a `/`-separated storage key: every character outside
    `A-Z a-z 0-9 _-:@` is percent-encoded, so no two ids share a key and the ids allowed
    before any escaping existed keep theirs."""
    return _escape(value, _PLAIN)


def label(value: str) -> str:
    """Escape a value for use as a store namespace label (labels may not contain '.'): the
    characters of `key_part` and `/` are kept, every other one is percent-encoded."""
    return _escape(value, _PLAIN | {"/"})


def check_owner_id(kind: str, value: object) -> str:
    """Return a tenant or user id as a string: any non-empty string of at most
    `MAX_OWNER_ID` characters (e-mails, UUIDs, `auth0|abc`), or an integer as its digits.

    Raises:
        TypeError: `value` is neither a string nor an integer.
        InvalidIdError: it is empty, too long, or holds a control character.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a string (or an integer), not {type(value).__name__}")
    if not value or len(value) > MAX_OWNER_ID:
        raise InvalidIdError(f"invalid {kind} {value!r}: 1-{MAX_OWNER_ID} characters")
    if not value.isprintable():
        raise InvalidIdError(f"invalid {kind} {value!r}: control characters are not allowed")
    return value


@dataclass(frozen=True, slots=True)
class Owner:
    """The tenant and user that own a thread or a memory."""

    tenant: str = "default"
    user: str = "local"

    def __post_init__(self) -> None:
        # Integer ids (`Owner(tenant=1, user=42)`) are kept as their decimal strings.
        object.__setattr__(self, "tenant", check_owner_id("tenant", self.tenant))
        object.__setattr__(self, "user", check_owner_id("user", self.user))

    @property
    def key(self) -> str:
        """`tenant/user`, each escaped by `key_part`: the owner's part of storage keys."""
        return f"{key_part(self.tenant)}/{key_part(self.user)}"

    def thread_key(self, thread_id: str) -> str:
        """The LangGraph thread id of this owner's thread `thread_id`.

        Client-chosen ids are scoped to their owner, so two users may both have a thread
        named `support`; the checkpointer sees them as two threads.
        """
        return f"{self.key}/{thread_id}"


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
