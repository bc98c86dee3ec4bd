"""diagnose judges a check by check_gradient's own rule, noise term included.

Correct float32 normalisation layers miss the plain band |a - n| <= atol + rtol * max(|a|, |n|)
by the rounding of their own arithmetic (the mean subtracted from every output cancels most of
its digits); check_gradient's noise term allows for that, and so must the diagnosis: no
precision finding, and no failure, where check_gradient passes. A wrong backward still fails both.
The layers are written here from scratch, independent of lib.catalogue.
"""

from __future__ import annotations

import numpy as np
import pytest

from lib import check_gradient
from lib.diagnose import diagnose


def _normalisation(axis: int, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5, drop_mean_term=False):
    """(forward, backward) of (x - mean) / sqrt(var + eps) * gamma + beta over `axis`, in x's dtype.

    axis 0 is batch norm (statistics over the batch, one per feature), axis 1 layer norm (one per row).
    drop_mean_term: the backward forgets that the mean depends on x (a bug people write).
    """
    def statistics(x):
        centred = x - np.mean(x, axis=axis, keepdims=True)
        inv_std = 1 / np.sqrt(np.mean(centred * centred, axis=axis, keepdims=True) + x.dtype.type(eps))
        return centred, inv_std

    def forward(x):
        centred, inv_std = statistics(x)
        return centred * inv_std * gamma + beta

    def backward(grad_output, x):
        n = x.shape[axis]
        centred, inv_std = statistics(x)
        normalised = centred * inv_std
        d_normalised = grad_output * gamma
        mean_term = 0 if drop_mean_term else np.sum(d_normalised, axis=axis, keepdims=True)
        variance_term = normalised * np.sum(d_normalised * normalised, axis=axis, keepdims=True)
        return inv_std / n * (n * d_normalised - mean_term - variance_term)

    return forward, backward


def _problem(layer: str, seed: int, *, ones: bool, drop_mean_term=False):
    rng = np.random.default_rng(seed)
    if layer == "batch-norm":  # 8 samples of 5 features, off-centre so that the mean matters
        x, axis = (rng.standard_normal((8, 5)) * 2 + 1).astype(np.float32), 0
    else:  # layer norm: 4 rows of 7 features
        x, axis = (rng.standard_normal((4, 7)) * 1.5).astype(np.float32), 1
    features = x.shape[1]
    gamma, beta = (rng.standard_normal(features).astype(np.float32) for _ in range(2))
    forward, backward = _normalisation(axis, gamma, beta, drop_mean_term=drop_mean_term)
    grad_output = np.ones_like(x) if ones else rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
    return forward, backward, x, grad_output


# Each case misses the plain band (ratio in the comment) and passes check_gradient.
CORRECT = [
    pytest.param("batch-norm", 0, True, id="batch-norm-ones"),  # plain 67.8
    pytest.param("batch-norm", 3, False, id="batch-norm-random"),  # plain 9.0
    pytest.param("layer-norm", 2, True, id="layer-norm-ones"),  # plain 3.0
    pytest.param("layer-norm", 3, False, id="layer-norm-random"),  # plain 5.9
]


@pytest.mark.parametrize(("layer", "seed", "ones"), CORRECT)
def test_correct_normalisation_passes_the_checker_and_the_diagnosis(layer, seed, ones):
    forward, backward, x, g = _problem(layer, seed, ones=ones)
    plain = check_gradient(forward, backward, x, g, strict=True, probes=0, raise_on_failure=False)
    assert not plain.passed and plain.max_error_ratio > 2  # the plain rule alone would cry wolf
    checked = check_gradient(forward, backward, x, g, probes=0, raise_on_failure=False)
    assert checked.passed
    d = diagnose(forward, backward, x, g)
    assert d.passed and d.codes == ["ok"], str(d)
    # The same rule gives the same numbers, element by element.
    np.testing.assert_allclose(d.result.tolerance, checked.tolerance, rtol=1e-12, atol=0)
    assert d.result.max_error_ratio == pytest.approx(checked.max_error_ratio, rel=1e-12)
    # The arithmetic's share is said as information, with the plain rule's ratio.
    evidence = d.primary.evidence
    assert "noise term" in evidence and "a difference the arithmetic explains" in evidence
    assert f"{plain.max_error_ratio:.3g}" in evidence


@pytest.mark.parametrize(("layer", "seed", "ones"), CORRECT)
def test_normalisation_without_the_mean_term_fails_both_and_blames_the_backward(layer, seed, ones):
    forward, backward, x, g = _problem(layer, seed, ones=ones, drop_mean_term=True)
    assert not check_gradient(forward, backward, x, g, probes=0, raise_on_failure=False).passed
    d = diagnose(forward, backward, x, g)
    assert not d.passed and d.primary.code == "wrong-backward", str(d)
    assert "precision" not in d.codes and "inconclusive" not in d.codes
