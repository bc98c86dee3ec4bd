"""Two faulty tests: the backward of x -> x**3 returns x**2, forgetting the factor 3; and a relu
followed by a dropout mask drawn afresh on every forward call (the fault is the test's), with one
input 1e-4 from the kink, so that the smaller steps are reached and must not pass it by chance."""

from random import random_float64, seed

from shared.core.extensor import ExTensor, ones_like, from_values
from tests.helpers.gradient_checking import check_gradient


fn test_cube_backward_gradient() raises:
    var x = from_values([0.5, -1.0, 1.5], DType.float32)

    fn forward(inp: ExTensor) raises escaping -> ExTensor:
        var out = inp
        for i in range(inp._numel):
            var v = inp._get_float64(i)
            out._set_float64(i, v * v * v)
        return out^

    fn backward(grad: ExTensor, inp: ExTensor) raises escaping -> ExTensor:
        var result = grad
        for i in range(inp._numel):
            var v = inp._get_float64(i)
            result._set_float64(i, v * v * grad._get_float64(i))
        return result^

    check_gradient(forward, backward, x, ones_like(x), rtol=1e-3, atol=1e-6)


fn test_fresh_mask_gradient() raises:
    var x = from_values([1e-4, 0.5, 0.25, 0.75], DType.float32)
    seed(7)

    fn forward(inp: ExTensor) raises escaping -> ExTensor:
        var out = inp
        for i in range(inp._numel):
            var keep = 2.0 if random_float64() > 0.5 else 0.0  # p = 0.5, scaled by 1 / (1 - p)
            out._set_float64(i, max(inp._get_float64(i), 0.0) * keep)
        return out^

    fn backward(grad: ExTensor, inp: ExTensor) raises escaping -> ExTensor:
        var result = grad
        for i in range(inp._numel):
            result._set_float64(i, 2.0 * grad._get_float64(i) if inp._get_float64(i) > 0.0 else 0.0)
        return result^

    check_gradient(forward, backward, x, ones_like(x), rtol=1e-3, atol=1e-6)


fn main() raises:
    test_cube_backward_gradient()
