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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Unit tests use tiny tensors: a second thread only adds synchronisation, and on a busy machine
    two threads can be many times slower. Results are the same either way."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
