"""A checker in the original library's place and shape, written for this fixture.

Central differences with a fixed step, divided by the nominal 2 * epsilon, the slope
stored in x's dtype, judged by |a - n| <= atol + rtol * |n| element by element.
"""

from shared.core.extensor import ExTensor, zeros_like


fn assert_gradients_close(
    analytical: ExTensor, numerical: ExTensor, rtol: Float64 = 1e-3, atol: Float64 = 1e-6,
    message: String = "Gradients do not match"
) raises:
    for i in range(analytical._numel):
        var a = analytical._get_float64(i)
        var n = numerical._get_float64(i)
        if abs(a - n) > atol + rtol * abs(n):
            raise Error(message + ": gradient mismatch at index " + String(i))


fn check_gradient(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    backward_fn: fn (ExTensor, ExTensor) raises escaping -> ExTensor,
    x: ExTensor,
    grad_output: ExTensor,
    epsilon: Float64 = 1e-5,
    rtol: Float64 = 1e-3,
    atol: Float64 = 1e-6,
) raises:
    var analytical = backward_fn(grad_output, x)
    var numerical = zeros_like(x)
    for i in range(x._numel):
        var up = x
        up._set_float64(i, x._get_float64(i) + epsilon)
        var down = x
        down._set_float64(i, x._get_float64(i) - epsilon)
        var out_up = forward_fn(up)
        var out_down = forward_fn(down)
        var total: Float64 = 0.0
        for j in range(out_up._numel):
            total += (out_up._get_float64(j) - out_down._get_float64(j)) * grad_output._get_float64(j)
        numerical._set_float64(i, total / (2.0 * epsilon))
    assert_gradients_close(analytical, numerical, rtol, atol, "Gradient check failed for " + String(x._dtype))
