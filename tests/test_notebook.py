"""Every notebook in notebooks/ runs offline from top to bottom and shows what it promises."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: Every notebook, found afresh: a new one is executed without changing this file.
NOTEBOOKS = sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb"))
#: Committed without outputs; every other notebook is committed with the outputs of a clean run.
UNEXECUTED = {"quickstart.ipynb"}
#: A kernel name that no kernelspec of the user's or the system's can shadow.
_KERNEL = "memory-agent-tests"
_CELL_TIMEOUT = 120


def _install_kernel(jupyter_dir: Path) -> None:
    """A kernelspec that runs this interpreter (the venv's) with the repository importable."""
    spec_dir = jupyter_dir / "kernels" / _KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "memory-agent tests",
        "language": "python",
        "env": {"PYTHONPATH": str(REPO_ROOT)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _output_text(nb: nbformat.NotebookNode) -> str:
    chunks = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                chunks.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                chunks.append(output.data.get("text/plain", ""))
    return "".join(chunks)


def _read(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    return nb


@pytest.fixture(scope="module")
def execute(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], nbformat.NotebookNode]:
    """Runs a notebook in a fresh kernel (once per module) and returns the executed copy.

    The committed file is only read: the outputs go to an in-memory copy.
    """
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    _install_kernel(jupyter_dir)
    done: dict[str, nbformat.NotebookNode] = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in done:
            nb = _read(name)
            with pytest.MonkeyPatch.context() as env:
                env.setenv("JUPYTER_PATH", str(jupyter_dir))
                env.setenv("JUPYTER_RUNTIME_DIR", str(jupyter_dir / "runtime"))
                env.setenv("IPYTHONDIR", str(jupyter_dir / "ipython"))
                env.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
                # The notebooks promise to run offline: no setting from the shell may swap the
                # offline model or the local embedder, or point at another database.
                for variable in [n for n in os.environ if n.startswith("MEMORY_AGENT_")]:
                    env.delenv(variable)
                NotebookClient(
                    nb,
                    timeout=_CELL_TIMEOUT,
                    kernel_name=_KERNEL,
                    resources={"metadata": {"path": str(REPO_ROOT)}},
                ).execute()  # raises CellExecutionError, naming the cell, if any cell fails
            done[name] = nb
        return done[name]

    return run


def test_notebooks_are_found() -> None:
    assert "quickstart.ipynb" in NOTEBOOKS and len(NOTEBOOKS) > 1


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_says_what_it_shows_and_checks_it(name: str) -> None:
    """Opens with what it shows, ends with what to try next, and asserts something."""
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[-1].cell_type == "markdown" and "try next" in nb.cells[-1].source.lower()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^\s*assert ", code, re.M), f"{name} asserts nothing about what it shows"


@pytest.mark.parametrize("name", sorted(set(NOTEBOOKS) - UNEXECUTED))
def test_committed_outputs_come_from_one_clean_run(name: str) -> None:
    """The committed outputs read well without running: every cell ran, in order, no errors."""
    code = [c for c in _read(name).cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(
    name: str, execute: Callable[[str], nbformat.NotebookNode]
) -> None:
    nb = execute(name)
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


def test_committed_quickstart_has_no_outputs() -> None:
    code = [c for c in _read("quickstart.ipynb").cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def output(execute: Callable[[str], nbformat.NotebookNode]) -> str:
    """Everything the quickstart printed, after running every cell in a fresh kernel."""
    return _output_text(execute("quickstart.ipynb"))


@pytest.mark.slow
def test_name_carries_to_another_thread_of_the_same_user(output: str) -> None:
    assert "thread-b reply: Your name is Sam." in output
    alex = re.search(r"^alex's reply: (.*)$", output, re.M)
    assert alex is not None
    assert "Sam" not in alex.group(1)


@pytest.mark.slow
def test_long_conversation_keeps_a_bounded_window(output: str) -> None:
    rows = re.findall(r"after turn +(\d+): +(\d+) messages in the window, +(\d+)", output)
    assert [int(turn) for turn, _, _ in rows] == [10, 20, 30, 40, 50, 60]
    windows = [int(w) for _, w, _ in rows]
    transcripts = [int(t) for _, _, t in rows]
    assert transcripts == sorted(transcripts) and transcripts[-1] >= 120
    assert max(windows) < 20 < transcripts[0]

    window = re.search(r"working window: (\d+) messages", output)
    total = re.search(r"transcript: +(\d+) messages", output)
    assert window is not None and total is not None
    assert int(window.group(1)) < 20 and int(total.group(1)) >= 120
    summary = re.search(r"summary \((\d+) characters\)", output)
    assert summary is not None and int(summary.group(1)) > 0
    assert "first 2 of " in output and "#0 user: Turn 0:" in output


@pytest.mark.slow
def test_folded_facts_survive_as_memories(output: str) -> None:
    reply = re.search(r"^reply: (.*)$", output, re.M)
    assert reply is not None
    assert "Allergic to bee stings" in reply.group(1)
    assert "Sam" in reply.group(1)
    assert "allergy-bee-stings: Allergic to bee stings." in output
    assert "best match for 'what is the user called?': name " in output
    assert re.search(r"3 sessions for sam", output)
