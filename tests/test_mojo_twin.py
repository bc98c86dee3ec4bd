"""The Mojo twin (mojo/) against the replica, bit for bit.

With `mojo` installed (requirements-mojo.txt) the twin is compiled and run;
CI sets WORKBOOK_REQUIRE_MOJO=1 so that a missing compiler fails instead of
skipping. Without it, the replica is still compared with the recorded Mojo run.
"""

from __future__ import annotations

import copy
import functools
import json
import os

import numpy as np
import pytest

from lib.replica import twin
from lib.workbook import cli

MUST_RUN = os.environ.get("WORKBOOK_REQUIRE_MOJO") == "1"


def _twin(**settings) -> dict:
    if twin.find_mojo() is None:
        if MUST_RUN:
            pytest.fail("WORKBOOK_REQUIRE_MOJO=1 but mojo is not installed (pip install -r requirements-mojo.txt)")
        pytest.skip("mojo is not installed (pip install -r requirements-mojo.txt)")
    return copy.deepcopy(_run_once(tuple(sorted(settings.items()))))


@functools.cache
def _run_once(settings: tuple) -> dict:
    """One compile and run per setting for the whole module (each costs about 10 s)."""
    return twin.run_twin(**dict(settings))


def test_the_replica_reproduces_the_recorded_mojo_run_bit_for_bit():
    recorded = twin.load_recorded()
    settings = recorded["settings"]
    assert recorded["mojo_version"].startswith(f"Mojo {twin.PINNED_MOJO}")
    comparison = twin.compare(recorded, twin.replica_document(**settings))
    assert comparison.agree, comparison.differences[:5]
    assert comparison.cases == 96 and comparison.kinks == 3 and comparison.numbers == 16_986


@pytest.mark.parametrize("settings", [{}, {"p": 0.1, "seed": 7, "eps": 1e-4}, {"seed": 0}],
                         ids=["original", "other-p-seed-eps", "unseeded"])
def test_the_mojo_twin_and_the_replica_agree_bit_for_bit(settings):
    mojo = _twin(**settings)
    assert mojo["mojo_version"].startswith(f"Mojo {twin.PINNED_MOJO}")
    comparison = twin.compare(mojo, twin.replica_document(**settings))
    assert comparison.agree, comparison.differences[:5]


def test_the_mojo_twin_writes_a_nan_with_its_bits():
    # eps = 1e-7 is below float32's spacing at 1.6 to 2.3: x + eps == x - eps, and 0 / 0 is NaN
    mojo = _twin(eps=1e-7)
    nans = {twin.encode_nans(v) for case in mojo["cases"] for v in case["numerical"] if v != v}
    assert nans == {"nan:fff8000000000000"}
    comparison = twin.compare(mojo, twin.replica_document(eps=1e-7))
    assert comparison.agree, comparison.differences[:5]


def test_the_mojo_twin_reproduces_the_original_failure():
    case = _twin()["cases"][0]
    assert twin.case_label(case) == "dropout float32 original nominal leaks stochastic reseed"
    assert case["message"] == "Gradient check failed for float32: gradient mismatch at index 0"
    assert case["mask"] == [1.0, 0.0, 0.0, 1.0, 0.0]


def _kinks_as_stated(kinks: list[dict]) -> None:
    """docs/checking_at_kinks.md's table, for the twin's kink cases (either language's)."""
    relu, zeroing, centre = kinks
    assert [relu["halvings"], relu["subgradient"], relu["passed"]] == [
        [7, 2, 0, 0], [False, True, False, False], [True] * 4]
    assert relu["numerical"][0] == 1.0 and relu["decided_step"][0] == 0.004921566601151848 / 2**7
    assert [relu["slope_minus"][1], relu["slope_plus"][1]] == [0.0, 1.0]  # the analytical 0 lies between
    assert zeroing["passed"] == [False, True, True, True] and zeroing["first_failing_index"] == 0
    assert zeroing["halvings"][0] == 7 and zeroing["numerical"][0] == 1.0 and not zeroing["subgradient"][0]
    # default steps, y0 once, then both points and y0's repeat at every halving
    assert relu["forward_calls"] == 2 * 4 + 1 + 3 * (7 + 2)
    assert centre["passed"] == [True] * 5 and centre["halvings"] == [0] * 5 and centre["forward_calls"] == 10
    rounding = [i for i in range(5) if abs(centre["numerical"][i]) > centre["tolerance"][i] - centre["noise"][i]]
    assert rounding == [0, 1, 2]  # without the noise term these measured roundings would fail


def test_the_kink_cases_are_decided_as_the_specification_says_in_the_replica_and_in_mojo():
    _kinks_as_stated(twin.replica_kinks())
    _kinks_as_stated(twin.load_recorded()["kinks"])


def test_a_nan_agrees_only_with_a_nan_of_the_same_bits():
    python = twin.replica_document()
    case = python["cases"][3]
    nan = float(np.array([0xFFF8000000000000], dtype=np.uint64).view(np.float64)[0])  # x86's default NaN
    case["numerical"][0] = nan
    both = json.loads(json.dumps(twin.encode_nans(python)))  # as the twin writes it: "nan:fff8000000000000"
    assert both["cases"][3]["numerical"][0] == "nan:fff8000000000000"
    assert twin.compare(twin.decode_nans(both), python).agree
    one_side = twin.decode_nans(both)
    one_side["cases"][3]["numerical"][0] = 1.0
    other_sign = twin.decode_nans(both)
    other_sign["cases"][3]["numerical"][0] = abs(nan)  # 7ff8000000000000: another operation's NaN
    for mojo in (one_side, other_sign):
        comparison = twin.compare(mojo, python)
        assert not comparison.agree and len(comparison.differences) == 1
        assert "numerical[0]" in comparison.differences[0] and "nan:fff8000000000000" in comparison.differences[0]


def test_compare_names_a_number_that_differs_in_its_last_bit():
    python = twin.replica_document()
    mojo = json.loads(json.dumps(python))
    value = mojo["cases"][3]["numerical"][0]
    mojo["cases"][3]["numerical"][0] = value + abs(value) * 2**-52 if value else 5e-324
    comparison = twin.compare(mojo, python)
    assert not comparison.agree
    assert len(comparison.differences) == 1 and "numerical[0]" in comparison.differences[0]
    assert "DIFFERENCES" in comparison.summary()


def test_python_m_lib_mojo_says_how_to_install_mojo_when_it_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(twin, "find_mojo", lambda: None)
    assert cli.main(["mojo"]) == 2
    assert "pip install -r requirements-mojo.txt" in capsys.readouterr().err


def test_python_m_lib_mojo_refuses_a_bad_setting_before_compiling(capsys):
    assert cli.main(["mojo", "--p", "1.5"]) == 2
    assert "p" in capsys.readouterr().err
