#!/usr/bin/env python3
"""Build notebooks from their percent-format sources and store them executed.

    python tools/nbbuild.py notebooks/src/01_gradient_descent.py [...]
    python tools/nbbuild.py --no-execute notebooks/src/*.py

Each source ``notebooks/src/NN_name.py`` is the reviewable text of ``notebooks/NN_name.ipynb``:
cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown, each line prefixed by ``# ``).
The notebook is executed top to bottom in a fresh kernel from ``notebooks/`` and stored with its
outputs, which is what nbval compares against. The wall time of the run and the kernel's peak
memory are printed.

Exercises get nbgrader's cell metadata here, so that the stored notebook is an nbgrader source:
- a code cell holding ``### BEGIN SOLUTION`` becomes a solution cell (``exK``);
- a code cell introduced by ``# %% [check: N points]`` becomes an autograded, read-only test cell
  worth N points (``exK_check``, ``exK_check2``...);
- the markdown cell that states exercise K (``Exercise K`` in bold or as a heading) becomes read-only.
K is the number of the exercise stated last. Solution and check cells are also tagged
``raises-exception``, so that in a student version JupyterLab's Run All goes on past an unanswered
exercise (the course's conftest keeps nbval strict about these cells).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat

CELL = re.compile(r"^# %%(?:(?P<markdown> \[markdown\])|(?P<check> \[check: (?P<points>\d+) points?\]))?(?P<rest>.*)$")
EXERCISE = re.compile(r"^(?:\*\*|#+ )Exercise (\d+)\b", re.MULTILINE)
SOLUTION_MARK = "### BEGIN SOLUTION"
NBGRADER_TAG = "raises-exception"


def parse(text: str) -> nbformat.NotebookNode:
    """Turn percent-format source into a notebook (no outputs)."""
    cells: list[nbformat.NotebookNode] = []
    kind, points, lines = None, None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body.strip():
            cells.append(nbformat.v4.new_code_cell(body))
            if points is not None:
                cells[-1].metadata["check_points"] = points  # turned into nbgrader metadata below
        elif points is not None:
            raise ValueError("an empty cell is marked as a check")

    for line in text.split("\n"):
        m = CELL.match(line)
        if m:
            flush()
            kind, lines = ("markdown" if m.group("markdown") else "code"), []
            points = int(m.group("points")) if m.group("check") else None
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    mark_exercises(nb)
    return nb


def _nbgrader(grade_id: str, *, solution: bool = False, points: int | None = None, locked: bool = False) -> dict:
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": locked or points is not None,
            "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def mark_exercises(nb: nbformat.NotebookNode) -> None:
    """Give the exercise cells of ``nb`` nbgrader metadata and the ``raises-exception`` tag (see above)."""
    exercise, seen = None, set()

    def grade_id(suffix: str) -> str:
        if exercise is None:
            raise ValueError(f"an exercise cell ({suffix}) comes before any 'Exercise K' statement")
        base = f"ex{exercise}{suffix}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}{n}"
        seen.add(name)
        return name

    for cell in nb.cells:
        points = cell.metadata.pop("check_points", None)
        if cell.cell_type == "markdown":
            found = EXERCISE.findall(cell.source)
            if len(found) > 1:
                raise ValueError(f"one markdown cell states exercises {found}: give each its own cell")
            if found:
                exercise = int(found[0])
                cell.metadata["nbgrader"] = _nbgrader(grade_id("_task"), locked=True)
            continue
        is_solution = SOLUTION_MARK in cell.source
        if is_solution and points is not None:
            raise ValueError("a cell cannot be both an answer and its check:\n" + cell.source[:200])
        if is_solution:
            cell.metadata["nbgrader"] = _nbgrader(grade_id(""), solution=True)
        elif points is not None:
            cell.metadata["nbgrader"] = _nbgrader(grade_id("_check"), points=points)
        else:
            continue
        cell.metadata["tags"] = [NBGRADER_TAG]


def build(source: Path, execute: bool = True, timeout: int = 900) -> Path:
    target = source.parent.parent / (source.stem + ".ipynb")
    nb = parse(source.read_text())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}"  # stable ids keep diffs of stored notebooks readable
    if execute:
        from nbclient import NotebookClient

        peak = [0]

        def note_memory(**_) -> None:  # the kernel's peak resident memory so far (Linux), for TEACHING.md
            try:
                status = Path(f"/proc/{client.km.provisioner.process.pid}/status").read_text()
                peak[0] = max(peak[0], int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))
            except (AttributeError, OSError):
                pass

        start = time.perf_counter()
        # widget state is not stored: JupyterLab does not load it by default, and each widget's output
        # carries its own still picture (lib.widgets.InteractiveFigure._repr_mimebundle_)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                                on_cell_executed=note_memory,
                                resources={"metadata": {"path": str(target.parent)}})
        client.execute()
        memory = f", kernel peak memory {peak[0] / 1024:.0f} MiB" if peak[0] else ""
        print(f"{target.name}: executed in {time.perf_counter() - start:.1f} s{memory}")
    nbformat.write(nb, target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--no-execute", action="store_true", help="write the notebook without running it")
    args = parser.parse_args()
    for source in args.sources:
        build(source, execute=not args.no_execute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
