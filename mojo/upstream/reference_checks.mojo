"""Re-implementations of the library's earlier checkers, to measure their worst ratio.

The library's own checker only says pass or fail (and at some commits the first
failing index); `python -m lib upstream` also wants how far from its tolerance each
test is. `reference_check` recomputes it with the same operations in the same order,
switched by the three ways the versions differ. The runner prints the library's own
verdict beside this one and reports any test where they disagree.

* `auto_eps`: epsilon == 0 means 1e-4 for float32 (and atol raised to >= 1e-4),
  1e-7 for float64 (atol >= 1e-7), 1e-5 otherwise. Without it epsilon is used as given.
* `rule_max`: tolerance `atol + rtol * max(|a|, |n|)`; without it `atol + rtol * |n|`.
* `leak`: the perturbed inputs share x's buffer (ExTensor's copy constructor is
  shallow), so x[i] is left at x[i] - eps after element i. Here the leak goes into a
  private copy, which the caller's x never sees.

Common to all: the step divides as 2 * eps (nominal), the losses are
sum_j out_j * grad_output_j in Float64, and the slope is stored in a tensor of x's
dtype before it is compared.
"""

from shared.core.extensor import ExTensor, zeros_like

from .gradient_check_fix import deep_copy, ratio_of


struct ReferenceReport(Copyable, Movable):
    var worst_ratio: Float64
    var worst_index: Int
    var first_failing: Int
    var epsilon: Float64  # the step it used
    var atol: Float64  # the absolute tolerance it used

    fn __init__(out self, epsilon: Float64, atol: Float64):
        self.worst_ratio = 0.0
        self.worst_index = -1
        self.first_failing = -1
        self.epsilon = epsilon
        self.atol = atol


fn auto_step(dtype: DType, epsilon: Float64, atol: Float64) -> Tuple[Float64, Float64]:
    """(eps, atol) after the epsilon == 0 auto-selection."""
    if epsilon != 0.0:
        return (epsilon, atol)
    if dtype == DType.float32:
        return (1e-4, max(atol, 1e-4))
    if dtype == DType.float64:
        return (1e-7, max(atol, 1e-7))
    return (1e-5, atol)


fn loss(output: ExTensor, grad_output: ExTensor) -> Float64:
    var total: Float64 = 0.0
    for j in range(output._numel):
        total += output._get_float64(j) * grad_output._get_float64(j)
    return total


fn reference_check(
    forward_fn: fn (ExTensor) raises escaping -> ExTensor,
    analytical: ExTensor,
    x: ExTensor,
    grad_output: ExTensor,
    epsilon: Float64,
    rtol: Float64,
    atol: Float64,
    auto_eps: Bool,
    rule_max: Bool,
    leak: Bool,
) raises -> ReferenceReport:
    var eps = epsilon
    var used_atol = atol
    if auto_eps:
        var chosen = auto_step(x._dtype, epsilon, atol)
        eps = chosen[0]
        used_atol = chosen[1]
    var report = ReferenceReport(eps, used_atol)
    var work = deep_copy(x)
    var grad = zeros_like(x)
    for i in range(work._numel):
        var old_val = work._get_float64(i)
        var x_plus = work if leak else deep_copy(work)  # `work` itself: shares its buffer
        x_plus._set_float64(i, old_val + eps)
        var loss_plus = loss(forward_fn(x_plus), grad_output)
        var x_minus = work if leak else deep_copy(work)
        x_minus._set_float64(i, old_val - eps)
        var loss_minus = loss(forward_fn(x_minus), grad_output)
        grad._set_float64(i, (loss_plus - loss_minus) / (2.0 * eps))
    for i in range(analytical._numel):
        var a = analytical._get_float64(i)
        var n = grad._get_float64(i)
        var abs_diff = -(a - n) if a - n < 0 else a - n
        var abs_n = n if n >= 0.0 else -n
        var scale = abs_n
        if rule_max:
            var abs_a = a if a >= 0.0 else -a
            scale = abs_a if abs_a > abs_n else abs_n
        var allowed = used_atol + rtol * scale
        var ratio = ratio_of(abs_diff, allowed)
        if report.worst_index < 0 or ratio > report.worst_ratio:
            report.worst_ratio = ratio
            report.worst_index = i
        if abs_diff > allowed and report.first_failing < 0:
            report.first_failing = i
    return report^
