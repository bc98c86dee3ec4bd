"""The benchmark scripts still run: every cell of bench_gradcheck.py once at a small size, and
false_alarms.py's checkers on one case. Nothing is timed here; speed lives in the scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lib import catalogue

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["bare", "loop", "dense", "diagnose", "floor", "calls", "forward",
                                  "fast", "localise", "cheap:bare", "cheap:loop", "cheap:dense", "cheap:batch8",
                                  "matrix:dense", "matrix:batch8"])
def test_every_benchmark_cell_runs(kind):
    bench = _script("bench_gradcheck")
    value = bench.make_cell(kind, 128, np.dtype(np.float32))()
    if kind in ("dense", "diagnose", "fast") or kind.endswith(("dense", "batch8")):
        assert value is True  # a correct backward passes
    if kind == "localise":
        assert value.failing_indices.size == 1  # the corrupted element, found


def test_the_goals_table_says_what_each_goal_is_up_against(capsys):
    bench = _script("bench_gradcheck")
    bench.goal("a goal", 3.0, 2.0, unavoidable=(1.5, "the least it must do"))
    bench.print_goals()
    out = capsys.readouterr().out
    assert "MISSED" in out and "1.50x the least it must do" in out


def test_the_false_alarm_checkers_pass_a_correct_layer_and_fail_a_broken_one():
    script = _script("false_alarms")
    correct = catalogue.build("tanh", "float32", 0)
    broken = catalogue.build("tanh", "float32", 0, "derivative-of-sigmoid")
    for check in (script.ours, script.fast, script.fast64, script.plain):
        assert check(correct) and not check(broken), check.__name__
