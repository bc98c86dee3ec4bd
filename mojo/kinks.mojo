"""Stage 2 of the fixed checker: an element that fails is measured again at halving steps.

docs/checking_at_kinks.md is the specification; lib/replica/kinks.py is the same code in Python
(its docstring lists the choices the specification leaves open, made the same way here).
"""

from math import isfinite, isnan

from arithmetic import (
    ForwardFunction,
    band,
    rounded_product,
    rounding_bound,
    unit_roundoff,
    with_element,
)

#: The most halvings an element is measured at.
alias K_MAX = 30
#: A kink's one-sided gap keeps at least this share of the previous step's (a smooth gap halves).
alias GAP_KEPT: Float64 = 0.75


@fieldwise_init
struct Measurement(Copyable, Movable):
    """One halving step of one element; width 0 means the step was below the dtype's spacing."""

    var numerical: Float64
    var noise: Float64
    var width: Float64
    var plus: Float64
    var minus: Float64
    var plus_noise: Float64
    var minus_noise: Float64


fn no_measurement() -> Measurement:
    return Measurement(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@fieldwise_init
struct Decision(Copyable, Movable):
    """How stage 2 decided an element; `last` is its last measurement when `measured`."""

    var passed: Bool
    var halvings: Int
    var step: Float64
    var subgradient: Bool
    var measured: Bool
    var last: Measurement
    var repeated: Bool


fn measure[
    F: ForwardFunction
](
    forward: F,
    x: List[Scalar[F.dtype]],
    grad: List[Scalar[F.dtype]],
    y0: List[Scalar[F.dtype]],
    index: Int,
    old: Float64,
    h: Float64,
) -> Measurement:
    """Both one-sided differences at x_i +- h, each output differenced in Float64 before the sum."""
    var p_plus = Scalar[F.dtype](old + h)
    var p_minus = Scalar[F.dtype](old - h)
    var w_plus = Float64(p_plus) - old
    var w_minus = old - Float64(p_minus)
    if w_plus == 0.0 or w_minus == 0.0:
        return no_measurement()
    var y_plus = forward(with_element(x, index, p_plus))
    var y_minus = forward(with_element(x, index, p_minus))
    var d_plus: Float64 = 0.0
    var d_minus: Float64 = 0.0
    for j in range(len(y0)):
        var g = Float64(grad[j])
        d_plus += rounded_product(Float64(y_plus[j]) - Float64(y0[j]), g)
        d_minus += rounded_product(Float64(y0[j]) - Float64(y_minus[j]), g)
    var u = unit_roundoff[F.dtype]()
    var r_plus = rounding_bound(grad, y_plus, y0, u)
    var r_minus = rounding_bound(grad, y0, y_minus, u)
    var width = w_plus + w_minus
    return Measurement(
        (d_plus + d_minus) / width,
        (r_plus + r_minus) / width,
        width,
        d_plus / w_plus,
        d_minus / w_minus,
        r_plus / w_plus,
        r_minus / w_minus,
    )


fn repeats[dtype: DType](again: List[Scalar[dtype]], first: List[Scalar[dtype]]) -> Bool:
    """Whether a second forward(x) gave the first one's outputs: equal, or NaN where the first was NaN.
    """
    if len(again) != len(first):
        return False
    for j in range(len(first)):
        var p = Float64(again[j])
        var q = Float64(first[j])
        if not (p == q or (isnan(p) and isnan(q))):
            return False
    return True


fn sides_settled(now: Measurement, before: Measurement, rtol: Float64, atol: Float64) -> Bool:
    """Each one-sided slope within its own band and noises of its value at the previous step."""
    var plus = (
        abs(now.plus - before.plus)
        <= band(now.plus, before.plus, rtol, atol) + now.plus_noise + before.plus_noise
    )
    var minus = (
        abs(now.minus - before.minus)
        <= band(now.minus, before.minus, rtol, atol) + now.minus_noise + before.minus_noise
    )
    return plus and minus


fn remeasure[
    F: ForwardFunction
](
    forward: F,
    x: List[Scalar[F.dtype]],
    grad: List[Scalar[F.dtype]],
    y0: List[Scalar[F.dtype]],
    index: Int,
    a: Float64,
    n0: Float64,
    v0: Float64,
    h0: Float64,
    rtol: Float64,
    atol: Float64,
) -> Decision:
    """Stage 2 for element `index`; n0, v0, h0 are the default step's slope, noise and step."""
    var previous_n = n0
    var previous_v = v0
    var h = h0
    var old = Float64(x[index])
    var before = no_measurement()
    var have_before = False
    var kinks_throughout = True
    var last = Decision(False, 0, 0.0, False, False, no_measurement(), True)
    for k in range(1, K_MAX + 1):
        h = h * 0.5
        var now = measure(forward, x, grad, y0, index, old, h)
        if now.width == 0.0:
            return last^  # the step is below the dtype's spacing
        if not repeats(forward(x.copy()), y0):
            # forward(x) changed between two calls: agreement at these steps may be chance
            return Decision(False, k, h, False, True, now^, False)
        last = Decision(False, k, h, False, True, now.copy(), True)
        if now.noise > band(a, now.numerical, rtol, atol):
            return last^  # rounding exceeds the tolerance: smaller steps only add rounding
        var settled = (
            abs(now.numerical - previous_n)
            <= band(now.numerical, previous_n, rtol, atol) + now.noise + previous_v
        )
        var side_band = band(now.plus, now.minus, rtol, atol) + now.plus_noise + now.minus_noise
        var gap = abs(now.plus - now.minus)
        var kink = gap > side_band
        if (
            settled
            and isfinite(now.numerical)
            and abs(a - now.numerical) <= band(a, now.numerical, rtol, atol) + now.noise
        ):
            return Decision(True, k, h, False, True, now^, True)
        if settled and not kink:
            return last^  # converged elsewhere: smooth here, and its slope is not a
        kinks_throughout = kinks_throughout and kink
        if (
            kinks_throughout
            and have_before
            and sides_settled(now, before, rtol, atol)
            and gap >= rounded_product(GAP_KEPT, abs(before.plus - before.minus))
        ):
            var inside = (
                min(now.plus, now.minus) - side_band <= a
                and a <= max(now.plus, now.minus) + side_band
                and isfinite(now.plus)
                and isfinite(now.minus)
            )
            return Decision(inside, k, h, True, True, now^, True)
        previous_n = now.numerical
        previous_v = now.noise
        before = now^
        have_before = True
    return last^
