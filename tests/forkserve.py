"""A fork server of `memory-agent serve` processes, for tests that start many of them.

Importing the server (LangChain, LangGraph, the drivers) takes about 2.5 s of CPU, so a
test that starts forty servers would spend most of its time importing. This process pays
for the imports once, then forks a server per request: each child sets its environment
and runs `memory-agent serve` from its command line (`server.cli.main`), as a fresh
process would, with its own PID to kill.

Protocol, one JSON object per line: the parent writes `{"env": {...}, "port": N, "log":
"path"}` on stdin; the fork server answers `{"pid": P}`. Children are reaped by the
kernel (SIGCHLD ignored), so a killed one leaves no zombie. End of stdin ends the fork
server, not its children.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import uvicorn  # noqa: F401

import server.app
import server.cli

_ROOT = Path(__file__).resolve().parents[1]


def _child(request: dict[str, Any]) -> None:
    """Become the server process of `request`; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.stdin = open(0)  # noqa: SIM115 - the process's own stdin until it exits
        sys.stdout = open(1, "w", buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1)  # noqa: SIM115
        args = ["serve", "--host", "127.0.0.1", "--port", str(request["port"])]
        code = server.cli.main(args)
    finally:
        os._exit(code)


def main() -> None:
    """Serve fork requests from stdin until it closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)


class ForkServer:
    """The parent's side: starts the fork server and asks it for server processes."""

    def __init__(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserve"],
            cwd=_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def spawn(self, env: dict[str, str], port: int, log: Path) -> int:
        """Fork a `memory-agent serve` process on `port` with `env`; its PID."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"env": env, "port": port, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the fork server exited with {self.proc.wait()}")
        return int(json.loads(answer)["pid"])

    def close(self) -> None:
        """End the fork server (its children are the caller's to stop)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()
