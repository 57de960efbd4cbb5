"""Errors the Python API raises; the HTTP edge maps each to a status code."""


class MemoryAgentError(Exception):
    """Base of the errors a caller can act on."""

    status_code = 400


class NotFoundError(MemoryAgentError):
    """The thread or memory does not exist, or belongs to someone else."""

    status_code = 404


class ConflictError(MemoryAgentError):
    """The request conflicts with the current state (thread exists, run active, ended)."""

    status_code = 409


class SessionEndedError(ConflictError):
    """The session has ended (or expired when idle); a run needs a new one."""


class InvalidInputError(MemoryAgentError):
    """The request is malformed: a bad id, role, message or value."""

    status_code = 422


class RateLimitedError(MemoryAgentError):
    """Too many runs in the current window."""

    status_code = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(MemoryAgentError):
    """A backend cannot serve the request now (a database locked or down); retry shortly."""

    status_code = 503


class PreconditionError(MemoryAgentError):
    """A conditional write's version condition does not hold; nothing was written."""

    status_code = 412


class PatchError(ConflictError):
    """A JSON Patch operation failed (a `test` that does not hold, a missing path);
    `operation` is its index in the document; nothing was written."""

    def __init__(self, message: str, operation: int | None = None) -> None:
        super().__init__(message)
        self.operation = operation


class SchemaVersionError(MemoryAgentError):
    """The session database was written by a newer release: its schema version is above
    the one this release knows, so it is neither read nor changed."""

    status_code = 503

    def __init__(self, found: int, known: int, where: str = "the session database") -> None:
        super().__init__(found, known, where)
        self.found = found
        self.known = known
        self.where = where

    def __str__(self) -> str:
        return (
            f"{self.where} has schema version {self.found}, newer than the {self.known} this "
            f"release of memory-agent knows: it was written by a newer release. Run that "
            "release (or a later one) against it, or point MEMORY_AGENT_DATABASE_URL / "
            "MEMORY_AGENT_STORE_URL at another database"
        )
