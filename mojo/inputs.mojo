"""The inputs of the two failing tests, built without touching the random generator."""


@fieldwise_init
struct TestInput[dtype: DType](Copyable, Movable):
    """One test's input tensor, flattened row-major, and its dropout settings."""

    var name: String
    var x: List[Scalar[dtype]]
    var plane: Int  # elements sharing one keep/drop decision: 1 (dropout) or H*W (dropout2d)
    var p: Float64


fn dropout_input[dtype: DType](p: Float64) -> TestInput[dtype]:
    """The dropout test: x of shape (5,) = [-0.5, 0.0, 0.2, 0.5, 1.0]."""
    var x = List[Scalar[dtype]](
        Scalar[dtype](-0.5),
        Scalar[dtype](0.0),
        Scalar[dtype](0.2),
        Scalar[dtype](0.5),
        Scalar[dtype](1.0),
    )
    return TestInput[dtype]("dropout", x^, 1, p)


fn dropout2d_input[dtype: DType](p: Float64) -> TestInput[dtype]:
    """The dropout2d test: shape (1, 2, 4, 4), x[i] = i * 0.1 - 0.8 in the dtype.

    Mojo compiles `Scalar[dtype](i) * 0.1 - 0.8` to a fused multiply-add (one rounding), which
    is what the test actually saw (float32 x[24] = 1.600000023841858, not the 1.6000001430511475
    of two roundings). The fma is written out so the values do not depend on that optimisation.
    """
    var channels = 2
    var plane = 4 * 4
    var x = List[Scalar[dtype]](capacity=channels * plane)
    for i in range(channels * plane):
        x.append(Scalar[dtype](i).fma(Scalar[dtype](0.1), Scalar[dtype](-0.8)))
    return TestInput[dtype]("dropout2d", x^, plane, p)
