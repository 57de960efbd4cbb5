"""Headless Chromium from the system, and `memory-agent serve` for a page to talk to.

The browser is the system's Chromium (`make browser` installs Debian's package, or
`MEMORY_AGENT_TEST_CHROMIUM` names one); a missing browser fails the test, and Playwright never
downloads one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.test_server_restart import free_port, serve

_ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = os.environ.get("MEMORY_AGENT_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that phones home: this machine has no network beyond loopback.
# Playwright adds --headless and a fresh temporary --user-data-dir itself.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where `MEMORY_AGENT_TEST_SCREENSHOTS` is unset, no pictures are saved.
SCREENSHOTS_ENV = "MEMORY_AGENT_TEST_SCREENSHOTS"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, from the system (never a browser a test tool downloads)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `make browser` (installs Debian's chromium) "
            "or point MEMORY_AGENT_TEST_CHROMIUM at one"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def chat_server(data_dir: Path, api_keys: str, model: str, **settings: str) -> Iterator[str]:
    """`memory-agent serve` on SQLite in `data_dir` with these keys, model and other settings
    (`cors_origins="..."` is `MEMORY_AGENT_CORS_ORIGINS`); nothing else from the shell."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("MEMORY_AGENT_") and not name.startswith("MEMORY_AGENT_TEST_"):
                env.delenv(name)
        env.setenv("MEMORY_AGENT_DATABASE_URL", f"sqlite:///{data_dir / 'chat.sqlite'}")
        env.setenv("MEMORY_AGENT_DATA_DIR", str(data_dir))
        env.setenv("MEMORY_AGENT_API_KEYS", api_keys)
        env.setenv("MEMORY_AGENT_MODEL", model)
        env.setenv("MEMORY_AGENT_EMBEDDINGS", "none")
        # A graph or tools named in `settings` may live in this repository's `tests` package.
        env.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
        )
        for name, value in settings.items():
            env.setenv(f"MEMORY_AGENT_{name.upper()}", value)
        with serve(free_port()) as base:
            yield base
