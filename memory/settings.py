"""Deployment settings, read from `MEMORY_AGENT_*` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.settings import AgentSettings

SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "redis", "rediss")


def langgraph_json_auth(directory: Path | None = None) -> str | None:
    """The `auth.path` a `langgraph.json` in `directory` (the working directory) names, as
    `langgraph dev` reads it; None without one. A relative file path is taken from there."""
    config = (directory or Path.cwd()) / "langgraph.json"
    try:
        found = json.loads(config.read_text()).get("auth", {}).get("path")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(found, str) or ":" not in found:
        return None
    target, _, attribute = found.rpartition(":")
    if target.endswith(".py") or "/" in target:
        target = str((config.parent / target).resolve())
    return f"{target}:{attribute}"


class Settings(AgentSettings):
    """Every deployment setting in one place (the agent's own first, from
    `agent.settings.AgentSettings`); an explicit argument beats the environment."""

    embeddings: str = Field(
        default="local",
        description="`local` (offline MiniLM ONNX), `none`, or `provider:model` for init_embeddings.",
    )
    data_dir: Path = Field(default=Path(".data"), description="Where the SQLite default lives.")
    database_url: str | None = Field(
        default=None,
        description="Checkpointer and store backend by scheme: memory://, sqlite:///path, "
        "postgresql://..., redis://... Default: sqlite under data_dir.",
    )
    store_url: str | None = Field(default=None, description="Overrides the store's backend alone.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Postgres connections per pool (the checkpointer and the store each have one).",
    )
    checkpoint_keep: int = Field(
        default=20,
        ge=0,
        description="Checkpoints kept per thread (history and time travel reach this far back); "
        "0 keeps every checkpoint.",
    )
    durability: Literal["sync", "async", "exit"] = Field(
        default="async",
        description="When a run's checkpoints are written: each step in the background "
        "(async), each step before the next (sync), or once at the end (exit: fastest, but a "
        "crashed turn restarts instead of resuming).",
    )
    ttl_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Redis only: every key but the schema version expires after this many idle "
        "minutes (reads refresh).",
    )

    api_keys: str = Field(
        default="",
        description="Comma-separated `key=tenant/user` entries. Empty: single-user "
        "development mode, every request acts as user `local`.",
    )
    auth: str = Field(
        default="",
        description="How the caller is identified: `keys` (`api_keys`), `jwt` (a bearer JWT), "
        "`gateway` (headers a trusted proxy sets) or `package.module:attribute` (a "
        "`langgraph_sdk.Auth` object's authenticate handler; also `path/to/file.py:attribute`). "
        "Empty: `keys`, or the `auth.path` of a `langgraph.json` in the working directory "
        "when no keys are set either.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="`jwt` mode: the shared HS256 secret tokens are signed with."
    )
    jwt_jwks_url: str | None = Field(
        default=None,
        description="`jwt` mode: the JWKS URL of the identity provider (RS256 and ES256 keys).",
    )
    jwt_issuer: str | None = Field(
        default=None, description="`jwt` mode: the `iss` every token must carry."
    )
    jwt_audience: str | None = Field(
        default=None, description="`jwt` mode: the `aud` every token must carry."
    )
    jwt_tenant_claim: str = Field(
        default="tenant", min_length=1, description="`jwt` mode: the claim naming the tenant."
    )
    jwt_user_claim: str = Field(
        default="sub", min_length=1, description="`jwt` mode: the claim naming the user."
    )
    jwt_default_tenant: str | None = Field(
        default=None,
        description="`jwt` mode: the tenant of a token without the tenant claim (else 401).",
    )
    jwt_leeway_seconds: float = Field(
        default=30.0, ge=0, le=300, description="`jwt` mode: clock skew allowed on exp and nbf."
    )
    jwt_jwks_refresh_seconds: float = Field(
        default=60.0,
        ge=0,
        description="`jwt` mode: the JWKS is fetched again on an unknown `kid` at most this often.",
    )
    jwt_jwks_timeout_seconds: float = Field(
        default=5.0, gt=0, description="`jwt` mode: the deadline of one JWKS fetch."
    )
    gateway_secret: SecretStr | None = Field(
        default=None,
        description="`gateway` mode: the value of `X-Gateway-Secret` the proxy sends.",
    )
    gateway_tenant_header: str = Field(
        default="X-Tenant-Id", min_length=1, description="`gateway` mode: the tenant's header."
    )
    gateway_user_header: str = Field(
        default="X-User-Id", min_length=1, description="`gateway` mode: the user's header."
    )
    idle_timeout_hours: float = Field(
        default=24.0,
        gt=0,
        description="Hours without activity after which a session counts as ended and its "
        "checkpoints are deleted.",
    )
    sweep_interval_seconds: float = Field(
        default=300.0, gt=0, description="How often the background sweeper expires idle sessions."
    )
    max_open_sessions: int = Field(
        default=100,
        ge=1,
        description="Open (not ended) sessions a user may have; creating one more is a 409.",
    )
    runs_per_minute: int = Field(
        default=60,
        ge=1,
        description="Runs a user may start, and message appends a user may make, per rolling "
        "minute; then 429.",
    )
    max_message_chars: int = Field(
        default=20_000, ge=1, description="Longest message content a client may send."
    )
    max_messages_per_request: int = Field(
        default=50, ge=1, description="Most messages one run request may carry."
    )
    max_attachment_bytes: int = Field(
        default=8_000_000,
        ge=0,
        description="Most bytes of images, files and audio (base64 content blocks, as decoded) "
        "one run request's messages may carry; 0 refuses them. The body of a request that "
        "starts runs may be that much larger (in base64) than `max_body_bytes`.",
    )
    max_body_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest request body accepted (a run's may also carry "
        "`max_attachment_bytes` of attachments); larger is 413.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="`serve`: seconds a client has to send a request's line and headers "
        "(from the connection or the request's first byte); then 408 and the connection closes.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="`serve`: seconds a client has to send a request's body once its headers "
        "are in; then 408 and the connection closes.",
    )
    max_header_bytes: int = Field(
        default=65_536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="`serve`: largest request line and headers, in bytes; larger is 431.",
    )
    max_headers: int = Field(
        default=100, ge=10, le=10_000, description="`serve`: most header fields; more is 431."
    )
    state_messages: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Messages of the recent transcript in the state LangGraph clients read "
        "(the /langgraph API): a chat UI never sees the conversation jump back when "
        "summarisation folds the working window.",
    )
    min_messages_for_summary: int = Field(
        default=4,
        ge=1,
        description="Messages a session needs before ending it saves its summary to memory.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes `memory-agent serve` starts (needs a shared database: "
        "SQLite, Postgres or Redis).",
    )
    backend_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Seconds a database call may take (a connection, a statement) before the "
        "request answers 503 with Retry-After instead of waiting for a database that is down.",
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="How long a run's claim on its thread outlives a process that died "
        "holding it; renewed while the run lives.",
    )
    run_concurrency: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Runs (native and LangGraph) one server process executes at once; more "
        "wait in the shared database's queue for any process with room.",
    )
    run_events_keep_seconds: float = Field(
        default=600.0,
        ge=0,
        le=7 * 86400,
        description="How long a run's events stay in the database after it ends, for "
        "clients that rejoin its stream (`Last-Event-ID`).",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="On SIGTERM, how long the runs a process executes may go on to finish; "
        "the rest are handed back to the shared database, where another process (or the "
        "next start) continues them from their last checkpoint.",
    )
    shutdown_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long `/readyz` answers 503 while the process still "
        "accepts requests, so a load balancer stops sending it new ones first.",
    )

    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics at `/metrics` (behind the API key when keys are "
        "set); false: `/metrics` is a 404.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`memory-agent serve`'s log lines: `text`, or `json` (one JSON object per "
        "line with the request, run and thread ids, tenant and user).",
    )

    cors_origins: str = Field(
        default="",
        description="Comma-separated origins (`https://app.example.com`) whose pages may call "
        "the API from a browser; `*` allows any. Empty: no CORS headers at all.",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",")):
            if (
                origin
                and origin != "*"
                and ("://" not in origin or origin.endswith("/") or origin.count("/") > 2)
            ):
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port] with no path, or *"
                )
        return value

    @model_validator(mode="after")
    def _auth_mode(self) -> Settings:
        if not self.auth.strip() and not self.api_keys.strip():
            self.auth = langgraph_json_auth() or ""
        mode = self.auth_mode
        if mode not in ("keys", "jwt", "gateway", "sdk"):
            raise ValueError(
                f"MEMORY_AGENT_AUTH={self.auth!r}: use keys, jwt, gateway or "
                "package.module:attribute (a langgraph_sdk.Auth object)"
            )
        if mode != "keys" and self.api_keys.strip():
            raise ValueError(
                f"MEMORY_AGENT_API_KEYS is set but MEMORY_AGENT_AUTH={mode}: keys are only "
                "read in keys mode; unset one of them"
            )
        if mode == "jwt":
            if (self.jwt_secret is None) == (self.jwt_jwks_url is None):
                raise ValueError(
                    "MEMORY_AGENT_AUTH=jwt needs exactly one of MEMORY_AGENT_JWT_SECRET (HS256) "
                    "and MEMORY_AGENT_JWT_JWKS_URL (RS256, ES256)"
                )
            if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("MEMORY_AGENT_JWT_SECRET must be at least 32 characters")
            url = self.jwt_jwks_url
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"MEMORY_AGENT_JWT_JWKS_URL {url!r} must be an http(s) URL")
        if mode == "gateway" and not (
            self.gateway_secret and self.gateway_secret.get_secret_value()
        ):
            raise ValueError(
                "MEMORY_AGENT_AUTH=gateway needs MEMORY_AGENT_GATEWAY_SECRET: without it any "
                "client could claim any tenant and user"
            )
        return self

    @property
    def body_limit(self) -> int:
        """The largest body of a request that starts runs: `max_body_bytes`, plus room for
        `max_attachment_bytes` of attachments in base64."""
        return self.max_body_bytes + 4 * -(-self.max_attachment_bytes // 3)

    @property
    def auth_mode(self) -> str:
        """The identity source: `keys` unless `auth` names another; `sdk` when it names a
        `langgraph_sdk.Auth` object (`package.module:attribute`)."""
        if ":" in self.auth:
            return "sdk"
        return self.auth.strip().lower() or "keys"

    @property
    def cors_origin_list(self) -> list[str]:
        """The configured CORS origins, without blanks."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @field_validator("database_url", "store_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in SCHEMES:
            raise ValueError(
                f"unsupported URL {value!r}: use memory://, sqlite:///path, postgresql://... "
                "or redis://..."
            )
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'memory-agent.sqlite').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
