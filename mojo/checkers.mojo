"""The two finite-difference gradient checkers compared by the workbook.

original_check replays the checker that reported the failure, with switches for the suspected
causes (which step it divides by, whether it writes into the caller's x). fixed_check is the
repaired one: a scale-aware step, private copies, and the numerical slope kept in Float64.
"""

from math import cbrt

from dropout import CheckedForward


@no_inline
fn rounded_product(a: Float64, b: Float64) -> Float64:
    """a * b rounded to Float64 on its own.

    Mojo contracts `c + a * b` into one fused multiply-add, even across statements, which
    changes the last bit of e.g. atol + rtol * |numerical|. numpy, on the replica's side, rounds
    every product; so that both sides do the same operations, products that feed a sum go
    through this non-inlined function. (In the two tests grad_output is all ones, so the loss
    products are exact either way; only the tolerance's last bit could differ, never a verdict.)
    """
    return a * b


struct CheckResult(Copyable, Movable):
    """Per-element results, all as Float64, and the first failing index (-1 if none)."""

    var analytical: List[Float64]
    var numerical: List[Float64]
    var step: List[Float64]
    var tolerance: List[Float64]
    var first_failing: Int

    fn __init__(out self):
        self.analytical = List[Float64]()
        self.numerical = List[Float64]()
        self.step = List[Float64]()
        self.tolerance = List[Float64]()
        self.first_failing = -1

    fn record(mut self, analytical: Float64, numerical: Float64, step: Float64, tolerance: Float64):
        """Append one element; the first element whose mismatch exceeds its tolerance fails."""
        if self.first_failing < 0 and abs(analytical - numerical) > tolerance:
            self.first_failing = len(self.analytical)
        self.analytical.append(analytical)
        self.numerical.append(numerical)
        self.step.append(step)
        self.tolerance.append(tolerance)


fn weighted_sum[
    dtype: DType
](out_values: List[Scalar[dtype]], grad_output: List[Scalar[dtype]]) -> Float64:
    """Loss sum(out * grad_output), accumulated in Float64 in index order."""
    var total: Float64 = 0.0
    for j in range(len(out_values)):
        total += rounded_product(Float64(out_values[j]), Float64(grad_output[j]))
    return total


fn with_element[
    dtype: DType
](x: List[Scalar[dtype]], index: Int, value: Scalar[dtype]) -> List[Scalar[dtype]]:
    """A private copy of x with one element replaced."""
    var copy = x.copy()
    copy[index] = value
    return copy^


fn original_check[
    dtype: DType
](
    mut x: List[Scalar[dtype]],
    forward: CheckedForward[dtype],
    grad_output: List[Scalar[dtype]],
    analytical: List[Scalar[dtype]],
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
        var plus_value = Scalar[dtype](old + eps)
        var loss_plus = weighted_sum(
            _perturbed_forward(x, forward, i, plus_value, restore_input), grad_output
        )
        var minus_value = Scalar[dtype](old - eps)
        var loss_minus = weighted_sum(
            _perturbed_forward(x, forward, i, minus_value, restore_input), grad_output
        )
        var width = Float64(plus_value) - Float64(minus_value) if divide_by_realised else 2.0 * eps
        var numerical = Float64(Scalar[dtype]((loss_plus - loss_minus) / width))
        result.record(
            Float64(analytical[i]), numerical, width, atol + rounded_product(rtol, abs(numerical))
        )
    return result^


fn _perturbed_forward[
    dtype: DType
](
    mut x: List[Scalar[dtype]],
    forward: CheckedForward[dtype],
    index: Int,
    value: Scalar[dtype],
    restore_input: Bool,
) -> List[Scalar[dtype]]:
    """Run forward with x[index] = value, on a private copy or on the caller's own buffer."""
    if restore_input:
        return forward(with_element(x, index, value))
    x[index] = value
    return forward(x)


fn machine_epsilon[dtype: DType]() -> Float64:
    """2**-23 for float32, 2**-52 for float64, as a Float64."""

    @parameter
    if dtype == DType.float32:
        return Float64(2.0) ** -23
    return Float64(2.0) ** -52


fn fixed_check[
    dtype: DType
](
    x: List[Scalar[dtype]],
    forward: CheckedForward[dtype],
    grad_output: List[Scalar[dtype]],
    analytical: List[Scalar[dtype]],
    rtol: Float64,
    atol: Float64,
    divide_by_realised: Bool,
) -> CheckResult:
    """The repaired checker: step cbrt(machine eps) * max(1, |x_i|), caller's x untouched.

    math.cbrt gives numpy.cbrt's values bit for bit (0.004921566601151848 for 2**-23 and
    6.0554544523933395e-06 for 2**-52). The outputs are differenced element by element before
    summing, the slope stays in Float64, and the tolerance scales with the larger magnitude.
    """
    var result = CheckResult()
    var base_step = cbrt(machine_epsilon[dtype]())
    for i in range(len(x)):
        var xi = Float64(x[i])
        var h = rounded_product(base_step, max(1.0, abs(xi)))
        var plus_value = Scalar[dtype](xi + h)
        var minus_value = Scalar[dtype](xi - h)
        var out_plus = forward(with_element(x, i, plus_value))
        var out_minus = forward(with_element(x, i, minus_value))
        var difference: Float64 = 0.0
        for j in range(len(x)):
            difference += rounded_product(
                Float64(out_plus[j]) - Float64(out_minus[j]), Float64(grad_output[j])
            )
        var width = Float64(plus_value) - Float64(minus_value) if divide_by_realised else 2.0 * h
        var numerical = difference / width
        var a = Float64(analytical[i])
        result.record(
            a, numerical, width, atol + rounded_product(rtol, max(abs(a), abs(numerical)))
        )
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
