"""A finite-difference gradient check that does not fail correct gradients at float32.

Drop-in replacement for `check_gradient(forward_fn, backward_fn, x, grad_output,
epsilon, rtol, atol)`: same arguments, same error's first line
("Gradient check failed for float32: gradient mismatch at index N"), and it only
needs the ExTensor accessors every version of the library has (`_numel`, `_dtype`,
`shape()`, `_get_float64`, `_set_float64`).

What it does differently from the checker it replaces (docs/checking_at_kinks.md):

* The step scales with the dtype and the element: `h0 = cbrt(eps_dtype) * max(1, |x_i|)`
  (4.9e-3 for float32 at |x| <= 1), not a fixed 1e-5 that float32 cannot resolve.
* Every forward call gets its own deep copy of x (ExTensor's copy constructor shares
  the buffer, so `var x_plus = x` writes into the caller's x).
* The slope divides by the step actually realised in x's dtype, `fl(x+h) - fl(x-h)`,
  differences the outputs element by element in Float64 and keeps the result in Float64.
* The rule is `|a - n| <= atol + rtol * max(|a|, |n|) + noise`, where `noise` bounds
  what the rounding of the outputs can do to the slope (stage 1). A gradient that is
  exactly or almost zero is measured as pure rounding; this term passes it.
* An element that still fails is measured again at halving steps (stage 2) and is
  blamed only if they settle on a value other than the analytical one, or if it sits
  on a kink and the analytical value is not between the one-sided slopes. Each step
  also calls forward at x again: a forward that does not repeat itself (a fresh
  dropout mask per call) fails the element and ends stage 2.

`measure_gradient` returns every number (worst ratio, re-measured elements and their
steps, extra forward calls); `check_gradient` raises on a failure.
"""

from math import cbrt, isnan

from utils.numerics import inf, nan

from shared.core.extensor import ExTensor

alias NOISE_FACTOR: Float64 = 4.0
"""Each moved output was rounded at least once by up to u * |y|; 4 covers a few roundings."""
alias MAX_HALVINGS: Int = 30
"""Stage 2 tries h0 / 2, h0 / 4, ... h0 / 2**30 at most."""


@fieldwise_init
struct Remeasured(Copyable, Movable):
    """One element that failed at the default step and was measured again.

    verdict: "converged" (passed, the slopes settled on the analytical value),
    "subgradient" (passed, on a kink, analytical between the one-sided slopes),
    "elsewhere" (failed, settled on another value), "kink" (failed, on a kink
    and outside the one-sided slopes), "undecided" (failed: rounding exceeded the
    tolerance, the step fell below the dtype's spacing, or the steps ran out),
    "changed" (failed: forward(x) gave other outputs on a second call).
    """

    var index: Int
    var verdict: String
    var step: Float64  # the step that decided it (the last one tried if undecided)
    var first_ratio: Float64  # error / tolerance at the default step
    var ratio: Float64  # error / tolerance at the deciding step
    var slope_plus: Float64
    var slope_minus: Float64


struct GradientReport(Copyable, Movable):
    """Everything one check measured."""

    var worst_ratio: Float64  # max over elements of error / tolerance (<= 1 passes)
    var worst_index: Int
    var first_failing: Int  # -1 when every element passed
    var remeasured: List[Remeasured]
    var extra_forward_calls: Int  # beyond the two per element of the default step

    fn __init__(out self):
        self.worst_ratio = 0.0
        self.worst_index = -1
        self.first_failing = -1
        self.remeasured = List[Remeasured]()
        self.extra_forward_calls = 0

    fn record(mut self, index: Int, ratio: Float64):
        if self.worst_index < 0 or ratio > self.worst_ratio:
            self.worst_ratio = ratio
            self.worst_index = index
        if ratio > 1.0 and self.first_failing < 0:
            self.first_failing = index


fn unit_roundoff(dtype: DType) -> Float64:
    """Half the machine epsilon: the largest relative rounding error of one operation."""
    if dtype == DType.float16:
        return Float64(2.0) ** -11
    if dtype == DType.bfloat16:
        return Float64(2.0) ** -8
    if dtype == DType.float64:
        return Float64(2.0) ** -53
    return Float64(2.0) ** -24


@no_inline
fn product(a: Float64, b: Float64) -> Float64:
    """a * b rounded on its own (Mojo would otherwise fuse `c + a * b` into one FMA)."""
    return a * b


fn tolerance(p: Float64, q: Float64, rtol: Float64, atol: Float64) -> Float64:
    """T(p, q) = atol + rtol * max(|p|, |q|)."""
    return atol + product(rtol, max(abs(p), abs(q)))


fn ratio_of(error: Float64, allowed: Float64) -> Float64:
    """error / allowed, with 0 / 0 = 0 and e / 0 = inf."""
    if allowed > 0.0:
        return error / allowed
    return 0.0 if error == 0.0 else inf[DType.float64]()


fn deep_copy(x: ExTensor) raises -> ExTensor:
    """A tensor with its own buffer (ExTensor's copy constructor shares the data)."""
    var copy = ExTensor(x.shape(), x._dtype)
    for i in range(x._numel):
        copy._set_float64(i, x._get_float64(i))
    return copy^


@fieldwise_init
struct Evaluation(Copyable, Movable):
    """The forward's outputs at one point, and the realised value of the moved element."""

    var point: Float64
    var outputs: List[Float64]
    var unit: Float64  # unit roundoff of the outputs' dtype


fn evaluate(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    x: ExTensor,
    index: Int,
    value: Float64,
) raises -> Evaluation:
    """forward on a private copy of x with x[index] = value rounded to x's dtype.

    The outputs are read at once, so a forward that returns (a view of) its input
    cannot see them change.
    """
    var moved = deep_copy(x)
    if index >= 0:
        moved._set_float64(index, value)
    var point = moved._get_float64(index) if index >= 0 else 0.0
    var out = forward_fn(moved)
    var values = List[Float64](capacity=out._numel)
    for j in range(out._numel):
        values.append(out._get_float64(j))
    return Evaluation(point, values^, unit_roundoff(out._dtype))


@fieldwise_init
struct Difference(Copyable, Movable):
    """sum_j g_j (hi_j - lo_j), each difference taken in Float64, and its rounding bound."""

    var value: Float64
    var rounding: Float64


fn difference(hi: Evaluation, lo: Evaluation, grad_output: ExTensor) raises -> Difference:
    if len(hi.outputs) != len(lo.outputs) or len(hi.outputs) != grad_output._numel:
        raise Error(
            "check_gradient: forward returned "
            + String(len(hi.outputs))
            + " outputs but grad_output has "
            + String(grad_output._numel)
            + " elements"
        )
    var total: Float64 = 0.0
    var bound: Float64 = 0.0
    for j in range(len(hi.outputs)):
        var g = grad_output._get_float64(j)
        total += product(g, hi.outputs[j] - lo.outputs[j])
        if hi.outputs[j] != lo.outputs[j]:  # an output that did not move adds no rounding
            bound += product(abs(g), abs(hi.outputs[j]) + abs(lo.outputs[j]))
    var unit = max(hi.unit, lo.unit)
    return Difference(total, product(NOISE_FACTOR * unit, bound))


fn default_step(x: ExTensor, xi: Float64) -> Float64:
    """h0 = cbrt(machine epsilon of x's dtype) * max(1, |x_i|)."""
    return product(cbrt(2.0 * unit_roundoff(x._dtype)), max(1.0, abs(xi)))


@fieldwise_init
struct Sides(Copyable, Movable):
    """One halving step of stage 2: the central and one-sided slopes and their noises."""

    var central: Float64
    var central_noise: Float64
    var plus: Float64
    var plus_noise: Float64
    var minus: Float64
    var minus_noise: Float64

    fn gap(self) -> Float64:
        return abs(self.plus - self.minus)

    fn sides_disagree(self, rtol: Float64, atol: Float64) -> Bool:
        """A kink inside this step: the one-sided slopes differ beyond tolerance and noise."""
        var allowed = tolerance(self.plus, self.minus, rtol, atol) + self.plus_noise + self.minus_noise
        return self.gap() > allowed


fn agree(p: Float64, p_noise: Float64, q: Float64, q_noise: Float64, rtol: Float64, atol: Float64) -> Bool:
    """|p - q| <= T(p, q) + both noises: two measurements of the same slope agree."""
    return abs(p - q) <= tolerance(p, q, rtol, atol) + p_noise + q_noise


fn subgradient_ratio(a: Float64, sides: Sides, rtol: Float64, atol: Float64) -> Float64:
    """How far a lies outside [min(s+, s-), max(s+, s-)], over T(s+, s-) + the one-sided noises."""
    var low = min(sides.plus, sides.minus)
    var high = max(sides.plus, sides.minus)
    var outside = max(max(low - a, a - high), 0.0)
    return ratio_of(outside, tolerance(sides.plus, sides.minus, rtol, atol) + sides.plus_noise + sides.minus_noise)


fn same_outputs(again: Evaluation, first: Evaluation) -> Bool:
    """Whether a second forward(x) gave the first one's outputs (a NaN matching a NaN)."""
    if len(again.outputs) != len(first.outputs):
        return False
    for j in range(len(first.outputs)):
        var p = again.outputs[j]
        var q = first.outputs[j]
        if not (p == q or (isnan(p) and isnan(q))):
            return False
    return True


fn remeasure(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    x: ExTensor,
    grad_output: ExTensor,
    y0: Evaluation,
    index: Int,
    a: Float64,
    h0: Float64,
    first: Sides,
    first_ratio: Float64,
    rtol: Float64,
    atol: Float64,
    mut calls: Int,
) raises -> Remeasured:
    """Stage 2 for one element: halve the step until the slopes decide (see the module docstring)."""
    var xi = x._get_float64(index)
    var previous = first.copy()  # n_0, v_0; its one-sided slopes are not known (nan never agrees)
    var kink_every_step = True
    var h = h0
    for _ in range(MAX_HALVINGS):
        h = h / 2.0
        var up = evaluate(forward_fn, x, index, xi + h)
        var down = evaluate(forward_fn, x, index, xi - h)
        calls += 2
        var w_plus = up.point - xi
        var w_minus = xi - down.point
        if w_plus == 0.0 or w_minus == 0.0:  # below the dtype's spacing
            break
        # Only a forward that repeats itself is trusted: one that draws anew on every call
        # (a dropout mask) would, over many steps, now and then agree with itself by chance.
        var at_x = evaluate(forward_fn, x, -1, 0.0)
        calls += 1
        if not same_outputs(at_x, y0):
            return Remeasured(index, "changed", h, first_ratio, first_ratio, nan[DType.float64](), nan[DType.float64]())
        var d_plus = difference(up, y0, grad_output)
        var d_minus = difference(y0, down, grad_output)
        var width = w_plus + w_minus
        var now = Sides(
            (d_plus.value + d_minus.value) / width,
            (d_plus.rounding + d_minus.rounding) / width,
            d_plus.value / w_plus,
            d_plus.rounding / w_plus,
            d_minus.value / w_minus,
            d_minus.rounding / w_minus,
        )
        var band = tolerance(a, now.central, rtol, atol) + now.central_noise
        if now.central_noise > tolerance(a, now.central, rtol, atol):  # smaller steps only add rounding
            break
        var settled = agree(now.central, now.central_noise, previous.central, previous.central_noise, rtol, atol)
        var kink_here = now.sides_disagree(rtol, atol)
        kink_every_step = kink_every_step and kink_here
        var ratio = ratio_of(abs(a - now.central), band)
        if settled and ratio <= 1.0:
            return Remeasured(index, "converged", h, first_ratio, ratio, now.plus, now.minus)
        if settled and not kink_here:
            return Remeasured(index, "elsewhere", h, first_ratio, ratio, now.plus, now.minus)
        var sides_settled = agree(now.plus, now.plus_noise, previous.plus, previous.plus_noise, rtol, atol) and agree(
            now.minus, now.minus_noise, previous.minus, previous.minus_noise, rtol, atol
        )
        if kink_every_step and sides_settled and now.gap() >= 0.75 * previous.gap():
            var kink_ratio = subgradient_ratio(a, now, rtol, atol)
            var verdict = "subgradient" if kink_ratio <= 1.0 else "kink"
            return Remeasured(index, verdict, h, first_ratio, kink_ratio, now.plus, now.minus)
        previous = now.copy()
    return Remeasured(index, "undecided", h, first_ratio, first_ratio, previous.plus, previous.minus)


fn measure_gradient(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    analytical: ExTensor,
    x: ExTensor,
    grad_output: ExTensor,
    rtol: Float64,
    atol: Float64,
) raises -> GradientReport:
    """Judge every element of `analytical` against finite differences of forward at x.

    Leaves x untouched. Two forward calls per element; an element that fails at the
    default step costs three more per halving (both points and x again), plus one call at x
    itself per check.
    """
    if analytical._numel != x._numel:
        raise Error("check_gradient: the backward returned " + String(analytical._numel)
                    + " elements for an input of " + String(x._numel))
    var report = GradientReport()
    var y0 = Evaluation(0.0, List[Float64](), 0.0)
    var have_y0 = False
    var repeats = True  # False once forward(x) changed between two calls: no more smaller steps
    for i in range(x._numel):
        var xi = x._get_float64(i)
        var a = analytical._get_float64(i)
        var h0 = default_step(x, xi)
        var up = evaluate(forward_fn, x, i, xi + h0)
        var down = evaluate(forward_fn, x, i, xi - h0)
        var width = up.point - down.point
        var d = difference(up, down, grad_output)
        var n = d.value / width if width > 0.0 else 0.0
        var noise = d.rounding / width if width > 0.0 else 0.0
        var ratio = ratio_of(abs(a - n), tolerance(a, n, rtol, atol) + noise)
        if ratio > 1.0 and width > 0.0 and repeats:
            if not have_y0:
                y0 = evaluate(forward_fn, x, -1, 0.0)
                have_y0 = True
                report.extra_forward_calls += 1
            var calls = 0
            var unknown = nan[DType.float64]()  # the default step has no one-sided slopes
            var first = Sides(n, noise, unknown, 0.0, unknown, 0.0)
            var again = remeasure(forward_fn, x, grad_output, y0, i, a, h0, first, ratio, rtol, atol, calls)
            report.extra_forward_calls += calls
            ratio = again.ratio
            repeats = again.verdict != "changed"
            report.remeasured.append(again^)
        report.record(i, ratio)
    return report^


fn failure_message(x: ExTensor, analytical: ExTensor, report: GradientReport) raises -> String:
    """Upstream's first line, then the numbers that explain it."""
    var i = report.first_failing
    var message = (
        "Gradient check failed for " + String(x._dtype) + ": gradient mismatch at index " + String(i)
    )
    message += "\n  Analytical: " + String(analytical._get_float64(i))
    message += "\n  Error / tolerance (worst element " + String(report.worst_index) + "): "
    message += String(report.worst_ratio)
    for k in range(len(report.remeasured)):
        ref element = report.remeasured[k]
        if element.index == i:
            message += "\n  Re-measured at smaller steps: " + element.verdict + " at step " + String(element.step)
            message += " (one-sided slopes " + String(element.slope_plus) + ", " + String(element.slope_minus) + ")"
    return message


fn check_gradient(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    backward_fn: fn (ExTensor, ExTensor) raises escaping -> ExTensor,
    x: ExTensor,
    grad_output: ExTensor,
    epsilon: Float64 = 0.0,
    rtol: Float64 = 1e-3,
    atol: Float64 = 1e-6,
) raises:
    """Raise if backward_fn(grad_output, x) is not the gradient of sum(forward_fn(x) * grad_output).

    `epsilon` is accepted so that existing calls compile unchanged; it is not used: the
    step is chosen per element from x's dtype (see the module docstring).
    """
    _ = epsilon
    var analytical = backward_fn(grad_output, x)
    var report = measure_gradient(forward_fn, analytical, x, grad_output, rtol, atol)
    if report.first_failing >= 0:
        raise Error(failure_message(x, analytical, report))
