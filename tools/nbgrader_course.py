#!/usr/bin/env python3
"""Make an nbgrader course directory from the course's notebooks: one assignment per chapter.

    python tools/nbgrader_course.py COURSE_DIR [notebooks/NN_name.ipynb ...]

writes ``COURSE_DIR/nbgrader_config.py`` (from ``classroom/nbgrader_config.py``, unless the course
already has one: yours, with your exchange and course id, is kept) and
``COURSE_DIR/source/NN_name/NN_name.ipynb`` for every chapter (or the ones given). Then, from
COURSE_DIR: ``nbgrader generate_assignment NN_name`` writes the student release, which equals
``tools/student_version.py``'s. The instructor notebooks already carry nbgrader's cell metadata
(``tools/nbbuild.py`` adds it). An existing source notebook is replaced; nothing else in COURSE_DIR
(the gradebook, submissions, feedback) is touched. TEACHING.md walks through the whole cycle.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chapters() -> list[Path]:
    """The instructor notebooks, in order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def make_course(course: Path, notebooks: list[Path] | None = None) -> list[str]:
    """Write the config and one source assignment per notebook into ``course``; return the assignments."""
    course.mkdir(parents=True, exist_ok=True)
    if not (course / "nbgrader_config.py").exists():
        shutil.copyfile(ROOT / "classroom" / "nbgrader_config.py", course / "nbgrader_config.py")
    names = []
    for notebook in notebooks or chapters():
        folder = course / "source" / notebook.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, folder / notebook.name)
        names.append(notebook.stem)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("course", type=Path, help="the course directory to create or update")
    parser.add_argument("notebooks", nargs="*", type=Path, help="instructor notebooks (default: every chapter)")
    args = parser.parse_args()
    for name in make_course(args.course, [p.resolve() for p in args.notebooks] or None):
        print(f"{args.course / 'source' / name}")
    print(f"next: cd {args.course} && nbgrader generate_assignment <name>   (see TEACHING.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
