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


def test_interactive_figure_png_fits_the_box_and_is_shown_at_its_own_width():
    import base64

    import matplotlib.pyplot as plt

    def draw(size):
        fig, ax = plt.subplots(figsize=(size, size / 2), dpi=100)
        ax.plot([0, 1])
        ax.set_title("a title")
    w = widgets.InteractiveFigure(draw, size=widgets.slider(20.0, 1, 20, 1, "size"))  # 2000 px wide at 100 dpi
    width, height = widgets.png_size(w.image.value)
    assert width <= widgets.MAX_WIDTH_PX and height <= widgets.MAX_HEIGHT_PX
    assert max(width / widgets.MAX_WIDTH_PX, height / widgets.MAX_HEIGHT_PX) > 0.97  # scaled to the box, not below
    assert w.image.layout.width == f"{width}px" and w.image.layout.max_width == "100%"
    w.controls["size"].value = 3.0  # about 300 px at its own dpi: kept, never upscaled to the box
    import io

    own = io.BytesIO()
    draw(3.0)
    plt.savefig(own, format="png", bbox_inches="tight")  # at the figure's dpi, 100
    plt.close("all")
    width, height = widgets.png_size(w.image.value)
    assert (width, height) == widgets.png_size(own.getvalue()) and 250 < width < 340
    assert w.image.layout.width == f"{width}px"
    bundle = w._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]) == w.image.value
    with pytest.raises(ValueError, match="not a PNG"):
        widgets.png_size(b"GIF89a" + bytes(20))


def test_interactive_figure_set_values_redraws_once():
    calls = []

    def draw(**values):
        calls.append(values)
        return sum(values.values())
    controls = {f"k{i}": widgets.slider(0.0, -1, 1, 0.1, f"k{i}") for i in range(9)}
    w = widgets.InteractiveFigure(draw, **controls)
    assert w.redraws == 1
    assert w.set_values(**{f"k{i}": 0.5 for i in range(9)}) == 4.5
    assert w.redraws == 2 and len(calls) == 2  # one redraw for nine changes, with all nine new values
    with w.hold_redraw():
        for i in range(9):
            controls[f"k{i}"].value = -0.5
        with w.hold_redraw():  # nested blocks redraw once, at the outer end
            controls["k0"].value = 1.0
        assert w.redraws == 2
    assert w.redraws == 3 and w.result == 1.0 - 4.0
    w.set_values(k0=1.0)  # no change, no redraw
    assert w.redraws == 3
    controls["k1"].value = 0.0  # outside a block every change still redraws
    assert w.redraws == 4
    with pytest.raises(ValueError, match="no control named 'k9'"):
        w.set_values(k9=1.0)


def test_interactive_figure_bundle_shows_picture_and_hint_without_a_kernel():
    from IPython.core.formatters import DisplayFormatter

    w = widgets.InteractiveFigure(lambda k: None, k=widgets.slider(1.0, 0, 2, 0.5, "k"))
    data, metadata = DisplayFormatter().format(w)  # what the kernel sends for a cell ending in `w`
    assert data["text/plain"] == widgets.HINT == "Interactive figure: run this cell to use its controls."
    assert data["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id


def test_interactive_figure_controls_wrap_in_rows_above_the_picture():
    a, b = widgets.slider(1.0, 0, 2, 0.5, "a"), widgets.slider(1.0, 0, 2, 0.5, "b")
    w = widgets.InteractiveFigure(lambda a, b: None, a=a, b=b)
    assert w.layout.flex_flow == "row wrap"
    assert w.children == (a, b, w.line_break, w.image) and w.line_break.layout.flex == "0 0 100%"
    import ipywidgets

    grid = ipywidgets.GridBox([a, b])
    w.arrange(grid)
    assert w.children == (grid, w.line_break, w.image)
    with pytest.raises(TypeError, match="arrange takes widgets"):
        w.arrange("a")
