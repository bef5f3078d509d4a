"""One pattern for every chapter's widget: controls that redraw a figure.

The logic stays in a plain function ``draw(**values)`` that a normal cell can call and print; the
widget only wires controls to it. ``box.result`` keeps what the last redraw returned, so a notebook
can drive the widget from code (``box.children[0].value = ...``) and print the outcome.
"""
from __future__ import annotations

from typing import Any, Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import clear_output


class InteractiveFigure(widgets.VBox):
    """A ``VBox`` of ``controls`` followed by an ``Output`` that ``draw(**values)`` paints into."""

    def __init__(self, draw: Callable[..., Any], **controls: widgets.ValueWidget) -> None:
        if not controls:
            raise ValueError("InteractiveFigure needs at least one control")
        self.draw = draw
        self.controls = controls
        self.output = widgets.Output()
        self.result: Any = None
        super().__init__(children=[*controls.values(), self.output])
        for control in controls.values():
            control.observe(lambda change: self.redraw(), names="value")
        self.redraw()

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> Any:
        with self.output:
            clear_output(wait=True)
            self.result = self.draw(**self.values())
            plt.show()
        return self.result


def slider(value: float, lo: float, hi: float, step: float, description: str, log: bool = False) -> widgets.Widget:
    """A float slider (logarithmic with ``log=True``: ``lo``/``hi`` are then powers of ten)."""
    style = {"description_width": "initial"}
    if log:
        return widgets.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=step,
                                      description=description, style=style, continuous_update=False)
    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                               style=style, continuous_update=False)
