import math

import numpy as np
import pytest
import torch

from lib import results


def test_expect_prints_a_verdict_without_the_measured_value(capsys):
    assert results.expect("test accuracy", 98.34, 98.3, 2.0, unit=" %", at_least=97.5) is None
    assert results.expect("test accuracy", 97.61, 98.3, 2.0, unit=" %", at_least=97.5) is None
    out = capsys.readouterr().out.splitlines()
    assert out == ["✓ test accuracy within 98.3 ± 2.0 %  (bar ≥ 97.5 %)"] * 2  # the same text for both values
    m = results.VERDICT.match(out[0])
    assert m and m["name"] == "test accuracy" and m["reference"] == "98.3" and m["bar"] == "≥ 97.5 %"


def test_expect_accepts_tensors_and_numpy_scalars(capsys):
    results.expect("nll", torch.tensor(1.9), np.float32(1.9), np.float64(0.05), digits=2, at_most=2.0)
    assert capsys.readouterr().out == "✓ nll within 1.90 ± 0.05  (bar ≤ 2.00)\n"


def test_expect_fails_outside_the_band_or_below_the_bar(capsys):
    with pytest.raises(results.ResultOutOfRange, match=r"95\.00 % lies outside the reference 98\.3 ± 2\.0 %"):
        results.expect("acc", 95.0, 98.3, 2.0, unit=" %")
    with pytest.raises(results.ResultOutOfRange, match="misses the bar ≥ 97.5 %"):
        results.expect("acc", 97.0, 98.3, 2.0, unit=" %", at_least=97.5)
    with pytest.raises(results.ResultOutOfRange, match="misses the bar ≤ 1.0"):
        results.expect("loss", 1.1, 1.0, 0.2, at_most=1.0)
    assert capsys.readouterr().out == ""  # a failing check prints no verdict


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(value=float("nan")), ValueError, "value must be a finite number"),
    (dict(value="98"), TypeError, "value must be a finite number"),
    (dict(value=True), TypeError, "value must be a finite number"),
    (dict(tolerance=0), ValueError, "tolerance must be a positive number"),
    (dict(at_least=99.0), ValueError, "reference 98.3 itself misses the bar"),
    (dict(name=""), ValueError, "name must be a non-empty string"),
    (dict(name="a within b"), ValueError, "must not contain ' within '"),
    (dict(digits=-1), ValueError, "digits must be an int"),
    (dict(digits=2.0), TypeError, "digits must be an int"),
])
def test_expect_rejects_bad_arguments(kwargs, error, match):
    args = dict(name="acc", value=98.0, reference=98.3, tolerance=2.0) | kwargs
    with pytest.raises(error, match=match):
        results.expect(**args)


def test_choose_within_se_prefers_the_first_setting_within_noise():
    T = [1, 2, 4, 8, 16]
    means = [98.1, 98.6, 98.6, 98.6, 98.8]
    # the best (T=16) has standard error 0.4: T=2 is within it, T=1 is not
    assert results.choose_within_se(T, means, [0.2, 0.1, 0.2, 0.4, 0.4]) == 2
    # small moves of the means (another CPU) do not change the choice; "the best" would flip
    assert results.choose_within_se(T, [98.1, 98.6, 98.9, 98.6, 98.7], [0.2, 0.1, 0.4, 0.4, 0.4]) == 2
    assert results.choose_within_se(["a", "b"], [2.0, 1.0], [0.1, 0.1], higher_is_better=False) == "b"
    with pytest.raises(ValueError, match="equal length"):
        results.choose_within_se([1, 2], [1.0], [0.1])
    with pytest.raises(ValueError, match="non-negative"):
        results.choose_within_se([1], [1.0], [-0.1])


def test_expect_choice(capsys):
    results.expect_choice("temperature chosen on validation", 8, [4, 8, 16])
    results.expect_choice("temperature chosen on validation", 4, [4, 8, 16])
    assert capsys.readouterr().out == "✓ temperature chosen on validation: one of 4, 8, 16\n" * 2
    with pytest.raises(results.ResultOutOfRange, match="chose 2 here, outside .* 4, 8, 16"):
        results.expect_choice("T", 2, [4, 8, 16])
    with pytest.raises(ValueError, match="non-empty list"):
        results.expect_choice("T", 4, 4)


def test_tolerances_follow_the_measured_spread():
    # 98.3 % on 360 images: s = 0.68 points, two runs differ by 0.96, three times that is 2.9
    assert results.tolerance_for_accuracy(98.3, 360) == 2.9
    assert results.tolerance_for_accuracy(100.0, 1000) > 0  # a perfect score still gets a band
    assert results.tolerance_for_mean(0.5, 5) == pytest.approx(3 * 0.5 * (2 / 5) ** 0.5)
    with pytest.raises(ValueError, match="n_examples"):
        results.tolerance_for_accuracy(98.3, 0)
    with pytest.raises(ValueError, match="seed_std > 0"):
        results.tolerance_for_mean(0.0, 5)


def test_paired_comparison_needs_a_difference_beyond_two_standard_errors():
    # differences 0.02, 0.03, 0.025: mean 0.025, se 0.0029 -> clearly beyond 2 se
    wins = results.paired_comparison([0.92, 0.93, 0.925], [0.90, 0.90, 0.90], names=("wd", "plain"))
    assert wins.verdict == "wd better" and wins.n == 3
    assert abs(wins.mean - 0.025) < 1e-12 and abs(wins.se - 0.005 / math.sqrt(3)) < 1e-12
    # lower is better (a loss): the same differences now favour the second arm
    assert results.paired_comparison([0.92, 0.93, 0.925], [0.90, 0.90, 0.90], names=("wd", "plain"),
                                     higher_is_better=False).verdict == "plain better"
    # a mean difference inside the noise is a tie, however the means compare
    tie = results.paired_comparison([1.0, 0.0, 0.6], [0.5, 0.5, 0.5])
    assert tie.verdict == "tie" and "tie" in str(tie) and "3 paired seeds" in str(tie)


@pytest.mark.parametrize("a, b, match", [([1, 2], [1, 2], "at least 3 seeds"), ([1, 2, 3], [1, 2], "equal length"),
                                         ("abc", "abd", "equal length"), ([1, 2, float("nan")], [1, 2, 3], "finite")])
def test_paired_comparison_rejects_bad_input(a, b, match):
    with pytest.raises((ValueError, TypeError), match=match):
        results.paired_comparison(a, b)
