"""The value checks every store applies: what some backend cannot hold is rejected up front."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from langgraph.store.base import NOT_PROVIDED, NotProvided, Op, PutOp, validate_op_namespace

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class StoreValueError(ValueError):
    """A store key, label or value contains text that a backend cannot hold."""


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise StoreValueError(
            f"{where} contains a NUL character (U+0000), which Postgres cannot store; remove it"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreValueError(
            f"{where} is not valid Unicode text (unpaired surrogate at index {exc.start})"
        ) from exc


def check_put(op: PutOp) -> None:
    """Reject a put whose key, labels or value a backend cannot hold.

    Raises:
        StoreValueError: naming the offending part (`key`, a label or `value[...]`).
        InvalidNamespaceError: for labels LangGraph forbids (empty, with `.` or NUL).
    """
    validate_op_namespace(op)
    if not isinstance(op.key, str):
        raise StoreValueError(f"store key must be a string, got {type(op.key).__name__}")
    _check_text(op.key, "store key")
    for label in op.namespace:
        _check_text(label, f"namespace label {label!r}")
    if op.value is None:
        return
    if not isinstance(op.value, Mapping):
        raise StoreValueError(f"store value must be a dict, got {type(op.value).__name__}")
    pending: list[tuple[Any, str]] = [(op.value, "value")]
    while pending:
        node, where = pending.pop()
        if isinstance(node, str):
            _check_text(node, where)
        elif (
            isinstance(node, int)
            and not isinstance(node, bool)
            and not _INT64_MIN <= node <= _INT64_MAX
        ):
            raise StoreValueError(
                f"{where} is an integer outside 64 bits, which RedisJSON and SQLite cannot store"
            )
        elif isinstance(node, Mapping):
            for key, child in node.items():
                if isinstance(key, str):
                    _check_text(key, f"key {key!r} of {where}")
                pending.append((child, f"{where}[{key!r}]"))
        elif isinstance(node, list | tuple):
            pending.extend((child, f"{where}[{i}]") for i, child in enumerate(node))


class EarlyPutCheck:
    """Mixin for stores that gather concurrent calls into one batch (LangGraph's
    `AsyncBatchedBaseStore`): `aput` checks its put before queueing it, so a bad value
    fails its own call only, not the other callers' operations batched with it."""

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        """Check the put, then queue it."""
        check_put(PutOp(tuple(namespace), key, cast(dict[str, Any], value)))
        await super().aput(namespace, key, value, index, ttl=ttl)  # type: ignore[misc]


def checked(ops: Iterable[Op]) -> list[Op]:
    """The operations as a list, after `check_put` has passed every put among them."""
    ops = list(ops)
    for op in ops:
        if isinstance(op, PutOp):
            check_put(op)
    return ops
