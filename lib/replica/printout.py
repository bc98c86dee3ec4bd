"""The investigation plan's step 1: print every number of one run of the test.

`python -m lib diagnose` calls `print_diagnostic`. It runs the replica of the
original test under the given switches and prints, in order: the input, the
masks drawn by several forward calls with the same seed and whether they agree
with the mask the backward uses, the outputs, and for every element the
analytical and numerical gradient with both the nominal and the realised step,
the difference, the tolerance and PASS/FAIL. The last line is a one-line
summary; the return value is the process exit code (1 when the check fails).
"""

from __future__ import annotations

import sys

import numpy as np

from lib.gradcheck import PASS_RULES
from lib.replica import replay_original_test


def _row(cells, widths) -> str:
    return "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))


def _fmt_array(values) -> str:
    return "[" + ", ".join(f"{float(v):.7g}" for v in np.ravel(values)) + "]"


def _element_rows(r, nominal, realised) -> list[str]:
    """The per-element table: both divisions side by side, and the checker's verdict per element."""
    widths = (5, 12, 16, 16, 12, 14, 12, 12, 4)
    rows = [_row(("index", "analytical", "numerical/2h", "numerical/step", "nominal 2h",
                  "realised step", "difference", "tolerance", ""), widths)]
    flat = {name: getattr(res, field).ravel() for name, res, field in (
        ("a", r, "analytical"), ("n", r, "numerical"), ("tol", r, "tolerance"),
        ("nominal", nominal, "numerical"), ("realised", realised, "numerical"), ("step", realised, "step"),
        ("width", nominal, "step"))}
    for i in range(r.analytical.size):
        a, n = flat["a"][i], flat["n"][i]
        ok = abs(a - n) <= flat["tol"][i]
        rows.append(_row((i, f"{a:.8g}", f"{flat['nominal'][i]:.8g}", f"{flat['realised'][i]:.8g}",
                          f"{flat['width'][i]:.5g}", f"{flat['step'][i]:.6g}", f"{a - n:.3e}",
                          f"{flat['tol'][i]:.3e}", "PASS" if ok else "FAIL"), widths))
    return rows


def print_diagnostic(*, calls: int = 4, out=None, **switches) -> int:
    """Print the step-1 diagnostic for the replica run under `switches`.

    Args:
        calls: how many forward-call masks to show (at most the number made).
        out: text stream (default sys.stdout).
        **switches: any keyword of lib.replica.run_original_test.

    Returns:
        0 when the check passes, 1 when it fails.
    """
    out = out or sys.stdout
    run = replay_original_test(**switches)
    s, r = run.switches, run.result
    x = run.x_before
    write = lambda line="": print(line, file=out)  # noqa: E731

    write(f"{s['test']} gradient check ({s['checker']} checker), {s['dtype']}: p={s['p']:g}, seed={s['seed']}, "
          f"eps={s['eps']:g}, "
          f"rng={s['rng']}, forward={s['forward']}, backward_mask={s['backward_mask']}, "
          f"divide_by={s['divide_by']}, restore_input={s['restore_input']}")
    write(f"rtol={s['rtol']:g}, atol={s['atol']:g}; pass when |a - n| <= atol + rtol * {PASS_RULES[r.pass_rule]}")
    write()
    write(f"input x           {_fmt_array(x)}")
    write(f"test's own mask   {_fmt_array(run.test_mask)}")
    write(f"backward's mask   {_fmt_array(run.backward_mask)}")
    shown = run.forward_masks[:calls]
    agree = [bool(np.array_equal(m, run.backward_mask)) for m in run.forward_masks]
    for k, mask in enumerate(shown, start=1):
        write(f"forward call {k:<4} {_fmt_array(mask)}  {'same as backward' if agree[k - 1] else 'DIFFERENT'}")
    write(f"forward masks equal to the backward's: {sum(agree)}/{len(agree)} calls")
    scale = np.dtype(s["dtype"]).type(1.0 / (1.0 - s["p"]))
    write(f"output x*mask/(1-p) {_fmt_array(x * run.test_mask * scale)}")
    if not np.array_equal(run.x_after, run.x_before):
        write(f"x after the check {_fmt_array(run.x_after)}  (the checker left its perturbations in x)")
    write()

    # Both divisions side by side: the nominal 2*eps and the step actually stored.
    alt = "realised" if s["divide_by"] == "nominal" else "nominal"
    other = replay_original_test(**{**s, "divide_by": alt}).result
    nominal = r if s["divide_by"] == "nominal" else other
    realised = other if s["divide_by"] == "nominal" else r
    for line in _element_rows(r, nominal, realised):
        write(line)
    write()
    if r.passed:
        write(f"PASS: all {r.analytical.size} elements within tolerance (numerical divided by the "
              f"{s['divide_by']} step; max error/tolerance {r.max_error_ratio:.3g})")
        return 0
    write(f"FAIL: {run.message.splitlines()[0]} ({r.failing_indices.size} of {r.analytical.size} "
          f"elements; numerical divided by the {s['divide_by']} step; "
          f"max error/tolerance {r.max_error_ratio:.3g} at index {r.worst_index})")
    return 1
