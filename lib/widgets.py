"""One pattern for every chapter's widget: controls that redraw a figure.

The logic stays in a plain function ``draw(**values)`` that a normal cell can call and print; the
widget only wires controls to it. The figure is rendered to a PNG shown in an ``Image`` widget
rather than printed into an ``Output`` area: that behaves the same in JupyterLab, on a JupyterHub,
and under the test runner (which has no front end to route an ``Output`` area's messages). ``box.result``
keeps what the last redraw returned, so a notebook can drive the widget from code
(``box.children[0].value = ...`` or ``box.controls["name"].value = ...``) and print the outcome;
``box.set_values(a=..., b=...)`` changes several controls with one redraw.

The PNG is rendered at the size it is shown (never stretched, so never blurry), scaled down to fit
``MAX_WIDTH_PX`` x ``MAX_HEIGHT_PX``, and the controls wrap in rows above it, so controls and picture
fit on a laptop screen. A notebook stored with its outputs but not yet run shows that picture and a
hint (see ``InteractiveFigure._repr_mimebundle_``) instead of the widget's repr.
"""
from __future__ import annotations

import base64
import contextlib
import io
from typing import Any, Callable, Iterator

import ipywidgets as widgets
import matplotlib.pyplot as plt

from lib.validate import describe, require_bool, require_number

# The largest picture, in screen pixels. A 1366x768 laptop leaves JupyterLab a cell about 900 px wide
# and, below the browser's and JupyterLab's bars, about 600 px of height: 420 px of figure plus two or
# three rows of controls fit in it without scrolling.
MAX_WIDTH_PX = 880
MAX_HEIGHT_PX = 420
# Widget pictures are read while a control moves, so they are drawn at 100 dpi (10-point text is about
# 14 px), more than the 72 dpi of the course's stored figures (lib.plot), unless that overflows the box.
WIDGET_DPI = 100
PAD_INCHES = 0.1  # the white margin savefig(bbox_inches="tight") keeps around the figure
HINT = "Interactive figure: run this cell to use its controls."


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels, read from a PNG's header (its IHDR chunk)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"not a PNG: it starts with {png[:8]!r}")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def figure_png(fig: plt.Figure) -> bytes:
    """``fig`` as a PNG at ``WIDGET_DPI``, or smaller where needed to fit ``MAX_WIDTH_PX`` x ``MAX_HEIGHT_PX``.

    The dpi comes from the figure's tight bounding box, so the saved (tight) PNG fits; text may
    measure a pixel wider at another dpi, so a PNG that still overflows is saved again, smaller.
    """
    box = fig.get_tightbbox()  # inches
    dpi = min(WIDGET_DPI, MAX_WIDTH_PX / (box.width + 2 * PAD_INCHES), MAX_HEIGHT_PX / (box.height + 2 * PAD_INCHES))
    for _ in range(3):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=PAD_INCHES)
        png = buffer.getvalue()
        width, height = png_size(png)
        if width <= MAX_WIDTH_PX and height <= MAX_HEIGHT_PX:
            return png
        dpi *= min(MAX_WIDTH_PX / width, MAX_HEIGHT_PX / height) * 0.995
    raise RuntimeError(f"could not fit the figure in {MAX_WIDTH_PX}x{MAX_HEIGHT_PX} px (last {width}x{height})")


class InteractiveFigure(widgets.Box):
    """``controls`` (wrapping in rows) above an ``Image`` of the figure ``draw(**values)`` makes.

    ``children`` is the controls in order, a line break, then ``image``; ``redraws`` counts redraws.
    """

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
        # shown at its own pixel width (set at each redraw), narrower only if the cell is narrower
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        # a zero-height item as wide as the box: the picture always starts a new row
        self.line_break = widgets.Box(layout=widgets.Layout(flex="0 0 100%", height="0px"))
        self.result: Any = None
        self.redraws = 0
        self._held = 0  # depth of hold_redraw() blocks
        self._pending = False
        super().__init__(layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.arrange(*controls.values())
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.redraw()

    def arrange(self, *items: widgets.Widget) -> None:
        """Show ``items`` (the controls, or boxes holding them) above the picture instead of the controls."""
        for item in items:
            if not isinstance(item, widgets.Widget):
                raise TypeError(f"arrange takes widgets, got {describe(item)}")
        self.children = [*items, self.line_break, self.image]

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def _changed(self, change: dict) -> None:
        if self._held:
            self._pending = True
        else:
            self.redraw()

    @contextlib.contextmanager
    def hold_redraw(self) -> Iterator[None]:
        """Inside the block control changes don't redraw; one redraw at its end if anything changed."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending:
                self._pending = False
                self.redraw()

    def set_values(self, **values: Any) -> Any:
        """Set several controls by name with one redraw (none if nothing changes); returns ``result``."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"no control named {', '.join(map(repr, unknown))}; "
                             f"the controls are {list(self.controls)}")
        with self.hold_redraw():
            for name, value in values.items():
                self.controls[name].value = value
        return self.result

    def redraw(self) -> Any:
        with plt.ioff():  # draw off-screen: the figure goes into the Image widget, not the cell
            before = set(plt.get_fignums())
            plt.figure()  # draw() may use plt.plot or make its own figure with plt.subplots
            try:
                self.result = self.draw(**self.values())
                png = figure_png(plt.gcf())
            finally:  # close what draw() opened, even when it fails
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
        self.redraws += 1
        self.image.layout.width = f"{png_size(png)[0]}px"  # the new width first: never a stretched frame
        self.image.value = png
        return self.result

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        """ipywidgets' bundle (the live widget) plus the current picture, and a hint as its text.

        A front end without the widget's state (a stored notebook not yet run, a notebook viewer)
        shows the richest type it can render safely: the picture, or else the hint rather than
        the widget's repr. The hint is the same on every run, so nbval can compare it.
        """
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        bundle["text/plain"] = HINT
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return bundle


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
