"""Meta-tests of the diagnosis: every labelled mutant is attributed to its code,
every correct pair comes out `ok`, and the attribution also holds on pairs that
are not in the catalogue (so it reasons from evidence, not from names)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lib import GradientCheckError, catalogue, check_gradient
from lib.diagnose import CODES, HYPOTHESES, Diagnosis, Finding, diagnose
from lib.diagnose.determinism import calls_needed
from lib.dropout import dropout, dropout_backward

SEEDS = (0, 1)

MUTANT_CASES = [pytest.param(e, dtype, id=f"{e.name}-{dtype}") for e in catalogue.MUTANTS for dtype in e.dtypes]
CORRECT_CASES = [pytest.param(e, dtype, id=f"{e.name}-{dtype}")
                 for e in catalogue.CORRECT for dtype in ("float32", "float64")]


# --------------------------------------------------------------------------
# The catalogue: detection and attribution
# --------------------------------------------------------------------------


def _checker_passes(entry, dtype, seed) -> bool | None:
    """check_gradient's verdict on the entry's problem with grad_output alone (None: the nominal divide,
    which check_gradient does not offer)."""
    check = dict(entry.check)
    if check.pop("divide_by", "realised") != "realised":
        return None
    problem = entry.build(dtype, seed)
    return check_gradient(*problem, raise_on_failure=False, probes=0, **check).passed


@pytest.mark.parametrize(("entry", "dtype"), MUTANT_CASES)
def test_every_mutant_is_attributed_to_its_code(entry, dtype):
    for seed in SEEDS:
        d = entry.diagnose(dtype, seed)
        checker = _checker_passes(entry, dtype, seed)
        # diagnose judges by check_gradient's rule, noise term included (check_gradient also fails a
        # backward that writes into grad_output; diagnose's plain result counts writes into x only).
        if checker is not None and entry.code != "input-mutation":
            assert d.passed == checker, f"{entry.name} seed {seed}:\n{d}"
        # A precision entry that check_gradient passes (the arithmetic explains the whole
        # difference) has nothing left to explain: ok, with the noise term as information.
        expected = "ok" if entry.code == "precision" and checker else entry.code
        assert d.primary.code == expected, f"{entry.name} seed {seed}:\n{d}"
        # Detected: either the plain check fails, or the diagnosis flags a check that
        # passed for the wrong reason (a backward that mishandles grad_output,
        # a backward that writes into grad_output).
        assert not d.passed or expected in ("ok", "wrong-backward", "input-mutation")


@pytest.mark.parametrize(("entry", "dtype"), CORRECT_CASES)
def test_every_correct_pair_yields_only_ok(entry, dtype):
    for seed in SEEDS:
        d = entry.diagnose(dtype, seed)
        assert d.passed and d.codes == ["ok"], f"{entry.name} seed {seed}:\n{d}"


def test_catalogue_covers_every_code_with_several_mechanisms():
    assert len(catalogue.MUTANTS) >= 12
    for code in CODES[1:]:
        entries = [e for e in catalogue.MUTANTS if e.code == code]
        assert len(entries) >= 3, code
        assert len({e.description for e in entries}) == len(entries)
    names = [e.name for e in catalogue.CATALOGUE]
    assert len(names) == len(set(names))
    assert all("\n" not in e.description and e.description for e in catalogue.CATALOGUE)
    assert {e.code for e in catalogue.CORRECT} == {"ok"}
    correct = " ".join(e.name for e in catalogue.CORRECT)
    for function in ("dropout", "dropout2d", "tanh", "sigmoid", "softmax", "log-sum-exp", "layer-norm", "matmul"):
        assert function in correct


@pytest.mark.parametrize("entry", [e for e in catalogue.MUTANTS if e.code == "precision"], ids=lambda e: e.name)
def test_precision_entries_hold_correct_gradients(entry):
    # The label says the formula is right: at the default settings in float64 the pair is fine.
    problem = entry.build("float64", seed=0)
    assert diagnose(*problem).codes == ["ok"]


def test_build_is_reproducible_and_seed_dependent():
    entry = catalogue.by_name("other-seed-mask")
    a, b, c = entry.build("float32", 3), entry.build("float32", 3), entry.build("float32", 4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.backward(a.grad_output, a.x), b.backward(b.grad_output, b.x))
    assert not np.array_equal(a.x, c.x)
    assert a.x.dtype == np.float32 and entry.build("float64", 3).x.dtype == np.float64


def test_confusion_matrix_of_a_subset_is_diagonal():
    subset = [catalogue.by_name(n) for n in ("inverted-mask", "sign-flip", "tanh", "seed-zero-forward")]
    outcomes = catalogue.evaluate(subset, seeds=(0,))
    counts = catalogue.confusion(outcomes)
    assert counts.sum() == len(outcomes) == 8  # four entries, two dtypes each
    assert np.trace(counts) == counts.sum()
    assert counts.shape == (len(CODES), len(CODES)) and counts[0, 0] == 2  # row and column 0 are "ok": tanh


# --------------------------------------------------------------------------
# Attribution on pairs that are not in the catalogue
# --------------------------------------------------------------------------


def _x(n=30, dtype=np.float32, seed=5):
    return np.random.default_rng(seed).uniform(-2, 2, n).astype(dtype)


@pytest.mark.parametrize(("forward", "backward", "code", "words"), [
    (lambda x: np.maximum(x, 0), lambda g, x: g * (x < 0), "mask-mismatch", "inverted"),
    (np.exp, lambda g, x: 2 * g * np.exp(x), "wrong-backward", "factor 2"),
    (np.sin, lambda g, x: -g * np.cos(x), "wrong-backward", "flips the sign"),
    (lambda x: x.reshape(10, 3).mean(1), lambda g, x: np.repeat(g, 3), "wrong-backward", "a/n = 3"),
    (np.sin, lambda g, x: g * np.cos(x) + 1e-2, "wrong-backward", "not linear"),
    (np.cumsum, lambda g, x: np.cumsum(g), "wrong-backward", "no constant ratio"),
    (np.cumsum, lambda g, x: np.cumsum(g[::-1])[::-1], "ok", ""),
], ids=["relu-inverted", "exp-doubled", "sin-negated", "mean-pool-as-sum", "affine-in-g", "cumsum", "cumsum-ok"])
def test_attribution_on_unseen_pairs(forward, backward, code, words):
    x = _x()
    g = np.random.default_rng(1).standard_normal(np.shape(forward(x))).astype(np.float32)
    d = diagnose(forward, backward, x, g)
    assert d.primary.code == code, str(d)
    assert words in d.primary.evidence


def test_scalar_output_and_float64_rounding_budget():
    x = _x(dtype=np.float64)
    d = diagnose(lambda v: np.sum(v * v), lambda g, v: v * g, x, np.ones(()))
    assert d.primary.code == "wrong-backward" and "0.5" in d.primary.evidence
    # At rtol=1e-13 check_gradient's noise term (the outputs' rounding, ~1e-9 relative here)
    # passes the correct backward; one off by 1e-8 fails it, yet agrees far within what
    # float64 central differences resolve: the tolerance, not the gradient, is named.
    d = diagnose(lambda v: np.sum(v * v), lambda g, v: 2 * v * g, x, np.ones(()), rtol=1e-13, atol=0.0)
    assert d.passed and d.codes == ["ok"] and "noise term" in d.primary.evidence
    d = diagnose(lambda v: np.sum(v * v), lambda g, v: 2 * v * g * (1 + 1e-8), x, np.ones(()), rtol=1e-13,
                 atol=0.0)
    assert not d.passed and d.codes == ["precision"]


# --------------------------------------------------------------------------
# Precision only within its budget; jumps inside the step
# --------------------------------------------------------------------------

_H32 = float(np.finfo(np.float32).eps) ** (1 / 3)  # the dtype-aware float32 step at |x| <= 1


def _threshold_pair(c):
    """x + (x > c): slope 1 everywhere but at c, where it jumps by 1."""
    return lambda v: v + (v > v.dtype.type(c)).astype(v.dtype), lambda g, v: g


def _located_jump(evidence):
    low, high = re.search(r"between x = (\S+) and (\S+?),", evidence).groups()
    return float(low), float(high)


# check_gradient's default rule measures an element that fails at the default step again at
# halving steps, which step past a jump or kink near x (tests/test_diagnose_kinks.py); the plain
# rule (strict=True) does not, and these tests show what diagnose says about the failure it leaves.


def test_jump_inside_the_float32_step_is_not_called_precision():
    # float64's smaller step does not reach the jump at 0.001 and passes; that is no
    # reason to call a mismatch 4e4 times float32's budget rounding.
    forward, backward = _threshold_pair(0.001)
    x = np.array([0.0, 0.5, -1.2, 1.7], np.float32)
    d = diagnose(forward, backward, x, np.ones(4, np.float32), strict=True)
    assert not d.passed and d.codes == ["wrong-backward"], str(d)
    evidence = d.primary.evidence
    assert "so it is not rounding" in evidence and "does not reach the jump" in evidence
    assert "jumps within the step" in evidence and "flat index 0" in evidence
    low, high = _located_jump(evidence)
    assert low < 0.001 < high and high - low < 2 * _H32 / 1000
    assert "do not loosen rtol" in d.primary.suggestion
    assert all("loosen rtol to" not in f.suggestion for f in d.findings)
    assert [t.setting.split(",")[0] for t in d.trials] == ["float32", "float64"]
    assert d.trials[1].user <= 1.0  # the float64 check does pass
    # One dense check per dtype, at most 14 calls locating the jump, and the calls at x that make
    # sure the forward is deterministic before a blame: 45 for its 3 nonzero outputs.
    assert d.forward_calls <= 2 * 2 * x.size + 2 + 14 + calls_needed(3)
    assert calls_needed(3) == 45
    # By the default rule, the smaller steps step past the jump: the slope at 0 is 1, as the backward says.
    default = diagnose(forward, backward, x, np.ones(4, np.float32))
    assert default.passed and default.codes == ["ok"] and "smaller steps" in default.primary.evidence


@pytest.mark.parametrize("fraction", [-0.9, -0.4, 0.05, 0.3, 0.6, 0.95])
def test_a_jump_anywhere_in_the_step_is_found(fraction):
    # Also beyond half the step, where halving the step alone would miss it.
    c = fraction * _H32
    forward, backward = _threshold_pair(c)
    x = np.array([0.0, 0.7, -1.3], np.float32)
    d = diagnose(forward, backward, x, np.ones(3, np.float32), strict=True)
    assert d.codes == ["wrong-backward"], str(d)
    low, high = _located_jump(d.primary.evidence)
    assert low <= c <= high


@pytest.mark.parametrize("where", [0.001, 0.002, 0.004, -0.003])
def test_a_kink_inside_the_step_is_truncation_not_a_jump(where):
    # ReLU's slope changes at 0, within float32's step of x: by the plain rule, no jump, so
    # precision, but not rounding, and not "loosen rtol".
    x = np.array([where, 0.7, -1.3], np.float32)
    relu, relu_backward = (lambda v: np.maximum(v, 0)), (lambda g, v: g * (v > 0))
    d = diagnose(relu, relu_backward, x, np.ones(3, np.float32), strict=True)
    assert d.codes == ["precision"], str(d)
    assert "so it is not rounding" in d.primary.evidence and "truncation" in d.primary.evidence
    assert "no jump" in d.primary.evidence
    assert "do not loosen rtol" in d.primary.suggestion and "loosen rtol to" not in d.primary.suggestion
    assert "strict=False" in d.primary.suggestion  # the default rule's smaller steps measure the kink
    # The default rule passes it, as check_gradient does: nothing to change.
    default = diagnose(relu, relu_backward, x, np.ones(3, np.float32))
    assert default.passed and default.codes == ["ok"], str(default)


def test_precision_hypothesis_agrees_with_truncation_evidence():
    # A kink inside float32's step, by the plain rule: far above the rounding budget, so the
    # evidence says truncation; the fixed hypothesis text must not claim rounding within budget.
    x = np.array([1e-4, -0.5, 0.3], np.float32)
    d = diagnose(np.abs, lambda g, v: g * np.sign(v), x, np.ones(3, np.float32), strict=True)
    assert d.codes == ["precision"], str(d)
    hypothesis, evidence = d.primary.hypothesis, d.primary.evidence
    assert hypothesis == HYPOTHESES["precision"]
    assert "rounding or truncation" in hypothesis and "not a wrong gradient" in hypothesis
    assert "within the budget" not in hypothesis and "is rounding" not in hypothesis
    multiple = re.search(r"is (\S+) times the finite-difference budget", evidence)
    assert multiple and float(multiple.group(1)) > 1e3, evidence
    assert "so it is not rounding" in evidence and "truncation error" in evidence
    assert str(d).count(hypothesis) == 1  # the report prints the text that names both causes


def _tanh_pair(eps, strict=False):
    x = np.array([0.5, -0.7, 1.2], np.float32)
    return diagnose(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones(3, np.float32), eps=eps,
                    strict=strict)


def test_a_coarse_step_is_called_truncation_and_a_fine_one_passes_by_the_checkers_rule():
    coarse, fine = _tanh_pair(0.1, strict=True), _tanh_pair(1e-6)
    assert coarse.codes == ["precision"], str(coarse)
    assert "truncation error" in coarse.primary.evidence and "rounding noise" not in coarse.primary.evidence
    # By the default rule the smaller steps converge from eps=0.1 to tanh's slope: nothing to explain.
    assert _tanh_pair(0.1).codes == ["ok"]
    # The fine step's rounding is what check_gradient's noise term allows for: no failure to explain.
    assert fine.passed and fine.codes == ["ok"], str(fine)
    assert "noise term" in fine.primary.evidence and "a difference the arithmetic explains" in fine.primary.evidence


_PRECISION_CASES = {
    **{f"{e.name}-{dtype}": (lambda e=e, dtype=dtype: e.diagnose(dtype, 0))
       for e in catalogue.MUTANTS if e.code == "precision" for dtype in e.dtypes},
    "kink-in-step": lambda: diagnose(np.abs, lambda g, v: g * np.sign(v), np.array([1e-4, -0.5, 0.3], np.float32),
                                     np.ones(3, np.float32), strict=True),
    "coarse-step": lambda: _tanh_pair(0.1, strict=True),
}


@pytest.mark.parametrize("case", sorted(_PRECISION_CASES))
def test_every_precision_evidence_names_rounding_or_truncation(case):
    d = _PRECISION_CASES[case]()
    finding = d.primary
    if d.passed and finding.code == "ok":  # check_gradient's noise term explains it all: information only
        assert "noise term" in finding.evidence
        return
    assert finding.code == "precision" and finding.hypothesis == HYPOTHESES["precision"]
    evidence = finding.evidence
    # The realised-step case names the rounding itself: x+eps and x-eps stored closer or farther apart.
    assert any(cause in evidence for cause in ("rounding", "truncation", "stores x+eps and x-eps")), evidence
    if "not rounding" in evidence:
        assert "truncation" in evidence.split("not rounding", 1)[1], evidence


@pytest.mark.parametrize("entry", [e for e in catalogue.MUTANTS if e.code == "precision"], ids=lambda e: e.name)
def test_precision_entries_are_within_their_budget(entry):
    for seed in SEEDS:
        d = entry.diagnose(entry.dtypes[0], seed)
        if _checker_passes(entry, entry.dtypes[0], seed):
            assert d.passed and d.codes == ["ok"] and "noise term" in d.primary.evidence
            continue
        assert d.codes == ["precision"]
        assert "not rounding" not in d.primary.evidence
        budget = re.search(r"the mismatch is (\S+) times \w+'s finite-difference budget", d.primary.evidence)
        if "with the default step" in d.primary.evidence or "the same check in float64" in d.primary.evidence:
            assert budget and float(budget.group(1)) <= 2.0, d.primary.evidence
        else:  # resolved by the realised step, or by float64's fixed budget
            assert budget is None


def test_zero_backward_at_a_jump_reports_the_jump_not_grad_output():
    # np.round's slope is 0 almost everywhere, and a zero backward is legitimately
    # independent of grad_output; what fails is the jump at 0.5.
    # By the plain rule: the default rule's smaller steps stop at float32's spacing, where a jump
    # at x looks like a kink, and pass a zero backward there as a subgradient, as check_gradient does.
    x = np.array([0.2, 0.5, 2.3], np.float32)
    d = diagnose(np.round, lambda g, v: np.zeros_like(g), x, np.ones(3, np.float32), strict=True)
    assert not d.passed and d.codes == ["wrong-backward"], str(d)
    assert "ignores grad_output" not in d.primary.evidence
    assert "multiply by grad_output" not in d.primary.suggestion
    assert "jumps within the step" in d.primary.evidence and "flat index 1" in d.primary.evidence
    low, high = _located_jump(d.primary.evidence)
    assert low <= 0.5 <= high


@pytest.mark.parametrize("forward", [np.sin, np.cumsum, lambda v: dropout(v, 0.3, seed=3)[0]],
                         ids=["sin", "cumsum", "dropout"])
def test_zero_backward_of_a_continuous_forward_is_named_as_zeros(forward):
    x = _x()
    d = diagnose(forward, lambda g, v: np.zeros_like(v), x, np.ones_like(x))
    assert d.primary.code == "wrong-backward", str(d)
    assert "returns zeros for every grad_output" in d.primary.evidence
    assert "ignores grad_output" not in d.primary.evidence


# The backward's scale for kept elements, and how the diagnosis must name it.
_WRONG_SCALES = {
    "mask only": (lambda p: 1.0, "misses the 1/(1-p) factor"),
    "1/p": (lambda p: 1.0 / p, "scales by 1/p instead of 1/(1-p)"),
    "negated": (lambda p: -1.0 / (1.0 - p), "flips the sign"),
}


# p below 0.45: at p = 0.5, 1/p equals 1/(1-p) and that backward would be right.
@settings(max_examples=12, deadline=None)
@given(p=st.floats(0.05, 0.45), wrong=st.sampled_from(sorted(_WRONG_SCALES)), seed=st.integers(0, 2**16))
def test_wrong_dropout_scale_is_named_for_any_p(p, wrong, seed):
    x = np.random.default_rng(seed).uniform(-2, 2, 24).astype(np.float32)
    _, mask = dropout(x, p, seed=seed)
    assume(0 < mask.sum() < mask.size)  # with every element kept, "mask only" is the identity
    scale, meaning = _WRONG_SCALES[wrong]
    d = diagnose(lambda v: dropout(v, p, seed=seed)[0],
                 lambda g, v: g * mask * np.float32(scale(p)), x, np.ones_like(x))
    assert d.primary.code == "wrong-backward" and meaning in d.primary.evidence
    read = re.search(r"for p = ([0-9.]+)", d.primary.evidence)
    assert read is not None and float(read.group(1)) == pytest.approx(p, abs=1e-3)


def test_large_input_mask_shift_is_recognised_within_budget():
    x = np.random.default_rng(0).standard_normal(600).astype(np.float32)
    _, mask = dropout(x, 0.3, seed=3)
    d = diagnose(lambda v: dropout(v, 0.3, seed=3)[0],
                 lambda g, v: dropout_backward(g, np.roll(mask, 1), 0.3), x, np.ones_like(x))
    assert d.primary.code == "mask-mismatch" and "shifted by +1" in d.primary.evidence
    # A failing float32 check costs two dense checks (float32, float64), the calls at x (3, those
    # that make sure of determinism, and forward(x) in float64 for its smaller steps), and per failing
    # element what check_gradient spends: 2 calls in float64 at the same points, and in each dtype
    # one halving of the step (3 calls), at which a wrong slope has settled.
    failing = d.result.failing_indices.size
    assert {s.k for s in d.result.smaller_steps} == {1} and len(d.result.smaller_steps) == failing
    assert d.forward_calls <= 2 * 2 * x.size + 3 + calls_needed(x.size) + 1 + (2 + 3 + 3) * failing


def test_passing_check_costs_one_dense_check():
    x = _x(dtype=np.float64)
    d = diagnose(np.tanh, lambda g, v: g * (1 - np.tanh(v) ** 2), x, np.ones_like(x))
    assert d.codes == ["ok"] and d.forward_calls == 2 * x.size + 3


# --------------------------------------------------------------------------
# The random grad_output probe
# --------------------------------------------------------------------------


def _ignoring_pair():
    x = _x(24)
    _, mask = dropout(x, 0.3, seed=7)
    return (lambda v: dropout(v, 0.3, seed=7)[0], lambda g, v: mask / np.float32(0.7), x, np.ones_like(x))


def test_backward_ignoring_grad_output_passes_all_ones_but_is_flagged():
    forward, backward, x, ones = _ignoring_pair()
    # with all ones alone it agrees; check_gradient's random probe and diagnose both catch it
    assert check_gradient(forward, backward, x, ones, raise_on_failure=False, probes=0).passed
    assert not check_gradient(forward, backward, x, ones, raise_on_failure=False).passed
    d = diagnose(forward, backward, x, ones)
    assert d.passed and d.primary.code == "wrong-backward"
    assert "ignores grad_output" in d.primary.evidence
    assert "passes with your grad_output but not with random ones" in d.primary.evidence


def test_probe_seed_makes_the_diagnosis_repeatable():
    forward, backward, x, ones = _ignoring_pair()
    first, again = diagnose(forward, backward, x, ones, seed=11), diagnose(forward, backward, x, ones, seed=11)
    assert first.findings == again.findings and first.trials == again.trials
    other = diagnose(forward, backward, x, ones, seed=12)
    assert other.primary.code == "wrong-backward" and other.trials != first.trials


# --------------------------------------------------------------------------
# Callers' arrays
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["inplace-forward", "backward-writes-grad-output", "backward-scratch-x"])
def test_callers_arrays_are_never_changed(name):
    forward, backward, x, g = catalogue.by_name(name).build("float32", 0)
    x_before, g_before = x.copy(), g.copy()
    d = diagnose(forward, backward, x, g)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(g, g_before)
    assert d.primary.code == "input-mutation"
    # x written by forward or backward fails the plain check, as in check_gradient.
    assert d.result.input_mutated == (name != "backward-writes-grad-output")


# --------------------------------------------------------------------------
# Report text and HTML
# --------------------------------------------------------------------------


def test_text_report_is_aligned_and_complete():
    d = catalogue.by_name("nominal-step-float32").diagnose()
    text = str(d)
    lines = text.splitlines()
    assert lines[0].startswith("Gradient check FAILED for float32")
    assert "divide_by=nominal" in lines[1]
    assert "precision" in text and d.primary.evidence in text and d.primary.suggestion in text
    evidence_col = [line.index("evidence:") for line in lines if "evidence:" in line]
    suggestion_col = [line.index("suggestion:") for line in lines if "suggestion:" in line]
    assert evidence_col == suggestion_col
    trial_rows = [line for line in lines if line.startswith("  float32")]
    assert len(trial_rows) == len(d.trials) >= 2
    assert len({len(row) for row in trial_rows}) == 1  # right-aligned numbers: equal widths


def test_lines_are_one_per_finding_primary_first():
    d = catalogue.by_name("other-seed-mask").diagnose()
    lines = d.lines()
    assert lines[0].startswith("Diagnosis") and len(lines) == 1 + len(d.findings)
    assert lines[1].startswith("  1. mask-mismatch:")


def test_html_escapes_text():
    result = catalogue.by_name("tanh").diagnose().result
    evil = Finding("wrong-backward", "<b>hyp</b>", 'a < b & "c"', "<script>alert(1)</script>")
    page = Diagnosis(result, [evil])._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a &lt; b &amp; &quot;c&quot;" in page and "&lt;b&gt;hyp&lt;/b&gt;" in page
    assert page.count("<td>") == 5  # one finding row of five cells (no trials recorded)


def test_ok_finding_uses_the_fixed_hypothesis_text():
    d = catalogue.by_name("dropout").diagnose("float64")
    assert d.primary == Finding("ok", HYPOTHESES["ok"], d.primary.evidence, "nothing to fix")


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def _ok_args():
    x = _x(6, np.float64)
    return np.tanh, (lambda g, v: g * (1 - np.tanh(v) ** 2)), x, np.ones_like(x)


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"forward": 3}, TypeError, "forward must be callable"),
    ({"backward": None}, TypeError, "backward must be callable"),
    ({"x": np.arange(4)}, TypeError, "x must be a floating-point array"),
    ({"x": np.zeros(0), "grad_output": np.zeros(0)}, ValueError, "x must have at least one element"),
    ({"grad_output": np.ones(5)}, ValueError, "grad_output must have the shape"),
    ({"grad_output": np.full(6, np.nan)}, ValueError, "grad_output must be finite"),
    ({"grad_output": np.array(["a"] * 6)}, TypeError, "grad_output must be a real numeric array"),
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"atol": "0"}, TypeError, "atol"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"divide_by": "half"}, ValueError, "divide_by"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"backward": lambda g, v: g[:3]}, ValueError, "backward must return an array of x's shape"),
    ({"forward": lambda v: np.full_like(v, np.inf)}, ValueError, "non-finite"),
])
def test_bad_input_is_refused_naming_the_argument(change, error, match):
    forward, backward, x, g = _ok_args()
    args = {"forward": forward, "backward": backward, "x": x, "grad_output": g, **change}
    positional = [args.pop(k) for k in ("forward", "backward", "x", "grad_output")]
    with pytest.raises(error, match=match):
        diagnose(*positional, **args)


def test_step_that_collapses_with_realised_divide_is_refused():
    forward, backward, x, g = _ok_args()
    with pytest.raises(ValueError, match="too small"):
        diagnose(forward, backward, x.astype(np.float32), g, eps=1e-12)


def _multiples_said(evidence: str) -> list[float]:
    """Every "<number> times" of the evidence that is a multiple of a budget."""
    return [float(m) for m in re.findall(r"(\S+) times (?:\w+'s |the )finite-difference budget", evidence)]


_H = np.float16
_KEPT = np.array([1, 0, 1, 0, 1], dtype=_H)  # a fixed dropout mask at p = 0.3: kept values scaled by 1/0.7
_SCALE = _H(1 / 0.7)

_COLLAPSING = {
    # x +- 1e-5 rounds to x itself in float16 (spacing 4.9e-4 at 0.5), the nominal 2*eps divides the
    # zero difference: 0 against 1.43 where the mask keeps
    "x": (lambda v: v * _KEPT * _SCALE, lambda g, v: g * _KEPT * _SCALE,
          np.array([-0.5, 0.0, 0.2, 0.5, 1.0], dtype=_H), dict(eps=1e-5, divide_by="nominal"),
          "collapsed at 3/3 failing elements: x + eps and x - eps are the same float16 number there"),
    # x +- 1e-3 are two float16 numbers, but 1 + 0.1 x moves by less than half a unit of its own
    "outputs": (lambda v: (_H(1) + _H(0.1) * v.astype(_H)).astype(_H), lambda g, v: (g * _H(0.1)).astype(v.dtype),
                np.array([0.5, 0.75, 0.6], dtype=_H), dict(eps=1e-3),
                "collapsed at 2/2 failing elements: forward returned the same outputs at x + eps and x - eps there"),
}


@pytest.mark.parametrize("how", sorted(_COLLAPSING))
def test_a_collapsed_step_is_said_plainly_not_as_a_multiple_of_the_budget(how):
    forward, backward, x, settings, said = _COLLAPSING[how]
    d = diagnose(forward, backward, x, np.ones_like(x), **settings)
    assert not d.passed and d.codes == ["precision"], str(d)
    evidence = d.primary.evidence
    assert said in evidence, evidence
    assert "the numerical gradient is 0 and says nothing about the backward" in evidence
    assert _multiples_said(evidence) == [], evidence  # no "0 times the budget"


def test_a_gradient_that_is_not_finite_is_not_a_multiple_of_the_budget():
    # backward overflows float16 (300 * 300), float64 passes: no budget measures an infinite a
    x = np.array([0.5, 0.25, -0.75], dtype=_H)
    with np.errstate(over="ignore"):
        d = diagnose(lambda v: v * v.dtype.type(300), lambda g, v: g * v.dtype.type(300), x, np.full(3, 300, _H))
    assert d.codes == ["precision"], str(d)
    assert "3 failing elements have a gradient that is not finite" in d.primary.evidence
    assert all(np.isfinite(m) and m > 0 for m in _multiples_said(d.primary.evidence)), d.primary.evidence


def test_catalogue_lookups_refuse_bad_names_and_dtypes():
    with pytest.raises(KeyError, match="no catalogue entry"):
        catalogue.by_name("nope")
    with pytest.raises(ValueError, match="dtype"):
        catalogue.by_name("tanh").build("int32")


# --------------------------------------------------------------------------
# check_gradient appends the diagnosis to its failure message
# --------------------------------------------------------------------------


def test_check_gradient_failure_message_says_how_to_ask_why():
    forward, backward, x, g = catalogue.by_name("missing-scale").build("float32", 0)
    with pytest.raises(GradientCheckError) as caught:
        check_gradient(forward, backward, x, g)
    lines = str(caught.value).splitlines()
    assert lines[0] == "Gradient check failed for float32: gradient mismatch at index 0"
    failing = caught.value.result.failing_indices.size
    low = 4 * x.size + 5 + 3 * failing  # float32: a float64 pass too
    assert lines[-1] == f"Why: lib.diagnose.diagnose(forward, backward, x, grad_output) names the most likely " \
                        f"cause (at least {low} more forward calls, a few more for each of the {failing} failing " \
                        "elements)."
    # A float32 check that fails at 35 of its 48 elements, each settled at the first halving: about
    # 4N + 5 + 8 * 35, with forward(x) in float64 for the smaller steps and the calls at x that make
    # sure of determinism before a blame.
    d = diagnose(forward, backward, x, g)
    failing = d.result.failing_indices.size
    assert {s.k for s in d.result.smaller_steps} == {1}
    assert 2 * x.size + 5 < d.forward_calls <= 4 * x.size + 5 + 8 * failing + 1 + calls_needed(x.size)
    first = d.lines()[1]
    assert first.startswith("  1. wrong-backward:") and "1-p" in first


def test_a_wrong_branch_of_a_piecewise_derivative_is_named_with_its_factor():
    x = np.linspace(-2, 2, 8).astype(np.float32)

    def leaky(v):
        return np.where(v > 0, v, 0.01 * v)

    def leaky_backward(g, v):
        return g * np.where(v > 0, 1.0, 0.1)  # the negative branch's slope is 10x too large

    primary = diagnose(leaky, leaky_backward, x, np.ones_like(x)).primary
    assert primary.code == "wrong-backward"
    assert "10 times the forward's on 4/8 elements (exactly the elements with x < 0)" in primary.evidence
