"""The two failing tests of the original library, switch by switch.

`run_original_test()` with no arguments is the dropout test as it failed (the
failure-era commit 27a95c94 of the original library; docs/history.md): a float32
input [-0.5, 0.0, 0.2, 0.5, 1.0], dropout with p=0.3 and seed=42 drawing from
Mojo's generator (mask [1, 0, 0, 1, 0]), grad_output all ones, and the
failure-era checker (`lib.replica.checkers.original_check_gradient`). It raises

    Gradient check failed for float32: gradient mismatch at index 0

with analytical 1.4285715 and numerical 1.4305115 at index 0, and leaves the
test's x at x - eps element by element, as Mojo 0.25.7 does.
`test="dropout2d"` is the sibling test: shape (1, 2, 4, 4), x[i] = i * 0.1 -
0.8 computed in the test's dtype, p=0.2, seed=42, one draw per channel.

Each keyword switches one suspected mechanism. The switches emulate
mechanisms; they do not encode conclusions: which of them matters is for the
experiments in the notebooks to find out. `backward_mask="rebound"` and
float16 have no counterpart in the Mojo twin (`mojo/`); every other switch
does, and `python -m lib mojo` compares the two bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from lib import _checks
from lib.gradcheck import GradCheckResult, GradientCheckError
from lib.replica.checkers import fixed_check_gradient, original_check_gradient
from lib.replica.layers import original_dropout, original_dropout2d, original_dropout_backward
from lib.replica.rng import MojoRandom

ORIGINAL_VALUES = (-0.5, 0.0, 0.2, 0.5, 1.0)
#: The dropout2d test's input shape (N, C, H, W).
DROPOUT2D_SHAPE = (1, 2, 4, 4)
TESTS = ("dropout", "dropout2d")

#: Every ablation switch with its original value first, then the alternatives.
SWITCHES: dict[str, tuple] = {
    "divide_by": ("nominal", "realised"),
    "dtype": ("float32", "float64", "float16"),
    "rng": ("reseed", "global"),
    "forward": ("stochastic", "fixed_mask"),
    "backward_mask": ("captured", "rebound"),
    "restore_input": (False, True),
}
#: Which checker runs: the failure-era one, or the complete fix (which has no
#: eps and never touches x; divide_by still applies).
CHECKERS = ("original", "fixed")

#: The values of the original dropout test; every keyword of `run_original_test`.
ORIGINAL = {
    "test": "dropout",
    "checker": "original",
    "divide_by": "nominal",
    "eps": 1e-5,
    "dtype": "float32",
    "rng": "reseed",
    "forward": "stochastic",
    "backward_mask": "captured",
    "restore_input": False,
    "seed": 42,
    "p": 0.3,
    "values": ORIGINAL_VALUES,
    "rtol": 1e-3,
    "atol": 1e-6,
}
#: Where the dropout2d test differs ("values": None means i * 0.1 - 0.8 in the dtype).
ORIGINAL_DROPOUT2D = {**ORIGINAL, "test": "dropout2d", "p": 0.2, "values": None}


def originals(test: str = "dropout") -> dict:
    """The original keyword values of `test` ("dropout" or "dropout2d")."""
    return dict(ORIGINAL_DROPOUT2D if _checks.choice(test, "test", TESTS) == "dropout2d" else ORIGINAL)


def dropout2d_values(dtype) -> np.ndarray:
    """The dropout2d test's input `Float(i) * 0.1 - 0.8` as Mojo computed it, shape (1, 2, 4, 4).

    Mojo's compiler fuses the multiply and the subtract into one fused
    multiply-add in the dtype: the exact value of i * t(0.1) - t(0.8), rounded
    once (measured for all 32 values; plain float32 arithmetic differs at
    i = 17, 21, 26, 29). In float32 this stores x[24] = 1.600000023841858 and
    x[31] = 2.299999952316284.
    """
    dtype = np.dtype(dtype)
    tenth, offset = Fraction(float(dtype.type(0.1))), Fraction(float(dtype.type(0.8)))
    count = int(np.prod(DROPOUT2D_SHAPE))
    # float() of a Fraction rounds correctly to float64; the float32 product of
    # two 24-bit significands is exact in float64, so one more rounding is safe.
    fused = [float(i * tenth - offset) for i in range(count)]
    return np.array(fused, dtype=np.float64).astype(dtype).reshape(DROPOUT2D_SHAPE)


def test_values(size: int = len(ORIGINAL_VALUES)) -> tuple[float, ...]:
    """The original five input values, cut or extended to `size` elements.

    Extra elements are standard-normal draws from numpy's generator with a fixed
    seed (inputs, not masks: masks always come from Mojo's generator), so every
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


#: The emulated process-wide generator (the name the notebooks use).
GlobalRNG = MojoRandom


@dataclass
class ReplicaRun:
    """What one run of the replica test saw, for the notebooks to inspect.

    Attributes:
        result: the checker's GradCheckResult (also on failure).
        message: the message the original would raise, or None if it passed.
        test_mask: the mask from the test's own dropout call (x's full shape).
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


def _validated_values(s: dict) -> tuple[float, ...] | None:
    if s["values"] is None and s["test"] == "dropout2d":
        return None
    values = np.asarray(s["values"], dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty sequence of finite numbers; got {s['values']!r}")
    if s["test"] == "dropout2d" and values.size != np.prod(DROPOUT2D_SHAPE):
        raise ValueError(f"values for the dropout2d test must have {np.prod(DROPOUT2D_SHAPE)} elements "
                         f"(shape {DROPOUT2D_SHAPE}); got {values.size}")
    with np.errstate(over="ignore"):
        stored = values.astype(s["dtype"])
    if not np.all(np.isfinite(stored)):
        largest = float(np.finfo(s["dtype"]).max)
        raise ValueError(f"values must be finite in {s['dtype']} (|v| <= {largest:.6g}); got {s['values']!r}")
    return tuple(float(v) for v in values)


def _validated_switches(switches: dict) -> dict:
    unknown = set(switches) - set(ORIGINAL)
    if unknown:
        raise TypeError(f"unknown switch {sorted(unknown)[0]!r}; accepted: {', '.join(sorted(ORIGINAL))}")
    s = {**originals(switches.get("test", "dropout")), **switches}
    _checks.choice(s["checker"], "checker", CHECKERS)
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
    s["values"] = _validated_values(s)
    return s


def _test_input(s: dict) -> np.ndarray:
    if s["values"] is None:
        return dropout2d_values(s["dtype"])
    x = np.array(s["values"], dtype=s["dtype"])
    return x.reshape(DROPOUT2D_SHAPE) if s["test"] == "dropout2d" else x


def replay_original_test(**switches) -> ReplicaRun:
    """Run one of the original tests under `switches` and return everything it saw.

    Never raises on a failed check (bad switches raise ValueError/TypeError).
    The generator starts as a fresh process's (seed 1), so seed=0 ("do not
    seed") draws the stream a fresh Mojo process would.
    """
    s = _validated_switches(switches)
    layer = original_dropout2d if s["test"] == "dropout2d" else original_dropout
    p, seed = s["p"], s["seed"]
    state = MojoRandom()
    reseed = s["rng"] == "reseed"
    if not reseed and seed > 0:
        state.seed(seed)  # seeded once, at the start of the test

    x = _test_input(s)
    x_before = x.copy()
    _, mask = layer(x, p, seed, state, reseed)
    test_mask = mask
    forward_masks: list[np.ndarray] = []
    used_by_backward: list[np.ndarray] = []

    def forward(x_in):
        if s["forward"] == "fixed_mask":
            forward_masks.append(test_mask)
            return (x_in * test_mask) * x_in.dtype.type(1.0 / (1.0 - p))
        out, drawn = layer(x_in, p, seed, state, reseed)
        forward_masks.append(drawn)
        return out

    if s["backward_mask"] == "captured":
        def backward(grad, x_in, captured=mask):  # value bound now, like Mojo's capture
            used_by_backward.append(captured)
            return original_dropout_backward(grad, captured, p)
    else:
        def backward(grad, x_in):  # Python looks `mask` up when called: late binding
            used_by_backward.append(mask)
            return original_dropout_backward(grad, mask, p)
        # The rebound variant adds one statement to the test after backward is
        # defined: a second dropout call whose mask rebinds the name `mask`.
        _, mask = layer(x, p, seed, state, reseed)

    grad_out = np.ones_like(x)
    tolerances = {"rtol": s["rtol"], "atol": s["atol"], "divide_by": s["divide_by"]}
    if s["checker"] == "fixed":
        result = fixed_check_gradient(forward, backward, x, grad_out, **tolerances)
    else:
        result = original_check_gradient(forward, backward, x, grad_out, eps=s["eps"],
                                         restore_input=s["restore_input"], **tolerances)
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

    Keywords (originals in brackets): test ["dropout"] or "dropout2d";
    checker ["original"] or "fixed"; divide_by ["nominal"] or "realised";
    eps [1e-5]; dtype ["float32"], "float64", "float16"; rng ["reseed"] or
    "global" (seeded once, so every forward draws a new mask); forward
    ["stochastic"] or "fixed_mask"; backward_mask ["captured"] or "rebound";
    restore_input [False: the checker leaks its perturbations into x] or True;
    seed [42] (0 means "do not seed"); p [0.3; 0.2 for dropout2d];
    values [(-0.5, 0.0, 0.2, 0.5, 1.0); i * 0.1 - 0.8 for dropout2d];
    rtol [1e-3]; atol [1e-6].
    """
    run = replay_original_test(**switches)
    if not run.passed and raise_on_failure:
        raise GradientCheckError(run.result, run.message)
    return run.result
