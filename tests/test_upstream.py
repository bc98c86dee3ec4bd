"""`python -m lib upstream` on a synthetic library in the original's layout (tests/upstream_fixture/).

The fixture is written here from scratch: a minimal ExTensor, a fixed-step checker
at tests/helpers/gradient_checking.mojo, and two test files: one with correct
gradients (relu 1e-4 from its kink, and a test main() never calls), one with a
real bug (a cube's backward without its factor 3). One run of the command builds
the two files once each. Without mojo the Mojo test skips, unless
WORKBOOK_REQUIRE_MOJO=1 (as CI sets) makes it fail; the argument errors need no Mojo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.replica import twin
from lib.upstream import layout, recorded, source
from lib.workbook import cli

FIXTURE = Path(__file__).resolve().parent / "upstream_fixture"
ROOT = Path(__file__).resolve().parent.parent
MUST_RUN = os.environ.get("WORKBOOK_REQUIRE_MOJO") == "1"


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    if twin.find_mojo() is None:
        if MUST_RUN:
            pytest.fail("WORKBOOK_REQUIRE_MOJO=1 but mojo is not installed (pip install -r requirements-mojo.txt)")
        pytest.skip("mojo is not installed (pip install -r requirements-mojo.txt)")
    out = tmp_path_factory.mktemp("upstream")
    before = sorted(p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "lib", "upstream", str(FIXTURE), "--json", str(out / "run.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    after = sorted(p.relative_to(FIXTURE).as_posix() for p in FIXTURE.rglob("*"))
    document = json.loads((out / "run.json").read_text())
    return done, document, before == after


def _test(document: dict, name: str) -> dict:
    return next(t for t in document["tests"] if t["test"] == name)


def test_the_fixed_checker_passes_relu_next_to_its_kink_after_smaller_steps(fixture_run):
    _, document, _ = fixture_run
    relu = _test(document, "test_relu_near_kink_gradient")
    assert relu["ours"]["passed"] and relu["ours"]["ratio"] <= 1
    [element] = relu["ours"]["remeasured"]
    assert element["index"] == 0 and element["verdict"] == "converged"
    assert element["step"] < 1e-4 < 4.9e-3 / 2  # it needed a step below the distance to the kink
    assert element["first_ratio"] > 100  # at the default step it was far outside its tolerance
    assert relu["ours"]["extra_forward"] >= 3


def test_the_real_bug_fails_under_every_checker_and_sets_the_exit_code(fixture_run):
    done, document, _ = fixture_run
    cube = _test(document, "test_cube_backward_gradient")
    for key in ("ours", "upstream_here", "upstream_original", "era"):
        assert not cube[key]["passed"], key
    assert cube["ours"]["ratio"] > 100
    assert done.returncode == 1, done.stderr
    assert document["passed_ours"] == 2 and document["total"] == 4


def test_a_forward_that_draws_a_new_mask_per_call_is_not_passed_at_smaller_steps(fixture_run):
    _, document, _ = fixture_run
    fresh = _test(document, "test_fresh_mask_gradient")
    assert not fresh["ours"]["passed"]
    verdicts = [element["verdict"] for element in fresh["ours"]["remeasured"]]
    assert verdicts and verdicts[-1] == "changed" and "converged" not in verdicts


def test_a_gradient_test_main_never_calls_is_found_and_run(fixture_run):
    done, document, _ = fixture_run
    assert document["never_called_from_main"] == ["test_fresh_mask_gradient", "test_square_gradient"]
    square = _test(document, "test_square_gradient")
    # correct, and failed by the fixture's fixed-step checker just as the original's failed in float32
    assert square["ours"]["passed"] and not square["upstream_here"]["passed"]
    assert "test_square_gradient" in done.stdout and "NO" in done.stdout


def test_the_json_holds_tolerances_mutations_and_versions(fixture_run):
    _, document, unchanged = fixture_run
    assert unchanged  # nothing written into PATH
    assert document["mojo_version"].startswith("Mojo ")
    assert document["layout"] == "tests/helpers" and document["commit"] is None
    assert "no --history" in document["tolerance_history"]
    relu = _test(document, "test_relu_near_kink_gradient")
    assert relu["original_tolerance"] == [1e-3, 1e-6] and relu["upstream_tolerance"] == [1e-3, 1e-6]
    assert document["verdict_disagreements"] == []
    counts = document["mutation_counts"]
    assert counts["ours"]["scale"] == {"flagged": 2, "of": 2}  # x1.002 caught in both correct tests
    assert counts["ours"]["shift"] == {"flagged": 1, "of": 2}  # +1e-5 caught where a gradient is exactly 0
    assert set(counts) == {"ours", "upstream", "era"}


def test_a_path_that_is_not_a_directory_is_refused_before_any_build(tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert cli.main(["upstream", str(file)]) == 2
    assert f"PATH {file} is not a directory" in capsys.readouterr().err
    assert cli.main(["upstream", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_folder_that_is_not_the_original_layout_is_refused(tmp_path, capsys):
    assert cli.main(["upstream", str(tmp_path)]) == 2
    assert "not the original library's layout" in capsys.readouterr().err


def test_an_unknown_layout_is_named(tmp_path, capsys):
    shutil.copytree(FIXTURE, tmp_path / "copy")
    checker = tmp_path / "copy" / "tests" / "helpers" / "gradient_checking.mojo"
    checker.write_text(checker.read_text().replace("fn check_gradient(", "fn check_gradients_v2("))
    assert cli.main(["upstream", str(tmp_path / "copy")]) == 2
    error = capsys.readouterr().err
    assert "layout this runner does not know" in error and "tests/helpers/gradient_checking.mojo" in error


def test_a_bad_history_or_json_folder_is_named(tmp_path, capsys):
    assert cli.main(["upstream", str(FIXTURE), "--history", str(tmp_path)]) == 2
    assert "--history" in capsys.readouterr().err
    assert cli.main(["upstream", str(FIXTURE), "--json", str(tmp_path / "no" / "run.json")]) == 2
    assert "--json" in capsys.readouterr().err


def test_the_fixture_layout_and_its_call_sites_are_read_without_mojo():
    found = layout.detect(FIXTURE)
    assert found.name == "tests/helpers" and found.algorithm == layout.Algorithm(False, False, False)
    assert [p.name for p in found.test_files] == ["test_buggy.mojo", "test_kinked.mojo"]
    text = (FIXTURE / "tests" / "ops" / "test_kinked.mojo").read_text()
    sites = source.call_sites(text)
    assert [(s.test, s.rtol, s.atol) for s in sites] == [("test_relu_near_kink_gradient", 1e-3, 1e-6),
                                                        ("test_square_gradient", None, None)]
    assert "test_square_gradient" not in source.reachable_from_main(text)


def test_the_proposed_fix_shows_the_newest_recorded_run():
    # docs/proposed_fix.md's table and numbers are the recorded run's, so the two cannot drift apart
    text = (Path(__file__).resolve().parent.parent / "docs" / "proposed_fix.md").read_text()
    document = " ".join(text.split())  # prose wraps where it likes
    newest = recorded.run_for(recorded.load(), "2c54c6f9")
    rows = recorded.restoration_rows(newest)
    assert rows and all(row in document for row in rows)
    tests = newest["tests"]
    extra = sum(t["ours"]["extra_forward"] for t in tests)
    default = sum(2 * t["ours"]["numel"] for t in tests)
    assert f"costing {extra} forward calls beside the {default} of the default steps" in document
    counts = newest["mutation_counts"]
    assert f"in {counts['ours']['scale']['flagged']} of the {counts['ours']['scale']['of']} tests" in document
    assert f"in the {counts['ours']['shift']['flagged']} tests" in document
    assert f"the first in {counts['upstream']['scale']['flagged']} of {counts['upstream']['scale']['of']}" in document
    missed = [recorded.short_name(t) for t in tests if not t["mutations"]["ours"]["scale"]]
    assert missed == ["softmax"] and "(all but softmax" in document
    assert newest["passed_ours"] == newest["total"] == len(tests)
