"""The course's website (tools/build_site.py), built from the stored notebooks and read in a real browser.

The unit tests always run: the home page's chapter table is README's row for row, the glossary is
chapter 00's, links are rewritten to the site's pages or refused, widgets become their picture with a
note, and the source folder holds one page per chapter and the notebooks to download.

With COURSE_TEST_BROWSER=1 (CI sets it; it needs Debian's Chromium) the site is built into a temporary
folder (with ``-W``: any Sphinx warning fails) and read in headless Chromium over http on 127.0.0.1
(tools/site_check.py): every chapter page loads with its title, all its figures and widget pictures
load, every formula is typeset by the site's own MathJax, its notebook and student version download,
search finds a term in English and one in Chinese, the home page's table in the browser is README's,
and no request leaves 127.0.0.1 (a page that reaches out is caught: see the last test).
"""
import html.parser
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402
from build_site import CHAPTERS_HEADER, chapter_paths, markdown_table  # noqa: E402
from student_version import student_notebook  # noqa: E402

CHAPTERS = chapter_paths()
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINKED = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
browser = pytest.mark.skipif(os.environ.get("COURSE_TEST_BROWSER") != "1",
                             reason="set COURSE_TEST_BROWSER=1 to build the site and read it in headless Chromium")


def title_of(path: Path) -> str:
    """A chapter's title: its first cell's '# ' line, as text."""
    first = nbformat.read(path, as_version=4).cells[0].source.split("\n", 1)[0]
    return re.sub(r"[`*]", "", first[2:]).strip()


def as_text(cell: str) -> str:
    """A markdown table cell as the browser shows it: links as their text, no backticks or stars."""
    return re.sub(r"[`*]", "", LINKED.sub(r"\1", cell)).strip()


def stored_outputs(path: Path, mime: str) -> int:
    return sum(mime in output.get("data", {}) for cell in nbformat.read(path, as_version=4).cells
               for output in cell.get("outputs", []))


# ------------------------------------------------------------------------------------ unit tests


@pytest.fixture(scope="module")
def home():
    return build_site.home_page(ROOT, CHAPTERS)


def test_home_chapter_table_is_readmes_row_for_row(home):
    readme_rows, home_rows = markdown_table(README, CHAPTERS_HEADER), markdown_table(home, CHAPTERS_HEADER)
    assert len(home_rows) == len(readme_rows) > 1
    targets = build_site.link_targets(CHAPTERS)
    for readme_row, home_row in zip(readme_rows, home_rows):
        assert [as_text(c) for c in home_row] == [as_text(c) for c in readme_row]
        assert [t for _, t in LINKED.findall(" ".join(home_row))] == \
               [targets[t] for _, t in LINKED.findall(" ".join(readme_row))]


def test_readmes_chapter_table_lists_every_chapter():
    listed = [LINKED.match(row[0]).group(2) for row in markdown_table(README, CHAPTERS_HEADER)[1:]]
    assert listed == [f"notebooks/{p.name}" for p in CHAPTERS], "README's chapter table and notebooks/ differ"


def test_home_page_has_the_two_commands_results_and_every_chapter_in_its_menu(home):
    assert "make lab" in home and "make test" in home
    results = home.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0]
    assert results.strip() == build_site.results_table(ROOT)  # the notebooks' verdicts (readme_results)
    assert "Who it is for" in home
    menu = home.split(":caption: Chapters")[1].split("```")[0].split()
    assert menu == [p.stem for p in CHAPTERS]


def test_links_are_rewritten_to_pages_or_refused():
    targets = {"README.md": "index.md", "notebooks/01_x.ipynb": "01_x.ipynb"}
    text = ("See [one](notebooks/01_x.ipynb) and [home](README.md#two-commands), [web](https://example.org/a.md), "
            "[here](#chapters).\n```\n[code](not/a/link.md)\n```")
    assert build_site.rewrite_links(text, targets, "t") == (
        "See [one](01_x.ipynb) and [home](index.md#two-commands), [web](https://example.org/a.md), "
        "[here](#chapters).\n```\n[code](not/a/link.md)\n```")
    with pytest.raises(ValueError, match="data/README.md"):
        build_site.rewrite_links("[data](data/README.md)", targets, "t")


def test_guides_and_about_page_keep_every_section():
    for name, page in build_site.GUIDES.items():
        text = build_site.guide_page(ROOT, name, CHAPTERS)
        source = (ROOT / name).read_text(encoding="utf-8")
        assert re.findall(r"^#+ .*$", text, re.M) == re.findall(r"^#+ .*$", source, re.M)
    about = build_site.about_page(ROOT, CHAPTERS)
    _, _, sections = build_site.sections(README)
    for section in sections:
        assert (f"## {section}\n" in about) != (section in build_site.HOME_SECTIONS), section


def test_glossary_page_is_chapter_00s_glossary():
    page = build_site.glossary_page(CHAPTERS)
    source = (ROOT / "notebooks" / "src" / "00_welcome.py").read_text(encoding="utf-8")
    markdown = "\n".join(line[2:] for line in source.splitlines() if line.startswith("# "))
    expected = markdown_table(markdown, "| English | 中文 | where |")
    shown = markdown_table(page, "| English | 中文 | where |")
    assert len(shown) == len(expected) > 50
    assert [[as_text(c) for c in row] for row in shown] == expected
    assert "[01](01_gradient_descent.ipynb)" in page and "梯度下降" in page


def fake_chapter() -> nbformat.NotebookNode:
    widget = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A title\n\nText."),
        nbformat.v4.new_code_cell("show()", outputs=[
            nbformat.v4.new_output("execute_result", execution_count=1, data={
                build_site.WIDGET_VIEW: widget, "image/png": "iVBORw0KGgo=", "text/plain": "hint"}),
            nbformat.v4.new_output("display_data", data={build_site.WIDGET_VIEW: widget, "text/plain": "0%|"}),
            nbformat.v4.new_output("stream", name="stdout", text="printed\n")]),
    ], metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}})


def test_chapter_page_shows_a_widget_as_its_picture_with_a_note():
    page, stats = build_site.chapter_page(fake_chapter(), "99_x.ipynb", binder=None)
    assert (stats.widgets, stats.dropped) == (1, 1)
    outputs = page.cells[2].outputs
    assert [list(o.get("data", {})) for o in outputs] == [["image/png", "text/plain"], ["text/html", "text/plain"], []]
    assert "course-widget-note" in outputs[1].data["text/html"] and outputs[2].text == "printed\n"
    assert "widgets" not in page.metadata  # no widget state: myst-nb then loads no widget JavaScript
    links = page.cells[1].source
    assert 'href="student/99_x.ipynb"' in links and 'href="notebooks/99_x.ipynb"' in links
    assert "mybinder" not in links
    with_binder, _ = build_site.chapter_page(fake_chapter(), "99_x.ipynb", binder="owner/repo")
    assert "https://mybinder.org/v2/gh/owner/repo/HEAD?urlpath=lab/tree/student/99_x.ipynb" in with_binder.cells[1].source


def test_chapter_page_needs_a_title_first():
    nb = fake_chapter()
    nb.cells.reverse()
    with pytest.raises(ValueError, match="title"):
        build_site.chapter_page(nb, "99_x.ipynb", binder=None)


def test_source_folder_has_every_page_and_the_notebooks_to_download(tmp_path):
    stats = build_site.assemble(tmp_path / "src")
    src = tmp_path / "src"
    pages = sorted(p.name for p in src.iterdir() if p.suffix in (".md", ".ipynb"))
    assert pages == sorted(["index.md", "about.md", "glossary.md", "teaching.md", "contributing.md",
                            *(p.name for p in CHAPTERS)])
    assert (src / "conf.py").exists() and not (src / "home.md").exists()
    for path in CHAPTERS:
        assert (src / "_extra" / "notebooks" / path.name).read_bytes() == path.read_bytes()
        student = nbformat.read(src / "_extra" / "student" / path.name, as_version=4)
        assert student == student_notebook(nbformat.read(path, as_version=4))
        assert stats[path.stem].widgets == stored_outputs(path, build_site.WIDGET_VIEW) - stats[path.stem].dropped
    assert sum(s.widgets for s in stats.values()) >= len(CHAPTERS) - 1


# ------------------------------------------------------------------------------------ in the browser


class Tables(html.parser.HTMLParser):
    """Every table of an HTML page: rows of cell texts, and each cell's link targets."""

    def __init__(self):
        super().__init__()
        self.tables, self.links, self.cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            self.links.append([])
        elif tag == "tr":
            self.tables[-1].append([])
            self.links[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "a" and self.cell is not None:
            self.links[-1][-1].append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


class Requests(html.parser.HTMLParser):
    """Every URL an HTML page asks the browser to fetch by itself (not the links a reader may follow)."""
    FETCHED = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src",
               "video": "src", "embed": "src", "object": "data", "link": "href"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.FETCHED and attrs.get(self.FETCHED[tag]):
            if tag == "link" and attrs.get("rel") not in ("stylesheet", "preload", "icon", "shortcut icon"):
                return  # rel=next/prev/search/index are links, not requests
            self.urls.append(attrs[self.FETCHED[tag]])


@pytest.fixture(scope="module")
def site(tmp_path_factory, request):
    out = tmp_path_factory.mktemp("site") / "html"
    report = build_site.build(out)
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n[site built in {report['seconds']:.1f} s: {len(report['chapters'])} chapters]")
    return out, report


@pytest.fixture(scope="module")
def read(site, request):
    import site_check

    if shutil.which(site_check.CHROMIUM) is None:
        pytest.fail(f"{site_check.CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    out, _ = site
    start = time.monotonic()
    report = site_check.check_site(out, site_check.site_pages(out), ["backpropagation", "梯度下降"])
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{report}\n[site check: {time.monotonic() - start:.1f} s wall]")
    return report


@browser
def test_site_builds_without_a_warning_and_serves_mathjax_itself(site):
    out, report = site
    assert report["warnings"] == ""  # sphinx-build -W would have failed on one; nothing else on stderr
    assert sorted(report["chapters"]) == [p.stem for p in CHAPTERS]
    assert json.loads((out / build_site.MARKER).read_text())["chapters"] == [p.stem for p in CHAPTERS]
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()
    for path in CHAPTERS:
        assert (out / f"{path.stem}.html").exists()


@browser
def test_no_page_or_stylesheet_names_an_outside_url(site):
    out, _ = site
    outside = []
    for page in out.glob("*.html"):
        parser = Requests()
        parser.feed(page.read_text(encoding="utf-8"))
        outside += [f"{page.name}: {u}" for u in parser.urls if re.match(r"([a-z]+:)?//", u)]
    for css in out.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        outside += [f"{css.name}: {u}" for u in re.findall(r"(?:url\(|@import)\s*[\"']?((?:https?:)?//[^\"')\s]+)", text)]
    assert not outside


@browser
def test_every_chapter_page_loads_with_its_title(read):
    for path in CHAPTERS:
        page = read.pages[f"{path.stem}.html"]
        assert not page.failure, page
        assert page.title == title_of(path), page
        assert title_of(path) in page.document_title
    for name, title in [("index.html", "From gradient descent to large models"), ("glossary.html", "Glossary · 术语表"),
                        ("teaching.html", "Teaching with the course"), ("contributing.html", "Contributing")]:
        assert read.pages[name].title == title, read.pages[name]


@browser
def test_every_figure_and_widget_picture_loads(read, site):
    _, report = site
    for name, page in read.pages.items():
        assert not page.broken_images, page
    for path in CHAPTERS:
        page = read.pages[f"{path.stem}.html"]
        assert page.output_images == stored_outputs(path, "image/png") > 0, page  # every stored picture, shown
        widgets = report["chapters"][path.stem].widgets
        assert page.widget_notes == page.widget_pictures == widgets, page


@browser
def test_maths_is_typeset_on_every_page_that_has_some(read):
    with_maths = 0
    for path in CHAPTERS:
        page = read.pages[f"{path.stem}.html"]
        text = "".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        if "$" in text:
            with_maths += 1
            assert page.maths > 0 and page.typeset >= page.maths, page
        assert not page.untypeset and not page.math_errors, page
    assert with_maths >= len(CHAPTERS) - 1
    assert any("/_static/mathjax/output/chtml/fonts/" in url for url in read.requests), "MathJax's fonts came from elsewhere"


@browser
def test_each_chapter_links_its_notebook_and_student_version(read):
    for path in CHAPTERS:
        links = read.pages[f"{path.stem}.html"].links
        notebook, student = links["course-notebook"], links["course-student"]
        assert notebook["href"] == f"notebooks/{path.name}" and student["href"] == f"student/{path.name}"
        assert notebook["status"] == student["status"] == 200
        assert notebook["nbformat"] == student["nbformat"] == 4
        assert notebook["outputs"] > 0 and student["outputs"] == 0


@browser
def test_search_finds_a_term_in_english_and_in_chinese(read):
    assert "02_backpropagation.html" in read.searches["backpropagation"]
    assert "glossary.html" in read.searches["梯度下降"]


@browser
def test_home_page_table_in_the_browser_is_readmes(site):
    out, _ = site
    parser = Tables()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    header = [as_text(c) for c in markdown_table(README, CHAPTERS_HEADER)[0]]
    index = next(i for i, t in enumerate(parser.tables) if t and t[0] == header)
    expected = [[as_text(c) for c in row] for row in markdown_table(README, CHAPTERS_HEADER)]
    assert parser.tables[index] == expected
    readme_links = [LINKED.match(row[0]).group(2) for row in markdown_table(README, CHAPTERS_HEADER)[1:]]
    assert [row[0] for row in parser.links[index][1:]] == [Path(link).stem + ".html" for link in readme_links]


@browser
def test_no_request_leaves_the_machine_and_nothing_fails(read):
    assert len(read.pages) == len(CHAPTERS) + 5  # home, glossary, teaching, contributing, about
    assert not read.outside_requests
    assert not read.failed_requests
    assert not read.console_errors


@browser
def test_checker_sees_outside_requests_broken_images_and_untypeset_maths(tmp_path):
    import site_check

    (tmp_path / "index.html").write_text(
        '<html><head><title>t</title></head><body><main><h1>T</h1>'
        '<img src="https://example.com/pixel.png"><img src="missing.png">'
        '<span class="math">\\(x\\)</span></main></body></html>')
    report = site_check.check_site(tmp_path, ["index.html"], [], timeout_ms=5_000, math_timeout_ms=2_000)
    page = report.pages["index.html"]
    assert report.outside_requests == ["https://example.com/pixel.png"]
    assert any("missing.png" in f for f in report.failed_requests)
    assert sorted(page.broken_images) == ["https://example.com/pixel.png", "missing.png"]
    assert page.failure == "MathJax did not start within 2 s" and page.untypeset == ["\\(x\\)"]
