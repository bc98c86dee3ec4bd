"""A real bug: the backward of x -> x**3 returns x**2, forgetting the factor 3."""

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


fn main() raises:
    test_cube_backward_gradient()
