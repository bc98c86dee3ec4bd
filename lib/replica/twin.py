"""Run the Mojo twin (`mojo/twin.mojo`) and compare it with the replica, bit for bit.

The twin is this project's own small Mojo program: Mojo's generator, the
original dropout and dropout2d, the failure-era checker and the complete fix,
the two tests, and the complete fix on a few functions with kinks and exact
zeros (`lib.replica.kink_cases`), every number printed as JSON (float64 digits
that read back exactly; a NaN as its 64 bits, see `decode_nans`).
`replica_document` builds the same document from `lib.replica`; `compare`
lists every number that differs in its float64 bits. A Mojo run can be
recorded (`record`) so that a machine without `mojo` still sees the last
measured one.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.replica.kink_cases import kink_cases, run_kink_case
from lib.replica.rng import MojoRandom, mojo_random_float64
from lib.replica.run import replay_original_test

#: The twin's sources, beside the package in a checkout.
MOJO_DIR = Path(__file__).resolve().parents[2] / "mojo"
RECORDED_RUN = MOJO_DIR / "recorded_run.json"
#: The compiler the original project pinned; requirements-mojo.txt installs it.
PINNED_MOJO = "0.25.7"
RNG_SEEDS = {42: 12, 7: 3, 4294967338: 3, 2147483647: 3}
ARRAYS = ("x", "mask", "analytical", "numerical", "step", "tolerance", "x_after")
SCALARS = ("first_failing_index", "message")
#: What only the fixed checker records: its noise term, verdicts and stage-2 steps, per element.
FIXED_ARRAYS = ("noise", "passed", "halvings", "decided_step", "subgradient", "slope_plus", "slope_minus")
KINK_ARRAYS = ("x", "analytical", "numerical", "step", "tolerance", *FIXED_ARRAYS)
#: A NaN in the JSON: "nan:" and its 64 bits in hex (JSON's NaN token would lose sign and payload).
NAN_PREFIX = "nan:"


class MojoUnavailable(RuntimeError):
    """`mojo` is not installed, or the twin could not be built or run."""


def find_mojo() -> str | None:
    """Path of the `mojo` command: on PATH, or beside this interpreter (an unactivated venv)."""
    beside = Path(sys.executable).parent / "mojo"
    return shutil.which("mojo") or (str(beside) if beside.exists() else None)


def mojo_version(mojo: str) -> str:
    """`mojo --version`'s text, e.g. 'Mojo 0.25.7.0 (e5af2b2f)'."""
    return subprocess.run([mojo, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def twin_binary(mojo: str, timeout: float = 600) -> Path:
    """The twin compiled once per source and compiler: `mojo build` into a cache, reused by later runs.

    The cache key is a hash of every .mojo source and `mojo --version`, so an edited source or another
    compiler builds anew. The binary is written beside its final name and renamed into place, so two
    processes building at once never see a half-written file. The cache lives in $WORKBOOK_CACHE, or
    else $XDG_CACHE_HOME (or ~/.cache)/dropout-gradcheck-workbook.
    """
    digest = hashlib.sha256(mojo_version(mojo).encode())
    for source in sorted(MOJO_DIR.glob("*.mojo")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    cache = (Path(os.environ["WORKBOOK_CACHE"]) if os.environ.get("WORKBOOK_CACHE") else
             Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dropout-gradcheck-workbook")
    binary = cache / f"twin-{digest.hexdigest()[:20]}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as building:
        built = Path(building) / "twin"
        done = subprocess.run([mojo, "build", "-I", str(MOJO_DIR), str(MOJO_DIR / "twin.mojo"), "-o", str(built)],
                              capture_output=True, text=True, timeout=timeout, cwd=MOJO_DIR)
        if done.returncode != 0:
            raise MojoUnavailable(f"the Mojo twin did not build (exit {done.returncode}): "
                                  f"{done.stderr.strip()[-2000:]}")
        os.replace(built, binary)
    return binary


def twin_arguments(*, p: float | None = None, seed: int = 42, eps: float = 1e-5) -> list[str]:
    arguments = ["--seed", str(seed), "--eps", repr(eps)]
    return arguments + (["--p", repr(p)] if p is not None else [])


def run_twin(*, p: float | None = None, seed: int = 42, eps: float = 1e-5, timeout: float = 600) -> dict:
    """Build the twin (once; see twin_binary) and run it; returns its JSON document plus "mojo_version".

    Raises MojoUnavailable with a one-line reason when `mojo` is missing or the twin fails.
    """
    mojo = find_mojo()
    if mojo is None:
        raise MojoUnavailable(f"mojo is not installed; `pip install -r requirements-mojo.txt` installs the "
                              f"compiler the original project pinned (Mojo {PINNED_MOJO})")
    command = [str(twin_binary(mojo, timeout)), *twin_arguments(p=p, seed=seed, eps=eps)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=MOJO_DIR)
    if done.returncode != 0:
        raise MojoUnavailable(f"the Mojo twin failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    document = decode_nans(json.loads(done.stdout))
    document["mojo_version"] = mojo_version(mojo)
    return document


def case_switches() -> list[dict]:
    """The twin's cases in its order: both tests, both dtypes, every switch both sides have."""
    cases = []
    for test, dtype in itertools.product(("dropout", "dropout2d"), ("float32", "float64")):
        for divide_by, restore, forward, rng in itertools.product(
                ("nominal", "realised"), (False, True), ("stochastic", "fixed_mask"), ("reseed", "global")):
            cases.append(dict(test=test, dtype=dtype, checker="original", divide_by=divide_by,
                              restore_input=restore, forward=forward, rng=rng))
        for divide_by, forward, rng in itertools.product(
                ("nominal", "realised"), ("stochastic", "fixed_mask"), ("reseed", "global")):
            cases.append(dict(test=test, dtype=dtype, checker="fixed", divide_by=divide_by,
                              restore_input=True, forward=forward, rng=rng))
    return cases


def _numbers(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def decode_nans(value):
    """`value` with every "nan:<hex>" string replaced by the float64 NaN of exactly those bits."""
    if isinstance(value, str) and value.startswith(NAN_PREFIX):
        return float(np.array([int(value[len(NAN_PREFIX):], 16)], dtype=np.uint64).view(np.float64)[0])
    if isinstance(value, list):
        return [decode_nans(v) for v in value]
    if isinstance(value, dict):
        return {k: decode_nans(v) for k, v in value.items()}
    return value


def encode_nans(value):
    """The inverse of `decode_nans`: every NaN float as "nan:<its 64 bits in hex>"."""
    if isinstance(value, float) and value != value:
        return f"{NAN_PREFIX}{int(np.array([value]).view(np.uint64)[0]):016x}"
    if isinstance(value, list):
        return [encode_nans(v) for v in value]
    if isinstance(value, dict):
        return {k: encode_nans(v) for k, v in value.items()}
    return value


def _fixed_fields(r) -> dict:
    """The fixed checker's own record (FixedCheckResult) in the twin's JSON layout."""
    fields = {key: _numbers(getattr(r, "element_passed" if key == "passed" else key)) for key in FIXED_ARRAYS}
    fields["passed"] = [bool(v) for v in fields["passed"]]
    fields["subgradient"] = [bool(v) for v in fields["subgradient"]]
    fields["halvings"] = [int(v) for v in fields["halvings"]]
    return {**fields, "forward_calls": r.forward_calls}


def replica_kinks() -> list[dict]:
    """The twin's "kinks" section: the fixed checker on lib.replica.kink_cases."""
    out = []
    for name, forward, backward, x in kink_cases():
        r = run_kink_case(forward, backward, x)
        out.append({"name": name, "dtype": str(x.dtype), "x": _numbers(x), "analytical": _numbers(r.analytical),
                    "numerical": _numbers(r.numerical), "step": _numbers(r.step),
                    "tolerance": _numbers(r.tolerance), **_fixed_fields(r),
                    "first_failing_index": r.first_failing_index})
    return out


def replica_case(switches: dict, *, p: float | None, seed: int, eps: float) -> dict:
    """One case as the replica computes it, in the twin's JSON layout."""
    keywords = {**switches, "seed": seed, "eps": eps}
    if p is not None:
        keywords["p"] = p
    run = replay_original_test(**keywords)
    r = run.result
    fixed = _fixed_fields(r) if switches["checker"] == "fixed" else {}
    return {**switches, "p": run.switches["p"], "seed": seed, "eps": eps, "rtol": r.rtol, "atol": r.atol,
            "x": _numbers(run.x_before), "mask": _numbers(run.test_mask), "analytical": _numbers(r.analytical),
            "numerical": _numbers(r.numerical), "step": _numbers(r.step), "tolerance": _numbers(r.tolerance),
            "x_after": _numbers(run.x_after), **fixed, "first_failing_index": r.first_failing_index,
            "message": None if run.message is None else run.message.splitlines()[0]}


def replica_document(*, p: float | None = None, seed: int = 42, eps: float = 1e-5) -> dict:
    """The twin's whole document, computed by lib.replica."""
    fresh = MojoRandom().random_float64(3)
    return {
        "rng": {"fresh": _numbers(fresh),
                "seeded": [{"seed": s, "draws": _numbers(mojo_random_float64(s, n))} for s, n in RNG_SEEDS.items()]},
        "cases": [replica_case(c, p=p, seed=seed, eps=eps) for c in case_switches()],
        "kinks": replica_kinks(),
    }


def _bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.uint64)


def _shown(bits: np.uint64) -> str:
    """A float64 by its bits: repr for a number, "nan:<hex>" for a NaN (whose repr hides sign and payload)."""
    value = np.array([bits], dtype=np.uint64).view(np.float64)[0]
    return encode_nans(float(value)) if np.isnan(value) else repr(float(value))


@dataclass
class Comparison:
    """What `compare` found: how many numbers agreed bit for bit, and every difference."""

    numbers: int = 0
    identical: int = 0
    cases: int = 0
    kinks: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.differences and self.numbers > 0

    def summary(self) -> str:
        state = "identical" if self.agree else f"{len(self.differences)} DIFFERENCES"
        kinks = f" and {self.kinks} kink cases" if self.kinks else ""
        return f"{self.identical}/{self.numbers} numbers in {self.cases} cases{kinks} bit for bit: {state}"


def _compare_arrays(where: str, mojo, python, out: Comparison) -> None:
    """Compare by all 64 bits, a NaN's sign and payload included.

    A NaN on one side only differs from whatever the other side has, and two NaNs agree only
    when their bits do. Both programs run the same IEEE operations on the same machine: an
    invalid operation (0/0, inf - inf) gives that machine's default NaN in both (on x86 the
    sign bit is set: fff8000000000000), and arithmetic passes a NaN operand's payload on. Two
    NaNs with different bits therefore came from different operations, which is what this
    comparison exists to find; the twin prints NaNs with their bits so that nothing is lost.
    """
    mojo, python = _bits(mojo), _bits(python)
    if mojo.shape != python.shape:
        out.differences.append(f"{where}: {mojo.size} numbers from Mojo, {python.size} from the replica")
        return
    out.numbers += mojo.size
    out.identical += int(np.sum(mojo == python))
    for i in np.flatnonzero(mojo != python)[:3]:
        out.differences.append(f"{where}[{i}]: Mojo {_shown(mojo[i])}, replica {_shown(python[i])}")


def _compare_values(where: str, mojo, python, out: Comparison) -> None:
    """An index, count or message, compared by value."""
    out.numbers += 1
    if mojo == python:
        out.identical += 1
    else:
        out.differences.append(f"{where}: Mojo {mojo!r}, replica {python!r}")


def case_label(case: dict) -> str:
    keys = ("test", "dtype", "checker", "divide_by", "restore_input", "forward", "rng")
    return " ".join(f"{case[k]}" if k != "restore_input" else ("restores" if case[k] else "leaks") for k in keys)


def compare(mojo: dict, python: dict) -> Comparison:
    """Every number of the two documents, compared by float64 bits; messages and indices by value."""
    out = Comparison()
    _compare_arrays("rng fresh", mojo["rng"]["fresh"], python["rng"]["fresh"], out)
    for m, p in zip(mojo["rng"]["seeded"], python["rng"]["seeded"], strict=True):
        _compare_arrays(f"rng seed {m['seed']}", m["draws"], p["draws"], out)
    if len(mojo["cases"]) != len(python["cases"]):
        out.differences.append(f"{len(mojo['cases'])} cases from Mojo, {len(python['cases'])} from the replica")
    for m, p in zip(mojo["cases"], python["cases"], strict=False):
        label = case_label(p)
        if case_label(m) != label:
            out.differences.append(f"case order differs: Mojo {case_label(m)!r}, replica {label!r}")
            continue
        out.cases += 1
        fixed = p["checker"] == "fixed"
        for key in ARRAYS + (FIXED_ARRAYS if fixed else ()):
            _compare_arrays(f"{label}: {key}", m.get(key, []), p[key], out)
        for key in SCALARS + (("forward_calls",) if fixed else ()):
            _compare_values(f"{label}: {key}", m.get(key), p[key], out)
    _compare_kinks(mojo.get("kinks", []), python["kinks"], out)
    return out


def _compare_kinks(mojo: list[dict], python: list[dict], out: Comparison) -> None:
    if [m["name"] for m in mojo] != [p["name"] for p in python]:
        out.differences.append(f"kink cases differ: Mojo {[m['name'] for m in mojo]}, "
                               f"replica {[p['name'] for p in python]}")
        return
    for m, p in zip(mojo, python, strict=True):
        out.kinks += 1
        for key in KINK_ARRAYS:
            _compare_arrays(f"kink {p['name']}: {key}", m[key], p[key], out)
        for key in ("forward_calls", "first_failing_index"):
            _compare_values(f"kink {p['name']}: {key}", m[key], p[key], out)


def record(document: dict, path: Path = RECORDED_RUN) -> Path:
    """Write a Mojo run with its compiler version and date, for machines without `mojo`."""
    stamped = {"recorded": datetime.date.today().isoformat(), **document}
    path.write_text(json.dumps(encode_nans(stamped), allow_nan=False) + "\n")
    return path


def load_recorded(path: Path = RECORDED_RUN) -> dict:
    """The last recorded Mojo run (see `record`)."""
    return decode_nans(json.loads(path.read_text()))
