"""Deployment settings, read from `MEMORY_AGENT_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "redis", "rediss")


class Settings(BaseSettings):
    """Every deployment setting in one place; an explicit argument beats the environment."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_AGENT_", extra="ignore")

    model: str = Field(
        default="offline",
        description="`offline` (deterministic, no network) or any `provider:model` for "
        "LangChain's init_chat_model, e.g. `openai:gpt-4o-mini`.",
    )
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
    token_budget: int = Field(
        default=2000, ge=200, description="Working-message tokens before summarisation runs."
    )
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
        description="Redis only: every key expires after this many idle minutes (reads refresh).",
    )

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
