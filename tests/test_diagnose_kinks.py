"""diagnose judges by check_gradient's whole rule: the smaller steps for a kink within the step too.

A correct float32 layer with a kink 1e-4 from the test point misses the default step's band
(relu at 1e-4 is measured as 0.51 against 1); check_gradient measures it again at halving steps
(docs/checking_at_kinks.md) and passes it, and so must the diagnosis, with the same numbers
element by element and no finding that asks for a change. A backward that is wrong near the
kink fails both, and the diagnosis blames the backward. The layers are written here from
scratch, independent of lib.catalogue.
"""

from __future__ import annotations

import numpy as np
import pytest

from lib import check_gradient
from lib.diagnose import diagnose

F32 = np.float32


def _relu(cut=0.0):
    """relu; cut > 0: a backward that also zeroes 0 < x < cut (a threshold typed wrong)."""
    return (lambda x: np.maximum(x, F32(0)),
            lambda g, x: (g * (x > F32(cut))).astype(x.dtype))


def _abs():
    return np.abs, lambda g, x: (g * np.sign(x)).astype(x.dtype)


def _elu():
    """elu(x) = x for x > 0, exp(x) - 1 below: its second derivative jumps at 0."""
    return (lambda x: np.where(x > 0, x, np.expm1(x)).astype(x.dtype),
            lambda g, x: (g * np.where(x > 0, F32(1), np.exp(x))).astype(x.dtype))


def _smooth_l1(beta=0.5):
    """0.5 x^2 / beta for |x| < beta, |x| - beta / 2 beyond: its second derivative jumps at |x| = beta."""
    b = F32(beta)
    return (lambda x: np.where(np.abs(x) < b, F32(0.5) * x * x / b, np.abs(x) - F32(0.5) * b).astype(x.dtype),
            lambda g, x: (g * np.where(np.abs(x) < b, x / b, np.sign(x))).astype(x.dtype))


def _max_pool(split=False):
    """Max over pairs of x; split: a backward that shares the gradient between values within 0.01."""
    def forward(x):
        return x.reshape(-1, 2).max(axis=1)

    def backward(g, x):
        pairs = x.reshape(-1, 2)
        grad = np.zeros_like(pairs)
        grad[np.arange(len(pairs)), np.argmax(pairs, axis=1)] = g
        if split:
            near = np.abs(pairs[:, 0] - pairs[:, 1]) < F32(0.01)
            grad[near] = (g[near] / F32(2))[:, None]
        return grad.reshape(x.shape)

    return forward, backward


def _x(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, 8).astype(F32)
    x[np.abs(x) < 0.05] = F32(0.5)  # no other kink within the step
    if kind == "near-zero":
        x[2] = F32(1e-4)
    elif kind == "zero":
        x[2] = F32(0)
    elif kind == "beta":
        x[2], x[5] = F32(0.5), F32(-0.5)
    elif kind == "near-tie":  # small values, a pair 1e-4 apart at 0.02
        x = rng.uniform(0.03, 0.08, 8).astype(F32)
        x[2], x[3] = F32(0.02 - 1e-4), F32(0.02)
    return x


CORRECT = {
    "relu": (_relu(), "near-zero"),
    "abs": (_abs(), "near-zero"),
    "max-pool-near-tie": (_max_pool(), "near-tie"),
    "elu-at-0": (_elu(), "zero"),
    "smooth-l1-at-beta": (_smooth_l1(), "beta"),
}

BUGS = {
    "relu-zeroes-below-0.01": (_relu(0.01), "near-zero"),
    "max-pool-splits-near-ties": (_max_pool(split=True), "near-tie"),
}


def _problem(pair, kind, ones, seed=0):
    forward, backward = pair
    x = _x(kind, seed)
    y = forward(x)
    g = np.ones_like(y) if ones else np.random.default_rng(seed + 7).uniform(0.5, 2.0, y.shape).astype(F32)
    return forward, backward, x, g


def _same_result(d, c):
    """diagnose's .result is check_gradient(probes=0)'s, element by element."""
    r = d.result
    assert r.passed == c.passed
    np.testing.assert_array_equal(r.failing_indices, c.failing_indices)
    np.testing.assert_array_equal(r.numerical, c.numerical)
    np.testing.assert_array_equal(r.tolerance, c.tolerance)
    np.testing.assert_array_equal(r.step, c.step)
    assert r.smaller_steps == c.smaller_steps
    assert r.forward_calls == c.forward_calls


CASES = [pytest.param(name, ones, id=f"{name}-{'ones' if ones else 'random'}")
         for name in CORRECT for ones in (True, False)]
BUG_CASES = [pytest.param(name, ones, id=f"{name}-{'ones' if ones else 'random'}")
             for name in BUGS for ones in (True, False)]


@pytest.mark.parametrize(("name", "ones"), CASES)
def test_a_correct_layer_with_a_kink_in_the_step_passes_both_with_the_same_numbers(name, ones):
    pair, kind = CORRECT[name]
    problem = _problem(pair, kind, ones)
    plain = check_gradient(*problem, strict=True, probes=0, raise_on_failure=False)
    assert not plain.passed  # the default step alone fails it
    checked = check_gradient(*problem, probes=0, raise_on_failure=False)
    assert checked.passed and checked.smaller_steps
    d = diagnose(*problem)
    assert d.passed and d.codes == ["ok"], str(d)
    _same_result(d, checked)
    # Said as information: which elements needed smaller steps, and nothing to change.
    assert "passed at smaller steps" in d.primary.evidence and d.primary.suggestion == "nothing to fix"
    assert all(t.user <= 1 and t.random <= 1 for t in d.trials)


@pytest.mark.parametrize(("name", "ones"), BUG_CASES)
def test_a_backward_wrong_near_the_kink_fails_both_and_is_blamed(name, ones):
    pair, kind = BUGS[name]
    problem = _problem(pair, kind, ones)
    checked = check_gradient(*problem, probes=0, raise_on_failure=False)
    assert not checked.passed
    assert {s.verdict for s in checked.smaller_steps} == {"converged elsewhere"}
    d = diagnose(*problem)
    assert not d.passed and d.primary.code == "wrong-backward", str(d)
    assert "precision" not in d.codes and "inconclusive" not in d.codes
    _same_result(d, checked)


def test_relu_backward_with_a_wrong_threshold_is_named_as_one():
    d = diagnose(*_problem(BUGS["relu-zeroes-below-0.01"][0], "near-zero", ones=False))
    assert "x > t" in d.primary.evidence and "x = 0.0001" in d.primary.evidence, str(d)
    assert "branch condition" in d.primary.suggestion


def test_a_kink_at_the_point_itself_passes_as_a_subgradient_and_is_said_so():
    forward, backward, x, g = _problem(_relu(), "zero", ones=True)
    checked = check_gradient(forward, backward, x, g, probes=0, raise_on_failure=False)
    d = diagnose(forward, backward, x, g)
    assert checked.passed and d.passed and d.codes == ["ok"], str(d)
    _same_result(d, checked)
    assert [s.verdict for s in d.result.smaller_steps] == ["subgradient"]
    assert "sits on a kink" in d.primary.evidence and "a subgradient" in d.primary.evidence


def test_relu_near_its_kink_costs_what_check_gradient_spends():
    forward, backward, x, g = _problem(_relu(), "near-zero", ones=True)
    d = diagnose(forward, backward, x, g)
    (step,) = d.result.smaller_steps
    assert step.verdict == "converged" and step.k == 7
    # 3 calls at x, the dense pass, 2 in float64 at the same points, 3 per halving, nothing else.
    assert d.forward_calls == 3 + 2 * x.size + 2 + 3 * step.k == 42


def _counted(forward):
    """forward, and a list whose length is the number of calls made of it."""
    made = []

    def counted(x):
        made.append(1)
        return forward(x)

    return counted, made


@pytest.mark.parametrize("keeps_float32", [False, True], ids=["computes-in-float64", "keeps-float32"])
def test_a_near_tie_taken_to_float64_costs_what_check_gradient_spends(keeps_float32):
    # A max-pool near-tie 1e-4 apart at 0.3 (docs/checking_at_kinks.md): float32's rounding bound leaves it
    # undecided after a few halvings, and check_gradient halves it again from h0 / 2 in float64. Both the
    # float32 halvings and the float64 ones are forward calls, and so is forward(x) in float64, asked for
    # also when the forward turns out to keep float32 (the element then stays undecided).
    forward, backward = _max_pool()
    if keeps_float32:
        forward = (lambda pool: lambda x: pool(x.astype(F32)))(forward)
    x = np.array([0.3 + 1e-4, 0.3, 0.7, -0.2], dtype=F32)
    g = np.ones(2, dtype=F32)
    counted, made = _counted(forward)
    checked = check_gradient(counted, backward, x, g, probes=0, raise_on_failure=False)
    assert checked.forward_calls == len(made)
    steps = checked.smaller_steps
    if keeps_float32:
        assert {(s.verdict, s.in_float64, s.halvings_before_float64) for s in steps} == {("rounding", False, 0)}
    else:
        assert checked.passed and all(s.in_float64 and s.halvings_before_float64 > 0 for s in steps)
        assert all(s.halvings == s.k + s.halvings_before_float64 for s in steps)
    d = diagnose(forward, backward, x, g)
    assert d.result.smaller_steps == steps
    assert d.result.forward_calls == len(made)


@pytest.mark.parametrize("eps", [1e-6, 3e-6])
def test_strict_is_the_plain_rule_and_a_rounding_failure_is_precision(eps):
    x = np.random.default_rng(1).uniform(-1.5, 1.5, 12).astype(F32)
    problem = (np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones_like(x))
    plain = check_gradient(*problem, eps=eps, strict=True, probes=0, raise_on_failure=False)
    assert not plain.passed and check_gradient(*problem, eps=eps, probes=0, raise_on_failure=False).passed
    d = diagnose(*problem, eps=eps, strict=True)
    assert not d.passed and d.codes == ["precision"], str(d)
    assert d.settings["strict"] is True
    np.testing.assert_array_equal(d.result.tolerance, plain.tolerance)
    np.testing.assert_array_equal(d.result.noise, np.zeros(x.shape))
    assert d.result.smaller_steps == () and d.result.forward_calls == plain.forward_calls
    assert diagnose(*problem, eps=eps).codes == ["ok"]  # the default rule's noise term explains it


def test_strict_must_be_a_boolean():
    with pytest.raises(TypeError, match="strict"):
        diagnose(np.tanh, lambda g, v: g, np.ones(2, F32), np.ones(2, F32), strict="yes")
