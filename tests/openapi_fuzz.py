"""Requests generated from an OpenAPI 3.1 schema, and the checks every response must pass.

Hypothesis strategies are built from the JSON schemas the app publishes: valid requests
(`valid_request`), and invalid ones (`invalid_request`): one value mutated so that the
schema rejects it (checked with `jsonschema`) in a way no lax parser could read as valid
(a container for a scalar, a string over its length, a number out of its bounds, an
unknown enum value, a missing required field, an unknown field where none are allowed),
or a body that is not JSON at all.

`problems` names what is wrong with a response: a 5xx, a status the operation does not
document, a content type or body that does not match what it documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jsonschema
from hypothesis import strategies as st

#: The body of a request that sends none.
NO_BODY = object()
#: The longest strings and lists generated where the schema allows longer.
_MAX_TEXT = 40
_MAX_ITEMS = 3
#: Integers at the edges of what backends store, mixed into unbounded integer fields.
_EDGE_INTEGERS = [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]
_PATH_PARAM = re.compile(r"{([^}]+)}")


@dataclass(frozen=True)
class Request:
    """One generated request."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Any = NO_BODY
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body sent as is (not JSON-encoded)
    negative: bool = False
    why: str = ""

    def describe(self) -> str:
        """The request in one line, for failure messages."""
        sent = self.raw if self.raw is not None else self.body
        body = "" if sent is NO_BODY else f" body={sent!r:.300}"
        sent_headers = f" headers={self.headers}" if self.headers else ""
        return (
            f"{self.method} {self.path} query={self.query}{sent_headers}{body}"
            f" ({self.why or 'valid'})"
        )


def json_values(depth: int = 2) -> st.SearchStrategy[Any]:
    """Any JSON value, nested at most `depth` levels."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers() | st.sampled_from(_EDGE_INTEGERS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=_MAX_TEXT),
    )
    if depth == 0:
        return scalars
    inner = json_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=_MAX_ITEMS),
        st.dictionaries(st.text(max_size=10), inner, max_size=_MAX_ITEMS),
    )


class Schemas:
    """Strategies and validators for the JSON schemas of one OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = document.get("components", {})

    # -- schemas ---------------------------------------------------------------------------

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`schema` with a top-level `$ref` followed."""
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def validator(self, schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
        """A validator of `schema`, its `#/components/...` references resolved."""
        return jsonschema.Draft202012Validator({**schema, "components": self.components})

    def is_valid(self, schema: dict[str, Any], value: Any) -> bool:
        """Whether `value` is valid against `schema`."""
        return self.validator(schema).is_valid(value)

    # -- valid values ----------------------------------------------------------------------

    def values(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
        """Values valid against `schema` (filtered where the structure is not enough)."""
        schema = self.resolve(schema)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema and "properties" not in schema:
                return st.one_of([self.values(s, depth) for s in schema[key]])
        if "allOf" in schema:
            return self.values(
                {k: v for k, v in schema.items() if k != "allOf"} | schema["allOf"][0], depth
            )
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.values({**schema, "type": k}, depth) for k in kind])
        made = self._typed(schema, kind, depth)
        if "oneOf" in schema or "anyOf" in schema:
            made = made.filter(self.validator(schema).is_valid)
        return made

    def _typed(self, schema: dict[str, Any], kind: Any, depth: int) -> st.SearchStrategy[Any]:
        if kind == "string":
            low, high = schema.get("minLength", 0), schema.get("maxLength")
            if "pattern" in schema:
                return st.from_regex(schema["pattern"], fullmatch=True).filter(
                    lambda s: low <= len(s) <= (high if high is not None else len(s))
                )
            return st.text(min_size=low, max_size=min(high or _MAX_TEXT, max(low, _MAX_TEXT)))
        if kind == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            if "exclusiveMinimum" in schema:
                low = schema["exclusiveMinimum"] + 1
            if "exclusiveMaximum" in schema:
                high = schema["exclusiveMaximum"] - 1
            bounded = st.integers(min_value=low, max_value=high)
            if low is None and high is None:
                return bounded | st.sampled_from(_EDGE_INTEGERS)
            edges = [v for v in (low, high) if v is not None]
            return bounded | st.sampled_from(edges)
        if kind == "number":
            low = schema.get("minimum", schema.get("exclusiveMinimum"))
            high = schema.get("maximum", schema.get("exclusiveMaximum"))
            return st.floats(
                min_value=low,
                max_value=high,
                allow_nan=False,
                allow_infinity=False,
                exclude_min="exclusiveMinimum" in schema,
                exclude_max="exclusiveMaximum" in schema,
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            items = self.values(schema.get("items", {}), depth + 1)
            low = schema.get("minItems", 0)
            high = min(schema.get("maxItems", _MAX_ITEMS), max(low, _MAX_ITEMS))
            return st.lists(items, min_size=low, max_size=high)
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        return json_values(max(0, 2 - depth))

    def _object(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = st.fixed_dictionaries(
            {name: self.values(properties[name], depth + 1) for name in required},
            optional={
                name: self.values(sub, depth + 1)
                for name, sub in properties.items()
                if name not in required
            },
        )
        extra = schema.get("additionalProperties", not properties)
        if extra is False or (properties and extra is not True and not isinstance(extra, dict)):
            return fixed
        extra_schema = extra if isinstance(extra, dict) else {}
        extras = st.dictionaries(
            st.text(max_size=12).filter(lambda k: k not in properties),
            self.values(extra_schema, depth + 1),
            max_size=_MAX_ITEMS,
        )
        return st.builds(lambda a, b: {**b, **a}, fixed, extras)

    # -- invalid values --------------------------------------------------------------------

    def breakages(self, schema: dict[str, Any], value: Any) -> list[tuple[str, Any]]:
        """Ways to make `value` invalid at its top level, as (what, new value)."""
        schema = self.resolve(schema)
        out: list[tuple[str, Any]] = [
            ("an object for a scalar", {"unexpected": True}),
            ("a list for a scalar or object", [{"unexpected": True}]),
            ("a string for a number, boolean or container", "not-a-number"),
        ]
        options = [self.resolve(s) for s in schema.get("anyOf", schema.get("oneOf", [schema]))]
        for option in options:
            if "maxLength" in option:
                out.append(("a string over maxLength", "a" * (option["maxLength"] + 1)))
            if option.get("minLength", 0) > 0:
                out.append(("a string under minLength", ""))
            if "maximum" in option:
                out.append(("a number over maximum", option["maximum"] + 1))
            if "minimum" in option:
                out.append(("a number under minimum", option["minimum"] - 1))
            if "enum" in option or "const" in option:
                out.append(("a value outside the enum", "not-a-choice"))
            if "pattern" in option:
                out.append(("a string outside the pattern", "bad~id"))
            if "maxItems" in option:
                out.append(("a list over maxItems", [None] * (option["maxItems"] + 1)))
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name in value:
                    out.append((f"{name} missing", {k: v for k, v in value.items() if k != name}))
            if schema.get("additionalProperties") is False:
                out.append(("an unknown field", {**value, "unexpected_field": 1}))
        return out

    def invalid_values(self, schema: dict[str, Any], value: Any) -> list[tuple[str, Any]]:
        """Mutations of `value`, at its top level or in one of its fields, that `schema`
        rejects."""
        schema = self.resolve(schema)
        found = self.breakages(schema, value)
        if isinstance(value, dict):
            for name, sub in self._object_properties(schema).items():
                for what, broken in self.breakages(sub, value.get(name)):
                    found.append((f"{name}: {what}", {**value, name: broken}))
        return [(w, v) for w, v in found if not self.is_valid(schema, v)]

    def _object_properties(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "properties" in schema:
            return dict(schema["properties"])
        for option in schema.get("anyOf", []):
            option = self.resolve(option)
            if "properties" in option:
                return dict(option["properties"])
        return {}


class Operation:
    """One operation of the document: its requests, and the checks of its responses."""

    def __init__(self, schemas: Schemas, method: str, path: str, known: dict[str, list[str]]):
        self.schemas = schemas
        self.method = method.upper()
        self.path = path
        self.spec = schemas.document["paths"][path][method.lower()]
        self.parameters = self.spec.get("parameters", [])
        self.known = known
        body = self.spec.get("requestBody")
        self.body_schema = body["content"]["application/json"]["schema"] if body else None
        self.body_required = bool(body and body.get("required"))

    @property
    def secured(self) -> bool:
        """Whether the operation takes an API key."""
        return bool(self.spec.get("security"))

    def _param_values(self, param: dict[str, Any]) -> st.SearchStrategy[Any]:
        made = self.schemas.values(param["schema"])
        if param["in"] == "path" and self.known.get(param["name"]):
            # Mostly what exists, so answers other than 404 are reached.
            existing = st.sampled_from(self.known[param["name"]])
            return st.one_of(existing, existing, existing, made)
        return made

    def _parameters(self) -> st.SearchStrategy[dict[str, Any]]:
        required = {p["name"]: self._param_values(p) for p in self.parameters if p.get("required")}
        optional = {
            p["name"]: self._param_values(p) for p in self.parameters if not p.get("required")
        }
        return st.fixed_dictionaries(required, optional=optional)

    def _request(self, values: dict[str, Any], body: Any, **extra: Any) -> Request:
        path, query, headers = self.path, {}, {}
        for param in self.parameters:
            if param["name"] not in values or values[param["name"]] is None:
                continue
            text = _text(values[param["name"]])
            if param["in"] == "path":
                path = path.replace("{" + param["name"] + "}", quote(text, safe=""))
            elif param["in"] == "header":
                # A header carries printable ASCII: anything else goes percent-encoded
                # (longer, so a value over its maximum length stays over it).
                printable = text.isascii() and text.isprintable()
                headers[param["name"]] = text if printable else quote(text, safe="")
            else:
                query[param["name"]] = text
        return Request(self.method, path, query, body, headers=headers, **extra)

    def valid_request(self) -> st.SearchStrategy[Request]:
        """Requests the schema accepts."""
        if self.body_schema is None:
            bodies: st.SearchStrategy[Any] = st.just(NO_BODY)
        else:
            bodies = self.schemas.values(self.body_schema)
            if not self.body_required:
                bodies = st.just(NO_BODY) | bodies
        return st.builds(self._request, self._parameters(), bodies)

    def invalid_request(self) -> st.SearchStrategy[Request]:
        """Requests the schema rejects: one parameter or body value broken, or no JSON."""
        return _invalid_request(self)

    # -- checks ----------------------------------------------------------------------------

    def problems(self, request: Request, status: int, headers: Any, body: bytes) -> list[str]:
        """What is wrong with a response to `request`."""
        found: list[str] = []
        if status >= 500:
            found.append(f"server error {status}")
        if request.negative and request.raw is None and 200 <= status < 300:
            found.append(f"an invalid request ({request.why}) was accepted with {status}")
        documented = self.spec["responses"].get(str(status)) or self.spec["responses"].get(
            "default"
        )
        if documented is None:
            found.append(f"status {status} is not documented ({sorted(self.spec['responses'])})")
            return found
        content = documented.get("content")
        media = headers.get("content-type", "").split(";")[0].strip()
        if not content:
            if body:
                found.append(f"status {status} documents no body, got {body[:200]!r}")
            return found
        if media not in content:
            found.append(f"content type {media!r} is not documented for {status}: {list(content)}")
            return found
        if media == "application/json":
            try:
                value = json.loads(body)
            except ValueError:
                return [*found, f"the body is not JSON: {body[:200]!r}"]
            errors = sorted(
                self.schemas.validator(content[media].get("schema", {})).iter_errors(value),
                key=str,
            )
            if errors:
                found.append(f"the body does not match the schema of {status}: {errors[0].message}")
        elif media == "text/event-stream":
            found.extend(_sse_problems(body))
        return found


@st.composite
def _invalid_request(draw: st.DrawFn, self: Operation) -> Request:
    """Requests the schema rejects: one parameter or body value broken, or no JSON."""
    values = draw(self._parameters())
    choices: list[tuple[str, Any]] = []
    for param in self.parameters:
        for what, broken in self.schemas.breakages(param["schema"], values.get(param["name"])):
            text = _text(broken)
            if param["in"] == "path" and not text:
                continue  # an empty segment makes another path, not another value
            read = _as_read(self.schemas.resolve(param["schema"]), text)
            if not self.schemas.is_valid(param["schema"], read):
                choices.append((f"{param['name']}: {what}", ("param", param["name"], text)))
    body: Any = NO_BODY
    if self.body_schema is not None:
        body = draw(self.schemas.values(self.body_schema))
        for what, broken in self.schemas.invalid_values(self.body_schema, body):
            choices.append((f"body {what}", ("body", None, broken)))
        choices.append(("a body that is not JSON", ("raw", None, b"{not json")))
        choices.append(("JSON nested 10,000 deep", ("raw", None, b"[" * 10_000 + b"]" * 10_000)))
        if self.body_required:
            choices.append(("no body", ("body", None, NO_BODY)))
    if not choices:
        return self._request(values, body, why="no way to break it")
    what, (kind, name, broken) = draw(st.sampled_from(choices))
    if kind == "param":
        return self._request({**values, name: broken}, body, negative=True, why=what)
    if kind == "raw":
        return self._request(values, NO_BODY, raw=broken, negative=True, why=what)
    return self._request(values, broken, negative=True, why=what)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _as_read(schema: dict[str, Any], text: str) -> Any:
    """A query or path value as the server reads it: a number or boolean where the schema
    allows one and the text is one, a list of it where the schema is a list, else the text."""
    kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
    if kinds == {"array"}:  # one query value is a list of one item
        items = schema.get("items") or {}
        return [_as_read(items, text)]
    if "integer" in kinds and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if "number" in kinds:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in kinds and text.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return text.lower() in ("true", "1", "yes", "on")
    return text


def _sse_problems(body: bytes) -> list[str]:
    """What is wrong with a server-sent-events body: each event's data must be JSON."""
    found = []
    for block in body.decode("utf-8", "replace").split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                try:
                    json.loads(line.removeprefix("data: "))
                except ValueError:
                    found.append(f"an event's data is not JSON: {line[:200]!r}")
            elif line and not line.startswith(("event: ", ":", "id: ", "retry: ")):
                found.append(f"not a server-sent-events line: {line[:200]!r}")
    return found


def path_methods(document: dict[str, Any]) -> dict[str, set[str]]:
    """Each path of the document and the methods it documents."""
    return {path: {m.upper() for m in ops} for path, ops in document["paths"].items()}


def concrete(path: str, known: dict[str, list[str]]) -> str:
    """`path` with each parameter replaced by a known value (or `x`)."""
    return _PATH_PARAM.sub(lambda m: (known.get(m.group(1)) or ["x"])[0], path)
