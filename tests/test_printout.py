"""`python -m lib diagnose`: the plan's step-1 printout."""

from __future__ import annotations

import io

import pytest

from lib.replica.printout import print_diagnostic
from lib.workbook.cli import main


def _printout(**switches) -> tuple[int, str]:
    out = io.StringIO()
    code = print_diagnostic(out=out, **switches)
    return code, out.getvalue()


def test_original_setup_fails_with_the_original_line_and_numbers():
    code, text = _printout()
    assert code == 1
    assert "FAIL: Gradient check failed for float32: gradient mismatch at index 0" in text.splitlines()[-1]
    row0 = next(line for line in text.splitlines() if line.strip().startswith("0 "))
    assert "1.4285715" in row0 and "1.4305115" in row0 and "2.00272e-05" in row0 and row0.endswith("FAIL")
    assert "forward masks equal to the backward's: 10/10 calls" in text


def test_realised_division_passes():
    code, text = _printout(divide_by="realised")
    assert code == 0
    assert text.splitlines()[-1].startswith("PASS: all 5 elements")


def test_global_rng_shows_differing_masks():
    code, text = _printout(rng="global")
    assert code == 1
    assert "DIFFERENT" in text
    assert "forward masks equal to the backward's: 10/10" not in text


def test_leaking_checker_shows_the_drifted_input():
    _, text = _printout(restore_input=False)
    assert "x after the check" in text


def test_cli_arguments_reach_the_replica(capsys):
    assert main(["diagnose", "--dtype", "float64"]) == 0
    assert "float64" in capsys.readouterr().out
    assert main(["diagnose", "--values", "0.25", "0.75", "--seed", "3", "--calls", "2"]) in (0, 1)
    text = capsys.readouterr().out
    assert "input x           [0.25, 0.75]" in text
    assert text.count("forward call ") == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--p", "1.5"], "argument --p: must be a number in [0, 1); got 1.5"),
    (["--eps", "0"], "argument --eps: must be a number in (0, inf); got 0"),
    (["--seed", "-3"], "argument --seed: must be an integer in [0, 2**63); got -3"),
    (["--calls", "0"], "argument --calls: must be an integer in [1, inf); got 0"),
])
def test_cli_bad_input_names_the_argument(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:  # argparse refuses it, before any work, with exit code 2
        main(["diagnose", *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
