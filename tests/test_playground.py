"""lib.workbook.playground: the state, the replica pair, the evidence render() draws, and the control wiring."""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib.replica import ORIGINAL, REPORTED, replay_original_test, test_values
from lib.workbook.panels import (
    SWITCH_NAMES,
    State,
    evaluate,
    forward_call_masks,
    relative_error,
    replica_error_vs_step,
    replica_pair,
)
from lib.workbook.playground import build_playground, render


def test_default_state_is_the_original_test():
    s = State()
    switches = s.switches()
    assert {k: v for k, v in switches.items() if k != "values"} == {
        k: ORIGINAL[k] for k in ("dtype", "p", "seed", "eps", *SWITCH_NAMES)}
    assert switches["values"] == ORIGINAL["values"]
    assert s.changed() == {}
    assert State(p=0.5, rng="global").changed() == {"p": 0.5, "rng": "global"}
    assert State(size=7).switches()["values"] == test_values(7)


@pytest.mark.parametrize(("field", "value", "error"), [
    ("p", 1.0, ValueError), ("eps", 0.0, ValueError), ("dtype", "int32", ValueError),
    ("seed", -1, ValueError), ("n_calls", 0, ValueError), ("size", 10_000, ValueError),
    ("divide_by", "exact", ValueError), ("rng", "numpy", ValueError), ("restore_input", 1, ValueError),
    ("p", "0.3", TypeError)])
def test_state_refuses_what_the_replica_cannot_run(field, value, error):
    with pytest.raises(error, match=field if field != "restore_input" else "restore_input"):
        State(**{field: value})


def test_state_normalises_widget_values():
    s = State(p=np.float64(0.25), eps=np.float32(1e-4), seed=np.int64(3), dtype=np.float64)
    assert type(s.p) is float and type(s.eps) is float and type(s.seed) is int
    assert s.dtype == "float64"


SETTINGS = [
    {},
    {"seed": 0},
    {"rng": "global", "seed": 3},
    {"backward_mask": "rebound", "rng": "global"},
    {"backward_mask": "rebound", "seed": 0},
    {"forward": "fixed_mask", "seed": 0},
    {"dtype": "float16", "p": 0.6, "size": 8},
]


@pytest.mark.parametrize("changes", SETTINGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "original")
def test_replica_pair_behaves_like_the_replica(changes):
    state = State(**changes)
    run = replay_original_test(**state.switches())
    pair = replica_pair(state)
    assert pair.x.tolist() == run.x_before.tolist() and pair.x.dtype == run.x_before.dtype
    np.testing.assert_array_equal(pair.test_mask, run.test_mask)
    np.testing.assert_array_equal(pair.backward_mask, run.backward_mask)
    np.testing.assert_array_equal(pair.backward(pair.grad_output, pair.x), run.result.analytical)
    calls = len(run.forward_masks)
    masks, reference = forward_call_masks(State(**{**changes, "n_calls": calls + 3}))
    assert masks.shape == (calls + 3, state.size)
    np.testing.assert_array_equal(masks[:calls], np.array(run.forward_masks))
    np.testing.assert_array_equal(reference, run.backward_mask)


def test_default_evidence_reproduces_the_reported_failure_and_blames_precision():
    e = evaluate(State())
    assert e.reproduced and not e.run.passed
    assert e.run.result.numerical[0] == pytest.approx(REPORTED["numerical"], abs=5e-8)
    assert e.matching_calls == e.state.n_calls == 20
    assert e.at_eps["nominal"] > 1e-3 > e.at_eps["realised"]
    assert e.primary == "precision"
    assert e.errors["nominal"].shape == e.steps.shape
    text = "\n".join(e.lines())
    assert "gradient mismatch at index 0" in text and "reproduced (index 0, all four numbers): True" in text


def test_an_unseeded_global_rng_is_diagnosed_as_a_changing_forward():
    e = evaluate(State(rng="global", seed=3))
    assert not e.run.passed and not e.reproduced
    assert e.matching_calls < e.state.n_calls
    assert e.primary == "nondeterministic-forward"
    assert not np.any(e.errors["realised"] <= 1e-3)  # no step rescues a forward that changes (NaN: no step)


def test_float64_passes_and_the_diagnosis_finds_nothing():
    e = evaluate(State(dtype="float64"))
    assert e.run.passed and e.primary == "ok"
    assert "Gradient check passed for float64" in "\n".join(e.lines())


def test_a_step_the_dtype_cannot_hold_is_reported_not_raised():
    e = evaluate(State(dtype="float16", eps=1e-9, divide_by="realised"))
    assert e.diagnosis is None and "too small for float16" in e.diagnosis_error
    text = "\n".join(e.lines())
    assert "diagnosis unavailable" in text and "undefined" in text


def test_the_tolerance_panel_says_when_the_numerical_gradient_is_undefined(capsys):
    e = render(State(dtype="float16", eps=1e-9, divide_by="realised"), show=False)
    try:
        notes = [t.get_text() for t in e.figure.axes[2].texts]
        assert any("undefined at 5 of 5 elements" in n for n in notes)
        assert "unavailable" in e.figure.axes[3].get_title()
    finally:
        plt.close(e.figure)


def test_a_leaking_checker_is_named_as_invisible_to_the_diagnosis():
    e = evaluate(State(restore_input=False))
    assert not np.array_equal(e.run.x_after, e.run.x_before)
    assert any("restore_input=False belongs to the checker" in line for line in e.lines())


def test_render_prints_the_evidence_and_draws_four_panels(capsys):
    e = render(State(p=0.5, n_calls=7), show=False)
    try:
        printed = capsys.readouterr().out
        assert printed.strip() == "\n".join(e.lines()).strip()
        axes = e.figure.axes
        assert len(axes) == 4
        titles = [ax.get_title() for ax in axes]
        assert "7 forward calls" in titles[0]
        assert "float32" in titles[1] and "eps=1e-05" in titles[2]
        assert e.primary in titles[3]
        assert axes[0].images[0].get_array().shape == (7, 5)
    finally:
        plt.close(e.figure)


def test_controls_redraw_with_the_state_they_show(capsys):
    pytest.importorskip("ipywidgets")
    drawn = []
    panel = build_playground(State(seed=7), draw_fn=drawn.append)
    assert panel.state() == State(seed=7)
    assert set(panel.controls) == {f for f in State.__dataclass_fields__}
    panel.controls["p"].value = 0.5
    panel.controls["divide_by"].value = "realised"
    panel.controls["restore_input"].value = True
    assert drawn[-1] == State(seed=7, p=0.5, divide_by="realised", restore_input=True)
    assert len(drawn) == 3


@pytest.mark.parametrize("state", [State(eps=0.5, p=0.99, seed=1000, n_calls=150, size=40), State(eps=1e-12)])
def test_controls_hold_starting_values_outside_their_usual_ranges(state):
    pytest.importorskip("ipywidgets")
    assert build_playground(state, draw_fn=lambda s: None).state() == state


def test_controls_report_a_state_that_cannot_be_drawn():
    pytest.importorskip("ipywidgets")

    def refuse(state):
        raise ValueError(f"no drawing at p={state.p}")

    panel = build_playground(State(), draw_fn=refuse)
    panel.controls["p"].value = 0.6  # must not raise out of the widget callback
    assert panel.state().p == 0.6
    assert [o["text"] for o in panel.output.outputs] == ["cannot draw this state: no drawing at p=0.6\n"]


def test_relative_error():
    err = relative_error([1.0, 0.0, 2.0, 1.0], [1.001, 0.0, 1.0, np.nan])
    assert err[0] == pytest.approx(0.001 / 1.001)
    assert err[1] == 0.0 and err[2] == 0.5 and np.isnan(err[3])


def test_replica_sweep_reproduces_the_failure_and_its_fix_at_the_original_step():
    nominal = replica_error_vs_step([1e-5], divide_by="nominal")[0]
    realised = replica_error_vs_step([1e-5], divide_by="realised")[0]
    in_float64 = replica_error_vs_step([1e-5], divide_by="nominal", dtype="float64")[0]
    assert nominal > 1e-3 > realised
    assert in_float64 < 1e-9


def test_the_eps_slider_hands_over_the_value_it_shows():
    pytest.importorskip("ipywidgets")
    drawn = []
    panel = build_playground(State(), draw_fn=drawn.append)
    panel.controls["eps"].value = 10 ** -2.75  # a log slider's value: 0.0017782794100389228
    shown = f"{panel.controls['eps'].value:{panel.controls['eps'].readout_format}}"
    assert drawn[-1].eps == float(shown) == 1.78e-3
    assert "eps=0.00178 " in drawn[-1].describe()[1] + " "


def test_a_redraw_replaces_the_outputs_with_the_new_text_and_figure():
    # The figure goes in as a PNG the redraw made itself, never through plt.show() inside
    # `with output:`, which a kernel that handles widget messages on a subshell misroutes.
    pytest.importorskip("ipywidgets")
    from PIL import Image

    panel = build_playground(State())
    panel.controls["dtype"].value = "float64"
    text, image = panel.output.outputs
    assert "dtype=float64" in text["text"] and text["name"] == "stdout"
    png = Image.open(io.BytesIO(base64.b64decode(image["data"]["image/png"])))
    assert png.width > 600 and len(png.convert("L").getcolors(maxcolors=2**16)) > 10  # a drawing, not a blank
    panel.controls["dtype"].value = "float32"
    assert "dtype=float32" in panel.output.outputs[0]["text"]
    assert panel.output.outputs[1]["data"]["image/png"] != image["data"]["image/png"]
