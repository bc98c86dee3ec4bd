"""The playground (notebook 13): every control of the investigation in one place.

A `State` holds one setting of the controls: the test's dtype, p, seed, the
checker's step eps, how many forward calls to collect masks from, the input
size, and the replica's switches (`lib.replica.SWITCHES`). `render(state)`
does all the work for that setting and draws it:

    mask agreement     the masks of `n_calls` forward calls against the mask the
                       backward multiplies by (lib.workbook.plots.plot_mask_agreement);
    error vs step      the replica test's worst relative error for a sweep of
                       steps, dividing by the nominal and by the realised step
                       (replica_error_vs_step);
    error vs tolerance the replica run's per-element |a - n| against its pass band
                       (lib.workbook.plots.plot_error_against_tolerance);
    diagnosis          lib.diagnose.diagnose on the replica's forward/backward pair.

`render` needs no widgets; `build_playground(state)` wires ipywidgets controls
to `snapshot`, so that moving a control redraws the panels below them. A redraw
sets the Output widget's outputs to the text and a PNG of the figure directly,
rather than printing and showing inside `with output:`: that context routes
output by the message being handled, and ipykernel 7 handles widget messages on
a subshell whose figures matplotlib's inline backend attributes elsewhere (the
figure area stays blank and the figure lands in the log).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from lib.replica import SWITCHES
from lib.workbook.panels import (
    SWITCH_NAMES,
    Evidence,
    State,
    draw,
    evaluate,
)

#: How the eps slider shows its value; the State gets eps rounded to exactly this, so that what
#: the panels print is what the slider shows (a log slider's value is 10**k, e.g. 0.0017782794100389228).
EPS_FORMAT = ".2e"

#: The widest control label ("seed (0: unseeded)") fits in this.
LABEL_WIDTH = "160px"


def render(state: State, *, show: bool = True) -> Evidence:
    """Compute, print and draw everything for one state of the controls.

    Prints the lines of Evidence.lines() and draws the four panels; with
    show=True the figure is shown (plt.show()), otherwise it is left open on
    `evidence.figure` for the caller. Returns the Evidence.
    """
    evidence = evaluate(state)
    print("\n".join(evidence.lines()))
    fig = draw(evidence)
    if show:
        plt.show()
        evidence.figure = None
    else:
        evidence.figure = fig
    return evidence


def snapshot(state: State) -> list[dict]:
    """What one redraw shows, as notebook outputs: the evidence lines (stdout) and the panels (a PNG)."""
    evidence = evaluate(state)
    fig = draw(evidence)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    plt.close(fig)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return [{"output_type": "stream", "name": "stdout", "text": "\n".join(evidence.lines()) + "\n"},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": png, "text/plain": "<the playground's four panels>"}}]


# --------------------------------------------------------------------------
# The controls (ipywidgets, imported only here).
# --------------------------------------------------------------------------


@dataclass
class Playground:
    """The widget tree, its controls by State field name, and the Output it redraws into."""

    widget: object
    controls: dict
    output: object
    redraw: Callable[..., None] | None = None

    def state(self) -> State:
        """The State the controls currently show (eps as its slider shows it, not the float behind it)."""
        values = {name: control.value for name, control in self.controls.items()}
        values["eps"] = float(f"{values['eps']:{EPS_FORMAT}}")
        return State(**values)


def make_controls(state: State) -> dict:
    """One ipywidgets control per State field, set to `state`'s values."""
    import ipywidgets as w

    style = {"description_width": LABEL_WIDTH}
    # Ranges widen to hold a starting value outside them (e.g. `-p eps 1`), so the controls never clamp it.
    low, high = min(-9.0, np.floor(np.log10(state.eps))), max(-1.0, np.ceil(np.log10(state.eps)))
    slider = {"continuous_update": False, "style": style, "layout": w.Layout(width="400px")}
    toggle = {"style": {"description_width": LABEL_WIDTH, "button_width": "95px"}}
    return {
        "dtype": w.Dropdown(options=list(SWITCHES["dtype"]), value=state.dtype, description="dtype", style=style),
        "p": w.FloatSlider(value=state.p, min=0.0, max=max(0.95, state.p), step=0.05, description="p (drop prob.)",
                           readout_format=".2f", **slider),
        "seed": w.IntSlider(value=state.seed, min=0, max=max(100, state.seed), description="seed (0: unseeded)",
                            **slider),
        "eps": w.FloatLogSlider(value=state.eps, base=10, min=float(low), max=float(high), step=0.25,
                                description="step eps",
                                readout_format=EPS_FORMAT, **slider),
        "n_calls": w.IntSlider(value=state.n_calls, min=1, max=max(60, state.n_calls), description="forward calls",
                               **slider),
        "size": w.IntSlider(value=state.size, min=1, max=max(20, state.size), description="input size", **slider),
        **{name: w.ToggleButtons(options=list(SWITCHES[name]), value=getattr(state, name),
                                 description=name, **toggle) for name in SWITCH_NAMES[:-1]},
        "restore_input": w.Checkbox(value=state.restore_input, description="checker restores x",
                                    style=style),
    }


def build_playground(state: State | None = None,
                     draw_fn: Callable[[State], list[dict] | None] = snapshot) -> Playground:
    """Controls that show `draw_fn(state)`'s outputs in an Output widget whenever one of them changes.

    The Output starts empty (the notebook draws the starting state in the cell
    above); a state the replica refuses shows the reason instead of panels.
    """
    import ipywidgets as w

    state = state or State()
    controls = make_controls(state)
    output = w.Output()
    panel = Playground(None, controls, output)

    def redraw(change=None):
        try:
            shown = draw_fn(panel.state()) or []
        except (ValueError, TypeError) as error:
            shown = [{"output_type": "stream", "name": "stdout", "text": f"cannot draw this state: {error}\n"}]
        output.outputs = tuple(shown)

    for control in controls.values():
        control.observe(redraw, names="value")
    c = controls
    left = w.VBox([c["dtype"], c["p"], c["seed"], c["eps"], c["n_calls"], c["size"]])
    right = w.VBox([c[name] for name in SWITCH_NAMES])
    hint = w.HTML("<i>Move any control to redraw the panels below it.</i>")
    panel.widget = w.VBox([w.HBox([left, right]), hint, output])
    panel.redraw = redraw
    return panel


__all__ = ["Playground", "build_playground", "make_controls", "render", "snapshot"]
