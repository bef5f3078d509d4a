"""The notebook builder turns percent-format sources into notebooks, and each source matches its notebook."""
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from nbbuild import parse  # noqa: E402


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
