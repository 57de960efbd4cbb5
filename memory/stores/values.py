"""The value checks every store applies: what some backend cannot hold is rejected up front."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from langgraph.store.base import (
    NOT_PROVIDED,
    NotProvided,
    Op,
    PutOp,
    SearchOp,
    validate_op_namespace,
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: The search filter operators every store answers alike (LangGraph's `SearchOp.filter`).
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
_COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
#: Filter keys every store reads as one top-level key: SQLite reads dots as a path into
#: the value, and refuses quotes, brackets, spaces and non-ASCII letters.
FILTER_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")


class StoreValueError(ValueError):
    """A store key, label, value or filter that not every backend can hold or answer alike.

    `path` locates the offending part inside what was checked (a filter: key, operator).
    """

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


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


def _operand_problem(op: str, operand: Any) -> str | None:
    if op in _COMPARISONS:
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            return f"{op} compares numbers: its operand must be a number"
    elif operand is None or not isinstance(operand, str | int | float):
        # Backends differ on null (absent or JSON null) and on objects and lists.
        return f"{op} takes a string, number or boolean"
    if isinstance(operand, float) and not math.isfinite(operand):
        return f"{op} takes a finite number"
    if isinstance(operand, int) and not _INT64_MIN <= operand <= _INT64_MAX:
        return f"{op} takes an integer of at most 64 bits"
    return None


def check_filter(filter: Mapping[str, Any] | None) -> Any:
    """Reject a search filter that not every store answers alike.

    A filter maps top-level keys of the item value (letters, digits, `_` and `-`) to a
    string, number or boolean it must equal, or to operators of `FILTER_OPERATORS`;
    `$gt`, `$gte`, `$lt` and `$lte` compare numbers.

    Returns:
        The filter.

    Raises:
        StoreValueError: naming the key or operator, with its `path` in the filter.
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise StoreValueError(f"filter must be an object, got {type(filter).__name__}")
    for key, condition in filter.items():
        if not isinstance(key, str) or not FILTER_KEY.fullmatch(key):
            raise StoreValueError(
                f"filter key {str(key)[:80]!r} is not supported: keys are 1-128 letters, "
                "digits, '_' or '-' naming a top-level field of the value (no '.', '$', "
                "quotes or brackets)",
                (key,),
            )
        operators = condition if isinstance(condition, Mapping) else {"$eq": condition}
        if isinstance(condition, Mapping) and not condition:
            raise StoreValueError(f"filter[{key!r}] is an empty object: give an operator", (key,))
        for op, operand in operators.items():
            where = (key, op) if isinstance(condition, Mapping) else (key,)
            if op not in FILTER_OPERATORS:
                raise StoreValueError(
                    f"filter[{key!r}]: operator {str(op)[:40]!r} is not supported; use "
                    f"{', '.join(FILTER_OPERATORS)} (nested objects are not matched)",
                    where,
                )
            if problem := _operand_problem(op, operand):
                raise StoreValueError(f"filter[{key!r}]: {problem}", where)
            if isinstance(operand, str):
                _check_text(operand, f"filter[{key!r}]")
    return filter


def matches_filter(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """Whether an item value satisfies a filter `check_filter` passed, as SQL answers it:
    an absent or null field matches no condition, comparisons read JSON numbers only."""
    for key, condition in filter.items():
        actual = value.get(key)
        if actual is None:
            return False
        operators = condition if isinstance(condition, Mapping) else {"$eq": condition}
        for op, operand in operators.items():
            if not _holds(actual, op, operand):
                return False
    return True


def _holds(actual: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        same_kind = _numbers(actual, operand) or type(actual) is type(operand)
        return same_kind and actual == operand
    if op == "$ne":
        return not _holds(actual, "$eq", operand)
    if not _numbers(actual, operand):
        return False
    left, right = float(actual), float(operand)
    return {"$gt": left > right, "$gte": left >= right, "$lt": left < right, "$lte": left <= right}[
        op
    ]


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def checked(ops: Iterable[Op]) -> list[Op]:
    """The operations as a list, after `check_put` has passed every put among them and
    `check_filter` every search's filter."""
    ops = list(ops)
    for op in ops:
        if isinstance(op, PutOp):
            check_put(op)
        elif isinstance(op, SearchOp):
            check_filter(op.filter)
    return ops
