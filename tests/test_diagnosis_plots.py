"""Tests of lib.diagnosis_plots: the original test as a pair, the catalogue's
confusion matrix and its picture, and the blind spots of the diagnosis."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lib import mutants
from lib.diagnose import CODES, diagnose
from lib.diagnosis_plots import (
    BLIND_SPOTS,
    Case,
    accuracy,
    brief,
    detection,
    diagnose_catalogue,
    example_per_code,
    format_blind_spots,
    jump_near_step_problem,
    label_purity,
    label_recall,
    original_problem,
    outcomes,
    plot_confusion,
    run_blind_spots,
)
from lib.replica import matches_reported, original_check_gradient, replay_original_test, test_values

# --------------------------------------------------------------------------
# The original test as a pair
# --------------------------------------------------------------------------


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
    assert problem.x.dtype == np.dtype(kw.get("dtype", "float32"))
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


# --------------------------------------------------------------------------
# Confusion-matrix arithmetic
# --------------------------------------------------------------------------


def _counts(pairs):
    counts = np.zeros((len(CODES), len(CODES)), dtype=int)
    for true, found, n in pairs:
        counts[CODES.index(true), CODES.index(found)] += n
    return counts


def test_accuracy_purity_and_recall():
    counts = _counts([("ok", "ok", 4), ("precision", "precision", 3), ("wrong-backward", "precision", 1),
                      ("mask-mismatch", "wrong-backward", 2)])
    assert accuracy(counts) == pytest.approx(7 / 10)
    assert label_purity(counts, "precision") == pytest.approx(3 / 4)
    assert label_recall(counts, "precision") == 1.0
    assert label_recall(counts, "mask-mismatch") == 0.0
    assert label_recall(counts, "wrong-backward") == 0.0
    assert np.isnan(label_purity(counts, "input-mutation"))  # nothing diagnosed so
    assert np.isnan(label_recall(counts, "input-mutation"))  # no such instance
    assert np.isnan(accuracy(np.zeros((6, 6), dtype=int)))
    with pytest.raises(ValueError):
        label_purity(counts, "no-such-code")


SUBSET = [mutants.by_name(n) for n in ("tanh", "inverted-mask", "ignores-grad-output", "seed-zero-forward",
                                       "nominal-step-float32")]


@pytest.fixture(scope="module")
def subset_cases():
    return diagnose_catalogue(SUBSET, seed=3)


def test_diagnose_catalogue_matches_evaluate(subset_cases):
    assert len(subset_cases) == sum(len(e.dtypes) for e in SUBSET)
    assert all(isinstance(c, Case) and c.seed == 3 for c in subset_cases)
    assert outcomes(subset_cases) == mutants.evaluate(SUBSET, seeds=(3,))
    counts = mutants.confusion(outcomes(subset_cases))
    assert counts.sum() == len(subset_cases) and accuracy(counts) == 1.0


def test_detection_counts_a_backward_that_passes_with_ones(subset_cases):
    caught = detection(subset_cases)
    wrong = [c for c in subset_cases if c.entry.code != "ok"]
    assert caught.wrong == len(wrong)
    assert caught.flagged_after_pass == 2  # ignores-grad-output in float32 and float64
    assert caught.missed == 0
    assert caught.check_failed + caught.flagged_after_pass + caught.missed == caught.wrong


def test_detection_counts_a_miss():
    case = diagnose_catalogue([mutants.by_name("sign-flip")], seed=0)[0]
    # A wrong pair whose diagnosis came out ok (by construction here) counts as missed.
    fake = case._replace(diagnosis=mutants.by_name("tanh").diagnose("float32", 0))
    caught = detection([fake])
    assert caught == (1, 0, 0, 1)


def test_example_per_code_prefers_the_named_entry_then_falls_back(subset_cases):
    chosen = example_per_code(subset_cases, {"mask-mismatch": "inverted-mask", "ok": "no-such-entry"})
    assert list(chosen) == [c for c in CODES if any(k.entry.code == c for k in subset_cases)]
    assert chosen["mask-mismatch"].entry.name == "inverted-mask"
    assert chosen["ok"].entry.name == "tanh"  # fallback: first correctly diagnosed
    assert "input-mutation" not in chosen
    # A code with no correct diagnosis shows the misattributed case rather than hiding it.
    wrong = subset_cases[0]._replace(diagnosis=diagnose_catalogue([mutants.by_name("sign-flip")])[0].diagnosis)
    assert example_per_code([wrong])["ok"] is wrong


def test_brief_is_the_check_gradient_message_form(subset_cases):
    d = subset_cases[0].diagnosis
    lines = brief(d).splitlines()
    assert lines[0] == d.headline() and lines[1:] == d.lines()


# --------------------------------------------------------------------------
# The picture
# --------------------------------------------------------------------------


def test_plot_confusion_annotates_counts_and_states_accuracy():
    counts = _counts([("ok", "ok", 5), ("precision", "precision", 2), ("wrong-backward", "precision", 1)])
    fig, ax = plt.subplots()
    try:
        acc = plot_confusion(ax, counts)
        assert acc == pytest.approx(7 / 8)
        texts = [t.get_text() for t in ax.texts]
        assert len(texts) == counts.size and texts.count("0") == counts.size - 3
        assert sorted(int(t) for t in texts if t != "0") == [1, 2, 5]
        assert "87.5%" in ax.get_title() and "7 of 8" in ax.get_title()
        assert "true" in ax.get_ylabel() and "diagnosed" in ax.get_xlabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == list(mutants.SHORT_CODES)
        outlined = [p for p in ax.patches if not p.get_fill()]
        assert len(outlined) == 1  # only the one off-diagonal count
        assert outlined[0].get_xy() == (CODES.index("precision") - 0.5, CODES.index("wrong-backward") - 0.5)
    finally:
        plt.close(fig)


def test_plot_confusion_refuses_mismatched_labels():
    fig, ax = plt.subplots()
    try:
        with pytest.raises(ValueError):
            plot_confusion(ax, np.eye(3, dtype=int))
        assert plot_confusion(ax, np.eye(2, dtype=int), ["a", "b"], title="t") == 1.0
        assert ax.get_title() == "t"
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------
# Blind spots
# --------------------------------------------------------------------------

EXPECTED_BLIND = {
    "below-tolerance": ("ok",),
    "below-float64-budget": ("precision",),
    "untested-branch": ("ok",),
    "two-bugs": ("nondeterministic-forward",),
    "mask-after-tanh": ("wrong-backward",),
}


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_blind_spots_are_missed_as_documented(seed):
    rows = run_blind_spots(seed)
    assert [r.name for r in rows] == [s.name for s in BLIND_SPOTS] == list(EXPECTED_BLIND)
    for row in rows:
        assert row.found == EXPECTED_BLIND[row.name], row
        assert not row.named
        assert set(row.truth) <= set(CODES)


def test_blind_spots_are_real_bugs_or_a_real_jump():
    # Each pair is wrong where it claims: shown by the diagnosis once the blind spot is removed.
    by_name = {s.name: s for s in BLIND_SPOTS}
    problem, _ = by_name["below-float64-budget"].factory(0)
    assert diagnose(*problem, rtol=1e-12, atol=0.0).result.passed is False
    forward, backward, x, g = by_name["untested-branch"].factory(0)[0]
    assert diagnose(forward, backward, -x, g).primary.code == "wrong-backward"
    forward, backward, x, g = by_name["mask-after-tanh"].factory(0)[0]
    assert not np.allclose(backward(g, x), 0) and diagnose(forward, backward, x, g).result.passed is False


@pytest.mark.parametrize("seed", [0, 1])
def test_a_jump_inside_the_float32_step_is_not_blamed_on_precision(seed):
    forward, backward, x, g = jump_near_step_problem(seed)
    assert forward(np.float32([0.002]))[0] - forward(np.float32([0.0]))[0] > 1.0  # the jump
    assert diagnose(forward, backward, x[1:], g[1:]).codes == ["ok"]  # away from it, the pair is fine
    found = diagnose(forward, backward, x, g)
    assert found.primary.code == "wrong-backward"
    assert "jump" in found.primary.evidence


def test_format_blind_spots_is_aligned():
    rows = run_blind_spots(0)
    lines = format_blind_spots(rows).splitlines()
    assert len(lines) == len(rows) + 1
    col = lines[0].index("diagnosed")
    for line, row in zip(lines[1:], rows, strict=True):
        assert line.startswith(row.name) and line[col:].startswith(" + ".join(row.found))
        assert line.endswith("no")
    assert "nondeterministic-forward + wrong-backward" in lines[4]
