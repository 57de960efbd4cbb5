"""Settings of the HTTP server: the storage settings plus keys, limits and lifecycle."""

from __future__ import annotations

from pydantic import Field

from memory.settings import Settings


class ServerSettings(Settings):
    """Deployment settings of `memory-agent serve`, read from `MEMORY_AGENT_*` variables."""

    api_keys: str = Field(
        default="",
        description="Comma-separated `key=tenant/user` entries. Empty: single-user "
        "development mode, every request acts as user `local`.",
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
        default=60, ge=1, description="Runs a user may start per rolling minute; then 429."
    )
    max_message_chars: int = Field(
        default=20_000, ge=1, description="Longest message content a client may send."
    )
    max_messages_per_request: int = Field(
        default=50, ge=1, description="Most messages one run request may carry."
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest request body accepted; larger is 413."
    )
    min_messages_for_summary: int = Field(
        default=4,
        ge=1,
        description="Messages a session needs before ending it saves its summary to memory.",
    )
