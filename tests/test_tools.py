"""The notebook builder turns percent-format sources into notebooks, and each source matches its notebook."""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from nbbuild import mark_exercises, parse  # noqa: E402


def test_parse_cells_and_markdown_prefix():
    nb = parse("# %% [markdown]\n# # Title\n# text\n#\n# %%\nx = 1\n\n# %%\nprint(x)\n")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[0].source == "# Title\ntext\n"
    assert nb.cells[1].source == "x = 1"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks" / "src").glob("*.py")), ids=lambda p: p.stem)
def test_stored_notebook_matches_its_source(source):
    """A notebook edited without its source (or the reverse) would drift apart silently."""
    stored = nbformat.read(ROOT / "notebooks" / (source.stem + ".ipynb"), as_version=4)
    built = parse(source.read_text())
    assert [c.source for c in stored.cells] == [c.source for c in built.cells], \
        f"notebooks/{source.stem}.ipynb differs from its source: rebuild with tools/nbbuild.py"
    assert [(c.metadata.get("nbgrader"), c.metadata.get("tags")) for c in stored.cells] == \
        [(c.metadata.get("nbgrader"), c.metadata.get("tags")) for c in built.cells], \
        f"notebooks/{source.stem}.ipynb: exercise metadata differ from its source: rebuild with tools/nbbuild.py"


EXERCISE_SOURCE = """# %% [markdown]
# **Exercise 1 — doubling (2 points).** Complete `double`.

# %%
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% [check: 1 point]
check.check_equal("double", double(2), 4)

# %% [check: 2 points]
check.check_equal("double", double(3), 6)

# %%
print("not an exercise")
"""


def test_exercise_cells_get_nbgrader_metadata():
    nb = parse(EXERCISE_SOURCE)
    task, answer, check1, check2, plain = (c.metadata for c in nb.cells)
    assert task["nbgrader"]["locked"] and task["nbgrader"]["grade_id"] == "ex1_task" and "tags" not in task
    assert answer["nbgrader"]["solution"] and not answer["nbgrader"]["grade"] and not answer["nbgrader"]["locked"]
    assert [check1["nbgrader"]["grade_id"], check2["nbgrader"]["grade_id"]] == ["ex1_check", "ex1_check2"]
    assert [check1["nbgrader"]["points"], check2["nbgrader"]["points"]] == [1, 2]
    assert check1["nbgrader"]["grade"] and check1["nbgrader"]["locked"] and not check1["nbgrader"]["solution"]
    assert answer["tags"] == check1["tags"] == ["raises-exception"]
    assert plain == {}


def test_exercise_markers_are_refused_where_they_make_no_sense():
    with pytest.raises(ValueError, match="before any 'Exercise K'"):
        parse("# %% [check: 1 point]\ncheck.check_true('x', True, '')\n")
    with pytest.raises(ValueError, match="both an answer and its check"):
        parse("# %% [markdown]\n# **Exercise 1.**\n# %% [check: 1 point]\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n")
    with pytest.raises(ValueError, match="states exercises"):
        parse("# %% [markdown]\n# **Exercise 1.** a\n#\n# **Exercise 2.** b\n")
    with pytest.raises(ValueError, match="empty cell"):
        parse("# %% [markdown]\n# **Exercise 1.**\n# %% [check: 1 point]\n\n")


def test_readme_results_table_comes_from_the_notebooks():
    """README's measured numbers are the verdicts the notebooks print, so the two cannot disagree."""
    from readme_results import table, updated_readme

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert updated_readme(readme, table()) == readme, "README.md is out of date: run tools/readme_results.py"
    assert table().count("\n") >= 30  # every chapter from 03 on contributes measured results


def test_readme_results_needs_its_markers():
    from readme_results import updated_readme

    with pytest.raises(ValueError, match="markers"):
        updated_readme("no markers here", "| table |")
    assert updated_readme("a\n<!-- results:begin -->\nold\n<!-- results:end -->\nb", "new") == \
        "a\n<!-- results:begin -->\nnew\n<!-- results:end -->\nb"
