"""One pattern for every chapter's widget: controls that redraw a figure.

The logic stays in a plain function ``draw(**values)`` that a normal cell can call and print; the
widget only wires controls to it. The figure is rendered to a PNG shown in an ``Image`` widget
rather than printed into an ``Output`` area: that behaves the same in JupyterLab, on a JupyterHub,
and under the test runner (which has no front end to route an ``Output`` area's messages). ``box.result`` keeps what the last redraw returned, so a notebook
can drive the widget from code (``box.children[0].value = ...``) and print the outcome.
"""
from __future__ import annotations

from typing import Any, Callable

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt

from lib.validate import describe, require_bool, require_number


class InteractiveFigure(widgets.VBox):
    """A ``VBox`` of ``controls`` followed by an ``Image`` of the figure ``draw(**values)`` makes."""

    def __init__(self, draw: Callable[..., Any], **controls: widgets.ValueWidget) -> None:
        if not controls:
            raise ValueError("InteractiveFigure needs at least one control")
        if not callable(draw):
            raise TypeError(f"draw must be a function draw(**values), got {describe(draw)}")
        for name, control in controls.items():
            if not isinstance(control, widgets.ValueWidget):
                raise TypeError(f"control {name!r} must be an ipywidgets value widget (a slider, a dropdown...), "
                                f"got {describe(control)}")
        self.draw = draw
        self.controls = controls
        self.image = widgets.Image(format="png")
        self.result: Any = None
        super().__init__(children=[*controls.values(), self.image])
        for control in controls.values():
            control.observe(lambda change: self.redraw(), names="value")
        self.redraw()

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> Any:
        with plt.ioff():  # draw off-screen: the figure goes into the Image widget, not the cell
            blank = plt.figure()  # draw() may use plt.plot or make its own figure with plt.subplots
            self.result = self.draw(**self.values())
            fig = plt.gcf()
            if fig is not blank:
                plt.close(blank)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", bbox_inches="tight")
            plt.close(fig)
        self.image.value = buffer.getvalue()
        return self.result


def slider(value: float, lo: float, hi: float, step: float, description: str, log: bool = False) -> widgets.Widget:
    """A float slider (logarithmic with ``log=True``: ``lo``/``hi`` are then powers of ten)."""
    for name, number in (("value", value), ("lo", lo), ("hi", hi), ("step", step)):
        require_number(name, number)
    require_bool("log", log)
    if not lo < hi or not step > 0:
        raise ValueError(f"need lo < hi and step > 0; got lo={lo}, hi={hi}, step={step}")
    shown = (10 ** lo, 10 ** hi) if log else (lo, hi)
    if not shown[0] <= value <= shown[1]:  # ipywidgets would silently clamp it
        raise ValueError(f"value {value} lies outside the slider's range [{shown[0]:g}, {shown[1]:g}]"
                         + (" (with log=True, lo and hi are powers of ten)" if log else ""))
    style = {"description_width": "initial"}
    if log:
        return widgets.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=step,
                                      description=description, style=style, continuous_update=False)
    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                               style=style, continuous_update=False)
