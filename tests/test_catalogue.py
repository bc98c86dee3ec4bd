"""check_gradient on the catalogue of ordinary layers: no false alarm, no miss, in float32 and float64;
the original test as a Problem. (The labelled pairs of lib.catalogue.mutants are tested with the
diagnosis, in tests/test_diagnose.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from lib import catalogue
from lib.catalogue import Problem, original_problem
from lib.diagnose import diagnose
from lib.gradcheck import GradientCheckError, check_gradient
from lib.replica import matches_reported, original_check_gradient, replay_original_test, test_values

DTYPES = ("float32", "float64")
# float64 probes differ from the plain fast mode only for a float32 (or float16) x.
CHECKS = [(dtype, mode) for dtype in DTYPES for mode in ("dense", "fast", "fast64")
          if (dtype, mode) != ("float64", "fast64")]


def _verdicts(dtype, correct: bool, mode="dense", **settings):
    """{(layer, bug, ones): passed} over 10 seeds and both grad_output kinds (False if any seed fails).

    mode "fast64" is fast mode with its probes measured in float64.
    """
    if mode == "fast64":
        mode, settings = "fast", {**settings, "probe_dtype": "float64"}
    out = {}
    for case in catalogue.cases(dtypes=(dtype,)):
        if case.correct == correct:
            result = check_gradient(case.forward, case.backward, case.x, case.grad_output, mode=mode,
                                    raise_on_failure=False, **settings)
            key = (case.layer, case.bug, bool(np.all(case.grad_output == 1)))
            out[key] = out.get(key, True) and result.passed if correct else out.get(key, False) or result.passed
    return out


@pytest.mark.parametrize(("dtype", "mode"), CHECKS)
def test_no_correct_layer_fails(dtype, mode):
    alarms = [key for key, passed in _verdicts(dtype, correct=True, mode=mode).items() if not passed]
    assert alarms == []


@pytest.mark.parametrize(("dtype", "mode"), CHECKS)
def test_every_broken_layer_fails(dtype, mode):
    misses = [key for key, passed in _verdicts(dtype, correct=False, mode=mode).items() if passed]
    assert misses == []


def test_the_plain_rule_without_probes_is_what_the_noise_term_and_probes_fix():
    # the baseline the two additions are measured against: float32 false alarms and all-ones misses
    alarms = [k for k, ok in _verdicts("float32", correct=True, strict=True, probes=0).items() if not ok]
    misses = [k for k, ok in _verdicts("float32", correct=False, strict=True, probes=0).items() if ok]
    assert any(layer == "batch-norm" for layer, _, _ in alarms)
    assert ("max-pool", "ignores-grad-output", True) in misses


def test_a_backward_that_overwrites_grad_output_is_named():
    case = catalogue.build("affine", "float32", 0, "overwrites-grad-output")
    with pytest.raises(GradientCheckError, match=r"Input mutation: backward wrote into grad_output"):
        check_gradient(case.forward, case.backward, case.x, case.grad_output)
    assert np.all(case.grad_output == 1)  # the caller's array is untouched


def test_a_correct_layer_checked_tighter_than_its_arithmetic_passes_unless_strict():
    case = catalogue.build("layer-norm", "float64", 0)
    tight = dict(rtol=1e-12, atol=0.0, raise_on_failure=False)
    result = check_gradient(case.forward, case.backward, case.x, case.grad_output, **tight)
    assert result.passed and result.has_noise
    assert not check_gradient(case.forward, case.backward, case.x, case.grad_output, strict=True, **tight).passed


def test_the_noise_column_and_rule_are_in_the_report():
    case = catalogue.build("tanh", "float32", 1, "derivative-of-sigmoid")
    report = check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False).report()
    assert "+ arithmetic noise)" in report.splitlines()[1]
    assert "noise" in report.splitlines()[5].split()


def test_unknown_layer_or_bug_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="layer must be one of affine"):
        catalogue.build("rnn", "float32", 0)
    with pytest.raises(ValueError, match="bug must be one of ''"):
        catalogue.build("tanh", "float32", 0, "typo")


def test_fast_mode_finds_one_element_off_by_one_among_a_million():
    rng = np.random.default_rng(2024)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    mask = (rng.random(x.shape) > 0.3).astype(np.float32)
    scale = np.float32(1 / 0.7)
    j = int(np.flatnonzero(mask)[333_333])

    def wrong(g, z):
        out = (g * mask * scale).astype(np.float64)
        out[j] += 1.0  # 700 times the element's dense tolerance
        return out

    result = check_gradient(lambda z: z * mask * scale, wrong, x, np.ones_like(x), mode="fast",
                            raise_on_failure=False)
    assert result.failing_indices.tolist() == [j]
    _within_the_search_budget(result, x.size)


def _within_the_search_budget(result, n: int) -> None:
    """The search names the element in at most 2 log2 N forward calls; the rest is fixed: the probes,
    the element measured alone by the dense rule (4 calls with its float64 re-measurement) and, as it
    still fails, its smaller steps: y0 = forward(x) and one halving (both points and x again), at
    which this linear forward's slope has settled away from the wrong value."""
    assert result.search_calls <= 2 * np.log2(n)
    assert result.detail_calls <= 4 + 1 + 3
    assert result.forward_calls <= 2 * np.log2(n) + 8 + 1 + 3


def test_fast_mode_with_float64_probes_finds_one_element_off_by_ten_tolerances_among_a_million():
    rng = np.random.default_rng(2024)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    mask = (rng.random(x.shape) > 0.3).astype(np.float32)
    scale = np.float32(1 / 0.7)
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    j = int(np.flatnonzero(mask)[123_456])
    a_j = float(grad_output[j] * mask[j] * scale)
    error = 10 * (1e-6 + 1e-3 * abs(a_j))  # ten times the element's dense tolerance

    def wrong(g, z):
        out = (g * mask * scale).astype(np.float64)
        out[j] += error
        return out

    forward = lambda z: z * mask * scale  # noqa: E731
    native = check_gradient(forward, wrong, x, grad_output, mode="fast", raise_on_failure=False)
    assert native.passed  # float32 outputs: their rounding hides an error this small among 1e6
    result = check_gradient(forward, wrong, x, grad_output, mode="fast", probe_dtype="float64",
                            raise_on_failure=False)
    assert result.failing_indices.tolist() == [j]
    _within_the_search_budget(result, x.size)
    assert "probes measured in float64" in result.report()
    assert result.error_ratio.ravel()[j] > 5  # judged in float32, by the dense rule
    # and reported with the width it was measured with there, not the probes' float64 one
    assert result.measured_step.ravel()[j] > 1e-3 > 1e-4 > result.step.ravel()[j]
    assert f"{result.measured_step.ravel()[j]:.4e}" in result.report()


def test_format_tallies_has_one_row_per_layer_and_dtype_and_a_total():
    def check(case):
        return check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False).passed

    rows = catalogue.tally(check, dtypes=("float64",), seeds=range(1))
    lines = catalogue.format_tallies({"ours": rows}).splitlines()
    assert lines[0].split() == ["layer", "dtype", "correct", "alarms", "ours", "broken", "found", "ours"]
    assert len(lines) == 2 + len(catalogue.LAYERS) + 1  # header, rule, rows, total
    assert lines[-1].split() == ["all", str(2 * len(rows)), "0", str(8 * len(rows)), str(8 * len(rows))]


# --- the original test as a Problem ---------------------------------------------------------------


def test_a_problem_unpacks_to_the_arguments_of_a_check():
    problem = catalogue.by_name("tanh").build("float64", 0)
    assert isinstance(problem, Problem) and problem.mask is None
    forward, backward, x, g = problem
    assert (forward, backward, x, g) == (problem.forward, problem.backward, problem.x, problem.grad_output)


@pytest.mark.parametrize("kw", [{}, {"seed": 0}, {"dtype": "float64", "p": 0.5, "seed": 7}, {"size": 9}],
                         ids=["original", "seed0", "f64", "size9"])
def test_original_problem_is_the_replicas_pair(kw):
    # The original checker on our pair sees what the replica's own run sees, mask for
    # mask (with seed 0 the shared RNG's call order must match too).
    problem = original_problem(**kw)
    mine = original_check_gradient(*problem, rtol=1e-3, atol=1e-6, eps=1e-5)
    run = replay_original_test(values=test_values(kw.get("size", 5)),
                               **{k: v for k, v in kw.items() if k != "size"})
    np.testing.assert_array_equal(mine.analytical, run.result.analytical)
    np.testing.assert_array_equal(mine.numerical, run.result.numerical)
    np.testing.assert_array_equal(problem.mask, run.backward_mask)
    assert problem.x.dtype == np.dtype(kw.get("dtype", "float32")) and problem.p == kw.get("p", 0.3)
    assert problem.x.size == kw.get("size", 5)
    np.testing.assert_array_equal(problem.grad_output, np.ones_like(problem.x))


def test_diagnosis_of_the_original_names_precision_and_reproduces_the_numbers():
    d = diagnose(*original_problem(), eps=1e-5, divide_by="nominal")
    assert matches_reported(d.result)
    assert d.codes == ["precision"] and "realised step" in d.primary.evidence
    assert diagnose(*original_problem()).codes == ["ok"]


def test_diagnosis_of_the_original_follows_its_parameters():
    assert diagnose(*original_problem(dtype="float64"), eps=1e-5, divide_by="nominal").codes == ["ok"]
    seedless = diagnose(*original_problem(seed=0), eps=1e-5, divide_by="nominal")
    assert seedless.primary.code == "nondeterministic-forward" and not seedless.passed


def test_original_problem_refuses_bad_arguments():
    with pytest.raises(ValueError):
        original_problem(p=1.0)
    with pytest.raises((ValueError, TypeError)):
        original_problem(dtype="int32")
    with pytest.raises(ValueError):
        original_problem(seed=-1)


def test_every_entry_builds_for_every_seed_even_where_x_allows_no_conditioned_gradient():
    # seed 75 draws a layer-norm x for which no grad_output keeps every gradient element above
    # 5 % of the largest; the factory must draw x again instead of giving up
    from lib.catalogue import CATALOGUE

    for seed in (75, 0, 1):
        for entry in CATALOGUE:
            for dtype in entry.dtypes:
                assert entry.build(dtype, seed) is not None
