"""Fast gradient check: random projections of the gradient, and localisation of failures.

The dense check (`lib.gradcheck.check_gradient`) costs two forward calls per
input element. This module checks the same quantity, the gradient of

    L(x) = sum(forward(x) * grad_output),

along a few random directions instead. Each probe costs two forward calls
whatever the size of x (there is no extra call at x itself), and backward is
called 1 + RANDOM_UPSTREAM times: with grad_output, and with a random upstream
gradient contracted with the first probe's outputs. When a probe fails, the failing elements are found by splitting
the probe's support in halves (group testing), one pair of forward calls per
halving, and each element found is then measured exactly as the dense mode
measures it.

This module is the entry point: check_gradient_fast checks its arguments and
runs the steps below in order. The explanation lives with the code it explains:

    projection   what one probe compares (a . d against g . (f(x+) - f(x-)) along
                 the realised step d) and its tolerance T, from the dense pass rule
                 by Hoeffding's inequality; the probes' signs; FALSE_ALARM
    prober       the forward calls: both sides of a probe or of a group, and the
                 rounding budget of each measurement
    localise     the screen (a residual above its rounding floor starts a search)
                 and the group testing that isolates failing elements
    fast_result  FastCheckResult, its report, and the blind spot of the probes
                 (the smallest single-element error they are certain to see)
    blockwise    cache-sized passes, an overflow-safe norm, the bit operations
                 that build x+ and x-

The steps, each one function here: check the arguments (_checked_inputs); draw
the probes and make their forward calls, then backward's (_probe); judge the
probes, localise, and collect the evidence into a FastCheckResult (_judge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib import _checks
from lib.gradcheck.blockwise import _same_bits
from lib.gradcheck.differences import check_returned, require_finite
from lib.gradcheck.fast_result import FastCheckResult, _writers, element_arrays, format_probe_table, upstream_notes
from lib.gradcheck.localise import _dense_confirm, _localisation_notes, _Search, _start_search
from lib.gradcheck.prober import _Prober
from lib.gradcheck.projection import (
    FALSE_ALARM,
    RANDOM_UPSTREAM,
    _draw_probes,
    _Group,
    _numerical_sides,
    _points,
    _probe_groups,
    _random_half,
    _random_upstream_groups,
    _ratio,
    hoeffding_multiplier,
)
from lib.gradcheck.reprobe import excused
from lib.gradcheck.result import GradientCheckError, diagnosis_hint

__all__ = [
    "DEFAULT_LOCALISE", "DEFAULT_PROBES", "DEFAULT_SEED", "FALSE_ALARM", "RANDOM_UPSTREAM", "FastCheckResult",
    # _points and _random_half are imported from here by tests/test_fastcheck.py
    "_points", "_random_half", "check_gradient_fast", "format_probe_table", "hoeffding_multiplier",
]

#: Two probes: the second doubles as the localisation's first split.
DEFAULT_PROBES = 2

#: The probes are drawn from a Generator seeded with this unless told otherwise.
DEFAULT_SEED = 0

#: How many failing elements a failed fast check tracks down by default.
DEFAULT_LOCALISE = 3


def check_gradient_fast(forward, backward, x, grad_output, *, probes=DEFAULT_PROBES, rtol=1e-3, atol=1e-6,
                        eps=None, seed=DEFAULT_SEED, localise=DEFAULT_LOCALISE,
                        raise_on_failure=True, probe_dtype=None) -> FastCheckResult:
    """Check backward against central differences of forward along random directions.

    Checks the same loss as the dense mode, L(x) = sum(forward(x) * grad_output),
    but along `probes` random sign directions: 2 * probes forward calls and two
    backward calls (grad_output's and a random one's), whatever x's size. A probe compares a . d with
    grad_output . (f(x+) - f(x-)), where d = x+ - x- is the perturbation as
    actually stored in x's dtype; its tolerance is the largest value the dense
    pass rule allows for a random-sign sum of per-element errors, plus a
    rounding budget (lib.gradcheck.projection). A backward that passes the dense
    rule everywhere fails with probability at most FALSE_ALARM.

    On failure, up to `localise` failing elements are found by splitting the
    failing probe's support in halves, and each is measured alone (the dense
    mode's central difference) and reported with its analytical, numerical,
    difference, tolerance and realised step.

    Args:
        forward: forward(x) -> y, any output shape; must be deterministic.
        backward: backward(grad_output, x) -> grad_x of x's shape.
        x: floating array (float16/32/64), any shape; never modified.
        grad_output: array of y's shape; the loss is sum(y * grad_output).
        probes: number of random directions, an integer >= 1.
        rtol, atol: the dense pass rule |a - n| <= atol + rtol * max(|a|, |n|);
            rtol must be < 1 here (the rule bounds |a - n| only then).
        eps: the step; None picks the dense mode's cbrt(eps_dtype) * max(1, |x_i|).
        seed: seed of the checker's own Generator (never the global RNG); the
            same seed gives the same probes. None draws fresh OS entropy.
        localise: how many failing elements to track down (0: none).
        raise_on_failure: raise GradientCheckError (with `.result`) on failure; its
            message is the report and a line saying how to ask lib.diagnose why.
        probe_dtype: None (x's dtype) or "float64". With "float64" and a
            float16/float32 x, the probes and the search give forward the
            points as float64 arrays, at float64's default step (or `eps`), and
            need a forward that computes in float64; backward still gets x in
            its own dtype, and every element the search names is measured and
            judged by the dense rule in x's dtype. Float64 outputs carry about
            1e-9 of float32's rounding, so the screen sees far smaller errors:
            among 1e6 float32 elements, one element off by 10x its dense
            tolerance instead of about 100x (lib.gradcheck.localise).

    Returns:
        FastCheckResult: per-probe values (shape (probes,)), per-element
        analytical and realised step (x's shape), and dense-mode numerical and
        tolerance for the elements the localisation measured.
    """
    inputs, rng = _checked_inputs(forward, backward, x, grad_output, probes=probes, rtol=rtol, atol=atol, eps=eps,
                                  seed=seed, localise=localise, probe_dtype=probe_dtype)
    probed = _probe(inputs, rng)
    result = _empty_result(probed) if inputs.x.size == 0 else _judge(probed)
    if not result.passed and raise_on_failure:
        hint = diagnosis_hint(inputs.x.size, result.failing_indices, dtype=inputs.x.dtype,
                              failing=int(result.failing_indices.size))
        raise GradientCheckError(result, "\n".join([result.report(), hint]))
    return result


# --- the arguments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """check_gradient_fast's arguments once checked (x: a finite float array; 0 <= rtol < 1)."""

    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: object  # as the caller passed it: backward and the dense measurements are given this
    grad: np.ndarray  # grad_output as a real, finite array (its shape is checked by forward's first call)
    rtol: float
    atol: float
    eps: object  # None or the caller's step, as passed
    probes: int
    localise: int
    seed: int | None
    x_probe: np.ndarray  # x, or x as float64 when the probes are measured in float64

    @property
    def backward_eps(self) -> float:
        """Machine epsilon of x's dtype: the scale of a correct backward's own rounding."""
        return float(np.finfo(self.x.dtype).eps)


def _checked_inputs(forward, backward, x, grad_output, *, probes, rtol, atol, eps, seed, localise, probe_dtype):
    """(_Inputs, the probes' Generator); raises at the first bad argument, naming it."""
    if not callable(forward):
        raise TypeError(f"forward must be callable, forward(x) -> y; got {type(forward).__name__}")
    if not callable(backward):
        raise TypeError(f"backward must be callable, backward(grad_output, x) -> grad_x; got "
                        f"{type(backward).__name__}")
    rtol = _checks.non_negative(rtol, "rtol")
    if rtol >= 1.0:
        raise ValueError(f"rtol must be < 1 in fast mode (the pass rule bounds |a - n| only then); got {rtol!r}")
    atol = _checks.non_negative(atol, "atol")
    probes = _checks.positive_int(probes, "probes", low=1)
    localise = _checks.positive_int(localise, "localise", low=0)
    if eps is not None:
        _checks.positive_step(eps)
    rng = _checks.seed_or_rng(seed, None)
    float64_probes = _checks.none_or_float64(probe_dtype, "probe_dtype")
    x = require_finite(_checks.float_array(x, "x"))
    grad = _validated_grad_output(grad_output)
    x_probe = x.astype(np.float64) if float64_probes and x.dtype != np.float64 else x
    inputs = _Inputs(forward, backward, x, grad_output, grad, rtol, atol, eps, probes, localise, seed, x_probe)
    return inputs, rng



def _validated_grad_output(grad_output) -> np.ndarray:
    """grad_output as a real array (its shape is checked against forward's first output)."""
    grad = np.asarray(grad_output)
    if not np.issubdtype(grad.dtype, np.number) or np.iscomplexobj(grad):
        raise TypeError(f"grad_output must be a real numeric array; got dtype {grad.dtype}")
    if not np.all(np.isfinite(grad)):
        raise ValueError("grad_output must be finite")
    return grad


# --- the calls: forward at the probes' points, then backward -------------------------------------


@dataclass(frozen=True)
class _Backward:
    """What backward returned and whether it wrote into what it was given."""

    analytical: np.ndarray  # backward(grad_output, x), float64, x's shape
    work: np.ndarray  # the private copy of x that backward was given
    grad_wrote: bool  # backward wrote into its copy of grad_output
    wrote: bool  # backward wrote into its copy of x or of grad_output, over all its calls
    random_groups: list[_Group]  # the probes contracted with random upstream gradients


@dataclass(frozen=True)
class _Probed:
    """Every forward and backward call of the probes, made; nothing judged yet.

    plus, minus: flat, x's dtype (the two points of every element); width:
    flat float64, plus - minus. signs: one bool array of x's size per probe
    (True is +1); flips: the half each later probe flips (None for probe 0).
    sides: per probe, (g . (f(x+) - f(x-)), rounding scale, accumulation bound).
    upstream_seed: the random upstream gradients' seed (None for an empty x).
    """

    inputs: _Inputs
    prober: _Prober
    plus: np.ndarray
    minus: np.ndarray
    width: np.ndarray
    signs: list[np.ndarray]
    flips: list[np.ndarray | None]
    sides: list[tuple[float, float, float]]
    forward_wrote: bool
    backward: _Backward
    upstream_seed: int | None = None


def _probe(inputs: _Inputs, rng: np.random.Generator) -> _Probed:
    """Draw the probes and call forward at their points (2 calls each), then backward."""
    x = inputs.x_probe
    plus, minus, width = _points(x, inputs.eps)
    prober = _Prober(inputs.forward, x, inputs.grad, native=inputs.x.dtype)
    # Forward first: its first call also tells grad_output's expected shape.
    # There is no separate call at x itself; every call is part of a probe.
    signs, flips = _draw_probes(rng, x.size, inputs.probes)
    if x.size:
        upstream_seed = int(rng.integers(2**63))  # the random upstream gradients' Generator
        sides, forward_wrote = _numerical_sides(prober, signs, plus, minus, upstream_seed)
    else:
        prober._call(x.copy())  # nothing to perturb; still check grad_output's shape
        upstream_seed, sides, forward_wrote = None, [], False
    backward = _call_backward(inputs, prober, upstream_seed, signs, width)
    return _Probed(inputs, prober, plus, minus, width, signs, flips, sides, forward_wrote, backward, upstream_seed)


def _call_backward(inputs: _Inputs, prober: _Prober, upstream_seed, signs, width: np.ndarray) -> _Backward:
    """backward at x with grad_output, then with random upstream gradients; each on private copies."""
    x = inputs.x
    # backward gets a private copy of x, never x itself.
    work = x.copy()
    given = np.array(inputs.grad_output, copy=True)
    a64 = np.asarray(check_returned(inputs.backward(given, work), x.shape, "backward", "x"), dtype=np.float64)
    grad_wrote = not _same_bits(given, np.asarray(inputs.grad_output))
    del given  # one output-sized array less while the random upstream gradients are checked
    random_groups = []
    if x.size:
        random_groups = _random_upstream_groups(prober, inputs.backward, inputs.grad_output, work, upstream_seed,
                                                signs, width, rtol=inputs.rtol, atol=inputs.atol,
                                                backward_eps=inputs.backward_eps)
    wrote = not _same_bits(work, x) or grad_wrote
    return _Backward(a64, work, grad_wrote, wrote, random_groups)


# --- the verdict ---------------------------------------------------------------------------------


def _empty_result(probed: _Probed) -> FastCheckResult:
    """An empty x has nothing to perturb: it passes unless forward or backward wrote to its input."""
    inputs, backward = probed.inputs, probed.backward
    x, a64 = inputs.x, backward.analytical
    mutated = probed.forward_wrote or backward.wrote
    return FastCheckResult(passed=not mutated, dtype=str(x.dtype), analytical=a64,
                           numerical=a64.copy(), tolerance=a64.copy(), step=a64.copy(), rtol=inputs.rtol,
                           atol=inputs.atol, forward_calls=probed.prober.calls, input_mutated=mutated,
                           seed=inputs.seed, measured=np.zeros(x.shape, dtype=bool), measured_step=a64.copy(),
                           mutated_by=_writers(probed.forward_wrote, backward.wrote),
                           probe_dtype=str(inputs.x_probe.dtype))


def _judge(probed: _Probed) -> FastCheckResult:
    """The probes against their tolerances, the elements the search isolated, and any input mutation."""
    inputs, backward, x = probed.inputs, probed.backward, probed.inputs.x
    a_flat = backward.analytical.reshape(-1)
    lam = hoeffding_multiplier(inputs.probes)
    groups, step_length = _probe_groups(probed.sides, probed.signs, probed.width, a_flat, rtol=inputs.rtol,
                                        atol=inputs.atol, backward_eps=inputs.backward_eps)
    # Reported per unit of the realised step length ||d||_2 (directional derivatives).
    probe_analytical = np.array([g.analytical / step_length for g in groups])
    probe_numerical = np.array([g.numerical / step_length for g in groups])
    probe_tolerance = np.array([g.tolerance(lam) / step_length for g in groups])
    ratios = np.array([_ratio(a - n, t) for a, n, t in zip(probe_analytical, probe_numerical, probe_tolerance,
                                                           strict=True)])
    search, chosen, leaves, notes = _localised(probed, lam, groups, screen_only=bool(np.all(ratios <= 1.0)))
    random_ratio = max((group.ratio(lam) for group in backward.random_groups), default=0.0)
    numerical, tolerance, measured_step, measured, leaf_failed = element_arrays(x.shape, leaves, a_flat)
    again = excused(probed, lam, search, ratios, random_ratio, leaf_failed)
    notes.extend(upstream_notes(random_ratio if again is None else again.random_ratio, backward.grad_wrote))
    # Looked at again after the search's calls: a forward that writes to its
    # input also corrupts the private copy of x that the search perturbs.
    forward_wrote = probed.forward_wrote or not probed.prober.still_intact() or bool(again and again.forward_wrote)
    backward_wrote = backward.wrote or not _same_bits(backward.work, x)
    mutated = forward_wrote or backward_wrote
    # A probe over its full tolerance is a dense failure somewhere (up to FALSE_ALARM), unless measured
    # again without the elements that passed at a smaller step (lib.gradcheck.reprobe); an element the
    # search isolated fails by the dense rule itself.
    probes_pass = bool(np.all(ratios <= 1.0)) and random_ratio <= 1.0 if again is None else again.passed
    return FastCheckResult(
        passed=probes_pass and not leaf_failed and not mutated,
        dtype=str(x.dtype),
        analytical=backward.analytical,
        numerical=numerical,
        tolerance=tolerance,
        step=probed.width.reshape(x.shape),
        rtol=inputs.rtol,
        atol=inputs.atol,
        divide_by="realised",
        # The search's detail calls are the dense measurements of single elements.
        forward_calls=probed.prober.calls + (search.detail_calls if search else 0)  # prober's: reprobe's too
        + (again.upstream_calls if again else 0),
        input_mutated=mutated,
        notes=tuple(notes),
        seed=inputs.seed,
        probe_analytical=probe_analytical,
        probe_numerical=probe_numerical,
        probe_tolerance=probe_tolerance,
        probe_step=np.full(inputs.probes, step_length),
        measured=measured,
        measured_step=measured_step,
        localised_probe=chosen,
        search_calls=search.search_calls if search else 0,
        smaller_steps=tuple(search.smaller_steps) if search else (),
        held_still=again.held if again else np.zeros(0, dtype=np.int64),
        reprobe_ratio=np.append(again.probe_ratio, again.random_ratio) if again else np.zeros(0),
        reprobe_calls=2 * inputs.probes + again.upstream_calls if again else 0,
        detail_calls=search.detail_calls if search else 0,
        mutated_by=_writers(forward_wrote, backward_wrote),
        probe_dtype=str(inputs.x_probe.dtype),
    )


def _localised(probed: _Probed, lam: float, groups: list[_Group], *,
               screen_only: bool) -> tuple[_Search | None, int | None, list, list[str]]:
    """Group testing on the probe furthest over its rounding floor, if any is.

    Returns (the _Search or None, the probe it split or None, leaves, notes),
    leaves as _Search.run returns them. screen_only: no probe failed outright.
    """
    inputs, backward = probed.inputs, probed.backward
    screens = np.array([g.screen_ratio(lam) for g in groups])
    if inputs.localise == 0 or not np.any(screens > 1.0):
        return None, None, [], []
    if probed.forward_wrote or backward.wrote:
        return None, None, [], ["Localisation skipped: forward or backward modified its input, so measurements "
                                "made by perturbing a private copy of x cannot be trusted."]
    rtol, atol = inputs.rtol, inputs.atol
    a_flat = backward.analytical.reshape(-1)
    confirm = _dense_confirm(inputs.forward, inputs.x, inputs.grad_output, backward.analytical, probed.prober,
                             rtol=rtol, atol=atol, eps=inputs.eps)
    chosen = int(np.argmax(screens))
    search, start = _start_search(probed.prober, lam, groups, probed.signs, probed.flips, chosen, probed.plus,
                                  probed.minus, probed.width, a_flat, rtol=rtol, atol=atol,
                                  backward_eps=inputs.backward_eps, confirm=confirm)
    leaves, stopped = search.run(start, rtol=rtol, atol=atol, localise=inputs.localise, screen_only=screen_only)
    notes = _localisation_notes(lam, groups[chosen], leaves, a_flat, inputs.localise, stopped, rtol=rtol, atol=atol,
                                excused=sum(r.passed for r in search.smaller_steps))
    return search, chosen, leaves, notes
