"""Notebooks 05 and 06: shared tools, fair tolerances, and the two masks they print."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lib.dropout import dropout
from lib.replica import replay_original_test
from lib.workbook.answers import what_is_wrong

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NB05 = NOTEBOOKS / "05_h3_implementation.ipynb"
NB06 = NOTEBOOKS / "06_h4_numerical_precision.ipynb"


def _cells(path):
    return nbformat.read(str(path), as_version=4).cells


def _code(path) -> str:
    return "\n".join(c.source for c in _cells(path) if c.cell_type == "code")


def _check_rtol(path, exercise: str) -> float:
    """The rtol of every check_answer call of one exercise (they must agree)."""
    calls = re.findall(rf'check_answer\("{exercise}",[^;]*?rtol=([^,)\s]+)', _code(path))
    assert calls, f"no check_answer with rtol for {exercise}"
    assert len(set(calls)) == 1, f"{exercise}'s checks use different tolerances: {calls}"
    named = re.search(rf"^{re.escape(calls[0])} = (.+?)(  #.*)?$", _code(path), re.MULTILINE)
    # a tolerance the notebook computes: its value at the default dtype, float32
    return float(eval(named.group(1), {"np": np, "dtype": "float32"}) if named else calls[0])


@pytest.mark.parametrize("path", [NB05, NB06], ids=lambda p: p.name[:2])
def test_the_jacobian_and_relative_error_come_from_lib_gradcheck(path):
    code = _code(path)
    assert not re.search(r"^def (numerical_jacobian|relative_error)\b", code, re.MULTILINE)
    imported = re.search(r"^from lib\.gradcheck import (.*)$", code, re.MULTILINE).group(1)
    assert "relative_error" in imported


def test_05_float16_room_accepts_float64_arithmetic_and_the_printed_value():
    rtol = _check_rtol(NB05, "Exercise 1")
    u = float(np.finfo(np.float16).eps) / 2
    reference_rtol = 1e-9  # as the notebook's REFERENCE_RTOL: its expected value adds and removes it
    expected = (2 * u + u * u + reference_rtol) - reference_rtol
    for answer in ((1 + u) ** 2 - 1, 9.768e-4):  # computed in float64; typed as printed
        assert what_is_wrong(answer, expected, rtol, 0.0) == ""
    assert what_is_wrong(2 * u, expected, rtol, 0.0)  # 2u alone leaves out u**2
    in_float16 = (1 + np.finfo(np.float16).eps / 2) ** 2 - 1  # numpy keeps float16: 0
    assert "float16" in what_is_wrong(in_float16, expected, rtol, 0.0)


def test_06_another_scale_accepts_the_ratio_as_printed():
    rtol = _check_rtol(NB06, "Exercise 4")
    x = np.array([-0.5], dtype=np.float32)
    plus, minus = (x.astype(np.float64) + 1e-5).astype(x.dtype), (x.astype(np.float64) - 1e-5).astype(x.dtype)
    rise = np.float64(plus[0] * np.float32(2)) - np.float64(minus[0] * np.float32(2))
    expected = float(np.float32(rise / 2e-5))  # the original checker's slope of 2x, kept in float32
    for printed in ("1.00136", "1.001358"):  # the ratio as notebook 06 prints it
        assert what_is_wrong(2 * float(printed), expected, rtol, 0.0) == ""
    assert what_is_wrong(2.0, expected, rtol, 0.0)  # the analytical value is not the checker's


def test_06_prints_both_masks_as_lib_and_the_replica_draw_them():
    stored = "".join(o.get("text", "") for c in _cells(NB06) for o in c.get("outputs", []))
    digits = ["".join(str(int(m)) for m in mask) for mask in (
        dropout(np.zeros(5, dtype=np.float32), 0.3, seed=42)[1], replay_original_test().test_mask)]
    assert digits[0] != digits[1]  # same seed, different generators
    assert (f"seed 42: lib.dropout's mask (numpy's generator) {digits[0]}, "
            f"the replica's test mask (Mojo's generator) {digits[1]}") in stored
