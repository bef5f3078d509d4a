import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from lib import plot, widgets  # noqa: E402
from lib.train import History  # noqa: E402


def test_interactive_figure_redraws_on_change_and_keeps_result():
    calls = []

    def draw(a, b):
        calls.append((a, b))
        return a * b
    w = widgets.InteractiveFigure(draw, a=widgets.slider(1.0, 0, 5, 0.5, "a"), b=widgets.slider(2.0, 0, 5, 0.5, "b"))
    assert w.result == 2.0
    w.children[0].value = 3.0
    assert w.result == 6.0 and calls[-1] == (3.0, 2.0)
    with pytest.raises(ValueError, match="at least one control"):
        widgets.InteractiveFigure(draw)


def test_plots_have_titles_and_labels():
    h = History()
    for i in range(3):
        h.log(train_loss=1 / (i + 1), val_loss=1.2 / (i + 1), val_accuracy=0.5 + 0.1 * i)
    ax = h.plot()
    assert ax.get_title() and ax.get_xlabel() == "epoch"
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    ax = plot.decision_boundary(lambda g: (g[:, 0] > 0).astype(int), X, y)
    assert ax.get_xlabel() == "$x_1$"
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot.decision_boundary(lambda g: g, X[:, :1], y)
    fig = plot.image_grid(np.zeros((5, 1, 8, 8)), labels=list("abcde"), title="grid")
    assert fig._suptitle.get_text() == "grid"
    with pytest.raises(ValueError, match="images must have shape"):
        plot.image_grid(np.zeros((5, 8)))
    ax = plot.contour_path(lambda w, b: w ** 2 + b ** 2, {"gd": np.array([[1, 1], [0.5, 0.5]])}, (-2, 2, -2, 2))
    assert ax.get_ylabel() == "$b$"


def test_interactive_figure_shows_png_and_prints_nothing(capsys):
    import matplotlib.pyplot as plt

    def draw(k):
        plt.plot([0, k])
        return k
    before = len(plt.get_fignums())
    w = widgets.InteractiveFigure(draw, k=widgets.slider(1.0, 0, 2, 0.5, "k"))
    assert w.image.value[:4] == b"\x89PNG"
    assert len(plt.get_fignums()) == before  # the figure is closed, nothing leaks into the cell
    assert capsys.readouterr().out == ""


def test_plot_and_widget_arguments_are_checked():
    import ipywidgets

    with pytest.raises(ValueError, match=r"value 5.0 lies outside the slider's range \[0, 1\]"):
        widgets.slider(5.0, 0, 1, 0.1, "x")  # ipywidgets used to clamp it silently to 1
    with pytest.raises(ValueError, match="outside.*powers of ten"):
        widgets.slider(5.0, -1, 0, 0.1, "x", log=True)
    with pytest.raises(TypeError, match="control 'x' must be an ipywidgets value widget"):
        widgets.InteractiveFigure(lambda x: None, x=5)
    with pytest.raises(ValueError, match="images is empty"):
        plot.image_grid(np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="one entry per image"):
        plot.image_grid(np.zeros((3, 8, 8)), labels=[1, 2])
    X, y = np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match="one class per grid point"):
        plot.decision_boundary(lambda g: np.zeros(3), X, y, resolution=20)
    with pytest.raises(ValueError, match="'train_loss'"):
        plot.plot_history(History())
    matplotlib.pyplot.close("all")
