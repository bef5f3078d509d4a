#!/usr/bin/env python3
"""Read the built website in a real browser, as a reader would: headless Chromium over http on 127.0.0.1.

    python tools/site_check.py [--site _site] [--screenshots DIR] [--chromium /usr/bin/chromium]

The site (``tools/build_site.py``) is served by Python's http.server on 127.0.0.1 and a free port.
Every page is opened at 1366x768: the home page, each chapter, the glossary, the guides. For each page
the check reports its ``<h1>``, the images on it and how many failed to load (an image counts as
loaded when the browser decoded it: ``complete`` and a natural width above 0), the maths elements and
how many MathJax left untypeset or in error, the widget notes, and the status of its download links
(notebook and student version, fetched from the page). Then it searches the site (search.html?q=...)
and lists the pages found. Every request the browser makes is recorded: one to a host other than
127.0.0.1/localhost is aborted and reported, and so is a local request answered with an error status
or console error. Chromium is Debian's ``/usr/bin/chromium``; Playwright never downloads a browser.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from browser_check import CHROMIUM, VIEWPORT, is_local  # noqa: E402

# JavaScript: wait until MathJax has typeset the page (pages without maths do not load it).
MATH_DONE = """async (timeout) => {
  if (!document.querySelector('.math')) return true;
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > timeout) return false;
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  return true;
}"""

# JavaScript: what the reader sees on the page, once its images and maths are done.
PAGE_STATE = """async () => {
  const main = document.querySelector('main') || document.body;
  const imgs = [...main.querySelectorAll('img')];
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
  const h1 = main.querySelector('h1');
  let title = null;
  if (h1) { const c = h1.cloneNode(true); c.querySelectorAll('.headerlink').forEach(a => a.remove()); title = c.textContent.trim(); }
  const maths = [...main.querySelectorAll('.math')];
  const links = {};
  for (const cls of ['course-notebook', 'course-student']) {
    const a = main.querySelector('a.' + cls);
    if (a) {
      const r = await fetch(a.href);
      let nb = null;
      try { nb = await r.json(); } catch (e) {}
      links[cls] = {href: a.getAttribute('href'), status: r.status, nbformat: nb && nb.nbformat,
                    outputs: nb ? nb.cells.reduce((n, c) => n + (c.outputs ? c.outputs.length : 0), 0) : null};
    }
  }
  return {
    title,
    documentTitle: document.title,
    images: imgs.length,
    outputImages: main.querySelectorAll('.cell_output img').length,
    brokenImages: imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src').slice(0, 80)),
    maths: maths.length,
    typeset: main.querySelectorAll('mjx-container').length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: [...main.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80)),
    widgetNotes: main.querySelectorAll('.course-widget-note').length,
    widgetPictures: [...main.querySelectorAll('.course-widget-note')].filter(n => {
      const out = n.closest('.output') || n;
      const prev = out.previousElementSibling;  // the picture, just before the note in the cell's output
      const img = prev && (prev.tagName === 'IMG' ? prev : prev.querySelector('img'));
      return img && img.complete && img.naturalWidth > 0;
    }).length,
    links,
  };
}"""

SEARCH_RESULTS = """() => {
  const items = [...document.querySelectorAll('#search-results li a, ul.search li a')];
  const summary = document.querySelector('#search-results .search-summary');  // written when the search is over
  return {done: !!(summary && summary.textContent.trim()), hrefs: items.map(a => a.getAttribute('href'))};
}"""


@dataclass
class PageReport:
    """What one page showed in the browser."""
    path: str
    title: str | None = None
    document_title: str = ""
    images: int = 0
    output_images: int = 0
    broken_images: list[str] = field(default_factory=list)
    maths: int = 0
    typeset: int = 0
    untypeset: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    widget_notes: int = 0
    widget_pictures: int = 0
    links: dict = field(default_factory=dict)
    failure: str = ""

    def __str__(self) -> str:
        if self.failure:
            return f"FAIL {self.path}: {self.failure}"
        links = ", ".join(f"{k.removeprefix('course-')} {v['status']}" for k, v in self.links.items())
        return (f"{self.path}: {self.title!r}, {self.images} images ({len(self.broken_images)} broken), "
                f"{self.maths} maths ({self.typeset} typeset, {len(self.untypeset)} not, {len(self.math_errors)} errors), "
                f"{self.widget_notes} widget notes ({self.widget_pictures} with their picture)"
                + (f", links: {links}" if links else ""))


@dataclass
class SiteReport:
    pages: dict[str, PageReport] = field(default_factory=dict)
    searches: dict[str, list[str]] = field(default_factory=dict)  # query -> pages found
    requests: list[str] = field(default_factory=list)  # every URL the browser asked for
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)  # local requests answered >= 400 or that failed
    console_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [str(p) for p in self.pages.values()]
        lines += [f"search {q!r}: {len(found)} pages, first {found[:3]}" for q, found in self.searches.items()]
        lines.append(f"{len(self.requests)} requests, {len(self.outside_requests)} outside 127.0.0.1, "
                     f"{len(self.failed_requests)} failed, {len(self.console_errors)} console errors; "
                     f"{self.seconds:.1f} s")
        lines += [f"  outside: {u}" for u in self.outside_requests]
        lines += [f"  failed: {u}" for u in self.failed_requests]
        lines += [f"  console: {e}" for e in self.console_errors]
        return "\n".join(lines)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the check reports what matters
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over http on 127.0.0.1 and a free port, in a thread; yield its base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def check_site(site: Path, pages: list[str], searches: list[str], *, chromium: str = CHROMIUM,
               screenshots: Path | None = None, timeout_ms: float = 30_000,
               math_timeout_ms: float = 20_000) -> SiteReport:
    """Open each of ``pages`` (paths such as ``index.html``) and search each of ``searches``; see the
    module docstring. A screenshot of every page goes to ``screenshots`` when given."""
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise FileNotFoundError(f"no Chromium at {chromium} (Debian: apt-get install chromium)")
    report = SiteReport()
    start = time.monotonic()

    def route(r):
        url = r.request.url
        report.requests.append(url)
        if is_local(url):
            r.continue_()
        else:
            if url not in report.outside_requests:
                report.outside_requests.append(url)
            r.abort()

    def response(resp):
        if resp.status >= 400 and is_local(resp.url):
            report.failed_requests.append(f"{resp.status} {resp.url}")

    def failed(request):
        if is_local(request.url):
            report.failed_requests.append(f"{request.failure} {request.url}")

    def console(message):
        if message.type == "error":
            report.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    with serve(site) as base, sync_playwright() as playwright:
        # --no-sandbox: CI runs as root; a fresh profile in a temporary folder (Playwright's default)
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-proxy-server"],
                                             chromium_sandbox=False)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(timeout_ms)
            context.route("**/*", route)
            page = context.new_page()
            page.on("response", response)
            page.on("requestfailed", failed)
            page.on("console", console)
            page.on("pageerror", lambda error: report.console_errors.append(f"page error: {error}"))
            page.on("websocket", lambda ws: None if is_local(ws.url) else report.outside_requests.append(ws.url))
            for path in pages:
                result = PageReport(path)
                try:
                    page.goto(f"{base}/{path}", wait_until="load")
                    if not page.evaluate(MATH_DONE, math_timeout_ms):
                        result.failure = f"MathJax did not start within {math_timeout_ms / 1000:g} s"
                    state = page.evaluate(PAGE_STATE)
                    result.title, result.document_title = state["title"], state["documentTitle"]
                    result.images, result.output_images = state["images"], state["outputImages"]
                    result.broken_images = state["brokenImages"]
                    result.maths, result.typeset = state["maths"], state["typeset"]
                    result.untypeset, result.math_errors = state["untypeset"], state["mathErrors"]
                    result.widget_notes, result.widget_pictures = state["widgetNotes"], state["widgetPictures"]
                    result.links = state["links"]
                    if screenshots:
                        page.screenshot(path=str(Path(screenshots) / f"{Path(path).stem}.png"))
                except Exception as error:  # Playwright's timeouts: report them, go on to the next page
                    result.failure = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                report.pages[path] = result
            for query in searches:
                page.goto(f"{base}/search.html?q={query}", wait_until="load")
                try:
                    page.wait_for_function(f"({SEARCH_RESULTS})().done", timeout=timeout_ms)
                    # Sphinx's search fetches each page found for its summary: let those finish
                    page.wait_for_load_state("networkidle")
                except Exception:  # reported as what was found by then
                    pass
                report.searches[query] = [urlsplit(h).path.rsplit("/", 1)[-1]
                                          for h in page.evaluate(SEARCH_RESULTS)["hrefs"]]
                if screenshots:
                    page.screenshot(path=str(Path(screenshots) / f"search_{len(report.searches)}.png"))
            context.close()
        finally:
            browser.close()
    report.seconds = time.monotonic() - start
    return report


def site_pages(site: Path) -> list[str]:
    """The pages a reader reaches from the home page: every HTML file but Sphinx's index and search."""
    return ["index.html"] + sorted(p.name for p in site.glob("*.html")
                                   if p.name not in ("index.html", "genindex.html", "search.html"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=ROOT / "_site")
    parser.add_argument("--search", action="append", default=None, help="a term to search (repeatable)")
    parser.add_argument("--screenshots", type=Path, help="a folder for a screenshot of every page")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    report = check_site(args.site, site_pages(args.site), args.search or ["backpropagation"],
                        chromium=args.chromium, screenshots=args.screenshots)
    print(report)
    bad = (report.outside_requests or report.failed_requests or report.console_errors
           or any(p.failure or p.broken_images or p.untypeset or p.math_errors for p in report.pages.values()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
