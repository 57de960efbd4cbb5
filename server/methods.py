"""The methods a request path takes: a 405's `Allow` names those of the exact path only.

A path can match several route templates: `/langgraph/threads/search` is the literal
`/threads/search` and also `/threads/{thread_id}`. The exact path is the template with the
most literal segments; its methods are what the path takes. A method the exact path does
not take is answered 405 even when a less exact template would take it (`GET
/langgraph/threads/x/runs/stream` is not the run `stream`), so every documented path answers
its undocumented methods alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

_PARAM = re.compile(r"{[^}]+}")


@dataclass(frozen=True)
class Template:
    """One route path, the methods its routes take, and how literal it is."""

    path: str
    methods: frozenset[str]
    regex: re.Pattern[str]
    literals: int


class MethodTable:
    """The templates of an app's routes, for the methods of a concrete path."""

    def __init__(self, routes: Iterable[tuple[str, Iterable[str]]]) -> None:
        grouped: dict[str, set[str]] = {}
        for path, methods in routes:
            grouped.setdefault(path, set()).update(methods)
        self.templates = [
            Template(
                path,
                frozenset(methods),
                _regex(path),
                sum(1 for part in path.split("/") if part and not _PARAM.fullmatch(part)),
            )
            for path, methods in grouped.items()
        ]
        # The templates a less literal one also matches: only these can turn a request
        # some route would take into a 405.
        self.shadowing = [
            t
            for t in self.templates
            if any(
                o is not t and o.literals < t.literals and o.regex.fullmatch(_sample(t.path))
                for o in self.templates
            )
        ]

    def exact(self, path: str) -> Template | None:
        """The most literal template matching `path`, if any does."""
        best: Template | None = None
        for template in self.templates:
            if template.regex.fullmatch(path) and (
                best is None or template.literals > best.literals
            ):
                best = template
        return best

    def allowed(self, path: str) -> set[str]:
        """The methods of `path`'s exact template (none when no template matches)."""
        exact = self.exact(path)
        return set(exact.methods) if exact else set()

    def refused(self, method: str, path: str) -> Template | None:
        """The exact template of `path` when it does not take `method` but a less literal
        one would; None when routing decides as usual."""
        for template in self.shadowing:
            if template.regex.fullmatch(path):
                exact = self.exact(path)
                if exact is not None and method not in exact.methods:
                    return exact
                return None
        return None


def _regex(path: str) -> re.Pattern[str]:
    return re.compile("[^/]+".join(re.escape(part) for part in _PARAM.split(path)))


def _sample(path: str) -> str:
    return _PARAM.sub("x", path)


class ExactPathMiddleware:
    """Answers 405 (JSON, `Allow` of the exact path) to a method the exact path does not
    take, before a less literal route can take the request."""

    def __init__(self, app: ASGIApp, table: MethodTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            exact = self.table.refused(scope["method"], scope["path"])
            if exact is not None:
                body = b'{"detail":"Method Not Allowed"}'
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"allow", ", ".join(sorted(exact.methods)).encode()),
                ]
                await send({"type": "http.response.start", "status": 405, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
