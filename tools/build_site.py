#!/usr/bin/env python3
"""Build the course's website from the stored, executed notebooks: offline, nothing re-executed.

    python tools/build_site.py [--out DIR] [--binder OWNER/REPO] [--keep-source DIR]

Writes a static site (default ``_site/``, git-ignored) with Sphinx, myst-nb and sphinx-book-theme:

- ``index.html``: the home page, made from README.md (its introduction, the two commands, the chapter
  table row for row, and the measured results, whose table ``tools/readme_results.py`` makes from the
  notebooks' checks) with ``site/home.md`` ("who it is for") after the introduction;
- one page per chapter, from ``notebooks/NN_name.ipynb`` with its stored outputs and figures; under
  its title, links to the notebook itself and to its student version (``tools/student_version.py``),
  both served by the site (``notebooks/`` and ``student/``). A widget shows its stored picture with a
  note to run it in JupyterLab; a widget with no picture (a progress bar) is left out;
- ``glossary.html`` (taken from chapter 00's glossary at build time), ``teaching.html`` (TEACHING.md),
  ``contributing.html`` (CONTRIBUTING.md), ``about.html`` (README's remaining sections) and search.

Every link between README, TEACHING, CONTRIBUTING and the notebooks is rewritten to its page; any other
relative link stops the build. Sphinx runs with ``-W --keep-going``: a warning (a broken link, a
missing image) fails the build. MathJax comes from the sphinx-mathjax-offline package, so the pages
need no network. The pages are assembled in a temporary folder; the checkout is only read.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from readme_results import table as results_table, updated_readme  # noqa: E402
from student_version import student_notebook  # noqa: E402

SITE = ROOT / "site"  # conf.py, _static/, home.md
DEFAULT_OUT = ROOT / "_site"
MARKER = ".course-site"  # written into a built site, so that a rebuild only ever deletes a site
CHAPTERS_HEADER = "| notebook | topic | runtime | checked exactly |"
HOME_SECTIONS = ("Two commands", "Chapters", "Measured results")  # README's sections on the home page
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("Interactive figure: this is the picture stored with the notebook. Its controls work when "
               "you run the notebook in JupyterLab.")
GUIDES = {"TEACHING.md": "teaching", "CONTRIBUTING.md": "contributing"}

LINK = re.compile(r"(\[[^\]]*\])\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def chapter_paths(root: Path = ROOT) -> list[Path]:
    """Every chapter present: ``notebooks/NN_name.ipynb``, in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


# ---------------------------------------------------------------------------------------- markdown


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The rows (header first, the ``---`` line left out) of the table starting with the line ``header``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == header]
    if len(starts) != 1:
        raise ValueError(f"expected one table starting with {header!r}, found {len(starts)}")
    rows = []
    for line in lines[starts[0]:]:
        if not line.strip().startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            rows.append(cells)
    return rows


def sections(markdown: str) -> tuple[str, str, dict[str, str]]:
    """Split a README-like file: ``(title, text before the first '## ', {section title: body})``."""
    lines = markdown.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("the file must start with a '# ' title")
    title, parts, current, body = lines[0][2:].strip(), {}, None, []
    preamble: list[str] = []
    inside_code = False
    for line in lines[1:]:
        if FENCE.match(line):
            inside_code = not inside_code
        if line.startswith("## ") and not inside_code:
            if current is not None:
                parts[current] = "\n".join(body).strip("\n")
            current, body = line[3:].strip(), []
        elif current is None:
            preamble.append(line)
        else:
            body.append(line)
    if current is not None:
        parts[current] = "\n".join(body).strip("\n")
    return title, "\n".join(preamble).strip("\n"), parts


def rewrite_links(markdown: str, targets: dict[str, str], where: str) -> str:
    """Rewrite each relative link ``[text](path#anchor)`` with ``targets[path]`` (code blocks left alone).

    Web links (``scheme:``) and in-page anchors stay; a relative path not in ``targets`` raises
    ``ValueError``, so that a link the site cannot follow stops the build instead of breaking."""
    out, inside_code = [], False

    def replace(match: re.Match) -> str:
        text, target = match.groups()
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        if path not in targets:
            raise ValueError(f"{where}: the link {target!r} has no page on the site; add it to the site's "
                             f"link targets in tools/build_site.py or make it a web link")
        return f"{text}({targets[path]}{hash_}{anchor})"

    for line in markdown.split("\n"):
        if FENCE.match(line):
            inside_code = not inside_code
        out.append(line if inside_code else LINK.sub(replace, line))
    return "\n".join(out)


def link_targets(chapters: list[Path]) -> dict[str, str]:
    """Repository paths (relative to the root, where README, TEACHING and CONTRIBUTING live) -> site pages."""
    targets = {"README.md": "index.md", **{name: f"{page}.md" for name, page in GUIDES.items()}}
    targets.update({f"notebooks/{p.name}": p.name for p in chapters})
    return targets


# ---------------------------------------------------------------------------------------- pages


def home_page(root: Path, chapters: list[Path]) -> str:
    """The home page: README's title and introduction, site/home.md, then README's HOME_SECTIONS with
    the results table made afresh from the notebooks (tools/readme_results.py)."""
    title, intro, parts = sections((root / "README.md").read_text(encoding="utf-8"))
    missing = [name for name in HOME_SECTIONS if name not in parts]
    if missing:
        raise ValueError(f"README.md has no section(s) {missing}: the home page is made from them")
    parts["Measured results"] = updated_readme(parts["Measured results"], results_table(root))
    targets = link_targets(chapters)
    readme = [rewrite_links(f"## {name}\n\n{parts[name]}", targets, "README.md") for name in HOME_SECTIONS]
    body = [f"# {title}", rewrite_links(intro, targets, "README.md"),
            (SITE / "home.md").read_text(encoding="utf-8").strip("\n"), *readme]
    body.append("## More\n\n" + "\n".join([
        "- [Glossary · 术语表](glossary.md): the course's terms in English and Chinese.",
        "- [Teacher's guide](teaching.md): nbgrader, JupyterHub, Binder, GPU nodes.",
        "- [Contributor's guide](contributing.md): how the course is built, its conventions, adding a chapter.",
        "- [The library and the tests](about.md): the course library `lib/`, how the notebooks are tested.",
    ]))
    body.append(toctree("Chapters", [p.stem for p in chapters]))
    body.append(toctree("Guides", ["glossary", "teaching", "contributing", "about"]))
    return "\n\n".join(body) + "\n"


def about_page(root: Path, chapters: list[Path]) -> str:
    """README's sections that are not on the home page."""
    _, _, parts = sections((root / "README.md").read_text(encoding="utf-8"))
    rest = [f"## {name}\n\n{body}" for name, body in parts.items() if name not in HOME_SECTIONS]
    text = "# The library and the tests\n\n" + "\n\n".join(rest) + "\n"
    return rewrite_links(text, link_targets(chapters), "README.md")


def guide_page(root: Path, name: str, chapters: list[Path]) -> str:
    """TEACHING.md or CONTRIBUTING.md, links rewritten to the site's pages."""
    return rewrite_links((root / name).read_text(encoding="utf-8"), link_targets(chapters), name)


def glossary_page(chapters: list[Path]) -> str:
    """Chapter 00's glossary (its markdown cell starting ``## Glossary``) as a page of its own, each
    chapter number in its "where" column linked to that chapter."""
    welcome = next((p for p in chapters if p.name.startswith("00_")), None)
    if welcome is None:
        raise ValueError("no notebooks/00_*.ipynb: the glossary is taken from chapter 00")
    cells = [c for c in nbformat.read(welcome, as_version=4).cells
             if c.cell_type == "markdown" and c.source.lstrip().startswith("## Glossary")]
    if len(cells) != 1:
        raise ValueError(f"{welcome.name}: expected one markdown cell starting '## Glossary', found {len(cells)}")
    heading, _, rest = cells[0].source.lstrip().partition("\n")
    by_number = {p.name[:2]: p.name for p in chapters}

    def link_numbers(line: str) -> str:
        cells = line.split("|")
        if len(cells) < 3 or not line.strip().startswith("|"):
            return line
        cells[-2] = re.sub(r"\b(\d\d)\b", lambda m: f"[{m[1]}]({by_number[m[1]]})" if m[1] in by_number else m[1],
                           cells[-2])
        return "|".join(cells)

    table = "\n".join(link_numbers(line) for line in rest.strip("\n").split("\n"))
    return (f"# {heading[3:].strip()}\n\nThe course's terms in English and Chinese, and the chapters where "
            f"each one is introduced. This page is taken from [chapter 00]({welcome.name}) when the site "
            f"is built.\n\n{table}\n")


def toctree(caption: str, pages: list[str]) -> str:
    return "```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(pages) + "\n```"


def links_cell(name: str, binder: str | None) -> nbformat.NotebookNode:
    """The box under a chapter's title: its notebook, its student version, how to run it."""
    q = html.escape
    run = (f'<p>Run it: put the student version in the course\'s <code>student/</code> folder and open it in '
           f'JupyterLab (<code>make lab</code> writes every student version there and opens JupyterLab).')
    if binder:
        url = f"https://mybinder.org/v2/gh/{binder}/HEAD?urlpath=lab/tree/student/{name}"
        run += f' Or <a class="course-binder" href="{q(url)}">run it on Binder</a>.'
    lines = ['<div class="course-chapter-links">',
             f'<p><strong>This chapter as a notebook:</strong> the <a class="course-student" '
             f'href="student/{q(name)}" download>student version</a> (the exercises left for you) and the '
             f'<a class="course-notebook" href="notebooks/{q(name)}" download>instructor notebook</a> '
             f'(every exercise solved, every output as shown on this page).</p>',
             run + "</p>", "</div>"]
    return nbformat.v4.new_markdown_cell("\n".join(lines))


@dataclass
class ChapterStats:
    widgets: int = 0   # widget views shown as their stored picture
    dropped: int = 0   # widget views with no picture (progress bars), left out


def chapter_page(nb: nbformat.NotebookNode, name: str, binder: str | None) -> tuple[nbformat.NotebookNode, ChapterStats]:
    """The notebook as its page shows it: links under the title, widgets as pictures with a note."""
    nb = nbformat.from_dict(nb)
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or not first.source.startswith("# "):
        raise ValueError(f"{name}: the first cell must be markdown starting with the chapter's '# ' title")
    stats = ChapterStats()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                outputs.append(output)
            elif "image/png" in data:
                stats.widgets += 1
                outputs.append(nbformat.v4.new_output("display_data", data={
                    "image/png": data["image/png"], "text/plain": data.get("text/plain", WIDGET_NOTE)}))
                outputs.append(nbformat.v4.new_output("display_data", data={
                    "text/html": f'<p class="course-widget-note">{html.escape(WIDGET_NOTE)}</p>',
                    "text/plain": WIDGET_NOTE}))
            else:
                stats.dropped += 1
        cell.outputs = outputs
    nb.cells.insert(1, links_cell(name, binder))
    nb.metadata.pop("widgets", None)
    return nb, stats


# ---------------------------------------------------------------------------------------- build


def assemble(source: Path, *, root: Path = ROOT, binder: str | None = None) -> dict[str, ChapterStats]:
    """Write the site's Sphinx source folder: conf.py and static files, the pages, and the notebooks
    to download (``_extra/notebooks``: the stored files as they are; ``_extra/student``)."""
    chapters = chapter_paths(root)
    if not chapters:
        raise ValueError(f"no notebooks/NN_name.ipynb in {root}")
    shutil.copytree(SITE, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "home.md"))
    (source / "index.md").write_text(home_page(root, chapters), encoding="utf-8")
    (source / "about.md").write_text(about_page(root, chapters), encoding="utf-8")
    (source / "glossary.md").write_text(glossary_page(chapters), encoding="utf-8")
    for name, page in GUIDES.items():
        (source / f"{page}.md").write_text(guide_page(root, name, chapters), encoding="utf-8")
    (source / "_extra" / "notebooks").mkdir(parents=True)
    (source / "_extra" / "student").mkdir()
    stats = {}
    for path in chapters:
        nb = nbformat.read(path, as_version=4)
        shutil.copyfile(path, source / "_extra" / "notebooks" / path.name)
        nbformat.write(student_notebook(nb), source / "_extra" / "student" / path.name)
        page, stats[path.stem] = chapter_page(nb, path.name, binder)
        nbformat.write(page, source / path.name)
    return stats


def build(out: Path = DEFAULT_OUT, *, root: Path = ROOT, binder: str | None = None,
          keep_source: Path | None = None, quiet: bool = True) -> dict:
    """Assemble the pages and run ``sphinx-build -W --keep-going``; the finished site replaces ``out``
    (a folder that holds anything but an earlier site is refused). Returns what was built and the
    seconds it took."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} exists and is not a site built by this tool: choose another --out")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="course_site_") as tmp:
        # myst-nb writes its output files next to Sphinx's output folder: both live in tmp
        source, html_dir = Path(tmp) / "source", Path(tmp) / "html"
        stats = assemble(source, root=root, binder=binder)
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n",
                   "-d", str(Path(tmp) / "doctrees"), str(source), str(html_dir)]
        if quiet:
            command.append("-q")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"sphinx-build failed (status {result.returncode}):\n{result.stdout}\n{result.stderr}")
        if keep_source:
            shutil.copytree(source, keep_source, dirs_exist_ok=True)
        (html_dir / MARKER).write_text(json.dumps({"chapters": sorted(stats)}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(html_dir, out)
    return {"out": out, "seconds": time.monotonic() - start, "chapters": stats,
            "warnings": (result.stderr or "").strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the site goes (default: _site/)")
    parser.add_argument("--binder", metavar="OWNER/REPO",
                        help="add a 'run it on Binder' link to each chapter, for this GitHub repository")
    parser.add_argument("--keep-source", type=Path, metavar="DIR", help="also keep the Sphinx source folder here")
    parser.add_argument("--verbose", action="store_true", help="show sphinx-build's progress")
    args = parser.parse_args()
    if args.binder and not re.fullmatch(r"[\w.-]+/[\w.-]+", args.binder):
        parser.error(f"--binder takes OWNER/REPO, got {args.binder!r}")
    report = build(args.out, binder=args.binder, keep_source=args.keep_source, quiet=not args.verbose)
    widgets = sum(s.widgets for s in report["chapters"].values())
    dropped = sum(s.dropped for s in report["chapters"].values())
    print(f"site: {len(report['chapters'])} chapters ({widgets} widgets as pictures, {dropped} progress bars "
          f"left out) in {report['out']}/index.html, built in {report['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
