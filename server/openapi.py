"""The OpenAPI schema, with every response the server can give documented.

Routes document what is theirs (`errors(404, 409, ...)`); the answers every route of a kind
can give are added here, from what each route depends on, so none is forgotten:

- a body: 400 (not readable as JSON, e.g. nested too deeply), 413 (too large), 422;
- path or query parameters: 422; path parameters: 404 (also when a value makes the path
  name no route);
- the caller's API key: 401;
- the database: 503 with Retry-After when it cannot be reached in time.

Query and header parameters lose the `null` of their optional types: a value in a query is
text, and leaving a parameter out is how a client says none.

Every 422 is `ErrorOut` (FastAPI's default names only field lists, but a rule the schema
cannot state answers with a sentence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

try:  # FastAPI 0.128+ keeps included routers whole and walks them through route contexts
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI flattens them into app.routes
    iter_route_contexts = None  # type: ignore[assignment]

from server.deps import get_backends, get_owner, get_sessions
from server.schemas import errors

#: What `serve` itself may answer before any route sees a request.
CONNECTION_NOTE = (
    "Besides the answers each operation lists, `memory-agent serve` answers any request "
    "with 408 when its headers or body arrive too slowly, 431 when its headers are too large "
    "or too many, and 413 when its body is too large; each with a JSON `detail`."
)
_DATABASE = {get_backends, get_sessions}


def routes(app: FastAPI) -> Iterator[Any]:
    """Every route of `app`, included routers' too, each with its full path, its methods
    and its `matches(scope)` (a route, or a FastAPI route context standing for one)."""
    if iter_route_contexts is None:
        yield from app.routes
    else:
        yield from iter_route_contexts(app.routes)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def implied_errors(route: Any) -> set[int]:
    """The error statuses `route` can answer because of what it takes and depends on."""
    dependant = route.dependant
    calls = set(_calls(dependant))
    codes: set[int] = set()
    if _has(dependant, "body_params"):
        codes |= {400, 413, 422}
    if _has(dependant, "query_params") or _has(dependant, "path_params"):
        codes.add(422)
    if _has(dependant, "path_params"):
        codes.add(404)
    if get_owner in calls:
        codes.add(401)
    if calls & _DATABASE:
        codes.add(503)
    return codes


def _has(dependant: Dependant, kind: str) -> bool:
    return bool(getattr(dependant, kind)) or any(_has(d, kind) for d in dependant.dependencies)


def complete(schema: dict[str, Any], app: FastAPI) -> None:
    """Add each route's implied errors to `schema`, and make every 422 an `ErrorOut`."""
    schema["info"]["description"] = CONNECTION_NOTE
    documented = {
        code: {
            "description": spec["description"],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for code, spec in errors(400, 401, 404, 413, 422, 503).items()
    }
    for route in routes(app):
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            continue
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"][route.path_format][method.lower()]
            for param in operation.get("parameters", []):
                param["schema"] = _not_null(param["schema"])
            responses = operation["responses"]
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            for code in sorted(implied_errors(route)):
                responses.setdefault(str(code), documented[code])
    _bounds(schema)
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)


_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _bounds(node: Any) -> None:
    """Bounds as JSON Schema names them: pydantic leaves `ge`/`le` as they are on a type
    whose validator runs first (`QueryInt`, `JsonInt`)."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for short, name in _BOUNDS.items():
                if short in node:
                    node[name] = node.pop(short)
        for value in node.values():
            _bounds(value)
    elif isinstance(node, list):
        for value in node:
            _bounds(value)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its `null` option: a query or header value is text, and
    an absent one is what `null` stands for."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if not options or len(options) == len(schema["anyOf"]):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **options[0]} if len(options) == 1 else {**rest, "anyOf": options}


def install(app: FastAPI) -> None:
    """Serve `app`'s schema completed (once per version of its routes)."""
    generate = app.openapi
    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not completed or completed[0] is not schema:
            complete(schema, app)
            completed[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
