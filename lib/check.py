"""Self-checking exercises: friendly verdicts that work with nbgrader.

An exercise puts its answer between ``### BEGIN SOLUTION`` / ``### END SOLUTION``; nbgrader's
student version replaces that region with ``raise NotImplementedError()``. The check cell then calls
one of these functions, which prints a verdict and raises ``ExerciseFailed`` (an ``AssertionError``,
so autograders count it as a failure) with a message saying what was expected and what was found.
"""
from __future__ import annotations

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
        _fail(name, "not answered yet: replace `raise NotImplementedError()` with your code")
    except NameError as e:
        _fail(name, f"not answered yet ({e}); run the exercise cell first")


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
        except ExerciseFailed:
            raise
        except (TypeError, ValueError) as e:
            _fail(name, f"case {i}: the result could not be compared ({e})")
    _ok(name, f"all {len(cases)} cases pass")
