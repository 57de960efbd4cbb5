"""Request and response bodies of the HTTP API, with the bounds every input must respect."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from agent.namespaces import ID_PATTERN
from agent.transcript import without_binary
from memory.errors import InvalidInputError

#: Deepest nesting accepted in client JSON (metadata, memory values).
MAX_JSON_DEPTH = 20
#: Most keys of a thread's metadata, and its longest serialised form.
MAX_METADATA_KEYS = 50
MAX_METADATA_CHARS = 16_000
MAX_QUERY_CHARS = 2000
#: The integers every backend stores exactly (RedisJSON and SQLite hold 64-bit integers).
INT64 = (-(2**63), 2**63 - 1)


class JsonValueError(ValueError):
    """A value no backend can store; `path` locates it inside the value validated."""

    def __init__(self, problem: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(problem)
        self.path = path


def json_path(path: tuple[str | int, ...]) -> str:
    """`("a", 0, "b")` as `a[0].b`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _text_problem(value: str, what: str) -> str | None:
    if "\x00" in value:
        return f"{what} must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid Unicode (unpaired surrogate)"
    return None


def check_text(value: str, field: str = "text") -> str:
    """Reject text no backend can store: NUL characters and unpaired surrogates."""
    if problem := _text_problem(value, field):
        raise ValueError(problem)
    return value


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return "integers must fit in 64 bits (-2**63 to 2**63-1)"
    if isinstance(value, str):
        return _text_problem(value, "strings")
    return None


def text_size(content: Any) -> int:
    """A message content's size in characters, as the message limit counts it: a string's
    length, or a block list's JSON without the base64 data of its images, files and audio."""
    if isinstance(content, str):
        return len(content)
    return len(json.dumps(without_binary(content), ensure_ascii=False))


def check_json(
    value: Any, depth: int = 0, path: tuple[str | int, ...] = (), max_depth: int | None = None
) -> Any:
    """Reject JSON that not every backend (Postgres jsonb, SQLite, RedisJSON) can store:
    NaN/Infinity, integers past 64 bits, NUL, unpaired surrogates, nesting deeper than
    `max_depth` levels below `value` (default `MAX_JSON_DEPTH`; -1: any depth).

    Raises:
        JsonValueError: the problem, with the path of the bad value inside `value`.
    """
    limit = MAX_JSON_DEPTH if max_depth is None else max_depth
    pending: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, depth, path)]
    while pending:
        node, level, where = pending.pop()
        if 0 <= limit < level:
            raise JsonValueError(f"JSON is nested deeper than {limit} levels", where)
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str) and (problem := _text_problem(key, "keys")):
                    raise JsonValueError(problem, (*where, key))
                pending.append((item, level + 1, (*where, key)))
        elif isinstance(node, list | tuple):
            pending.extend((item, level + 1, (*where, i)) for i, item in enumerate(node))
        elif problem := _scalar_problem(node):
            raise JsonValueError(problem, where)
    return value


def check_storable(value: Any) -> Any:
    """`check_json` at any depth: a whole request body, before its fields are read."""
    return check_json(value, max_depth=-1)


def _query_int(value: Any) -> Any:
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError("must be an integer: decimal digits, a '-' before them at most")
    return value


def _json_int(value: Any) -> Any:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer, not a boolean or a string")
    return value


def _query_bool(value: Any) -> Any:
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be `true` or `false`")
    return value


def _query_flag(value: Any) -> Any:
    if isinstance(value, str) and value not in ("true", "false", "0", "1"):
        raise ValueError("must be `true`, `false`, `1` or `0`")
    return value


_DECIMAL = re.compile(r"-?[0-9]{1,19}")
#: A query integer as clients write one (`20`, `-5`): not `1.0`, `1e3`, `+5` or `1_000`.
QueryInt = Annotated[int, BeforeValidator(_query_int)]
#: A body integer: a JSON number without a fraction (`5`, or `5.0`, which JSON Schema calls
#: an integer too), never a boolean or a string.
JsonInt = Annotated[int, BeforeValidator(_json_int)]
#: A query boolean as clients write one: `true` or `false`, not `1`, `yes` or `on`.
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
#: A query boolean that may also be `1` or `0`, as langgraph-sdk sends some.
QueryFlag = Annotated[
    bool,
    BeforeValidator(_query_flag),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]}),
]
#: Text every backend stores: no NUL (the schema says so; unpaired surrogates, which JSON
#: Schema cannot name, are refused as well).
SafeText = Annotated[
    str, AfterValidator(check_text), Field(json_schema_extra={"not": {"pattern": "\\u0000"}})
]
JsonValue = Annotated[Any, AfterValidator(check_json)]
ThreadIdField = Annotated[str, Field(pattern=ID_PATTERN, description="1-128 of A-Z a-z 0-9 _-:@")]
RunId = Annotated[str, Path(min_length=1, max_length=256, description="The run's id.")]


class StorableBody(BaseModel):
    """A request body: every value in it, known field or not, is JSON that every backend
    can store (answered 422 with the value's path otherwise)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


class _Request(StorableBody):
    # Unknown fields are rejected, so nothing in a body can reach the owner or run config.
    model_config = ConfigDict(extra="forbid")


class MessageIn(_Request):
    """One message a client sends to a run: its text, as the user (or an earlier reply)."""

    role: Literal["user", "assistant"] = Field(
        default="user", description="`user`, or `assistant` to import earlier replies."
    )
    content: SafeText = Field(description="The text of the message.")
    metadata: dict[SafeText, JsonValue] | None = Field(
        default=None, description="Kept with the message and returned with it."
    )

    @model_validator(mode="after")
    def _bounded(self) -> MessageIn:
        if self.metadata is not None and len(json.dumps(self.metadata)) > MAX_METADATA_CHARS:
            raise ValueError(f"metadata is longer than {MAX_METADATA_CHARS} characters as JSON")
        return self


class ExchangeMessageIn(MessageIn):
    """A message appended to a thread: any role, a whole tool exchange in LangChain or
    OpenAI form. Ids are the server's: a client's could replace a message in the state."""

    role: Literal["system", "user", "assistant", "tool"] = Field(  # type: ignore[assignment]
        default="user",
        description="`user`, `assistant` (with `tool_calls`), `tool` (with `tool_call_id`) "
        "or `system`.",
    )
    content: SafeText = Field(default="", description="The text of the message.")
    name: SafeText | None = Field(default=None, max_length=200)
    tool_calls: list[dict[SafeText, JsonValue]] | None = Field(
        default=None,
        max_length=50,
        description='`{"id", "name", "args"}` or OpenAI\'s `{"id", "type": "function", '
        '"function": {"name", "arguments"}}`.',
    )
    tool_call_id: SafeText | None = Field(
        default=None, max_length=200, description="The call a `tool` message answers."
    )


def _one_of_message_or_messages(schema: dict[str, Any]) -> None:
    # Exactly one of the two: the schema says what the validators enforce.
    schema["oneOf"] = [
        {
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        },
        {
            "required": ["messages"],
            "properties": {"messages": {"type": "array", "minItems": 1}},
        },
    ]


class MessagesIn(_Request):
    """One message (`message`) or several (`messages`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_message_or_messages)

    message: SafeText | None = Field(
        default=None, description="A single user message (not only spaces)."
    )
    messages: list[MessageIn] | None = Field(
        default=None,
        min_length=1,
        description="Several messages, oldest first; the last should be the user's.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> MessagesIn:
        if (self.message is None) == (self.messages is None):
            raise ValueError("send exactly one of `message` or `messages`")
        return self

    def to_dicts(self, max_chars: int, max_messages: int) -> list[dict[str, Any]]:
        """The messages as `{"role", "content"}` dicts, within the server's bounds.

        Raises:
            InvalidInputError: too many messages, an empty list, or a message too long.
        """
        if self.message is not None:
            if len(self.message) > max_chars:
                raise InvalidInputError(
                    f"message is {len(self.message)} characters; the limit is {max_chars}"
                )
            if not self.message.strip():
                raise InvalidInputError("message must not be empty")
            return [{"role": "user", "content": self.message}]
        items = self.messages or []
        if not items:
            raise InvalidInputError("messages must hold at least one message")
        if len(items) > max_messages:
            raise InvalidInputError(
                f"messages holds {len(items)} messages; the limit is {max_messages}"
            )
        for i, item in enumerate(items):
            if len(item.content) > max_chars:
                raise InvalidInputError(
                    f"messages[{i}].content is {len(item.content)} characters; "
                    f"the limit is {max_chars}"
                )
        return [m.model_dump(exclude_none=True) for m in items]


def _one_of_message_messages_or_resume(schema: dict[str, Any]) -> None:
    _one_of_message_or_messages(schema)
    schema["oneOf"].append({"required": ["resume"]})


class RunRequest(MessagesIn):
    """One message (`message`) or several (`messages`) to send to the agent, or the answer
    (`resume`) to the pause its thread waits at."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_message_messages_or_resume)

    resume: JsonValue = Field(
        default=None,
        description="Answer the thread's pause (a graph's `interrupt()`, such as a tool call "
        "waiting for approval) with this value instead of sending a message; a map of "
        "interrupt id to value answers several. The run goes on from where the thread waits.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> RunRequest:
        sent = [self.message is not None, self.messages is not None, self.resume is not None]
        if sum(sent) != 1:
            raise ValueError("send exactly one of `message`, `messages` or `resume`")
        return self

    def to_dicts(self, max_chars: int, max_messages: int) -> list[dict[str, Any]]:
        """The messages, as `MessagesIn.to_dicts`; none for an answer to a pause."""
        if self.resume is not None:
            return []
        return super().to_dicts(max_chars, max_messages)

    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = Field(
        default=None,
        description="What the run does when its thread has one active: `reject` (the "
        "default) answers 409, `enqueue` runs after it, `interrupt` stops it keeping what it "
        "did, `rollback` stops it and removes what it did.",
    )


class AppendMessages(MessagesIn):
    """Messages to append to a thread without running the model (`message` is a user one)."""

    messages: list[ExchangeMessageIn] | None = Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        description="Several messages, oldest first, a tool exchange included.",
    )


class Appended(BaseModel):
    """What an append did."""

    thread_id: str
    added: int
    total: int = Field(description="Messages in the transcript afterwards.")


class UndoIn(_Request):
    """How many of the thread's last messages to remove (whole turns only)."""

    messages: JsonInt = Field(
        default=1,
        ge=1,
        le=100_000,
        description="Count from the end; the first removed is a user message.",
    )


class UndoOut(BaseModel):
    """What an undo removed and left."""

    thread_id: str
    removed: int
    messages: int = Field(description="Messages in the transcript afterwards.")


class SummaryIn(_Request):
    """A replacement for a thread's running summary."""

    summary: SafeText = Field(max_length=20_000)


class SummaryOut(BaseModel):
    """A thread's running summary."""

    thread_id: str
    summary: str


class ChatRequest(RunRequest):
    """A run for the simplest clients: resumes `thread_id`, or starts a new thread."""

    thread_id: ThreadIdField | None = Field(default=None, description="Thread to resume.")


class CreateThread(_Request):
    """A new session; its id is a random UUID unless the client chooses one."""

    thread_id: ThreadIdField | None = None
    metadata: dict[SafeText, JsonValue] | None = Field(
        default=None,
        description=f"Free JSON object: at most {MAX_METADATA_KEYS} keys and "
        f"{MAX_METADATA_CHARS} characters.",
    )
    if_exists: Literal["raise", "do_nothing"] = Field(
        default="raise",
        description="When `thread_id` exists: `raise` answers 409, `do_nothing` answers 200 "
        "with the existing session (get-or-create in one call; its metadata is unchanged).",
    )

    @model_validator(mode="after")
    def _bounded(self) -> CreateThread:
        if self.metadata is None:
            return self
        if len(self.metadata) > MAX_METADATA_KEYS:
            raise ValueError(f"metadata has more than {MAX_METADATA_KEYS} keys")
        if len(json.dumps(self.metadata)) > MAX_METADATA_CHARS:
            raise ValueError(f"metadata is longer than {MAX_METADATA_CHARS} characters as JSON")
        return self


class MemoryIn(_Request):
    """The value of a memory: any JSON, at most 4000 characters once serialised."""

    value: JsonValue


class PatchOp(_Request):
    """One RFC 6902 operation; `value` for add, replace and test, `from` for move and copy."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(max_length=1000, description="A JSON Pointer into the memory's value.")
    value: JsonValue = None
    from_: str | None = Field(default=None, alias="from", max_length=1000)

    def document(self) -> dict[str, Any]:
        """The operation as `jsonpatch` takes it."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class FieldError(BaseModel):
    """One field a request got wrong."""

    loc: list[str | int] = Field(description="Where: `body`, `query` or `path`, then the field.")
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error: what went wrong, in words."""

    detail: str | list[FieldError] = Field(
        description="A sentence, or the fields a request got wrong (422)."
    )
    operation: int | None = Field(
        default=None, description="A JSON Patch that failed (409): the failed operation's index."
    )


class MessageOut(BaseModel):
    """One message of a transcript."""

    model_config = ConfigDict(extra="allow")

    seq: int | None = None
    id: str | None = None
    role: str
    content: Any
    created_at: str | None = None


class PendingInterrupt(BaseModel):
    """A pause the thread waits at: what the graph asks (`value`) and the id to answer."""

    id: str
    value: Any


class RunOut(BaseModel):
    """The reply of a run and every message it added."""

    thread_id: str
    reply: str
    messages: list[MessageOut]
    interrupts: list[PendingInterrupt] = Field(
        default_factory=list,
        description="Pauses the run ended at (a tool call waiting for approval): answer with "
        "a run whose `resume` holds the value, or a map of `id` to value.",
    )
    previous_thread_id: str | None = Field(
        default=None,
        description="`/chat` only: the session asked for, which had ended or expired; the "
        "run went to a new session, `thread_id`.",
    )
    reason: str | None = Field(default=None, description="Why a new session was started.")


class MessagePage(BaseModel):
    """A page of a transcript, in the order asked for."""

    items: list[MessageOut]
    total: int


class Analytics(BaseModel):
    """Figures about a session."""

    duration_seconds: float
    message_counts: dict[str, int]
    top_topics: list[dict[str, Any]]


class ThreadOut(BaseModel):
    """A session."""

    model_config = ConfigDict(extra="allow")

    thread_id: str
    status: Literal["active", "ended"]
    created_at: str
    last_active_at: str
    ended_at: str | None = None
    message_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadDetail(ThreadOut):
    """A session with its summary and analytics."""

    summary: str = ""
    running: bool = False
    analytics: Analytics


class ThreadPage(BaseModel):
    """The caller's sessions, newest activity first."""

    items: list[ThreadOut]
    total: int


class StateOut(BaseModel):
    """The working state: the messages in the window and the running summary."""

    thread_id: str
    messages: list[MessageOut]
    summary: str
    transcript_len: int
    checkpoint_id: str | None
    next: list[str]
    interrupts: list[PendingInterrupt] = Field(
        default_factory=list,
        description="Pauses the thread waits at (a tool call waiting for approval): answer "
        "with a run whose `resume` holds the value, or a map of `id` to value.",
    )


class CheckpointOut(BaseModel):
    """One checkpoint of a thread."""

    checkpoint_id: str
    parent_checkpoint_id: str | None
    created_at: str | None
    step: int | None
    source: str | None
    next: list[str]
    message_count: int


class CheckpointPage(BaseModel):
    """A thread's checkpoints, newest first."""

    items: list[CheckpointOut]
    total: int


class MemoryOut(BaseModel):
    """A memory."""

    model_config = ConfigDict(extra="allow")

    key: str
    value: Any
    content: str
    scope: Literal["user", "session"]
    created_at: str
    updated_at: str
    etag: str = Field(description="The memory's version, for `If-Match` (also the ETag header).")
    score: float | None = None


class MemoryPage(BaseModel):
    """Memories, most relevant first for a search."""

    items: list[MemoryOut]
    total: int = Field(
        description="How many memories there are; for a search, how many matched (returned)."
    )


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ServerConfig(BaseModel):
    """What this server runs, as the caller sees it."""

    model: str = Field(description="The chat model: `offline`, or the `provider:model` in use.")
    offline: bool = Field(description="True when the deterministic offline model answers.")
    dev_mode: bool = Field(description="True when no API keys are configured.")
    tenant: str
    user: str
    version: str


class Readiness(BaseModel):
    """Each backend's reachability, by name."""

    status: Literal["ok", "unavailable", "stopping"]
    backends: dict[str, dict[str, Any]]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route may answer."""
    text = {
        400: "The body could not be read as JSON (nested too deeply).",
        401: "Missing or unknown API key.",
        404: "Not found: the thread, memory, assistant, run or checkpoint named (also another "
        "user's), or no route at the path.",
        409: "Conflict: a run is active, the session has ended, it exists, or the cap is hit; "
        "for a JSON Patch, the failed operation (`operation` is its index).",
        412: "Precondition failed: the memory is not at the version `If-Match` names, or "
        "exists despite `If-None-Match: *`; nothing was written.",
        413: "Request body too large.",
        415: "A JSON Patch must be sent as `application/json-patch+json`.",
        422: "Invalid input; `detail` names the field.",
        429: "Rate limit reached; see the Retry-After header.",
        503: "The database could not be reached in time; see the Retry-After header.",
    }
    return {code: {"model": ErrorOut, "description": text[code]} for code in codes}
