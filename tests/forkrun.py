"""Run scripts in fresh processes without paying for the imports each time.

`Forker` starts one interpreter that imports the heavy modules once, then forks a new
child for every script: each script runs in a process of its own, with its own working
directory, environment and `__main__`, and nothing of an earlier script's state but what it
left on disk, as when a user runs a script again. Linux (fork) only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SERVER = r"""
import importlib, json, os, sys, traceback

for name in sys.argv[1:]:
    importlib.import_module(name)
from memory.settings import get_settings

print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    child = os.fork()
    if child == 0:
        status = 1
        try:
            out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(err, 2)
            sys.stdin.close()
            os.chdir(job["cwd"])
            os.environ.update(job["env"])
            get_settings.cache_clear()  # the settings are read from this process's environment
            sys.argv = ["-c", *job["argv"]]
            exec(compile(job["code"], "<script>", "exec"), {"__name__": "__main__"})
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, waited = os.waitpid(child, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(waited)}), flush=True)
"""


@dataclass
class Finished:
    """What a script left: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str


class Forker:
    """A running preloaded interpreter; `run` executes one script in a forked child."""

    def __init__(self, proc: subprocess.Popen[str], work: Path) -> None:
        self._proc = proc
        self._work = work
        self._count = 0

    def run(
        self, code: str, cwd: Path, argv: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Finished:
        """Run `code` as `python -c code *argv` would, in `cwd`, with `env` added."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._count += 1
        out, err = (self._work / f"{self._count}.{kind}" for kind in ("out", "err"))
        job = {
            "code": code,
            "cwd": str(cwd),
            "argv": list(argv),
            "env": env or {},
            "stdout": str(out),
            "stderr": str(err),
        }
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        assert answer, f"the forking interpreter died: {self._proc.poll()}"
        return Finished(json.loads(answer)["returncode"], out.read_text(), err.read_text())


def clean_env(root: Path) -> dict[str, str]:
    """This process's environment without its `MEMORY_AGENT_*` settings, importing `root`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MEMORY_AGENT_") or name.startswith("MEMORY_AGENT_TEST_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return env


@contextmanager
def forker(modules: Sequence[str], root: Path, work: Path) -> Iterator[Forker]:
    """A forking interpreter with `modules` imported, its scripts' output kept in `work`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, *modules],
        cwd=root,
        env=clean_env(root),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the forking interpreter did not start"
        yield Forker(proc, work)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
