"""Storage adapters: checkpointers and stores by URL, retention, value checks, the session database.

`open_backends`/`aopen_backends` open everything a deployment needs from its settings.
"""

from memory.stores.factory import (
    Backends,
    BackendURLError,
    aopen_backends,
    aopen_checkpointer,
    aopen_store,
    default_store_url,
    migrate,
    open_backends,
    open_checkpointer,
    open_store,
    scheme_of,
)
from memory.stores.values import StoreValueError, check_put

__all__ = [
    "BackendURLError",
    "Backends",
    "StoreValueError",
    "aopen_backends",
    "aopen_checkpointer",
    "aopen_store",
    "check_put",
    "default_store_url",
    "migrate",
    "open_backends",
    "open_checkpointer",
    "open_store",
    "scheme_of",
]
