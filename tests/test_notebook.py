"""The quickstart notebook runs offline from top to bottom and shows what it promises."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"
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


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Everything the notebook printed, after running every cell in a fresh kernel."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    _install_kernel(jupyter_dir)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(jupyter_dir))
        env.setenv("JUPYTER_RUNTIME_DIR", str(jupyter_dir / "runtime"))
        env.setenv("IPYTHONDIR", str(jupyter_dir / "ipython"))
        # The notebook promises to run offline: no setting from the shell may swap the
        # offline model or the local embedder.
        for name in [n for n in os.environ if n.startswith("MEMORY_AGENT_")]:
            env.delenv(name)
        NotebookClient(
            nb,
            timeout=_CELL_TIMEOUT,
            kernel_name=_KERNEL,
            resources={"metadata": {"path": str(REPO_ROOT)}},
        ).execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return _output_text(nb)


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)


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
