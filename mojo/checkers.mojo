"""The two finite-difference gradient checkers compared by the workbook.

original_check replays the checker that reported the failure, with switches for the suspected
causes (which step it divides by, whether it writes into the caller's x). fixed_check is the
repaired one: a scale-aware step, private copies, the numerical slope kept in Float64, a pass
band widened by the outputs' rounding, and a re-measurement at halving steps of every element
that still fails (docs/checking_at_kinks.md).
"""

from math import isfinite

from arithmetic import (
    ForwardFunction,
    band,
    default_step,
    rounded_product,
    rounding_bound,
    unit_roundoff,
    with_element,
)
from kinks import Decision, remeasure


struct CheckResult(Copyable, Movable):
    """Per-element results, all as Float64, each element's verdict, and the first failing index.

    The fixed checker also fills noise (the rounding allowance inside the tolerance) and, for
    an element decided at halving steps, k, the step h0 / 2**k, whether the kink-at-the-point
    rule decided it, and the one-sided slopes there; numerical, step, noise and tolerance then
    describe that last measurement.
    """

    var analytical: List[Float64]
    var numerical: List[Float64]
    var step: List[Float64]
    var tolerance: List[Float64]
    var noise: List[Float64]
    var passed: List[Bool]
    var halvings: List[Int]
    var decided_step: List[Float64]
    var subgradient: List[Bool]
    var slope_plus: List[Float64]
    var slope_minus: List[Float64]
    var forward_calls: Int
    var first_failing: Int

    fn __init__(out self):
        self.analytical = List[Float64]()
        self.numerical = List[Float64]()
        self.step = List[Float64]()
        self.tolerance = List[Float64]()
        self.noise = List[Float64]()
        self.passed = List[Bool]()
        self.halvings = List[Int]()
        self.decided_step = List[Float64]()
        self.subgradient = List[Bool]()
        self.slope_plus = List[Float64]()
        self.slope_minus = List[Float64]()
        self.forward_calls = 0
        self.first_failing = -1

    fn record(
        mut self,
        analytical: Float64,
        numerical: Float64,
        step: Float64,
        tolerance: Float64,
        noise: Float64 = 0.0,
    ):
        """Append one element measured at the default step; it passes when both values are
        finite and |a - n| <= tolerance (a NaN or an infinity never passes)."""
        var passes = (
            isfinite(analytical)
            and isfinite(numerical)
            and abs(analytical - numerical) <= tolerance
        )
        if self.first_failing < 0 and not passes:
            self.first_failing = len(self.analytical)
        self.analytical.append(analytical)
        self.numerical.append(numerical)
        self.step.append(step)
        self.tolerance.append(tolerance)
        self.noise.append(noise)
        self.passed.append(passes)
        self.halvings.append(0)
        self.decided_step.append(0.0)
        self.subgradient.append(False)
        self.slope_plus.append(0.0)
        self.slope_minus.append(0.0)

    fn settle(mut self, i: Int, decision: Decision, rtol: Float64, atol: Float64):
        """Stage 2's verdict for element i, and its last measurement where it made one."""
        self.passed[i] = decision.passed
        self.subgradient[i] = decision.subgradient
        self.forward_calls += 3 * decision.halvings  # both points and y0's repeat
        if not decision.measured:
            return
        var last = decision.last.copy()
        self.halvings[i] = decision.halvings
        self.decided_step[i] = decision.step
        self.slope_plus[i] = last.plus
        self.slope_minus[i] = last.minus
        self.numerical[i] = last.numerical
        self.step[i] = last.width
        self.noise[i] = last.noise
        self.tolerance[i] = band(self.analytical[i], last.numerical, rtol, atol) + last.noise

    fn refresh_first_failing(mut self):
        self.first_failing = -1
        for i in range(len(self.passed)):
            if not self.passed[i]:
                self.first_failing = i
                return


fn weighted_sum[
    dtype: DType
](out_values: List[Scalar[dtype]], grad_output: List[Scalar[dtype]]) -> Float64:
    """Loss sum(out * grad_output), accumulated in Float64 in index order."""
    var total: Float64 = 0.0
    for j in range(len(out_values)):
        total += rounded_product(Float64(out_values[j]), Float64(grad_output[j]))
    return total


fn original_check[
    F: ForwardFunction
](
    mut x: List[Scalar[F.dtype]],
    forward: F,
    grad_output: List[Scalar[F.dtype]],
    analytical: List[Scalar[F.dtype]],
    eps: Float64,
    rtol: Float64,
    atol: Float64,
    divide_by_realised: Bool,
    restore_input: Bool,
) -> CheckResult:
    """The failure-era checker: central differences with a fixed eps.

    With restore_input False it writes x[i] + eps and then x[i] - eps into the caller's x and
    never puts the old value back, so x is left shifted down by eps. The slope is stored in the
    dtype before it is compared, and the tolerance scales with the numerical value only.
    """
    var result = CheckResult()
    for i in range(len(x)):
        var old = Float64(x[i])
        var plus_value = Scalar[F.dtype](old + eps)
        var loss_plus = weighted_sum(
            _perturbed_forward(x, forward, i, plus_value, restore_input), grad_output
        )
        var minus_value = Scalar[F.dtype](old - eps)
        var loss_minus = weighted_sum(
            _perturbed_forward(x, forward, i, minus_value, restore_input), grad_output
        )
        var width = Float64(plus_value) - Float64(minus_value) if divide_by_realised else 2.0 * eps
        var numerical = Float64(Scalar[F.dtype]((loss_plus - loss_minus) / width))
        result.record(
            Float64(analytical[i]), numerical, width, atol + rounded_product(rtol, abs(numerical))
        )
    result.forward_calls = 2 * len(x)
    return result^


fn _perturbed_forward[
    F: ForwardFunction
](
    mut x: List[Scalar[F.dtype]],
    forward: F,
    index: Int,
    value: Scalar[F.dtype],
    restore_input: Bool,
) -> List[Scalar[F.dtype]]:
    """Run forward with x[index] = value, on a private copy or on the caller's own buffer."""
    if restore_input:
        return forward(with_element(x, index, value))
    x[index] = value
    return forward(x)


fn fixed_check[
    F: ForwardFunction
](
    x: List[Scalar[F.dtype]],
    forward: F,
    grad_output: List[Scalar[F.dtype]],
    analytical: List[Scalar[F.dtype]],
    rtol: Float64,
    atol: Float64,
    divide_by_realised: Bool,
) -> CheckResult:
    """The repaired checker (docs/checking_at_kinks.md), caller's x untouched.

    Stage 1: every element at the default step cbrt(machine eps) * max(1, |x_i|), the outputs
    differenced element by element before summing, the slope kept in Float64, and the pass
    rule |a - n| <= atol + rtol * max(|a|, |n|) + noise, the noise bounding the outputs'
    rounding. Stage 2: if an element with a finite analytical value failed, y0 = forward(x)
    once, then each such element, in index order, at halving steps (kinks.mojo), each step with
    forward(x) once more: a forward that does not repeat y0 fails that element and ends stage 2. With
    divide_by_realised False, stage 1 divides slope and noise by 2 * h0; stage 2 always uses
    the realised widths.
    """
    var result = CheckResult()
    var u = unit_roundoff[F.dtype]()
    var half = List[Float64](capacity=len(x))
    for i in range(len(x)):
        var xi = Float64(x[i])
        var h = default_step[F.dtype](xi)
        half.append(h)
        var plus_value = Scalar[F.dtype](xi + h)
        var minus_value = Scalar[F.dtype](xi - h)
        var out_plus = forward(with_element(x, i, plus_value))
        var out_minus = forward(with_element(x, i, minus_value))
        var difference: Float64 = 0.0
        for j in range(len(out_plus)):
            difference += rounded_product(
                Float64(out_plus[j]) - Float64(out_minus[j]), Float64(grad_output[j])
            )
        var width = Float64(plus_value) - Float64(minus_value) if divide_by_realised else 2.0 * h
        var numerical = difference / width
        var noise = rounding_bound(grad_output, out_plus, out_minus, u) / width
        var a = Float64(analytical[i])
        result.record(a, numerical, width, band(a, numerical, rtol, atol) + noise, noise)
    result.forward_calls = 2 * len(x)
    var again = List[Int]()
    for i in range(len(x)):
        if not result.passed[i] and isfinite(result.analytical[i]):
            again.append(i)
    if len(again) == 0:
        return result^
    var y0 = forward(x.copy())
    result.forward_calls += 1
    for i in again:
        var decision = remeasure(
            forward,
            x,
            grad_output,
            y0,
            i,
            result.analytical[i],
            result.numerical[i],
            result.noise[i],
            half[i],
            rtol,
            atol,
        )
        result.settle(i, decision, rtol, atol)
        if not decision.repeated:
            break  # a forward that does not repeat itself: no later element enters stage 2
    result.refresh_first_failing()
    return result^


fn failure_message[dtype: DType](first_failing: Int) -> String:
    """The checker's error text, or an empty string when every element passed."""
    if first_failing < 0:
        return ""
    return (
        "Gradient check failed for "
        + String(dtype)
        + ": gradient mismatch at index "
        + String(first_failing)
    )
