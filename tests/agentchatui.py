"""agent-chat-ui, LangChain's chat UI, built once from its pinned source and served by `next start`.

The source is the checkout named by `$AGENT_CHAT_UI_SOURCE`, else the archive of the pinned
commit at `../shared/clients/` beside the repository (see its README there), else the build fails
saying so. pnpm 10 is installed by npm into the test cache, and the built tree (`node_modules` and
`.next`) is kept in the cache keyed by the commit, so a second run builds nothing. The UI's only
network fetch at build time, the Inter font from `next/font/google`, is taken out of
`src/app/layout.tsx` before the build. Nothing of the UI is kept in this repository.

No `NEXT_PUBLIC_*` setting is baked in: the UI reads the server's URL and the assistant id from
its `apiUrl` and `assistantId` query parameters and the API key from local storage
(`lg:chat:apiKey`), so one build serves every server on every port.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.test_lg_js_sdk import cache_root

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The commit of langchain-ai/agent-chat-ui the archive holds and the cache is keyed by.
COMMIT = "fdc87e65307581b02898d33c62b3f285e56bd85b"
ARCHIVE = REPO_ROOT.parent / "shared" / "clients" / f"agent-chat-ui-{COMMIT[:7]}.tar.gz"
SOURCE_ENV = "AGENT_CHAT_UI_SOURCE"
#: Where local storage keeps the API key the UI sends as `X-Api-Key`.
API_KEY_STORAGE = "lg:chat:apiKey"
_BUILD_TIMEOUT = 1200
_START_TIMEOUT = 60
_BUILT_MARK = ".memory-agent-built"


class BuildError(RuntimeError):
    """The UI could not be built: the message says what is missing or what failed."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} is not on PATH: building agent-chat-ui needs Node 18+ and npm")
    return path


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=_BUILD_TIMEOUT
    )
    if done.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} in {cwd} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def _source_key() -> tuple[str, Path | None]:
    """The cache key of the source to build, and the checkout to copy (None: the archive)."""
    configured = os.environ.get(SOURCE_ENV)
    if configured:
        checkout = Path(configured)
        if not (checkout / "package.json").exists():
            raise BuildError(f"${SOURCE_ENV}={configured} is not an agent-chat-ui checkout")
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if head.returncode == 0:
            return head.stdout.strip(), checkout
        return "checkout-" + hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:12], (
            checkout
        )
    if ARCHIVE.exists():
        return COMMIT, None
    raise BuildError(
        f"agent-chat-ui's source is not here: set ${SOURCE_ENV} to a checkout of "
        f"langchain-ai/agent-chat-ui (commit {COMMIT}) or put its archive at {ARCHIVE}"
    )


def _unpack(checkout: Path | None, into: Path) -> Path:
    """The source copied into `into`, as `into/agent-chat-ui`."""
    target = into / "agent-chat-ui"
    if checkout is not None:
        shutil.copytree(
            checkout, target, ignore=shutil.ignore_patterns(".git", "node_modules", ".next")
        )
    else:
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(into, filter="data")
    return target


def _drop_google_font(source: Path) -> None:
    """Take `next/font/google`'s Inter out of the layout: it is downloaded at build time."""
    layout = source / "src" / "app" / "layout.tsx"
    text = layout.read_text()
    text = re.sub(r'import \{ Inter \} from "next/font/google";\n', "", text)
    text = re.sub(r"const inter = Inter\(\{.*?\}\);\n", "", text, flags=re.S)
    text = text.replace(" className={inter.className}", "")
    if "inter" in text.lower().replace("interface", ""):
        raise BuildError(f"{layout} changed: the Inter font could not be taken out")
    layout.write_text(text)


def _pnpm(env: dict[str, str]) -> str:
    """pnpm 10, installed by npm under the test cache (once)."""
    prefix = cache_root() / "pnpm"
    binary = prefix / "node_modules" / ".bin" / "pnpm"
    if not binary.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        _run(
            [
                _tool("npm"),
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "pnpm@10",
            ],
            prefix,
            env,
        )
    return str(binary)


def built_ui() -> Path:
    """The built UI's directory in the cache: built first if this source has not been."""
    key, checkout = _source_key()
    target = cache_root() / "agent-chat-ui" / key
    if (target / _BUILT_MARK).exists():
        return target
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_manage_package_manager_versions": "false",
        "NEXT_TELEMETRY_DISABLED": "1",
        "CI": "1",
    }
    for name in ("NEXT_PUBLIC_API_URL", "NEXT_PUBLIC_ASSISTANT_ID", "NEXT_PUBLIC_AUTH_SCHEME"):
        env.pop(name, None)
    pnpm = _pnpm(env)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", dir=target.parent))
    try:
        source = _unpack(checkout, work)
        _drop_google_font(source)
        _run([pnpm, "install", "--frozen-lockfile"], source, env)
        _run([pnpm, "build"], source, env)
        (source / _BUILT_MARK).write_text(f"{key}\n")
        try:
            source.rename(target)
        except OSError:
            # Another run built the same source first; theirs is as good.
            if not (target / _BUILT_MARK).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def ui_server(built: Path, log: Path) -> Iterator[str]:
    """`next start` serving the built UI on a free port; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "NEXT_TELEMETRY_DISABLED": "1", "PORT": str(port)}
    next_bin = built / "node_modules" / ".bin" / "next"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(next_bin), "start", "-H", "127.0.0.1", "-p", str(port)],
            cwd=built,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise BuildError(f"next start exited ({process.returncode}):\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BuildError(
                    f"next start did not answer in {_START_TIMEOUT}s:\n{log.read_text()}"
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    started = time.monotonic()
    print(built_ui(), f"{time.monotonic() - started:.0f}s")
