"""What both checkers share: the forward's interface, and Float64 arithmetic the replica can repeat.

lib/replica/kinks.py computes the same quantities with Python floats in the same order; every
product that feeds a sum goes through rounded_product so that Mojo cannot fuse it.
"""

from math import cbrt

#: Output roundings allowed per output (docs/checking_at_kinks.md: NOISE_FACTOR).
alias NOISE_FACTOR: Float64 = 4.0


trait ForwardFunction(Copyable, Movable):
    """A function of a flat input of one dtype, called by the checkers on perturbed copies."""

    alias dtype: DType

    fn __call__(self, x: List[Scalar[Self.dtype]]) -> List[Scalar[Self.dtype]]:
        ...


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


fn machine_epsilon[dtype: DType]() -> Float64:
    """2**-23 for float32, 2**-52 for float64, as a Float64."""

    @parameter
    if dtype == DType.float32:
        return Float64(2.0) ** -23
    return Float64(2.0) ** -52


fn unit_roundoff[dtype: DType]() -> Float64:
    """Half the machine epsilon: 2**-24 for float32, 2**-53 for float64."""
    return machine_epsilon[dtype]() / 2.0


fn default_step[dtype: DType](xi: Float64) -> Float64:
    """h0 = cbrt(machine eps) * max(1, |x_i|).

    math.cbrt gives numpy.cbrt's values bit for bit (0.004921566601151848 for 2**-23 and
    6.0554544523933395e-06 for 2**-52).
    """
    return rounded_product(cbrt(machine_epsilon[dtype]()), max(1.0, abs(xi)))


fn band(p: Float64, q: Float64, rtol: Float64, atol: Float64) -> Float64:
    """T(p, q) = atol + rtol * max(|p|, |q|) (max ignores a NaN, as the replica's `larger` does)."""
    return atol + rounded_product(rtol, max(abs(p), abs(q)))


fn rounding_bound[
    dtype: DType
](
    grad: List[Scalar[dtype]],
    first: List[Scalar[dtype]],
    second: List[Scalar[dtype]],
    u: Float64,
) -> Float64:
    """NOISE_FACTOR * u * sum |g_j| (|first_j| + |second_j|) over the outputs that differ."""
    var total: Float64 = 0.0
    for j in range(len(first)):
        var p = Float64(first[j])
        var q = Float64(second[j])
        if p != q:
            total += rounded_product(abs(Float64(grad[j])), abs(p) + abs(q))
    return rounded_product(NOISE_FACTOR * u, total)


fn with_element[
    dtype: DType
](x: List[Scalar[dtype]], index: Int, value: Scalar[dtype]) -> List[Scalar[dtype]]:
    """A private copy of x with one element replaced."""
    var copy = x.copy()
    copy[index] = value
    return copy^
