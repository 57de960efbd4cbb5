"""Request bodies of the LangGraph server API, with the bounds every input must respect.

Unknown fields are ignored, not rejected: the SDKs send fields that vary between versions
(`stream_resumable`, `feedback_keys`, ...). Fields that would change what a run does and
that this server does not implement are rejected with a 422 naming them. Nothing here can
choose the owner: it always comes from the API key.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.transcript import binary_bytes
from memory.errors import InvalidInputError
from memory.stores.values import check_filter
from server.schemas import (
    MAX_METADATA_CHARS,
    MAX_METADATA_KEYS,
    MAX_QUERY_CHARS,
    JsonInt,
    JsonValue,
    SafeText,
    StorableBody,
    ThreadIdField,
    check_json,
    text_size,
)

#: Stream modes served; `messages-tuple` is sent as `messages` events, `messages` as
#: `messages/metadata`, `messages/partial` and `messages/complete` ones.
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "tasks",
    "checkpoints",
    "debug",
    "events",
)
MAX_LABELS = 10
MAX_LABEL_CHARS = 128
MAX_KEY_CHARS = 1024
_LABEL = f"[^.\\u0000]{{1,{MAX_LABEL_CHARS}}}"
#: A namespace label as `check_namespace` takes it (the schema of each list item).
Label = Annotated[
    str,
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS, "pattern": f"^{_LABEL}$"}
    ),
]
#: Labels joined by dots, as `GET /store/items` takes a namespace.
DOTTED_NAMESPACE = f"^({_LABEL}(\\.{_LABEL}){{0,{MAX_LABELS - 1}}})?$"
PageLimit = Annotated[JsonInt, Field(ge=1, le=1000)]
#: Path parameters that name something of the server's: never empty (an empty segment is
#: another path).
AssistantId = Annotated[
    str, Path(min_length=1, max_length=256, description="`agent`, or the assistant's id.")
]
CheckpointId = Annotated[
    str, Path(min_length=1, max_length=256, description="The checkpoint's id.")
]
Offset = Annotated[JsonInt, Field(ge=0, le=1_000_000_000)]
#: The longest `after_seconds` a run may wait before it starts (a week).
MAX_DELAY_SECONDS = 7 * 86400


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Bound metadata like the native API does."""
    if value is None:
        return None
    check_json(value)
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has more than {MAX_METADATA_KEYS} keys")
    if len(json.dumps(value)) > MAX_METADATA_CHARS:
        raise ValueError(f"metadata is longer than {MAX_METADATA_CHARS} characters as JSON")
    return value


def check_namespace(
    labels: list[str] | tuple[str, ...], field: str = "namespace"
) -> tuple[str, ...]:
    """A client's store namespace: at most `MAX_LABELS` non-empty labels without dots."""
    if len(labels) > MAX_LABELS:
        raise InvalidInputError(f"{field} has more than {MAX_LABELS} labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label or "." in label:
            raise InvalidInputError(f"{field}[{i}] must be a non-empty string without '.'")
        if len(label) > MAX_LABEL_CHARS or "\x00" in label:
            raise InvalidInputError(
                f"{field}[{i}] must be at most {MAX_LABEL_CHARS} characters, without NUL"
            )
    return tuple(labels)


class _Body(StorableBody):
    model_config = ConfigDict(extra="ignore")


#: What a field the server does not implement may be: left out, `null` or empty.
_UNSET = {
    "command": {"anyOf": [{"type": "null"}, {"type": "object", "maxProperties": 0}]},
    "interrupt_before": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
    "interrupt_after": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
    "webhook": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]},
}
#: What a field that names a checkpoint may be: left out, `null` or empty (no forking).
_NO_CHECKPOINT = {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]}


def _run_schema(schema: dict[str, Any]) -> None:
    # What `RunCreate._supported` enforces, in the schema: input with messages, no command,
    # interrupts, webhook or checkpoint to start from.
    props = schema["properties"]
    schema["required"] = sorted({*schema.get("required", []), "input"})
    props["input"] = {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "messages": {
                "anyOf": [
                    {"type": "array", "minItems": 1, "items": {"type": "object"}},
                    {"type": "object"},
                ]
            }
        },
        "additionalProperties": False,
        "description": '`{"messages": [...]}`: the messages to add, the last a user\'s.',
    }
    for name, unset in _UNSET.items():
        props[name] = {**unset, "description": "Not supported: leave it out."}
    props["checkpoint_id"] = {**_NO_CHECKPOINT, "description": "Not supported: leave it out."}
    props["checkpoint"] = {
        "anyOf": [{"type": "null"}, _checkpoint_ref_at_head()],
        "description": "Only the thread's head (no `checkpoint_id`).",
    }
    props["stream_mode"] = {
        "anyOf": [
            {"type": "string", "enum": list(STREAM_MODES)},
            {"type": "array", "items": {"type": "string", "enum": list(STREAM_MODES)}},
        ],
        "default": "values",
    }


def _checkpoint_ref_at_head() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "checkpoint_id": _NO_CHECKPOINT,
            "checkpoint_ns": {"type": "string", "maxLength": 0},
        },
    }


Metadata = dict[str, JsonValue] | None


class ThreadCreate(_Body):
    """`POST /threads`; `supersteps` are state updates applied, in order, to a thread this
    request creates (a history copied in from elsewhere)."""

    thread_id: ThreadIdField | None = None
    metadata: Metadata = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[Superstep] | None = Field(default=None, max_length=100)

    _metadata = field_validator("metadata")(check_metadata)


class ThreadPatch(_Body):
    """`PATCH /threads/{id}`."""

    metadata: Metadata = None

    _metadata = field_validator("metadata")(check_metadata)


#: The fields of a thread a search may `select`.
ThreadField = Literal[
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "status",
    "config",
    "values",
    "interrupts",
    "error",
]


class ThreadSearch(_Body):
    """`POST /threads/search`."""

    metadata: Metadata = None
    ids: list[ThreadIdField] | None = Field(default=None, max_length=1000)
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: PageLimit = 10
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    values: dict[str, Any] | None = None
    select: list[ThreadField] | None = Field(default=None, min_length=1)

    @field_validator("values")
    @classmethod
    def _no_values_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError("filtering threads by values is not supported; use metadata")
        return value


class ThreadCount(_Body):
    """`POST /threads/count`."""

    metadata: Metadata = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    values: dict[str, Any] | None = None

    @field_validator("values")
    @classmethod
    def _no_values_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return ThreadSearch._no_values_filter(value)


class ThreadPrune(_Body):
    """`POST /threads/prune`."""

    thread_ids: list[ThreadIdField] = Field(min_length=1, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class CheckpointRef(_Body):
    """A checkpoint of the thread in the path."""

    checkpoint_id: SafeText | None = Field(default=None, max_length=256)
    checkpoint_ns: SafeText = Field(default="", json_schema_extra={"maxLength": 0})

    @field_validator("checkpoint_ns")
    @classmethod
    def _root_only(cls, value: str) -> str:
        if value:
            raise ValueError("this graph has no subgraphs: checkpoint_ns must be empty")
        return value


class StateAt(_Body):
    """`POST /threads/{id}/state/checkpoint`."""

    checkpoint: CheckpointRef
    subgraphs: StrictBool = False


def _state_update_schema(schema: dict[str, Any]) -> None:
    # What `StateUpdate._supported` enforces: messages and/or a summary, at the head.
    props = schema["properties"]
    props["values"] = {
        "anyOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {
                    "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                    "summary": {"type": "string"},
                },
                "additionalProperties": False,
            },
        ]
    }
    props["as_node"] = {"anyOf": [{"type": "null"}, {"type": "string"}]}
    props["command"] = {"type": "null"}
    props["checkpoint_id"] = _NO_CHECKPOINT
    props["checkpoint"] = {"anyOf": [{"type": "null"}, _checkpoint_ref_at_head()]}


class StateUpdate(_Body):
    """`POST /threads/{id}/state`: add messages and/or replace the summary, as `as_node`
    (default `call_model`, the node that adds messages); no values: a checkpoint of no
    writes as `as_node`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_state_update_schema)

    values: dict[str, JsonValue] | None = None
    as_node: SafeText | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: SafeText | None = None
    command: dict[SafeText, JsonValue] | None = None

    @model_validator(mode="after")
    def _supported(self) -> StateUpdate:
        if self.command is not None:
            raise ValueError("a command in a state update is not supported: run it instead")
        if self.checkpoint_id or (self.checkpoint and self.checkpoint.checkpoint_id):
            raise ValueError("updating an earlier checkpoint (forking) is not supported")
        if not self.values:
            return self
        if unknown := sorted(set(self.values) - {"messages", "summary"}):
            raise ValueError(f"values may set messages and summary only, not {unknown}")
        summary = self.values.get("summary")
        if "summary" in self.values and not isinstance(summary, str):
            raise ValueError("values.summary must be a string")
        return self


class Superstep(_Body):
    """One step of a thread's copied-in history: its state updates, in order."""

    updates: list[StateUpdate] = Field(min_length=1, max_length=100)


class History(_Body):
    """`POST /threads/{id}/history`."""

    limit: PageLimit = 10
    before: CheckpointRef | SafeText | None = None
    metadata: Metadata = None
    checkpoint: CheckpointRef | None = None

    @property
    def before_id(self) -> str | None:
        """The checkpoint id the page starts after."""
        if isinstance(self.before, CheckpointRef):
            return self.before.checkpoint_id
        return self.before


class RunContext(_Body):
    """Per-run tuning a client may set; `user_id` and `tenant_id` are ignored (the API key
    decides), as are fields outside this list (the deployment chooses the model)."""

    token_budget: JsonInt | None = Field(default=None, ge=100, le=1_000_000)
    keep_ratio: StrictFloat | None = Field(default=None, ge=0.05, le=0.95)
    summary_max_tokens: JsonInt | None = Field(default=None, ge=16, le=100_000)
    memory_search_limit: JsonInt | None = Field(default=None, ge=0, le=100)

    def overrides(self) -> dict[str, Any]:
        """The fields the client set."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


#: `configurable` keys the server sets itself: a run cannot choose them.
RESERVED_CONFIGURABLE = frozenset(
    {"thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map", "user_id", "tenant_id"}
)


class RunConfig(_Body):
    """A run's `config`: what LangGraph's server passes to the graph."""

    recursion_limit: int | None = Field(default=None, ge=1, le=10_000)
    tags: list[SafeText] | None = Field(default=None, max_length=MAX_LABELS)
    run_name: SafeText | None = Field(default=None, max_length=256)
    configurable: dict[str, JsonValue] | None = Field(default=None, max_length=MAX_METADATA_KEYS)

    @field_validator("configurable")
    @classmethod
    def _not_reserved(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        check_metadata(value)
        # Set by the server (the SDKs echo some back): ignored, never taken.
        return {
            k: v
            for k, v in value.items()
            if k not in RESERVED_CONFIGURABLE and not k.startswith("__")
        }

    def graph_config(self) -> dict[str, Any]:
        """The fields set, as a `RunnableConfig` to merge into the run's."""
        return self.model_dump(exclude_none=True, exclude_unset=True)


class RunCommand(_Body):
    """A run's `command`: the answer to the pause the thread waits at (`resume`: one value,
    or a map of interrupt id to value), an `update` of the state, a node to `goto`."""

    resume: JsonValue = None
    update: dict[str, JsonValue] | None = None
    goto: SafeText | list[SafeText] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The fields set, for `langgraph.types.Command`."""
        return self.model_dump(exclude_unset=True)


class RunCreate(_Body):
    """`POST /threads/{id}/runs`, `/runs/stream` and `/runs/wait`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_run_schema)

    assistant_id: SafeText = Field(max_length=256)
    input: dict[str, Any] | None = None
    command: RunCommand | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: SafeText | None = None
    config: RunConfig | None = None
    context: RunContext | None = None
    metadata: Metadata = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: StrictBool = False
    on_disconnect: Literal["cancel", "continue"] = "continue"
    if_not_exists: Literal["create", "reject"] = "reject"
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = Field(
        default=None,
        description="What a run meets when its thread has one active: `enqueue` (the "
        "default) runs after it, `reject` answers 409, `interrupt` stops it keeping what it "
        "did, `rollback` stops it and removes what it did.",
    )
    stream_resumable: StrictBool = Field(
        default=False,
        description="Keep the streamed run's events for rejoining "
        "(`GET /threads/{id}/runs/{run_id}/stream` with `Last-Event-ID`); runs that are not "
        "streamed to their caller always keep them.",
    )
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    webhook: str | None = None
    after_seconds: StrictFloat | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS)

    _metadata = field_validator("metadata")(check_metadata)

    @model_validator(mode="after")
    def _supported(self) -> RunCreate:
        if self.command is not None and self.input and self.input.get("messages"):
            raise ValueError("send input or command, not both")
        if self.webhook:
            raise ValueError("webhook is not supported")
        if not self.input:
            # `{}` is no input: what agent-chat-ui sends with an interrupt's answer.
            if self.from_checkpoint is None and self.command is None:
                raise ValueError("input is required: {'messages': [...]}")
            self.input = {"messages": []}  # continue what the checkpoint left to do
        elif set(self.input) != {"messages"}:
            raise ValueError("input must hold exactly one key, messages")
        messages = self.input["messages"]
        if isinstance(messages, dict):
            self.input = {"messages": [messages]}
        elif not isinstance(messages, list):
            raise ValueError("input.messages must be a list of messages")
        for i, item in enumerate(self.input["messages"]):
            if not isinstance(item, dict):
                raise ValueError(f"input.messages[{i}] must be an object")
            check_json(item, path=("input", "messages", i))
        for mode in self.modes:
            if mode not in STREAM_MODES:
                raise ValueError(
                    f"stream_mode {mode!r} is not supported; use {', '.join(STREAM_MODES)}"
                )
        return self

    @property
    def from_checkpoint(self) -> str | None:
        """The checkpoint the run starts from (`checkpoint_id`, or `checkpoint`'s); None:
        the thread's latest."""
        if self.checkpoint_id:
            return self.checkpoint_id
        return self.checkpoint.checkpoint_id if self.checkpoint else None

    @property
    def modes(self) -> list[str]:
        """The stream modes asked for, each once."""
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return list(dict.fromkeys(modes))

    def messages(
        self, max_chars: int, max_messages: int, max_binary: int = 0
    ) -> list[dict[str, Any]]:
        """The input messages, within the server's bounds: `max_chars` of text per message
        (its content without the base64 data of its images, files and audio), `max_binary`
        bytes of that data in all.

        Raises:
            InvalidInputError: too many messages, none, one too long, or too much binary data.
        """
        assert self.input is not None
        items = self.input["messages"]
        if not items and self.from_checkpoint is None and self.command is None:
            raise InvalidInputError("input.messages must hold at least one message")
        if len(items) > max_messages:
            raise InvalidInputError(
                f"input.messages holds {len(items)} messages; the limit is {max_messages}"
            )
        binary = 0
        for i, item in enumerate(items):
            content = item.get("content", "")
            size = text_size(content)
            if size > max_chars:
                raise InvalidInputError(
                    f"input.messages[{i}].content is {size} characters; the limit is {max_chars}"
                )
            binary += binary_bytes(content)
            if binary > max_binary:
                raise InvalidInputError(
                    f"input.messages[{i}].content takes the request's images, files and audio "
                    f"to {binary} bytes; the limit is {max_binary} (MEMORY_AGENT_MAX_ATTACHMENT_BYTES)"
                )
        return items


def _exactly_false(value: Any) -> Any:
    if value is not False:  # `0` equals False in Python, not in JSON
        raise ValueError("index must be false or a list of fields")
    return value


class RunCreateStateless(RunCreate):
    """`POST /runs/stream`, `/runs/wait`, `/runs` and each run of `/runs/batch`: a run on a
    thread of its own, made for it."""

    on_completion: Literal["delete", "keep"] = Field(
        default="delete",
        description="What becomes of the run's thread once the run ends: `delete` (the "
        "default) removes it with everything it holds, `keep` leaves it to the caller (read "
        "it by the run's `thread_id`).",
    )

    @model_validator(mode="after")
    def _stateless(self) -> RunCreateStateless:
        if self.from_checkpoint is not None:
            raise ValueError("a run without a thread has no checkpoint to start from")
        if self.command is not None and "resume" in self.command.model_fields_set:
            raise ValueError("a run without a thread has no pause to resume: name its thread")
        self.if_not_exists = "create"
        return self


#: Runs one `/runs/batch` call starts at most.
MAX_BATCH = 100


class StorePut(_Body):
    """`PUT /store/items`."""

    namespace: list[Label] = Field(max_length=MAX_LABELS)
    key: SafeText = Field(min_length=1, max_length=MAX_KEY_CHARS)
    value: dict[str, JsonValue]
    index: Annotated[Literal[False], BeforeValidator(_exactly_false)] | list[SafeText] | None = None
    ttl: StrictFloat | None = Field(
        default=None, ge=0, description="Minutes to keep the item (accepted, not applied)."
    )


class StoreDelete(_Body):
    """`DELETE /store/items`."""

    namespace: list[Label] = Field(max_length=MAX_LABELS)
    key: SafeText = Field(min_length=1, max_length=MAX_KEY_CHARS)


class StoreSearch(_Body):
    """`POST /store/items/search`."""

    namespace_prefix: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    filter: dict[str, JsonValue] | None = None
    limit: PageLimit = 10
    offset: Offset = 0
    query: SafeText | None = Field(default=None, max_length=MAX_QUERY_CHARS)

    _filter = field_validator("filter")(check_filter)


class StoreNamespaces(_Body):
    """`POST /store/namespaces`."""

    prefix: list[Label] | None = Field(default=None, max_length=MAX_LABELS)
    suffix: list[Label] | None = Field(default=None, max_length=MAX_LABELS)
    max_depth: JsonInt | None = Field(default=None, ge=1, le=MAX_LABELS)
    limit: PageLimit = 100
    offset: Offset = 0


class AssistantSearch(_Body):
    """`POST /assistants/search`."""

    graph_id: SafeText | None = None
    metadata: Metadata = None
    name: SafeText | None = None
    limit: PageLimit = 10
    offset: Offset = 0


class RunsCancel(_Body):
    """`POST /runs/cancel`: stop runs by id on a thread, or every active run of a thread."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra=lambda s: s.update(required=["thread_id"]),  # type: ignore[arg-type]
    )

    thread_id: ThreadIdField | None = None
    run_ids: list[SafeText] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _target(self) -> RunsCancel:
        if self.thread_id is None:
            raise ValueError("thread_id is required: runs are cancelled per thread")
        return self


ThreadCreate.model_rebuild()
