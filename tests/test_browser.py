"""The course in a real browser: JupyterLab driven by headless Chromium (tools/browser_check.py).

Chapter 01 is opened in JupyterLab at 1366x768 and run with Kernel > Restart Kernel and Run All
Cells, as a student would: the instructor version must run every cell with no error, no browser
console error and no request leaving 127.0.0.1, and its widget must redraw when a control moves; the
student version's Run All must reach the last cell (only exercise and check cells fail). A small
notebook that errs and reaches for the network checks that the checker sees both.

It takes under two minutes (100 s on two cores) and needs Debian's Chromium, so it runs only with
COURSE_TEST_BROWSER=1 (``make browser-test``; CI sets it).
"""
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("COURSE_TEST_BROWSER") != "1",
                                reason="set COURSE_TEST_BROWSER=1 to run JupyterLab in headless Chromium")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import browser_check  # noqa: E402

CHAPTER = ROOT / "notebooks" / "01_gradient_descent.ipynb"


def checked(paths, request, **kwargs):
    """Run the checker; print its lines and the wall time (shown even when pytest captures output)."""
    if shutil.which(browser_check.CHROMIUM) is None:
        pytest.fail(f"{browser_check.CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    start = time.monotonic()
    reports = browser_check.check(paths, **kwargs)
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(*(f"\n{r}" for r in reports), f"\n[browser check: {time.monotonic() - start:.1f} s wall in all]")
    return reports


@pytest.fixture(scope="module")
def instructor(request):
    return checked([CHAPTER], request, timeout=300)[0]


def test_instructor_version_runs_every_cell_cleanly(instructor):
    assert instructor.finished, "Run All did not finish"
    assert instructor.run == instructor.cells, instructor.problems()
    assert not instructor.cell_errors
    assert not instructor.console_errors
    assert not instructor.outside_requests


def test_instructor_widget_redraws_when_a_control_moves(instructor):
    assert instructor.widgets, "no InteractiveFigure found in the page"
    widget = instructor.widgets[0]
    assert widget.redrawn, f"moving {widget.control} did not change the picture"
    assert all(scale <= browser_check.MAX_UPSCALE for scale in widget.scales), str(widget)
    assert widget.fits, str(widget)  # controls and picture on a 1366x768 screen, with the file browser open


def test_student_version_run_all_reaches_the_last_cell(request):
    report = checked([CHAPTER], request, student=True, timeout=300)[0]
    assert report.run == report.cells, report.problems()
    assert not report.cell_errors, "only exercise and check cells may fail in the student version"
    assert report.allowed_errors > 0, "no exercise or check cell failed in a student version"


def test_checker_sees_cell_errors_and_outside_requests(request, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('from IPython.display import HTML\n'
                                  'HTML(\'<img src="https://example.com/pixel.png">\')'),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "faulty.ipynb"
    nbformat.write(nb, path)
    report = checked([path], request, timeout=120)[0]
    assert not report.ok
    assert report.outside_requests == ["https://example.com/pixel.png"]
    assert report.run == 2 and report.stopped_at == 2
    assert [e.split(":")[1].strip() for e in report.cell_errors] == ["ZeroDivisionError"]
