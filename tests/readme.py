"""The README as data: its sections, code blocks and the settings table, for tests that hold
the documentation to what the code does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.M | re.S)


def text() -> str:
    """The whole README."""
    return README.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The body of the `## <title>` section, up to the next `## ` heading."""
    found = re.search(rf"^## {re.escape(title)}\n(?P<body>.*?)(?=^## |\Z)", text(), re.M | re.S)
    assert found, f"README has no section '## {title}'"
    return found["body"]


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block: its language, its code and the section it is in."""

    lang: str
    code: str
    section: str

    @property
    def first_line(self) -> str:
        """The block's first line, which names it in failures."""
        return self.code.splitlines()[0]


def code_blocks(*langs: str) -> list[CodeBlock]:
    """Every fenced block in one of `langs`, in README order."""
    blocks = []
    current = ""
    position = 0
    body = text()
    for match in _FENCE.finditer(body):
        headings = re.findall(r"^## (.+)$", body[position : match.start()], re.M)
        current = headings[-1] if headings else current
        position = match.end()
        if match["lang"] in langs:
            blocks.append(CodeBlock(match["lang"], match["code"], current))
    return blocks


@dataclass(frozen=True)
class SettingRow:
    """One row of the settings table: the variables it names and their documented defaults."""

    names: tuple[str, ...]
    defaults: tuple[str, ...]


def settings_rows() -> list[SettingRow]:
    """The rows of the table in "## Settings", a default per variable (`a / b` cells split)."""
    rows = []
    for line in section("Settings").splitlines():
        if not line.startswith("| `MEMORY_AGENT_"):
            continue
        name_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = tuple(re.findall(r"`(MEMORY_AGENT_[A-Z_]+)`", name_cell))
        defaults = tuple(part.strip().strip("`") for part in default_cell.split(" / "))
        assert len(names) == len(defaults), f"one default per variable: {line}"
        rows.append(SettingRow(names, defaults))
    return rows
