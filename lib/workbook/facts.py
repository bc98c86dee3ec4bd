"""Facts a notebook measured, written in a machine-readable form for the runner to cross-check.

Several notebooks measure the same thing under the same parameters: where the
original check fails, the step ratio there, whether the forward draws the same
mask on every call, whether the fixes pass. A notebook records what it measured
with `record_facts(...)`, usually in its verdict cell, from the same variables its
verdict is computed from; `python -m lib run` then checks that every notebook
that measured a fact found the same value (lib.workbook.summary), and lists a
disagreement as a failure of the run.

In JupyterLab (no runner) `record_facts` checks its arguments and writes nothing.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path

#: The environment variable the runner sets, per notebook, to the file the facts go to.
FACTS_FILE = "WORKBOOK_FACTS"

#: Every fact a notebook may record, and what it means. All are about the original test
#: (the replica) under the run's parameters.
FACTS = {
    "failure_index": "first index at which the failure-era check fails (None: it passes)",
    "failure_ratio": "error/tolerance of the failure-era check at failure_index (None: it passes)",
    "step_ratio": "realised step / nominal 2*eps at failure_index, in the run's dtype (None: it passes)",
    "forward_deterministic": ("the 2N forward calls of one failure-era check of the test (the "
                              "replica's, lib.replica.replay_original_test: forward_masks) all draw "
                              "the same mask"),
    "mask_matches": ("the mask the backward multiplies by equals the mask of the test's own forward "
                     "call, the one made before the check (replay_original_test: backward_mask "
                     "against test_mask)"),
    "minimal_patch_passes": "the failure-era checker dividing by the realised step passes the test",
    "complete_fix_passes": "lib.check_gradient (default step, realised step) passes the test",
}

#: The parameters that define the original test, and their values in a notebook that does not
#: declare one (the test as it failed). Facts are compared only between notebooks whose test had
#: the same values: under `-p size=1000` a notebook without `size` measures the five-element test.
TEST_PARAMETERS = {"dtype": "float32", "p": 0.3, "seed": 42, "eps": 1e-5, "size": 5}

#: Where a facts file keeps the test's parameters, beside the facts.
TEST_KEY = "test"

#: Two measurements of a float fact agree within this relative difference (they may
#: come from different, equally valid, float64 computations).
RELATIVE = 1e-9


def _plain(name: str, value):
    """The value as JSON can hold it: None, bool, int or finite float; refuses anything else."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"fact {name} must be finite; got {value!r}")
    return number


def record_facts(**facts) -> dict:
    """Record facts this notebook measured; returns them as recorded.

    Raises ValueError for a name not in FACTS (the message lists them) or a
    non-finite number, so a typo cannot go unchecked.
    """
    unknown = sorted(set(facts) - set(FACTS))
    if unknown:
        raise ValueError(f"unknown fact(s) {', '.join(unknown)}; known: {', '.join(FACTS)}")
    recorded = {name: _plain(name, value) for name, value in facts.items()}
    target = os.environ.get(FACTS_FILE)
    if target:
        path = Path(target)
        earlier = json.loads(path.read_text()) if path.exists() else {}
        test = _test_parameters(inspect.currentframe().f_back.f_globals)
        path.write_text(json.dumps({**earlier, **recorded, TEST_KEY: test}, indent=1, sort_keys=True) + "\n")
    return recorded


def _test_parameters(namespace: dict) -> dict:
    """The test's parameters the notebook has as variables of its own (its parameters cell's)."""
    found = {}
    for name in TEST_PARAMETERS:
        value = namespace.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, str | int | float) or hasattr(value, "dtype"):
            found[name] = str(value) if name == "dtype" else _plain(name, value)
    return found


def test_of(recorded: dict) -> tuple:
    """The values of TEST_PARAMETERS of the test a notebook's facts are about (defaults where it has none)."""
    given = recorded.get(TEST_KEY) or {}
    return tuple(given.get(name, default) for name, default in TEST_PARAMETERS.items())


def read_facts(path: Path) -> dict:
    """The facts a notebook recorded ({} when it recorded none)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def same(a, b) -> bool:
    """Whether two recorded values of a fact agree (floats within RELATIVE)."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            return False
        return math.isclose(float(a), float(b), rel_tol=RELATIVE, abs_tol=0.0)
    return a == b


def conflicts(by_notebook: dict[str, dict]) -> list[tuple[str, str, object, str, object]]:
    """(fact, first notebook, its value, other notebook, its value) for every notebook that recorded a
    fact differently from the first (in name order) that recorded it, among notebooks whose facts are
    about the same test (test_of)."""
    found = []
    groups: dict[tuple, dict] = {}  # only notebooks that measured the same test are compared
    for notebook, recorded in sorted(by_notebook.items()):
        groups.setdefault(test_of(recorded), {})[notebook] = recorded
    for group in groups.values():
        for name in FACTS:
            seen = [(notebook, facts[name]) for notebook, facts in group.items() if name in facts]
            first_notebook, first = seen[0] if seen else (None, None)
            for notebook, value in seen[1:]:
                if not same(first, value):
                    found.append((name, first_notebook, first, notebook, value))
    return sorted(found, key=lambda conflict: (list(FACTS).index(conflict[0]), conflict[1], conflict[3]))


def disagreements(by_notebook: dict[str, dict]) -> list[str]:
    """One line per fact that two notebooks recorded differently, naming both and their values."""
    return [f"{name}: {first_notebook} measured {first!r}, {notebook} measured {value!r}"
            for name, first_notebook, first, notebook, value in conflicts(by_notebook)]
