#!/usr/bin/env python3
"""Build notebooks from their percent-format sources and store them executed.

    python tools/nbbuild.py notebooks/src/01_gradient_descent.py [...]
    python tools/nbbuild.py --no-execute notebooks/src/*.py

Each source ``notebooks/src/NN_name.py`` is the reviewable text of ``notebooks/NN_name.ipynb``:
cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown, each line prefixed by ``# ``).
The notebook is executed top to bottom in a fresh kernel from ``notebooks/`` and stored with its
outputs, which is what nbval compares against. The wall time of the run is printed.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import nbformat

CELL = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?P<rest>.*)$")


def parse(text: str) -> nbformat.NotebookNode:
    """Turn percent-format source into a notebook (no outputs)."""
    cells: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.split("\n"):
        m = CELL.match(line)
        if m:
            flush()
            kind, lines = ("markdown" if m.group("markdown") else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build(source: Path, execute: bool = True, timeout: int = 900) -> Path:
    target = source.parent.parent / (source.stem + ".ipynb")
    nb = parse(source.read_text())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:03d}"  # stable ids keep diffs of stored notebooks readable
    if execute:
        from nbclient import NotebookClient

        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(target.parent)}}).execute()
        print(f"{target.name}: executed in {time.perf_counter() - start:.1f} s")
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
