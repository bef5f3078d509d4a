#!/usr/bin/env python3
"""Copy every measured-result verdict from the stored notebooks into README's results table.

    python tools/readme_results.py          # rewrite the table in README.md
    python tools/readme_results.py --check  # exit 1 if README.md is out of date (a unit test runs this)

``lib.results.expect`` prints one line per measured result, e.g.
``✓ PyTorch MLP test accuracy = 98.3 ± 2.9 %  (bar ≥ 97.5 %)``. This tool collects those lines from
the stored outputs of ``notebooks/NN_*.ipynb`` and writes them as a table between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->``, so the numbers in README are the ones the
notebooks assert and the two cannot disagree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lib.results import VERDICT  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def verdicts(notebook: Path) -> list[dict[str, str]]:
    """The verdict lines printed in a stored notebook's outputs, in order."""
    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                for line in output["text"].splitlines():
                    m = VERDICT.match(line)
                    if m:
                        found.append(m.groupdict())
    return found


def table(root: Path = ROOT) -> str:
    rows = ["| notebook | measured result | reference ± tolerance | bar |", "| --- | --- | --- | --- |"]
    for notebook in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if notebook.stem.startswith("00_"):
            continue  # the welcome notebook only shows what a verdict looks like, with a made-up number
        for v in verdicts(notebook):
            unit = v["unit"].strip()
            rows.append(f"| {notebook.stem[:2]} | {v['name']} | {v['reference']} ± {v['tolerance']} {unit}".rstrip()
                        + f" | {v['bar'] or '–'} |")
    return "\n".join(rows)


def updated_readme(readme: str, new_table: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md must contain the markers {BEGIN} and {END} once each, in that order")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if README.md is out of date")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    new = updated_readme(current, table())
    if args.check:
        if new != current:
            print("README.md's results table differs from the notebooks' verdicts: run tools/readme_results.py")
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
