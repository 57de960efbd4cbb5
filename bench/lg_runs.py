"""What durable runs cost: `/langgraph` runs on this tree beside the same server at a
baseline commit, on each backend, in one run.

Usage: `python -m bench.lg_runs [--quick] [--backends sqlite,postgres,redis]
[--baseline REV] [--clients 8] [--duration 15]`.

The baseline defaults to the last commit before runs were records in the database (the
parent of the commit that removed `server/langgraph_api/registry.py`), where a run was a
task of the process that received it; it is checked out into a scratch worktree and served
by the same interpreter. Each server (one worker, offline model, no embeddings) gets a
fresh database and is driven at saturation by `--clients` clients, one thread each, with
turns back to back (see `bench.http_bench.closed_loop`), three ways:

- `wait`: `POST /langgraph/threads/{id}/runs/wait`: no caller stream, so every event of
  the run goes to its log in the database (the cost of a background run);
- `stream, resumable`: `POST .../runs/stream` with `stream_resumable` (what agent-chat-ui
  sends): events to the caller and to the log;
- `stream`: the same without `stream_resumable`: events to the caller only, the record
  alone in the database.

Prints a Markdown table of turns/s and server CPU ms per turn, this tree ÷ baseline, and
writes `bench/results/lg_runs.md`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.databases import Databases
from bench.http_bench import (
    REPO_ROOT,
    RESULTS,
    Connection,
    Load,
    MemoryAgentServer,
    _clean_env,
    _free_port,
    _run_async,
    _say,
    closed_loop,
)

#: How each mode asks for a turn: the route and the extra body fields.
MODES: dict[str, tuple[str, dict[str, object]]] = {
    "wait": ("wait", {}),
    "stream, resumable": ("stream", {"stream_resumable": True}),
    "stream": ("stream", {}),
}


class LangGraphRunsServer(MemoryAgentServer):
    """`python -m server serve` from `root`, driven through `/langgraph` runs."""

    mode = "wait"

    @classmethod
    def serve(cls, root: Path, database_url: str, mode: str, work_dir: Path) -> LangGraphRunsServer:
        """Start the server of the tree at `root` on `database_url`."""
        port = _free_port()
        log = work_dir / f"lg-runs-{port}.log"
        env = _clean_env(
            {
                "MEMORY_AGENT_DATABASE_URL": database_url,
                "MEMORY_AGENT_API_KEYS": "",
                "MEMORY_AGENT_MAX_OPEN_SESSIONS": "1000000",
                "MEMORY_AGENT_RUNS_PER_MINUTE": "1000000",
                "MEMORY_AGENT_POOL_SIZE": "20",
                "MEMORY_AGENT_EMBEDDINGS": "none",
                "MEMORY_AGENT_MODEL": "offline",
                "PYTHONPATH": str(root),
            }
        )
        command = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(str(root), port, proc, log)
        server.mode = mode
        return server

    def run_request(self, thread: str, text: str) -> tuple[str, bytes]:
        """One turn on `thread` the way of this server's mode."""
        route, extra = MODES[self.mode]
        body = {
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": text}]},
            "stream_mode": ["values", "messages-tuple"],
            **extra,
        }
        return f"/langgraph/threads/{thread}/runs/{route}", json.dumps(body).encode()

    async def create_thread(self, conn: Connection, name: str) -> str:
        """`POST /langgraph/threads` with a fresh id."""
        thread_id = str(uuid.uuid4())
        status, body = await conn.request(
            "POST", "/langgraph/threads", json.dumps({"thread_id": thread_id}).encode()
        )
        if status != 200:
            raise RuntimeError(f"creating a thread: {status} {body[:200]!r}")
        return thread_id


@dataclass
class Row:
    """One backend and mode: the baseline's load and this tree's."""

    backend: str
    mode: str
    baseline: Load
    current: Load


def _baseline_rev() -> str:
    removed = subprocess.run(
        ["git", "rev-list", "-1", "HEAD", "--", "server/langgraph_api/registry.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not removed:
        raise SystemExit("no commit removed server/langgraph_api/registry.py: pass --baseline")
    return f"{removed}^"


async def _measure(server: LangGraphRunsServer, args: argparse.Namespace, label: str) -> Load:
    await server.wait_ready("/readyz")
    load = Load(label, "", 1, "closed", clients=args.clients)
    return await closed_loop(server, load, args.duration, args.warmup, 800)


def run(args: argparse.Namespace, work_dir: Path) -> list[Row]:
    """Every backend and mode, the baseline and this tree one after the other."""
    baseline_root = work_dir / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(baseline_root), args.baseline],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    rows: list[Row] = []
    try:
        with Databases(work_dir) as dbs:
            for backend in args.backends:
                for mode in MODES:
                    loads: dict[str, Load] = {}
                    # Alternate which tree goes first, so a machine that slows down over
                    # the run does not favour one of them.
                    order = ["baseline", "current"]
                    if len(rows) % 2:
                        order.reverse()
                    for tree in order:
                        root = baseline_root if tree == "baseline" else REPO_ROOT
                        url = dbs.url(backend, f"lg_{tree}_{backend}")
                        _say(f"{backend}, {mode}: {tree}")
                        server = LangGraphRunsServer.serve(root, url, mode, work_dir)
                        try:
                            loads[tree] = _run_async(_measure(server, args, tree))
                        finally:
                            server.stop()
                    rows.append(Row(backend, mode, loads["baseline"], loads["current"]))
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(baseline_root)],
            cwd=REPO_ROOT,
            check=False,
            capture_output=True,
        )
    return rows


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _ratio(num: float | None, den: float | None) -> str:
    return "—" if not num or not den else f"{num / den:.2f}×"


def table(rows: list[Row], args: argparse.Namespace) -> str:
    """The Markdown report."""
    lines = [
        f"# `/langgraph` runs: this tree against `{args.baseline}`",
        "",
        f"{args.clients} clients at saturation, {args.duration:g} s after {args.warmup:g} s of "
        "warm-up, one worker, offline model, no embeddings; a fresh database per server.",
        "",
        "| backend | mode | turns/s baseline → now | server CPU ms/turn baseline → now "
        "| CPU ÷ | errors (now) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        base, now = row.baseline, row.current
        lines.append(
            f"| {row.backend} | {row.mode} | {base.turns_per_s:.1f} → {now.turns_per_s:.1f} "
            f"| {_ms(base.cpu_ms_per_turn)} → {_ms(now.cpu_ms_per_turn)} "
            f"| {_ratio(now.cpu_ms_per_turn, base.cpu_ms_per_turn)} | {now.errors} |"
        )
    busy = max((max(r.baseline.other_cores, r.current.other_cores) for r in rows), default=0)
    lines += ["", f"Other CPU on the machine during the windows: up to {busy:.2f} cores."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s windows, SQLite only")
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument("--baseline", default=None, help="the commit to compare with")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--name", default="lg_runs", help="bench/results/<name>.md")
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    if args.quick:
        args.duration, args.warmup = 5.0, 2.0
        args.backends = ["sqlite"] if "--backends" not in (argv or sys.argv) else args.backends
    args.baseline = args.baseline or _baseline_rev()
    with tempfile.TemporaryDirectory(prefix="lg-runs-") as tmp:
        rows = run(args, Path(tmp))
    report = table(rows, args)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(report)


if __name__ == "__main__":
    main()
