"""A replica of the failing test and of the checker it ran, switch by switch.

`run_original_test()` with no arguments is the original: a float32 input
[-0.5, 0.0, 0.2, 0.5, 1.0], dropout with p=0.3 and seed=42, grad_output all
ones, a checker with step eps=1e-5 that sums each loss in float64 and divides
by the nominal 2*eps, and the pass rule |a - n| <= atol + rtol * max(|a|, |n|)
with rtol=1e-3, atol=1e-6. It raises

    Gradient check failed for float32: gradient mismatch at index 0

with analytical 1.4285715 and numerical 1.4305115 at index 0.

Each keyword switches one suspected mechanism on or off. The switches emulate
mechanisms; they do not encode conclusions. Which of them matters is for the
experiments in the notebooks to find out.

The original library's RNG was process-wide: `dropout(..., seed=s)` with s > 0
reseeded it on every call, while s = 0 meant "do not seed" and drew on from
the current state. `GlobalRNG` emulates that one shared state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib import _checks
from lib.dropout import dropout_backward
from lib.gradcheck import GradCheckResult, GradientCheckError, build_result

ORIGINAL_VALUES = (-0.5, 0.0, 0.2, 0.5, 1.0)

#: Every switch with its original value first, then the alternatives.
SWITCHES: dict[str, tuple] = {
    "divide_by": ("nominal", "realised"),
    "dtype": ("float32", "float64", "float16"),
    "rng": ("reseed", "global"),
    "forward": ("stochastic", "fixed_mask"),
    "backward_mask": ("captured", "rebound"),
    "restore_input": (True, False),
}

#: The values of the original test; every keyword of `run_original_test`.
ORIGINAL = {
    "divide_by": "nominal",
    "eps": 1e-5,
    "dtype": "float32",
    "rng": "reseed",
    "forward": "stochastic",
    "backward_mask": "captured",
    "restore_input": True,
    "seed": 42,
    "p": 0.3,
    "values": ORIGINAL_VALUES,
    "rtol": 1e-3,
    "atol": 1e-6,
}

def test_values(size: int = len(ORIGINAL_VALUES)) -> tuple[float, ...]:
    """The original five input values, cut or extended to `size` elements.

    Extra elements are standard-normal draws from a fixed Generator, so every
    notebook sees the same input for the same `size`, whatever its dropout seed.
    """
    size = _checks.positive_int(size, "size", low=1, high=10_000_000)
    extra = np.random.default_rng(20_000_101).standard_normal(max(size - len(ORIGINAL_VALUES), 0))
    return tuple(float(v) for v in (*ORIGINAL_VALUES, *extra))[:size]


test_values.__test__ = False  # a data helper, not a test, for pytest's collection by name


#: The numbers reported publicly for the failure (index 0 of the original test).
REPORTED = {"index": 0, "analytical": 1.4285715, "numerical": 1.4305115,
            "difference": 0.0019400, "tolerance": 0.0014315}


def matches_reported(result: GradCheckResult) -> bool:
    """True when `result` fails first at the reported index with the reported numbers
    (to the 8 significant figures they were printed with)."""
    i = REPORTED["index"]
    if result.first_failing_index != i:
        return False
    measured = {
        "analytical": result.analytical.ravel()[i],
        "numerical": result.numerical.ravel()[i],
        "difference": abs(result.difference.ravel()[i]),
        "tolerance": result.tolerance.ravel()[i],
    }
    return all(abs(measured[k] - REPORTED[k]) <= 5e-8 for k in measured)


# The shared RNG state a process starts with before anyone seeds it. Fixed, so
# that a replica run is repeatable even when the test never seeds (seed=0).
_UNSEEDED_START = 20240901


class GlobalRNG:
    """One process-wide uniform generator, as in the original library."""

    def __init__(self) -> None:
        self._generator = np.random.default_rng(_UNSEEDED_START)
        self.draws = 0

    def seed(self, seed: int) -> None:
        self._generator = np.random.default_rng(seed)

    def uniform(self, shape) -> np.ndarray:
        self.draws += 1
        return self._generator.random(shape)


def original_dropout(x: np.ndarray, p: float, seed: int, state: GlobalRNG, reseed: bool):
    """The original dropout: reseed the shared RNG when seed > 0 (and `reseed`), then draw.

    Returns (out, mask) in x's dtype: mask[i] = 1 if uniform() > p else 0 and
    out = x * mask * (1 / (1 - p)).
    """
    if reseed and seed > 0:
        state.seed(seed)
    mask = (state.uniform(x.shape) > p).astype(x.dtype)
    return x * mask * x.dtype.type(1.0 / (1.0 - p)), mask


@dataclass
class ReplicaRun:
    """What one run of the replica test saw, for the notebooks to inspect.

    Attributes:
        result: the checker's GradCheckResult (also on failure).
        message: the message the original would raise, or None if it passed.
        test_mask: the mask from the test's own dropout call.
        backward_mask: the mask the backward actually multiplied by.
        forward_masks: the mask used by each forward call, in call order
            (2 per element: x + eps, then x - eps).
        x_before, x_after: the test's input array before and after the check.
        switches: the keyword values of this run.
    """

    result: GradCheckResult
    message: str | None
    test_mask: np.ndarray
    backward_mask: np.ndarray
    forward_masks: list[np.ndarray] = field(default_factory=list)
    x_before: np.ndarray | None = None
    x_after: np.ndarray | None = None
    switches: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.result.passed


def original_message(result: GradCheckResult) -> str:
    """The original's first line, then the four lines later versions added."""
    i = result.first_failing_index
    a, n = result.analytical.ravel()[i], result.numerical.ravel()[i]
    return "\n".join([
        f"Gradient check failed for {result.dtype}: gradient mismatch at index {i}",
        f"  Analytical: {a:.7f}",
        f"  Numerical:  {n:.7f}",
        f"  Difference: {abs(a - n):.7f}",
        f"  Tolerance:  {result.tolerance.ravel()[i]:.7f}",
    ])


def original_check_gradient(forward, backward, x, grad_output, *, rtol, atol, eps,
                            divide_by="nominal", restore_input=True) -> GradCheckResult:
    """The checker as it was when the failure was reported.

    Analytical first, then for every element: perturb a copy by +eps and -eps
    in x's dtype, run forward, sum each loss in float64, and divide the
    difference of the two sums by 2*eps (or, switched, by the realised step).

    restore_input=False emulates a checker whose "copies" share the caller's
    buffer: it perturbs x itself and never puts the element back, so x[i] is
    left at x[i] - eps and later elements are evaluated at a drifted point.
    """
    dtype = x.dtype.type
    step_t = dtype(eps)
    grad64 = np.asarray(grad_output, dtype=np.float64)
    analytical = np.asarray(backward(grad_output, x), dtype=np.float64)
    numerical = np.empty(x.size, dtype=np.float64)
    widths = np.empty(x.size, dtype=np.float64)
    flat = x.reshape(-1)
    for i in range(x.size):
        if restore_input:
            x_plus = x.copy()
            x_plus.reshape(-1)[i] += step_t
            loss_plus = np.sum(np.asarray(forward(x_plus), np.float64) * grad64)
            x_minus = x.copy()
            x_minus.reshape(-1)[i] -= step_t
            loss_minus = np.sum(np.asarray(forward(x_minus), np.float64) * grad64)
            realised = float(x_plus.reshape(-1)[i]) - float(x_minus.reshape(-1)[i])
        else:
            saved = flat[i]
            flat[i] = saved + step_t
            plus_value = float(flat[i])
            loss_plus = np.sum(np.asarray(forward(x), np.float64) * grad64)
            flat[i] = saved - step_t
            realised = plus_value - float(flat[i])
            loss_minus = np.sum(np.asarray(forward(x), np.float64) * grad64)
        widths[i] = 2.0 * eps if divide_by == "nominal" else realised
        with np.errstate(divide="ignore", invalid="ignore"):
            numerical[i] = (loss_plus - loss_minus) / widths[i]
    return build_result(analytical, numerical.reshape(x.shape), widths.reshape(x.shape),
                        dtype=x.dtype, rtol=rtol, atol=atol, divide_by=divide_by,
                        forward_calls=2 * x.size)


def _validated_switches(switches: dict) -> dict:
    unknown = set(switches) - set(ORIGINAL)
    if unknown:
        raise TypeError(
            f"unknown switch {sorted(unknown)[0]!r}; accepted: {', '.join(sorted(ORIGINAL))}"
        )
    s = {**ORIGINAL, **switches}
    for name, accepted in SWITCHES.items():
        if name == "dtype":
            s["dtype"] = str(_checks.dtype_from_name(s["dtype"]))
        else:
            _checks.choice(s[name], name, accepted)
    s["eps"] = _checks.positive_step(s["eps"])
    s["p"] = _checks.drop_probability(s["p"])
    s["rtol"] = _checks.non_negative(s["rtol"], "rtol")
    s["atol"] = _checks.non_negative(s["atol"], "atol")
    s["seed"] = _checks.positive_int(s["seed"], "seed", low=0, high=2**63 - 1)
    values = np.asarray(s["values"], dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty 1-D sequence of finite numbers; got {s['values']!r}")
    with np.errstate(over="ignore"):
        stored = values.astype(s["dtype"])
    if not np.all(np.isfinite(stored)):
        largest = float(np.finfo(s["dtype"]).max)
        raise ValueError(f"values must be finite in {s['dtype']} (|v| <= {largest:.6g}); got {s['values']!r}")
    s["values"] = tuple(float(v) for v in values)
    return s


def replay_original_test(**switches) -> ReplicaRun:
    """Run the original test under `switches` and return everything it saw; never raises
    on a failed check (bad switches still raise ValueError/TypeError)."""
    s = _validated_switches(switches)
    dtype = np.dtype(s["dtype"])
    p, seed = s["p"], s["seed"]
    state = GlobalRNG()
    reseed = s["rng"] == "reseed"
    if not reseed and seed > 0:
        state.seed(seed)  # seeded once, at the start of the test

    x = np.array(s["values"], dtype=dtype)
    x_before = x.copy()
    _, mask = original_dropout(x, p, seed, state, reseed)
    test_mask = mask
    grad_out = np.ones_like(x)
    forward_masks: list[np.ndarray] = []
    used_by_backward: list[np.ndarray] = []

    def forward(x_in):
        if s["forward"] == "fixed_mask":
            forward_masks.append(test_mask)
            return x_in * test_mask * dtype.type(1.0 / (1.0 - p))
        out, drawn = original_dropout(x_in, p, seed, state, reseed)
        forward_masks.append(drawn)
        return out

    if s["backward_mask"] == "captured":
        def backward(grad, x_in, captured=mask):  # value bound now, like Mojo's capture
            used_by_backward.append(captured)
            return dropout_backward(grad, captured, p)
    else:
        def backward(grad, x_in):  # Python looks `mask` up when called: late binding
            used_by_backward.append(mask)
            return dropout_backward(grad, mask, p)
        # The rebound variant adds one statement to the test after backward is
        # defined: a second dropout call whose mask rebinds the name `mask`.
        _, mask = original_dropout(x, p, seed, state, reseed)

    result = original_check_gradient(
        forward, backward, x, grad_out, rtol=s["rtol"], atol=s["atol"], eps=s["eps"],
        divide_by=s["divide_by"], restore_input=s["restore_input"])
    return ReplicaRun(
        result=result,
        message=None if result.passed else original_message(result),
        test_mask=test_mask,
        backward_mask=used_by_backward[0],
        forward_masks=forward_masks,
        x_before=x_before,
        x_after=x.copy(),
        switches=s,
    )


def run_original_test(*, raise_on_failure: bool = True, **switches) -> GradCheckResult:
    """Run the original test; raise GradientCheckError with the original message on failure.

    Keywords (originals in brackets): divide_by ["nominal"] or "realised";
    eps [1e-5]; dtype ["float32"], "float64", "float16"; rng ["reseed"] or
    "global" (seeded once, so every forward draws a new mask); forward
    ["stochastic"] or "fixed_mask"; backward_mask ["captured"] or "rebound";
    restore_input [True] or False; seed [42] (0 means "do not seed");
    p [0.3]; values [(-0.5, 0.0, 0.2, 0.5, 1.0)]; rtol [1e-3]; atol [1e-6].
    """
    run = replay_original_test(**switches)
    if not run.passed and raise_on_failure:
        raise GradientCheckError(run.result, run.message)
    return run.result
