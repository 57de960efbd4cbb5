"""The benchmark's table (printed and as Markdown) and its plot of latency and storage."""

from __future__ import annotations

import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


class _Series(Protocol):
    backend: str
    variant: str
    planned: int
    latency_ms: list[float]
    tokens: list[int]
    payload: list[int]
    storage: dict[int, int]
    unpersisted_ms: dict[int, list[float]]
    reads_ms: dict[int, dict[str, float]]
    stopped: str

    @property
    def done(self) -> int: ...

    def at(self, turn: int) -> float | None: ...


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _overhead(s: _Series, point: int) -> str:
    base = s.unpersisted_ms.get(point)
    if not base or point > s.done:
        return "—"
    persisted = s.at(point)
    assert persisted is not None
    return f"{persisted - statistics.median(base):+.2f}"


def _decile_ratio(s: _Series) -> str:
    """Median of the last tenth of the turns over that of the first tenth: the same trend
    as the point ratio, over enough turns that a pause of the database does not show."""
    tenth = s.done // 10
    if tenth < 10:
        return "—"
    first = statistics.median(s.latency_ms[:tenth])
    return f"{statistics.median(s.latency_ms[-tenth:]) / first:.2f}×"


def _last_storage(s: _Series) -> tuple[int, int] | None:
    if not s.storage:
        return None
    turn = max(s.storage)
    return turn, s.storage[turn]


def rows(results: list[_Series], points: list[int]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table."""
    header = [
        "backend",
        "variant",
        "turns",
        *[f"ms/turn @{p}" for p in points],
        f"@{points[-1]} ÷ @{points[0]}",
        "last 10% ÷ first 10%",
        *[f"overhead ms @{p}" for p in (points[0], points[-1])],
        "stored",
        "payload",
        "stored ÷ payload",
        f"tokens/call @{points[0]}",
        "tokens/call last",
        "tokens/call max",
    ]
    table = []
    for s in results:
        first = s.at(points[0])
        last = s.at(min(points[-1], s.done)) if s.done else None
        stored = _last_storage(s)
        payload = s.payload[stored[0] - 1] if stored else None
        table.append(
            [
                s.backend,
                s.variant,
                f"{s.done}" + ("*" if s.done < s.planned else ""),
                *[_ms(s.at(p)) for p in points],
                f"{last / first:.2f}×" if first and last else "—",
                _decile_ratio(s),
                _overhead(s, points[0]),
                _overhead(s, points[-1]),
                _bytes(stored[1]) if stored else "—",
                _bytes(payload),
                f"{stored[1] / payload:.2f}×" if stored and payload else "—",
                f"{s.tokens[points[0] - 1]}" if s.done >= points[0] else "—",
                f"{s.tokens[-1]}" if s.tokens else "—",
                f"{max(s.tokens)}" if s.tokens else "—",
            ]
        )
    return header, table


def read_rows(results: list[_Series], points: list[int]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the reads table: page, working state and session list."""
    first, last = points[0], points[-1]
    header = ["backend", "variant", "read", f"ms @{first}", f"ms @{last}", "ratio"]
    table = []
    for s in results:
        for op in ("page", "first_page", "state", "list"):
            a = s.reads_ms.get(first, {}).get(op)
            b = s.reads_ms.get(last, {}).get(op)
            if a is None:
                continue
            ratio = f"{b / a:.2f}×" if b is not None and a else "—"
            table.append([s.backend, s.variant, op, _ms(a), _ms(b), ratio])
    return header, table


def _markdown(header: list[str], table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def _plain(header: list[str], table: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join(out)


def _notes(results: list[_Series]) -> list[str]:
    return [
        f"- {s.backend}/{s.variant}: {s.stopped} (planned {s.planned} turns)"
        for s in results
        if s.stopped
    ]


def plot(results: list[_Series], path: Path) -> None:
    """Latency (rolling median) and stored bytes against turn count, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"memory": "C0", "sqlite": "C1", "postgres": "C2", "redis": "C3"}
    styles = {"agent": "-", "agent-keepall": ":", "agent-exit": "-.", "stock": "--"}
    fig, (lat, sto) = plt.subplots(1, 2, figsize=(13, 5))
    for s in results:
        if not s.latency_ms:
            continue
        window = 25
        smooth = [
            statistics.median(s.latency_ms[max(0, i - window) : i + 1]) for i in range(s.done)
        ]
        style = {"color": colors.get(s.backend), "linestyle": styles.get(s.variant, "-")}
        label = f"{s.backend} {s.variant}"
        lat.plot(range(1, s.done + 1), smooth, label=label, **style)
        turns = sorted(s.storage)
        sto.plot(turns, [max(s.storage[t], 1) for t in turns], marker="o", label=label, **style)
    lat.set(xlabel="turn", ylabel="ms per turn (rolling median of 25)", title="Turn latency")
    lat.set_xscale("log")
    sto.set(xlabel="turn", ylabel="stored bytes", title="Storage per thread")
    sto.set_xscale("log")
    sto.set_yscale("log")
    payloads = max(results, key=lambda r: r.done)
    if payloads.payload:
        turns = sorted(payloads.storage)
        sto.plot(turns, [payloads.payload[t - 1] for t in turns], color="k", lw=2, label="payload")
    sto.legend(fontsize=7)
    lat.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    results: list[_Series], points: list[int], out: Path, name: str, settings: dict[str, Any]
) -> str:
    """Write `<name>.md`, `<name>.json` and `<name>.png` under `out`; return the plain table."""
    out.mkdir(parents=True, exist_ok=True)
    header, table = rows(results, points)
    read_header, reads = read_rows(results, points)
    notes = _notes(results)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    md = [
        f"# Turn benchmark: {name}",
        "",
        f"Run {now} on {machine}. Settings: `{json.dumps(settings)}`.",
        "",
        "ms/turn is the median of the 10 turns ending at that turn; overhead is that median",
        "minus the median of the same turns run by the same graph without a checkpointer",
        "(interleaved, same state). `last 10% ÷ first 10%` compares the medians of the first",
        "and the last tenth of the turns run. `*` = the run stopped early (see notes).",
        "",
        _markdown(header, table),
        "",
        "Reads (median of 15): `page` = the last 20 transcript messages, `first_page` = the",
        "first 20, `state` = `get_state` (the working state), `list` = the user's sessions.",
        "",
        _markdown(read_header, reads),
        "",
        *(["Notes:", "", *notes, ""] if notes else []),
        f"![latency and storage]({name}.png)",
        "",
    ]
    (out / f"{name}.md").write_text("\n".join(md))
    raw = [
        {
            "backend": s.backend,
            "variant": s.variant,
            "turns": s.done,
            "latency_ms": [round(x, 3) for x in s.latency_ms],
            "tokens": s.tokens,
            "payload": s.payload,
            "storage": s.storage,
            "unpersisted_ms": s.unpersisted_ms,
            "reads_ms": s.reads_ms,
            "stopped": s.stopped,
        }
        for s in results
    ]
    (out / f"{name}.json").write_text(json.dumps({"settings": settings, "runs": raw}))
    plot(results, out / f"{name}.png")
    text = [_plain(header, table), "", _plain(read_header, reads), *notes]
    return "\n".join(text)
