#!/usr/bin/env python3
"""Run notebooks in a real JupyterLab, in headless Chromium, as a student would.

    python tools/browser_check.py [--student] [--timeout S] notebooks/01_gradient_descent.ipynb [...]

For each notebook: copy it into a temporary folder (JupyterLab autosaves, and CI mounts the checkout
read-only), open it in JupyterLab at a 1366x768 viewport, choose Kernel > Restart Kernel and Run All
Cells in the menu and accept the dialog, and wait until the run is over. Then report the wall time,
the code cells run, the cells' error outputs, the browser's console errors and page errors, and every
request to a host other than 127.0.0.1/localhost (each is aborted: the course needs no network). A
notebook with an ``lib.widgets.InteractiveFigure`` also has a control moved through the UI (a
dropdown, else a slider with the keyboard) and must redraw its picture; each widget image is measured
(shown width / natural width, and whether the whole widget fits in the notebook panel).

``--student`` checks the student version (``tools/student_version.py``) instead: Run All must reach
the last cell, and only exercise and check cells may fail (with ``NotImplementedError`` or the
checks' friendly ``ExerciseFailed``). One line per notebook is printed; the exit status is 1 if any
notebook failed. Chromium is Debian's ``/usr/bin/chromium`` (``--chromium`` to change it); Playwright
never downloads a browser here.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import nbformat

from lib.production import stop_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from student_version import student_notebook  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MAX_UPSCALE = 1.1  # a widget image shown more than 10% wider than its pixels looks blurred
STUDENT_ERRORS = {"ExerciseFailed", "NotImplementedError"}

# Settings that keep JupyterLab 4.6 off the network: no news feed, no update check, and an
# extension manager that never queries PyPI. expose_app_in_browser lets the check read the
# notebook's model (execution counts, outputs) instead of scraping a virtualised DOM.
LAB_OPTIONS = [
    "--no-browser",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
    "--LabApp.expose_app_in_browser=True",
]

# Console errors that JupyterLab or an extension logs and that we cannot avoid. Each entry is a
# regular expression matched against the message, with the reason it is tolerated.
KNOWN_CONSOLE_ERRORS: list[tuple[str, str]] = []

# JavaScript run in the page: the state of the current notebook, read from JupyterLab's model.
NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    cells.push({
      index: i,
      count: cell.executionCount,
      running: cell.executionState === 'running',
      errors: cell.outputs.toJSON().filter(o => o.output_type === 'error').map(o => [o.ename, o.evalue]),
    });
  }
  return {kernel: kernel ? kernel.status : null, cells};
}"""

# The size of each widget image and of its widget, against the notebook panel's visible area.
WIDGET_SIZES = """(box) => {
  const panel = box.closest('.jp-WindowedPanel-outer') || box.closest('.jp-Notebook');
  const b = box.getBoundingClientRect(), p = panel.getBoundingClientRect();
  return {
    images: [...box.querySelectorAll('img.widget-image')].map(img => [img.getBoundingClientRect().width, img.naturalWidth]),
    widget: [b.width, b.height], panel: [panel.clientWidth, panel.clientHeight],
  };
}"""


@dataclass
class WidgetReport:
    """One widget: how its images are scaled, whether it fits, and whether moving a control redrew it."""
    scales: list[float]
    widget: tuple[float, float]
    panel: tuple[float, float]
    control: str = ""
    redrawn: bool | None = None

    @property
    def fits(self) -> bool:
        return self.widget[0] <= self.panel[0] and self.widget[1] <= self.panel[1]

    def problems(self) -> list[str]:
        out = [f"image shown at {s:.2f}x its pixels (bar {MAX_UPSCALE})" for s in self.scales if s > MAX_UPSCALE]
        if self.redrawn is False:
            out.append(f"moving {self.control} did not change the picture")
        if not self.fits:
            out.append(f"widget {self.widget[0]:.0f}x{self.widget[1]:.0f} px does not fit the notebook panel "
                       f"{self.panel[0]:.0f}x{self.panel[1]:.0f} at 1366x768")
        return out

    def __str__(self) -> str:
        scales = "/".join(f"{s:.2f}" for s in self.scales)
        moved = {None: ", no control moved", True: f", {self.control} redraws",
                 False: f", {self.control} did NOT redraw"}[self.redrawn]
        return (f"widget {self.widget[0]:.0f}x{self.widget[1]:.0f} in panel {self.panel[0]:.0f}x{self.panel[1]:.0f}"
                f" ({'fits' if self.fits else 'does not fit'}), shown/natural width {scales}{moved}")


@dataclass
class Report:
    """What one Run All of one notebook in the browser produced."""
    name: str
    student: bool
    seconds: float = 0.0
    cells: int = 0
    run: int = 0
    finished: bool = False
    stopped_at: int | None = None  # index (among all cells) of the first code cell that did not run
    failure: str = ""  # what stopped the check itself (a timeout in the page...)
    cell_errors: list[str] = field(default_factory=list)  # errors not allowed here
    allowed_errors: int = 0  # exercise/check cells failing in a student version
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    widgets: list[WidgetReport] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"the check stopped: {self.failure}"] if self.failure else []
        if not self.finished:
            out.append("Run All did not finish before the timeout")
        if self.run < self.cells:
            out.append(f"only {self.run} of {self.cells} code cells ran (the first not run: cell {self.stopped_at})")
        out += self.cell_errors
        out += [f"console: {e}" for e in self.console_errors]
        out += [f"outside request: {u}" for u in self.outside_requests]
        for widget in self.widgets:
            out += widget.problems()
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def __str__(self) -> str:
        version = " (student)" if self.student else ""
        line = (f"{'ok  ' if self.ok else 'FAIL'} {self.name}{version}: {self.seconds:.1f} s, {self.run}/{self.cells} cells run, "
                f"{len(self.cell_errors)} cell errors"
                + (f" ({self.allowed_errors} exercise/check cells fail as expected)" if self.student else "")
                + f", {len(self.console_errors)} console errors, {len(self.outside_requests)} outside requests")
        for widget in self.widgets:
            line += f"; {widget}"
        return "\n  ".join([line, *self.problems()])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, *, timeout: float = 120) -> Iterator[tuple[str, str]]:
    """Start JupyterLab serving ``root`` on 127.0.0.1 and a free port; yield ``(url, token)``; stop it.

    Its configuration, settings, workspaces and runtime files live in ``root/.jupyter``: neither the
    user's configuration nor the checkout is read or written."""
    port, token = free_port(), secrets.token_hex(16)
    private = root / ".jupyter"
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(private / "config"), JUPYTER_RUNTIME_DIR=str(private / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(private / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"))
    settings = private / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    # no "get notified about Jupyter news?" toast over the notebook, no update check
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = open(private / "lab.log", "w+")
    command = [sys.executable, "-m", "jupyterlab", *LAB_OPTIONS, "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:  # CI runs as root; Jupyter refuses unless told
        command.append("--allow-root")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {process.returncode}:\n{tail(log)}")
            try:
                opener.open(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{tail(log)}")
                time.sleep(0.5)
        yield url, token
    finally:
        stop_process(process, timeout=20)
        log.close()


def tail(log, lines: int = 30) -> str:
    """The last ``lines`` lines of JupyterLab's log, for an error message."""
    log.flush()
    log.seek(0)
    return "".join(log.readlines()[-lines:])


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this machine (127.0.0.1, localhost, or an in-page data:/blob: URL)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-extension"):
        return True
    return parts.hostname in LOCAL_HOSTS


def known_console_error(text: str) -> bool:
    return any(re.search(pattern, text) for pattern, _why in KNOWN_CONSOLE_ERRORS)


def exercise_or_check(cell: nbformat.NotebookNode) -> bool:
    """A cell that may fail in a student version: an nbgrader solution or autograded check cell."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("solution") or meta.get("grade"))


def wait_for(page, script: str, condition, *, timeout: float, poll: float = 0.5):
    """Evaluate ``script`` until ``condition(result)`` holds; return the last result and whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(script)
        if state is not None and condition(state):
            return state, True
        if time.monotonic() > deadline:
            return state, False
        time.sleep(poll)


# JavaScript: note in the page when any code cell starts running (Run All queues every cell at once).
WATCH_RUNS = """() => {
  window.browserCheckStarted = false;
  const model = window.jupyterapp.shell.currentWidget.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    cell.stateChanged.connect((_, change) => {
      if (change.name === 'executionState' && change.newValue === 'running') window.browserCheckStarted = true;
    });
  }
}"""


def run_all(page, *, timeout: float) -> tuple[dict, bool]:
    """Kernel > Restart Kernel and Run All Cells through the menu; wait until no cell is running."""
    page.evaluate(WATCH_RUNS)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel and Run All Cells").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_function("() => window.browserCheckStarted", timeout=120_000)

    def over(state):
        return state["kernel"] == "idle" and not any(c["running"] for c in state["cells"])

    state, done = wait_for(page, NOTEBOOK_STATE, over, timeout=timeout)
    if done:  # still over a second later: not a pause between two cells
        time.sleep(1)
        state, done = wait_for(page, NOTEBOOK_STATE, over, timeout=timeout)
    return state, done


def move_a_control(page, box) -> tuple[str, bool] | None:
    """Change a dropdown (else press ArrowRight on a slider, else shorten a text box) in ``box`` with the
    mouse or keyboard; return what was moved and whether the picture changed within a minute, or
    ``None`` if the widget has none of these controls."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image = box.locator("img.widget-image").first
    before = image.get_attribute("src")
    select = box.locator("select")
    texts = box.locator(".widget-text input")
    before_text = texts.first.input_value() if texts.count() else ""
    if select.count():
        select = select.first
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("s => s.options[s.selectedIndex].text")
        target = next(o for o in options if o != current)
        select.select_option(label=target)
        control = f"dropdown {current!r}->{target!r}"
    elif box.locator(".noUi-handle").count():
        handle = box.locator(".noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        control = "slider (ArrowRight)"
    elif texts.count():  # a Text box: delete its last letter, then Enter
        field = texts.first
        field.press("End")
        field.press("Backspace")
        field.press("Enter")
        control = f"text {before_text!r}->{field.input_value()!r}"
    else:
        return None
    try:
        page.wait_for_function("([img, src]) => img.src && img.src !== src",
                               arg=[image.element_handle(), before], timeout=60_000)
        return control, True
    except PlaywrightTimeout:
        return control, False


def check_widgets(page) -> list[WidgetReport]:
    """Measure every widget box holding an image; move a control of the first one."""
    boxes = page.locator(".jp-OutputArea-output > .widget-box:has(img.widget-image)")
    reports = []
    for i in range(boxes.count()):
        box = boxes.nth(i)
        box.scroll_into_view_if_needed()
        box.locator("img.widget-image").first.evaluate("img => img.complete || new Promise(r => img.onload = r)")
        sizes = box.evaluate(WIDGET_SIZES)
        scales = [shown / natural for shown, natural in sizes["images"] if natural]
        report = WidgetReport(scales, tuple(sizes["widget"]), tuple(sizes["panel"]))
        if i == 0:
            moved = move_a_control(page, box)
            if moved is not None:
                report.control, report.redrawn = moved
        reports.append(report)
    return reports


def check_notebook(browser, url: str, token: str, name: str, notebook: nbformat.NotebookNode, *,
                   student: bool, timeout: float = 600, screenshots: Path | None = None) -> Report:
    """Open ``name`` (already in the served folder) in a fresh page, Run All, and report; if the check
    itself fails, a screenshot goes to the folder ``screenshots`` when one is given."""
    report = Report(name, student, cells=sum(c.cell_type == "code" for c in notebook.cells))
    context = browser.new_context(viewport=VIEWPORT)

    def outside(url):
        if url not in report.outside_requests:  # a blocked resource may be asked for again
            report.outside_requests.append(url)

    def route(r):
        if is_local(r.request.url):
            r.continue_()
        else:
            outside(r.request.url)
            r.abort()

    def console(message):
        if message.type == "error" and not known_console_error(message.text):
            location = message.location.get("url", "")
            report.console_errors.append(f"{message.text} ({location})" if location else message.text)

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", console)
    page.on("pageerror", lambda error: report.console_errors.append(f"page error: {error}"))
    page.on("websocket", lambda ws: None if is_local(ws.url) else outside(ws.url))
    try:
        # ?reset: a fresh workspace, not the one that still holds the notebook checked before
        page.goto(f"{url}/lab/tree/{name}?reset&token={token}")
        if not wait_for(page, NOTEBOOK_STATE, lambda s: s["kernel"] == "idle", timeout=120)[1]:
            raise TimeoutError(f"{name}: the kernel was not ready within 120 s")
        start = time.monotonic()
        state, report.finished = run_all(page, timeout=timeout)
        report.seconds = time.monotonic() - start
        code_cells = [c for c in notebook.cells if c.cell_type == "code"]
        report.run = sum(c["count"] is not None for c in state["cells"])
        report.stopped_at = next((c["index"] for c in state["cells"] if c["count"] is None), None)
        for cell, source in zip(state["cells"], code_cells):
            for ename, evalue in cell["errors"]:
                if student and ename in STUDENT_ERRORS and exercise_or_check(source):
                    report.allowed_errors += 1
                else:
                    report.cell_errors.append(f"cell {cell['index']}: {ename}: {evalue[:200]}")
        if report.finished:
            report.widgets = check_widgets(page)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")  # free its memory
    except Exception as error:  # Playwright's timeouts and errors: report them, go on to the next notebook
        report.failure = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        if screenshots:
            page.screenshot(path=str(Path(screenshots) / f"{Path(name).stem}.png"))
    finally:
        context.close()
    return report


def check(paths: list[Path], *, student: bool = False, timeout: float = 600, chromium: str = CHROMIUM,
          screenshots: Path | None = None) -> list[Report]:
    """Check each notebook in ``paths`` (see the module docstring); return one report each."""
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise FileNotFoundError(f"no Chromium at {chromium} (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="browser_check_") as tmp:
        root = Path(tmp)
        notebooks = {}
        for path in paths:
            if path.name in notebooks:
                raise ValueError(f"two notebooks named {path.name}: check them one at a time")
            nb = nbformat.read(path, as_version=4)
            notebooks[path.name] = student_notebook(nb) if student else nb
            nbformat.write(notebooks[path.name], root / path.name)
        with jupyterlab(root) as (url, token), sync_playwright() as playwright:
            # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start; a fresh profile
            # in a temporary folder each time (Playwright's default).
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-proxy-server"],
                                                 chromium_sandbox=False)
            try:
                return [check_notebook(browser, url, token, name, nb, student=student, timeout=timeout,
                                       screenshots=screenshots)
                        for name, nb in notebooks.items()]
            finally:
                browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--student", action="store_true", help="check the student version instead")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for one Run All")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable")
    parser.add_argument("--screenshots", type=Path, help="a folder for a screenshot of each page whose check failed")
    args = parser.parse_args()
    reports = check(args.notebooks, student=args.student, timeout=args.timeout, chromium=args.chromium,
                    screenshots=args.screenshots)
    for report in reports:
        print(report, flush=True)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
