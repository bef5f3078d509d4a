"""Self-checking exercises: friendly verdicts that work with nbgrader.

An exercise puts its answer between ``### BEGIN SOLUTION`` / ``### END SOLUTION``; the student
version (``tools/student_version.py`` or nbgrader's ``generate_assignment``) replaces that region with
``raise NotImplementedError()``. The check cell then calls one of these functions, which prints a
verdict and raises ``ExerciseFailed`` (an ``AssertionError``, so autograders count it as a failure)
with a message saying what was expected and what was found.

``install_friendly_errors()`` (called by ``lib.device.setup_notebook``) makes the three errors a
student meets in an exercise one short line each in Jupyter, instead of a traceback through this
module: a failed check, an unanswered placeholder run at the top of a cell, and a name used before
the cell that defines it was run.
"""
from __future__ import annotations

import types
from typing import Any, Callable

import numpy as np

from lib.validate import require_number

PASS, FAIL = "✅", "❌"


class ExerciseFailed(AssertionError):
    """Raised by a check that did not pass; the message is meant for the student."""


def _fail(name: str, message: str) -> None:
    print(f"{FAIL} {name}: {message}")
    raise ExerciseFailed(f"{name}: {message}")


def _ok(name: str, message: str = "correct") -> None:
    # returns None on purpose: a check cell then shows only the verdict line, not a stray "True"
    print(f"{PASS} {name}: {message}")


def answer_of(name: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` and return its result, turning 'not done yet' into a friendly failure.

    ``NotImplementedError`` (the nbgrader placeholder) and ``NameError`` (a variable never
    defined) become "not answered yet" instead of a traceback.
    """
    try:
        return fn()
    except NotImplementedError:
        problem = "not answered yet: replace `raise NotImplementedError()` with your code"
    except NameError as e:
        problem = f"not answered yet ({e}): answer the exercise cell above and run it"
    _fail(name, problem)  # outside the except clause: no "during handling of the above exception" chain


def check_close(name: str, got: Any, expected: Any, atol: float = 1e-6, rtol: float = 0.0) -> None:
    """Pass if ``got`` equals ``expected`` elementwise within ``atol + rtol*|expected|``."""
    require_number("atol", atol, low=0)
    require_number("rtol", rtol, low=0)
    if got is None:
        _fail(name, "the answer is still None")
    exp_a = _as_floats(expected)
    if exp_a is None:
        raise TypeError(f"expected must be numbers (a number, list or array), got {type(expected).__name__}")
    got_a = _as_floats(got)
    if got_a is None:
        _fail(name, f"expected numbers shaped {exp_a.shape}, found {type(got).__name__} {_short(got)} "
                    "(not a number or a regular array of numbers)")
    if got_a.shape != exp_a.shape:
        _fail(name, f"expected shape {exp_a.shape}, found shape {got_a.shape}")
    if not np.all(np.isfinite(got_a)):
        _fail(name, "the answer contains NaN or infinity")
    err = float(np.max(np.abs(got_a - exp_a))) if got_a.size else 0.0
    if not np.allclose(got_a, exp_a, atol=atol, rtol=rtol):
        shown, found = _show(exp_a), _show(got_a)
        _fail(name, f"expected {shown}, found {found} (largest difference {err:.3g} > {atol:g})")
    _ok(name, f"correct (largest difference {err:.1e})")


def _as_floats(x: Any) -> np.ndarray | None:
    """``x`` as a float array (tensors are detached and moved to the CPU); None if it is not numeric:
    a string, a ragged list, a dict, an object."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes)):
        return None
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None
    return a


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(x: Any) -> Any:
    """NumPy arrays and scalars, and torch tensors, as plain Python values (lists, ints, floats)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return x.tolist() if isinstance(x, (np.ndarray, np.generic)) else x


def _show(a: np.ndarray) -> str:
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=4, threshold=6)


def check_equal(name: str, got: Any, expected: Any) -> None:
    """Pass if ``got == expected`` (lists, strings, ints, tuples; arrays are compared as lists)."""
    got, expected = _plain(got), _plain(expected)
    if got is None and expected is not None:
        _fail(name, "the answer is still None")
    if got != expected:
        _fail(name, f"expected {expected!r}, found {got!r}")
    _ok(name)


def check_true(name: str, condition: bool, hint: str) -> None:
    """Pass if ``condition`` holds; otherwise fail with ``hint`` (say what should be true)."""
    if hasattr(condition, "detach"):
        condition = condition.detach().cpu().numpy()
    if isinstance(condition, np.ndarray):
        if condition.size != 1:
            _fail(name, f"expected True or False, found an array of shape {condition.shape}")
        condition = bool(condition.item())
    if not condition:
        _fail(name, hint)
    _ok(name)


def check_function(name: str, fn: Callable, cases: list[tuple[tuple, Any]], atol: float = 1e-6) -> None:
    """Call ``fn(*args)`` for each ``(args, expected)`` in ``cases`` and compare with ``check_close``."""
    if not callable(fn):
        _fail(name, f"expected a function, found {type(fn).__name__}")
    for i, (args, expected) in enumerate(cases, 1):
        got = answer_of(name, lambda: fn(*args))
        try:
            check_close(f"{name} (case {i}/{len(cases)})", got, expected, atol=atol)
            continue
        except ExerciseFailed:
            raise
        except (TypeError, ValueError) as e:
            problem = f"case {i}: the result could not be compared ({e})"
        _fail(name, problem)
    _ok(name, f"all {len(cases)} cases pass")


# Jupyter: one line per exercise error -----------------------------------------------------------------

RED, RESET = "\x1b[0;31m", "\x1b[0m"


def install_friendly_errors(shell: Any = None) -> bool:
    """In IPython/Jupyter, show exercise errors as one line each; return whether it was installed.

    - ``ExerciseFailed`` (a check that did not pass): the check has already printed ❌ and why, so the
      traceback through this module becomes one line pointing to it;
    - ``NotImplementedError`` raised at the top level of a cell (an unanswered exercise): "not
      answered yet";
    - ``NameError`` in code written in the notebook (a check run before its exercise cell, a cell run
      before the one that defines a name, or a typo): "run the cell that defines it first; if no cell
      defines it, check the spelling", with the line where it happened.
    A ``NotImplementedError`` raised inside a function, and any error raised inside a library, keep
    IPython's full traceback. The cell still ends in an error, so an autograder gives no points and
    nbval still fails; only the display changes. Outside IPython this does nothing.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((ExerciseFailed, NotImplementedError, NameError), _short_traceback)
    return True


def _notebook_frame(shell: Any, tb: types.TracebackType | None) -> types.FrameType | None:
    """The innermost frame of ``tb`` if it runs code written in the notebook (a cell, or a function
    defined in one: its globals are the notebook's namespace), else None."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    return frame if frame.f_globals is getattr(shell, "user_ns", None) else None


def friendly_message(etype: type, value: BaseException, frame: types.FrameType | None) -> str | None:
    """The one-line message shown for an exercise error raised in ``frame`` (None: not in notebook
    code), or None to keep the usual traceback."""
    top_level = frame is not None and frame.f_code.co_name == "<module>"
    if issubclass(etype, ExerciseFailed):
        return "this check did not pass yet (the ❌ line above says why)"
    if issubclass(etype, NotImplementedError) and top_level:
        return (f"{FAIL} not answered yet: replace `raise NotImplementedError()` in this cell with your "
                "answer and run it again")
    if issubclass(etype, NameError) and frame is not None:
        where = "this cell" if top_level else f"`{frame.f_code.co_name}`"
        return (f"{FAIL} {value} (line {frame.f_lineno} of {where}): run the cell that defines it first "
                "(for a check: the cells above it, and its exercise cell); if no cell defines it, check the "
                "spelling")
    return None


def _short_traceback(shell: Any, etype: type, value: BaseException, tb: types.TracebackType | None,
                     tb_offset: int | None = None) -> None:
    """IPython's custom-exception hook; it must show the error itself (IPython ignores what it returns)."""
    message = friendly_message(etype, value, _notebook_frame(shell, tb))
    if message is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    else:  # published as an error (ename, evalue, a one-line traceback), as any failed cell is
        shell._showtraceback(etype, value, [f"{RED}{etype.__name__}{RESET}: {message}"])
