"""Measured results that hold on every machine: a value, its reference, a tolerance and a bar.

A number produced by training (an accuracy, a loss in nats) changes in its last digits from one CPU to
another: AVX2, AVX-512 and Apple kernels add in different orders, and training amplifies the
difference until it looks like another random seed. Such a number is never compared as text. The cell
that computes it is marked ``# NBVAL_IGNORE_OUTPUT``; the next cell calls :func:`expect`, which asserts
that the value lies within a stated tolerance of the reference stored in the notebook *and* meets the
chapter's bar, and prints a verdict that is the same on every machine::

    ✓ PyTorch MLP test accuracy within 98.3 ± 2.9 %  (bar ≥ 97.5 %)

read as "the value measured here lies within 2.9 points of the stored 98.3 %, and it is at least
97.5 %"; the value itself is printed by the ignored cell above. The tolerance is three times the
standard deviation of the difference between two runs that differ only by their seed (another CPU
behaves like another seed): :func:`tolerance_for_accuracy` estimates it from the binomial spread of an
accuracy, :func:`tolerance_for_mean` from a seed spread measured by ``tools/seed_spread.py`` or by the
notebook itself. A band may reach past 100 %: it is a tolerance, not a range of possible values.
A choice made from noisy numbers (the best temperature) goes through :func:`choose_within_se` (the
simplest setting within one standard error of the best) and is checked by :func:`expect_choice`
against the settings the data cannot tell apart, so that another machine may choose another of them.

``tools/readme_results.py`` copies every verdict from the stored notebooks into README's results
table, so README and notebooks cannot disagree.
"""
from __future__ import annotations

import math
import re
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from lib.validate import require_int, require_number

OK = "✓"
VERDICT = re.compile(r"^✓ (?P<name>.+?) within (?P<reference>-?[\d.]+) ± (?P<tolerance>[\d.]+)(?P<unit>[^(]*?)"
                     r"(?:  \(bar (?P<bar>[^)]+)\))?$")


class ResultOutOfRange(AssertionError):
    """A measured value left its tolerance band or missed its bar (an ``AssertionError`` for pytest)."""


def _number(name: str, x: Any) -> float:
    """A finite real number as a float; a 0-d tensor or array counts (a metric often is one)."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim == 0:
        x = x.item()
    return float(require_number(name, x))


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def expect(name: str, value: Any, reference: Any, tolerance: Any, *, unit: str = "",
           at_least: Any = None, at_most: Any = None, digits: int = 1) -> None:
    """Assert ``|value - reference| <= tolerance`` and the bar, then print one stable verdict line.

    ``value``, ``reference``, ``tolerance`` and the bar are in the unit printed (pass accuracies in
    percent, e.g. ``100 * acc`` with ``unit=" %"``). ``at_least``/``at_most`` is the chapter's bar
    (either, both or none). ``digits`` is the number of decimals shown. Raises
    :class:`ResultOutOfRange` with the measured value when either test fails; prints nothing then.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if " within " in name or "\n" in name:
        raise ValueError(f"name must not contain ' within ' or a line break, got {name!r}")
    require_int("digits", digits, low=0, high=6)
    value, reference = _number("value", value), _number("reference", reference)
    tolerance = float(require_number("tolerance", tolerance, low=0, low_open=True))  # a measured spread
    lo = None if at_least is None else _number("at_least", at_least)
    hi = None if at_most is None else _number("at_most", at_most)
    for bound, label in ((lo, "≥"), (hi, "≤")):
        if bound is not None and not (bound <= reference if label == "≥" else reference <= bound):
            raise ValueError(f"the reference {reference} itself misses the bar {label} {bound}")
    shown = f"{_fmt(value, digits + 1)}{unit}"
    band = f"{_fmt(reference, digits)} ± {_fmt(tolerance, digits)}{unit}"
    if abs(value - reference) > tolerance * (1 + 1e-9):
        raise ResultOutOfRange(f"{name} = {shown} lies outside the reference {band}: this machine's result "
                               "differs more than the spread measured over seeds and CPUs")
    bars = [f"{label} {_fmt(b, digits)}{unit}" for b, label in ((lo, "≥"), (hi, "≤")) if b is not None]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ResultOutOfRange(f"{name} = {shown} misses the bar {' and '.join(bars)}")
    print(f"{OK} {name} within {band}" + (f"  (bar {' and '.join(bars)})" if bars else ""))


def tolerance_for_accuracy(reference_percent: Any, n_examples: Any) -> float:
    """Tolerance, in points, for a single model's accuracy on ``n_examples`` test examples.

    Another CPU behaves like another seed, and over seeds an accuracy spreads by about the binomial
    standard deviation ``s = sqrt(p (1 - p) / n)`` of a score on ``n`` examples (an upper bound: seeds
    tend to miss the same hard examples). Two runs then differ by ``sqrt(2) s``; the tolerance is three
    times that, rounded up to a tenth of a point.
    """
    p = _number("reference_percent", reference_percent) / 100
    n = _number("n_examples", n_examples)
    if not 0 <= p <= 1 or n < 1:
        raise ValueError(f"need a reference in [0, 100] % and n_examples >= 1, got {100 * p} % and {n}")
    p = min(max(p, 1 / n), 1 - 1 / n)  # a perfect score still has the spread of one example
    return math.ceil(1000 * 3 * math.sqrt(2 * p * (1 - p) / n)) / 10


def tolerance_for_mean(seed_std: Any, n_seeds: Any) -> float:
    """Tolerance for a mean over ``n_seeds`` runs whose values spread by ``seed_std`` (same unit):
    three standard deviations of the difference of two such means, ``3 sqrt(2 / n) std``."""
    std, n = _number("seed_std", seed_std), _number("n_seeds", n_seeds)
    if std <= 0 or n < 1:
        raise ValueError(f"need seed_std > 0 and n_seeds >= 1, got {std} and {n}")
    return 3 * math.sqrt(2 / n) * std


def choose_within_se(settings: Sequence[Any], means: Sequence[Any], standard_errors: Sequence[Any],
                     *, higher_is_better: bool = True) -> Any:
    """The first of ``settings`` whose mean is within one standard error of the best mean.

    List ``settings`` in order of preference (simplest or cheapest first). The best setting's standard
    error (the standard deviation over seeds divided by the square root of their number) sets the
    margin. Unlike "the highest mean", it does not hand the choice to whichever of several
    indistinguishable settings happens to be ahead; it can still change when a setting lies close to
    the margin, which is why :func:`expect_choice` accepts every setting the data cannot tell apart.
    """
    if not (len(settings) == len(means) == len(standard_errors)) or len(settings) == 0:
        raise ValueError("settings, means and standard_errors must be non-empty and of equal length, got "
                         f"{len(settings)}, {len(means)}, {len(standard_errors)}")
    m = [_number("mean", x) for x in means]
    se = [_number("standard error", x) for x in standard_errors]
    if min(se) < 0:
        raise ValueError(f"standard errors must be non-negative, got {se}")
    sign = 1.0 if higher_is_better else -1.0
    best = max(range(len(m)), key=lambda i: sign * m[i])
    for setting, mean in zip(settings, m):
        if sign * (m[best] - mean) <= se[best]:
            return setting
    return settings[best]  # unreachable: the best is within zero of itself


def expect_choice(name: str, chosen: Any, allowed: Sequence[Any]) -> None:
    """Assert that a decision taken from measured numbers is one of ``allowed``, the settings that
    the stored run could not tell apart (e.g. those within one standard error of the best); print
    them, not the choice, so the verdict is the same on every machine. Print the choice itself in an
    ignored cell."""
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, Sequence) or len(allowed) == 0:
        raise ValueError(f"allowed must be a non-empty list of settings, got {allowed!r}")
    shown = ", ".join(map(str, allowed))
    if chosen not in allowed:
        raise ResultOutOfRange(f"{name}: chose {chosen!r} here, outside the stored run's indistinguishable "
                               f"settings {shown}")
    print(f"{OK} {name}: one of {shown}")


class Paired(NamedTuple):
    """A paired comparison over seeds: the mean difference ``a - b``, its standard error, the number of
    pairs and the verdict (``"<a> better"``, ``"<b> better"`` or ``"tie"``)."""
    mean: float
    se: float
    n: int
    verdict: str

    def __str__(self) -> str:
        t = abs(self.mean) / self.se if self.se > 0 else math.inf
        return (f"difference {self.mean:+.4g} ± {self.se:.2g} (standard error, {self.n} paired seeds; "
                f"{t:.1f} standard errors, {self.n - 1} degrees of freedom): {self.verdict}")


def paired_comparison(a: Sequence[Any], b: Sequence[Any], *, names: tuple[str, str] = ("A", "B"),
                      higher_is_better: bool = True, min_pairs: int = 3) -> Paired:
    """The course's rule for "A beats B": ``a[i]`` and ``b[i]`` are the two arms' results for seed ``i``
    (same seed, same data order, equal effort). The verdict names the better arm only when the mean of
    the differences ``a[i] - b[i]`` lies more than two standard errors from zero, else it is ``"tie"``.

    Print the returned value (its ``str`` gives the numbers) in an ignored cell, and check the verdict
    with :func:`expect_choice`, since the numbers change with the CPU. Two standard errors is a low bar
    with few seeds (with three, a 95% t-test would ask for 4.3), which is why the ``str`` also gives
    the ratio and the degrees of freedom: say "suggestive" in the text when the ratio is below that.
    """
    require_int("min_pairs", min_pairs, low=2)
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)) or len(a) != len(b):
        raise ValueError(f"a and b must be sequences of equal length (one result per seed), got {a!r} and {b!r}")
    if len(a) < min_pairs:
        raise ValueError(f"a paired comparison needs at least {min_pairs} seeds, got {len(a)}")
    if len(names) != 2 or not all(isinstance(x, str) and x for x in names):
        raise ValueError(f"names must be two non-empty strings, got {names!r}")
    d = np.array([_number("a", x) - _number("b", y) for x, y in zip(a, b)])
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    if abs(mean) > 2 * se:
        better = names[0] if (mean > 0) == higher_is_better else names[1]
        verdict = f"{better} better"
    else:
        verdict = "tie"
    return Paired(mean, se, len(d), verdict)
