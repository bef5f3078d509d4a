"""pytest set-up shared by the unit tests and nbval.

nbval compares every cell's stored text output with a fresh run. stdout stays compared; stderr does
not: TensorFlow writes C++ log lines with timestamps and process ids there at import and first use,
and warnings from other libraries vary by machine. The assertions inside the notebooks are the
regression tests; stderr is noise.
"""
import os

import matplotlib
import pytest

matplotlib.use("Agg")  # unit tests never open windows
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        notebook = getattr(item, "parent", None)
        skip = getattr(notebook, "skip_compare", None)
        if skip is not None and "stderr" not in skip:
            notebook.skip_compare = tuple(skip) + ("stderr",)
        # Exercise and check cells carry the tag `raises-exception` so that JupyterLab's Run All goes on
        # past an unanswered exercise in the student version. nbval reads the same tag as "an error is
        # allowed here"; in the instructor version every exercise is solved, so an error there is a bug.
        # Only nbval's own `nbval-raises-exception` (or NBVAL_RAISES_EXCEPTION) may allow one.
        cell = getattr(item, "cell", None)
        options = getattr(item, "options", None)
        if cell is not None and options is not None and "raises-exception" in cell.metadata.get("tags", ()):
            options["check_exception"] = ("nbval-raises-exception" in cell.metadata.get("tags", ())
                                          or "NBVAL_RAISES_EXCEPTION" in cell.source)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Unit tests use tiny tensors: a second thread only adds synchronisation, and on a busy machine
    two threads can be many times slower. Results are the same either way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
