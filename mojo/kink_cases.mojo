"""Small functions with kinks and exact zeros, checked by fixed_check (docs/checking_at_kinks.md).

lib/replica/kink_cases.py defines the same cases; each case is printed with every number the
checker recorded, so stage 1's noise term and stage 2's halving steps are compared bit for bit.
"""

from arithmetic import ForwardFunction
from cases import add_fixed_fields, to_float64
from checkers import fixed_check
from json_out import JsonObject


struct Relu[element: DType](ForwardFunction):
    """y = max(x, 0) element by element."""

    alias dtype = element

    fn __init__(out self):
        pass

    fn __call__(self, x: List[Scalar[element]]) -> List[Scalar[element]]:
        var y = List[Scalar[element]](capacity=len(x))
        for v in x:
            y.append(max(v, Scalar[element](0)))
        return y^


struct Centre[element: DType](ForwardFunction):
    """y = x - mean(x), the mean summed left to right and divided in the dtype.

    With grad_output all ones every gradient is exactly 0; the numerical side sees only rounding.
    """

    alias dtype = element

    fn __init__(out self):
        pass

    fn __call__(self, x: List[Scalar[element]]) -> List[Scalar[element]]:
        var total = Scalar[element](0)
        for v in x:
            total += v
        var mean = total / Scalar[element](len(x))
        var y = List[Scalar[element]](capacity=len(x))
        for v in x:
            y.append(v - mean)
        return y^


fn relu_input() -> List[Float32]:
    """1e-4 (inside the default step of a kink), exactly 0 (on it), and two smooth points."""
    return List[Float32](Float32(1e-4), Float32(0.0), Float32(-0.3), Float32(0.7))


fn relu_backward(x: List[Float32], threshold: Float32, inclusive: Bool) -> List[Float32]:
    """grad_output (ones) where x > threshold (x >= threshold when inclusive), else 0."""
    var a = List[Float32](capacity=len(x))
    for v in x:
        var on = v >= threshold if inclusive else v > threshold
        a.append(Float32(1.0) if on else Float32(0.0))
    return a^


fn kink_case[
    F: ForwardFunction
](name: String, x: List[Scalar[F.dtype]], forward: F, analytical: List[Scalar[F.dtype]]) -> String:
    var ones = List[Scalar[F.dtype]](length=len(x), fill=Scalar[F.dtype](1.0))
    var result = fixed_check(x, forward, ones, analytical, 1e-3, 1e-6, True)
    var fields = JsonObject()
    fields.string("name", name)
    fields.string("dtype", String(F.dtype))
    fields.floats("x", to_float64(x))
    fields.floats("analytical", result.analytical)
    fields.floats("numerical", result.numerical)
    fields.floats("step", result.step)
    fields.floats("tolerance", result.tolerance)
    add_fixed_fields(fields, result)
    fields.int_or_null("first_failing_index", result.first_failing)
    return fields.finish()


fn all_kink_cases() -> List[String]:
    """relu with a correct backward; relu with one that zeroes 0 < x < 0.01; x - mean(x)."""
    var cases = List[String]()
    var x = relu_input()
    cases.append(kink_case("relu", x, Relu[DType.float32](), relu_backward(x, 0.0, False)))
    cases.append(
        kink_case("relu_zeroing_small", x, Relu[DType.float32](), relu_backward(x, 0.01, True))
    )
    var centred = List[Float32](
        Float32(1.5), Float32(-2.25), Float32(3.1), Float32(0.45), Float32(-0.8)
    )
    var zeros = List[Float32](length=len(centred), fill=Float32(0.0))
    cases.append(kink_case("centre", centred, Centre[DType.float32](), zeros))
    return cases^
