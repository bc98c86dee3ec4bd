"""Dropout and channel dropout (dropout2d), forward and backward, on flat row-major buffers.

Both layers make one keep/drop decision per "unit" and apply it to a run of consecutive
elements: plain dropout decides per element (runs of 1), dropout2d decides per (n, c) channel
of an NCHW tensor (runs of H*W). Writing both as one channel dropout with a `plane` size keeps
the random draws in exactly the order the Mojo layers make them: one random_float64() per
unit, units in row-major order.
"""

from random import seed, random_float64

from arithmetic import ForwardFunction


fn dropout_scale[dtype: DType](p: Float64) -> Scalar[dtype]:
    """Inverted-dropout scale 1/(1-p), computed in Float64 and then rounded to the dtype."""
    return Scalar[dtype](1.0 / (1.0 - p))


fn draw_mask[
    dtype: DType
](size: Int, plane: Int, p: Float64, seed_value: Int) -> List[Scalar[dtype]]:
    """Mask of `size` elements, one decision per `plane` consecutive elements.

    A positive seed_value reseeds the process-wide generator first; 0 (or less) keeps drawing
    from wherever it is. An element is kept when the draw, rounded to the dtype, exceeds p
    rounded to the dtype (the comparison the Mojo layer makes in its own precision).
    """
    if seed_value > 0:
        seed(seed_value)
    var mask = List[Scalar[dtype]](capacity=size)
    for _ in range(size // plane):
        var draw = random_float64()
        var keep = Scalar[dtype](draw) > Scalar[dtype](p)
        var value = Scalar[dtype](1.0) if keep else Scalar[dtype](0.0)
        for _ in range(plane):
            mask.append(value)
    return mask^


fn apply_mask[
    dtype: DType
](values: List[Scalar[dtype]], mask: List[Scalar[dtype]], scale: Scalar[dtype]) -> List[Scalar[dtype]]:
    """(values * mask) * scale element by element, each product rounded to the dtype.

    This is both the forward with a known mask and the backward (values = grad_output).
    """
    var result = List[Scalar[dtype]](capacity=len(values))
    for i in range(len(values)):
        var masked = values[i] * mask[i]
        result.append(masked * scale)
    return result^


@fieldwise_init
struct DropoutOutput[dtype: DType](Copyable, Movable):
    """What a dropout call returns: the output and the (full, broadcast) mask it drew."""

    var out: List[Scalar[dtype]]
    var mask: List[Scalar[dtype]]


fn channel_dropout[
    dtype: DType
](x: List[Scalar[dtype]], plane: Int, p: Float64, seed_value: Int) -> DropoutOutput[dtype]:
    """Dropout with one decision per `plane` elements: plane 1 is dropout, H*W is dropout2d."""
    var mask = draw_mask[dtype](len(x), plane, p, seed_value)
    var out = apply_mask(x, mask, dropout_scale[dtype](p))
    return DropoutOutput[dtype](out^, mask^)


fn dropout_backward[
    dtype: DType
](grad_output: List[Scalar[dtype]], mask: List[Scalar[dtype]], p: Float64) -> List[Scalar[dtype]]:
    """Gradient of dropout: (grad_output * mask) * scale, with the mask the forward drew."""
    return apply_mask(grad_output, mask, dropout_scale[dtype](p))


struct CheckedForward[element: DType](ForwardFunction):
    """The forward function a gradient checker calls on perturbed inputs.

    stochastic: runs dropout again, so it draws a new mask from the process-wide generator
    (the same mask only if seed_value reseeds). Otherwise it reuses the test's own mask and
    draws nothing.
    """

    alias dtype = element

    var stochastic: Bool
    var p: Float64
    var seed_value: Int
    var plane: Int
    var mask: List[Scalar[element]]

    fn __init__(
        out self,
        stochastic: Bool,
        p: Float64,
        seed_value: Int,
        plane: Int,
        mask: List[Scalar[element]],
    ):
        self.stochastic = stochastic
        self.p = p
        self.seed_value = seed_value
        self.plane = plane
        self.mask = mask.copy()

    fn __call__(self, x: List[Scalar[element]]) -> List[Scalar[element]]:
        if self.stochastic:
            return channel_dropout[element](x, self.plane, self.p, self.seed_value).out.copy()
        return apply_mask(x, self.mask, dropout_scale[element](self.p))
