"""The whole workbook, headless, with parameters other than the stored defaults.

The verdicts read back from the executed notebooks are compared with what the
evidence supports, computed here independently from `lib` (not from the
notebooks), so a notebook whose verdict ignored its parameters would fail.
"""

from __future__ import annotations

import itertools
import re

import nbformat
import numpy as np
import pytest
from prose_numbers import parameter_bound_claims, printed_text, read

import lib.workbook.runner as workbook
from lib.replica import SWITCHES, matches_reported, replay_original_test, test_values
from lib.workbook.cli import main

pytestmark = pytest.mark.slow


def _verdicts(folder) -> dict[str, str]:
    found = {}
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        found[path.name[:2]] = workbook.read_verdict(nbformat.read(str(path), as_version=4)).split(" - ")[0]
    return found


@pytest.fixture(scope="module")
def float64_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("float64")
    code = main(["run", "--output", str(out), "--jobs", "2",
                 "-p", "dtype", "float64", "-p", "seed", "7", "-p", "p", "0.5", "-p", "size", "8"])
    return code, out


def test_every_notebook_executes_with_other_parameters(float64_run):
    code, out = float64_run
    assert code == 0
    assert len(list(out.glob("[0-9][0-9]_*.ipynb"))) == len(workbook.discover())


def test_float64_verdicts_follow_the_evidence(float64_run):
    _, out = float64_run
    verdicts = _verdicts(out)
    run = replay_original_test(dtype="float64", seed=7, p=0.5, values=test_values(8))
    # In float64 the nominal step errs by ~1e-12 relative: the original test passes.
    assert run.passed
    assert verdicts["01"] == "REFUTED"          # the failure is not reproduced
    assert verdicts["03"] == "REFUTED"          # seed 7 is reapplied on every call: masks agree
    assert all(m.tolist() == run.backward_mask.tolist() for m in run.forward_masks)
    assert verdicts["05"] == "REFUTED"          # the backward formula is right in every dtype
    assert verdicts["06"] == "REFUTED"          # precision cannot fail a float64 check here
    assert verdicts["10"] == "INCONCLUSIVE"     # nothing to fix when the original passes
    assert verdicts["04"] == "REFUTED"          # the backward multiplies by the forward's mask
    assert verdicts["11"] == "REFUTED"          # the check passes: nothing for diagnose to explain


def test_float64_ablation_finds_no_combination_with_the_reported_numbers(float64_run):
    _, out = float64_run
    base = {"p": 0.5, "values": test_values(8)}
    reproduced = [
        combo for combo in itertools.product(*SWITCHES.values(), (7, 0))
        if matches_reported(replay_original_test(**base, **dict(zip([*SWITCHES, "seed"], combo, strict=True))).result)
    ]
    assert reproduced == []  # with p = 0.5 no analytical gradient can be 1/(1 - 0.3)
    assert _verdicts(out)["09"] == "INCONCLUSIVE"


def test_seed_zero_turns_the_rng_hypothesis_around(tmp_path):
    # seed=0 means "do not seed" in the original library: every forward draws anew.
    code = main(["run", "1", "3", "--output", str(tmp_path), "--jobs", "2", "-p", "seed", "0"])
    assert code == 0
    run = replay_original_test(seed=0)
    assert not run.passed
    assert any(m.tolist() != run.backward_mask.tolist() for m in run.forward_masks)
    verdicts = _verdicts(tmp_path)
    assert verdicts["03"] == "CONFIRMED"
    assert verdicts["01"] == "INCONCLUSIVE"     # fails, but not with the reported numbers


def _run(tmp_path, *args) -> dict[str, str]:
    assert main(["run", *args, "--output", str(tmp_path), "--jobs", "2"]) == 0
    return {k: v for k, v in ((p.name[:2], workbook.read_verdict(nbformat.read(str(p), as_version=4)))
                              for p in sorted(tmp_path.glob("[0-9][0-9]_*.ipynb")))}


def test_the_ablation_verdict_does_not_hang_on_the_unseeded_start(tmp_path):
    # Seed 0 draws Mojo's real unseeded stream now; it must not come out "necessary" for seed 11.
    run = replay_original_test(seed=11)
    assert matches_reported(run.result)
    verdict = _run(tmp_path, "9", "-p", "seed", "11")["09"]
    assert verdict.startswith("CONFIRMED") and "seed=0" not in verdict


def test_another_p_reproduces_the_mechanism_and_the_verdicts_say_so(tmp_path):
    run = replay_original_test(p=0.5)
    assert run.result.first_failing_index == 0 and not matches_reported(run.result)
    assert replay_original_test(p=0.5, divide_by="realised").passed  # the nominal step is the cause
    verdicts = _run(tmp_path, "1", "9", "-p", "p", "0.5")
    assert verdicts["01"].startswith("CONFIRMED") and "mechanism" in verdicts["01"]
    assert verdicts["09"].startswith("CONFIRMED - the base test's failure")


def test_a_larger_step_passes_and_the_reproduction_says_so(tmp_path):
    assert replay_original_test(eps=1e-4).passed
    assert _run(tmp_path, "1", "-p", "eps", "1e-4")["01"].startswith("REFUTED")


def test_float16_limits_are_not_blamed_on_the_fix(tmp_path):
    floor = float(np.finfo(np.float16).eps / 2) ** (2 / 3)
    assert floor > 1e-3  # a central difference in float16 cannot meet rtol = 1e-3 by its slope alone
    verdict = _run(tmp_path, "10", "-p", "dtype", "float16")["10"]
    # The checker's noise term allows the outputs' rounding, so the complete fix may pass in float16;
    # where a check still fails there, the verdict says float16 cannot decide. Never that the fix fails.
    assert verdict.split(" - ")[0] in ("CONFIRMED", "INCONCLUSIVE")
    if verdict.startswith("CONFIRMED"):
        assert "complete fix" in verdict


def test_the_chain_rule_notebook_runs_with_one_element(tmp_path):
    _run(tmp_path, "2", "-p", "size", "1")


def test_the_diagnosis_notebook_follows_an_unseeded_forward(tmp_path):
    from lib.catalogue import original_problem
    from lib.diagnose import diagnose

    d = diagnose(*original_problem(seed=0), eps=1e-5, divide_by="nominal")
    assert not d.passed and d.primary.code == "nondeterministic-forward"
    verdict = _run(tmp_path, "11", "-p", "seed", "0")["11"]
    assert verdict.startswith("REFUTED - diagnose ranks 'nondeterministic-forward' first")


def test_float64_tables_keep_their_columns_apart(float64_run):
    # float64 numbers print with up to 17 digits; a fixed field width let neighbours run together.
    _, out = float64_run
    notebook = nbformat.read(str(out / "06_h4_numerical_precision.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")
    glued = re.findall(r"\d\.\d+e[-+]\d+\d\.\d", text) + re.findall(r"\d\.\d{10,}\d\.\d", text)
    assert glued == []


def test_the_chain_rule_notebook_runs_without_dropout_and_its_worked_answers_pass(tmp_path):
    # p = 0 draws no mask: the worked layer, the rules of thumb and every worked answer must still run
    _run(tmp_path, "2", "-p", "p", "0", "-p", "seed", "0")
    notebook = nbformat.read(str(next(tmp_path.glob("02_*.ipynb"))), as_version=4)
    text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert [n for n in range(1, 5) if f"Exercise {n}: right." not in text] == []
    assert text.count("right on all 3 test inputs") == 3  # dx, dw and db of exercise 5


def test_a_fix_is_not_confirmed_by_a_test_that_passes_without_it(tmp_path):
    # With eps = 1e-3 the original checker passes, so notebook 10 has nothing left to fix.
    assert replay_original_test(eps=1e-3).passed
    verdict = _run(tmp_path, "10", "-p", "eps", "1e-3")["10"]
    assert verdict.startswith("INCONCLUSIVE - the unfixed original test already passes")


def test_without_dropout_the_mask_verdicts_blame_p_not_the_seed_and_the_worked_answers_pass(tmp_path):
    # seed 0 means "do not seed": with p = 0 the masks agree only because no element is dropped.
    verdicts = _run(tmp_path, "3", "4", "7", "-p", "p", "0", "-p", "seed", "0")
    for number, exercises in (("03", 4), ("04", 3), ("07", 3)):
        word, reason = verdicts[number].split(" - ", 1)
        assert word == "REFUTED" and "p=0.0 keeps every element" in reason and "reseed" not in reason
        notebook = nbformat.read(str(next(tmp_path.glob(f"{number}_*.ipynb"))), as_version=4)
        text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
        assert set(re.findall(r"Exercise (\d+): right", text)) == {str(n) for n in range(1, exercises + 1)}


def test_prose_numbers_that_follow_the_parameters_say_they_are_the_defaults(float64_run):
    # A number in markdown that the default run prints and the float64 run does not is a claim about
    # the defaults: it must be printed by a cell, or its paragraph must say which parameters it holds for.
    _, out = float64_run
    claims = {path.name[:2]: parameter_bound_claims(read(path), read(out / path.name))
              for path in workbook.discover()}
    assert {number: found for number, found in claims.items() if found} == {}


def test_every_worked_answer_passes_its_check_with_other_parameters(float64_run):
    _, out = float64_run
    for path in sorted(out.glob("[0-9][0-9]_*.ipynb")):
        notebook = read(path)
        asked = set(re.findall(r'check_(?:answer|function)\(\s*f?"(Exercise \d+)',
                               "\n".join(cell.source for cell in notebook.cells)))
        right = set(re.findall(r"(Exercise \d+)[^:\n]*: right", printed_text(notebook)))
        assert asked <= right, f"{path.name}: no 'right' line for {sorted(asked - right)}"
