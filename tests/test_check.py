import re
import subprocess
import sys

import numpy as np
import pytest

from lib import check


def test_pass_prints_tick(capsys):
    assert check.check_close("mean", np.array([1.0, 2.0]), [1.0, 2.0 + 1e-9]) is None  # no stray "True" in cells
    assert "✅ mean" in capsys.readouterr().out


def test_wrong_value_names_expected_and_found(capsys):
    with pytest.raises(check.ExerciseFailed, match="expected 2, found 3"):
        check.check_close("x", 3.0, 2.0)
    assert "❌ x" in capsys.readouterr().out


def test_none_shape_and_nan_are_explained():
    with pytest.raises(check.ExerciseFailed, match="still None"):
        check.check_close("x", None, 1.0)
    with pytest.raises(check.ExerciseFailed, match="expected shape"):
        check.check_close("x", [1.0, 2.0], [1.0])
    with pytest.raises(check.ExerciseFailed, match="NaN"):
        check.check_close("x", float("nan"), 1.0)


def test_unanswered_function_fails_helpfully():
    def todo(x):
        raise NotImplementedError()
    with pytest.raises(check.ExerciseFailed, match="not answered yet"):
        check.check_function("f", todo, [((1.0,), 2.0)])
    with pytest.raises(check.ExerciseFailed, match="not answered yet"):
        check.answer_of("y", lambda: undefined_name)  # noqa: F821


def test_check_function_and_equal_and_true():
    check.check_function("double", lambda x: 2 * x, [((1.0,), 2.0), ((3.0,), 6.0)])
    with pytest.raises(check.ExerciseFailed, match="case 2/2"):
        check.check_function("double", lambda x: x + 1, [((1.0,), 2.0), ((3.0,), 6.0)])
    check.check_equal("s", "abc", "abc")
    check.check_equal("counts", np.array([1, 2]), [1, 2])  # arrays compare as lists, no ambiguity error
    with pytest.raises(check.ExerciseFailed, match="expected 'abc'"):
        check.check_equal("s", "abd", "abc")
    with pytest.raises(check.ExerciseFailed, match="should be smaller"):
        check.check_true("loss", False, "the loss should be smaller")
    assert issubclass(check.ExerciseFailed, AssertionError)


def test_non_numeric_answers_get_a_verdict_not_a_numpy_error(capsys):
    for bad in ("1.0", [[1.0, 2.0], [3.0]], {"a": 1}, object()):
        with pytest.raises(check.ExerciseFailed, match="not a number or a regular array"):
            check.check_close("x", bad, [1.0, 2.0])
    assert "❌ x: expected numbers shaped (2,)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="atol must be a non-negative number"):
        check.check_close("x", 1.0, 1.0, atol=-1)
    check.check_close("x", np.float32(0.5), 0.5, atol=np.float64(1e-6))  # NumPy scalars are fine


def test_check_true_with_an_array_condition(capsys):
    check.check_true("one", np.array([True]), "hint")
    assert capsys.readouterr().out == "✅ one: correct\n"
    with pytest.raises(check.ExerciseFailed, match="zero: the hint"):  # a one-element array counts by its value
        check.check_true("zero", np.array([False]), "the hint")
    with pytest.raises(check.ExerciseFailed, match=r"found an array of shape \(2,\)"):
        check.check_true("many", np.array([True, False]), "hint")
    assert "❌ many: expected True or False" in capsys.readouterr().out


def test_unanswered_failure_is_not_chained_to_the_placeholder():
    """The student sees one error, not "during handling of the above exception, another occurred"."""
    def todo():
        raise NotImplementedError()
    with pytest.raises(check.ExerciseFailed) as failure:
        check.answer_of("todo", todo)
    assert failure.value.__context__ is None and failure.value.__cause__ is None
    with pytest.raises(check.ExerciseFailed) as failure:
        check.check_function("f", lambda x: "text", [((1,), 2.0)])
    assert failure.value.__context__ is None


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert check.install_friendly_errors(shell)
    yield shell
    shell.set_custom_exc((), None)


def run(shell, code: str, capsys) -> tuple[BaseException | None, str]:
    result = shell.run_cell(code, store_history=False)
    return result.error_in_exec, re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # colours off


def test_exercise_errors_are_one_line_in_ipython(shell, capsys):
    error, out = run(shell, "from lib import check\ncheck.check_close('v', 1.0, 2.0)", capsys)
    assert isinstance(error, check.ExerciseFailed)
    assert "❌ v: expected 2, found 1" in out and "ExerciseFailed: this check did not pass yet" in out
    assert "Traceback" not in out and "check.py" not in out

    error, out = run(shell, "# YOUR CODE HERE\nraise NotImplementedError()", capsys)
    assert isinstance(error, NotImplementedError) and "not answered yet" in out and "Traceback" not in out

    error, out = run(shell, "print(never_defined_here)", capsys)
    assert isinstance(error, NameError) and "run the cell that defines it first" in out


def test_name_errors_in_notebook_functions_say_where(shell, capsys):
    """A check's helper function that uses a name from an earlier section, run too early."""
    error, out = run(shell, "def f():\n    return never_defined_here\nf()", capsys)
    assert isinstance(error, NameError)
    assert "line 2 of `f`" in out and "run the cell that defines it first" in out and "Traceback" not in out


def test_other_errors_keep_their_traceback(shell, capsys):
    """A placeholder reached inside a function, or a NameError inside a library, is not a skipped step."""
    error, out = run(shell, "def g():\n    raise NotImplementedError()\ng()", capsys)
    assert isinstance(error, NotImplementedError) and "not answered yet" not in out and "g()" in out
    error, out = run(shell, "import collections\ncollections.namedtuple('P', 'x')._make(None)", capsys)
    assert isinstance(error, TypeError) and "collections" in out  # not ours: IPython's full traceback
    module = type(sys)("elsewhere")
    exec("def h():\n    return missing_name\n", module.__dict__)
    shell.user_ns["elsewhere"] = module
    error, out = run(shell, "elsewhere.h()", capsys)
    assert isinstance(error, NameError) and "run the cell that defines it" not in out and "missing_name" in out


def test_friendly_errors_need_ipython():
    assert check.install_friendly_errors(object()) is False  # not a shell
    plain = subprocess.run([sys.executable, "-c", "from lib import check; print(check.install_friendly_errors())"],
                           capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "False"  # plain Python: nothing to install
