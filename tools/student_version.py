#!/usr/bin/env python3
"""Write the student version of notebooks: solutions removed, outputs cleared.

    python tools/student_version.py [notebooks/NN_name.ipynb ...] [--out DIR] [--force]

Without notebooks, every chapter of the course's ``notebooks/``; without ``--out``, the course's
``student/`` folder (both found from this file, wherever it is run from).

Every region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the marker's indentation, exactly as
nbgrader's ``generate_assignment`` does (``tests/test_classroom.py`` checks that both give the same
cells), so the exercise's check cell reports "not answered yet" until the student fills it in. Cell
metadata stay: nbgrader's, and the ``raises-exception`` tag that lets Run All go past an unanswered
exercise. A student's existing notebook is never overwritten unless ``--force`` is given.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ROOT = Path(__file__).resolve().parent.parent


def strip_solutions(source: str) -> str:
    """Replace each solution region of a cell's source by ``raise NotImplementedError()``."""
    out, inside = [], False
    for line in source.split("\n"):
        if BEGIN in line:  # the same test as nbgrader's ClearSolutions
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError()")
        elif END in line:
            if not inside:
                raise ValueError("### END SOLUTION without a matching BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without a matching END")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "student")
    parser.add_argument("--force", action="store_true", help="overwrite student notebooks that exist")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        parser.error(f"no notebooks found in {ROOT / 'notebooks'}")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = args.out / path.name
        if target.exists() and not args.force:
            print(f"{target} exists: kept (your work is never overwritten; --force replaces it)")
            continue
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        print(f"{path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
