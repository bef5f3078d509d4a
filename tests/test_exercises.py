"""Exercises: every chapter has at least three, each with a check.

That each check fails helpfully without its solution (lib.check.ExerciseFailed, in one line) is tested
by running the student versions: tests/test_classroom.py autogrades a blank submission of every chapter.
"""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from student_version import BEGIN, strip_solutions  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercise_cells(nb):
    """Indices of code cells holding a solution region, each with the index of its check cell."""
    cells = nb.cells
    pairs = []
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and BEGIN in cell.source:
            later = [j for j in range(i, min(i + 4, len(cells)))
                     if cells[j].cell_type == "code" and "check." in cells[j].source]
            pairs.append((i, later[0] if later else None))
    return pairs


def test_strip_solutions_keeps_indentation():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    assert strip_solutions(src) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    with pytest.raises(ValueError, match="BEGIN SOLUTION without a matching END"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_at_least_three_exercises_each_with_a_check(path):
    pairs = exercise_cells(nbformat.read(path, as_version=4))
    assert len(pairs) >= 3, f"{path.name}: {len(pairs)} exercises"
    assert all(check is not None for _, check in pairs), f"{path.name}: an exercise has no check cell"
