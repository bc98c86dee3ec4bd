"""Correct gradients: relu with an input 1e-4 from its kink (the default step straddles it), and
a square whose test main() forgets to call."""

from shared.core.extensor import ExTensor, ones_like, from_values
from tests.helpers.gradient_checking import check_gradient


fn relu(x: ExTensor) raises -> ExTensor:
    var out = x
    for i in range(x._numel):
        out._set_float64(i, max(x._get_float64(i), 0.0))
    return out^


fn relu_backward(grad: ExTensor, x: ExTensor) raises -> ExTensor:
    var result = grad
    for i in range(x._numel):
        result._set_float64(i, grad._get_float64(i) if x._get_float64(i) > 0.0 else 0.0)
    return result^


fn test_relu_near_kink_gradient() raises:
    var x = from_values([1e-4, -0.5, 0.3, 2.0], DType.float32)

    fn forward(inp: ExTensor) raises escaping -> ExTensor:
        return relu(inp)

    fn backward(grad: ExTensor, inp: ExTensor) raises escaping -> ExTensor:
        return relu_backward(grad, inp)

    check_gradient(forward, backward, x, ones_like(x), rtol=1e-3, atol=1e-6)


fn test_square_gradient() raises:
    var x = from_values([0.5, -1.5, 3.0], DType.float32)

    fn forward(inp: ExTensor) raises escaping -> ExTensor:
        var out = inp
        for i in range(inp._numel):
            out._set_float64(i, inp._get_float64(i) * inp._get_float64(i))
        return out^

    fn backward(grad: ExTensor, inp: ExTensor) raises escaping -> ExTensor:
        var result = grad
        for i in range(inp._numel):
            result._set_float64(i, 2.0 * inp._get_float64(i) * grad._get_float64(i))
        return result^

    check_gradient(forward, backward, x, ones_like(x))


fn main() raises:
    test_relu_near_kink_gradient()
    print("ok")
