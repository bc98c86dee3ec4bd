"""Parameter sets for `python -m lib sweep`: drawn at random from the declared ranges, or named on the command line.

A drawn set gives a value to every parameter the selected notebooks declare
with a range or as a bool (a free string such as a path keeps its default).
Each value lies in the range of every selected notebook that declares it, and
in a practical span (PRACTICAL) within that: a step eps log-uniform between
1e-7 and 1e-2, a seed from 0 to 100, a size from 1 to 20, the listed choices
of a `one of {...}` parameter. The whole set then passes the runner's own
check (lib.workbook.parameters.resolve_parameters, which also refuses a p
whose scale overflows the set's dtype), or it is drawn again; so a drawn set
is never refused before it runs.

A named set is `NAME=VALUE[,NAME=VALUE...]` (a list value keeps its commas:
`values=0.1,-0.5,seed=2`), checked by that same function.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from lib.workbook.parameters import WorkbookError, declared_parameters, resolve_parameters

#: Where a drawn value lies, within the declared ranges: (low, high, how). `how` is "log" (log-uniform),
#: "uniform", "int" (uniform integers), "logint" (log-uniform integers) or "signed-log" (either sign).
PRACTICAL = {
    "eps": (1e-7, 1e-2, "log"),
    "p": (0.0, 0.9, "uniform"),
    "seed": (0, 100, "int"),
    "size": (1, 20, "int"),
    "n_calls": (1, 50, "int"),
    "n_max": (100, 10**5, "logint"),
    "fault": (0.1, 1000.0, "signed-log"),
}
#: Spans for a parameter PRACTICAL does not name, by its type, within its declared range.
GENERIC = {"int": (0, 100, "int"), "float": (1e-3, 1e3, "log")}
#: Attempts at a value the declared ranges accept, and at a set the runner accepts, before giving up.
TRIES = 200


def _significant(value: float, digits: int = 2) -> float:
    """A drawn float rounded to `digits` significant digits, so that the table shows it whole."""
    return float(f"{value:.{digits}g}")


def _value(rng: random.Random, low, high, how: str):
    if how == "int":
        return rng.randint(int(low), int(high))
    if how == "logint":
        return round(math.exp(rng.uniform(math.log(low), math.log(high))))
    if how == "uniform":
        return round(rng.uniform(low, high), 2)
    magnitude = _significant(math.exp(rng.uniform(math.log(low), math.log(high))))
    return -magnitude if how == "signed-log" and rng.random() < 0.5 else magnitude


def _span(name: str, kind: str, ranges: list) -> tuple | None:
    """(low, high, how) for a number parameter: its practical span, narrowed to the declared bounds."""
    low, high, how = PRACTICAL.get(name) or GENERIC.get(kind) or (None, None, None)
    if how is None or how == "signed-log":  # either sign: the declared ranges refuse what they must
        return None if how is None else (low, high, how)
    bottom, top = max(r.low for r in ranges), min(r.high for r in ranges)
    if max(low, bottom) <= min(high, top):
        return max(low, bottom), min(high, top), how
    # the practical span lies outside what the notebooks accept: the hundred above their lowest value
    start = bottom if math.isfinite(bottom) else top - 100
    return start, min(top, start + 100), "int" if kind == "int" else "uniform"


def drawable(selected: list[Path]) -> dict[str, dict]:
    """Name -> {'kind', 'ranges', 'choices' or 'span'} for every parameter a sweep draws."""
    declared: dict[str, list[dict]] = {}
    for path in selected:
        for name, info in declared_parameters(path).items():
            declared.setdefault(name, []).append(info)
    found = {}
    for name, infos in declared.items():
        kind = infos[0]["type"].lower()
        ranges = [info["range"] for info in infos if info["range"] is not None]
        if any(r.choices is not None for r in ranges):
            choices = [c for c in next(r.choices for r in ranges if r.choices) if all(r.accepts(c) for r in ranges)]
            found[name] = {"kind": "str", "ranges": ranges, "choices": choices}
        elif kind == "bool":
            found[name] = {"kind": kind, "ranges": [], "choices": [True, False]}
        elif kind in ("int", "float") and ranges and (span := _span(name, kind, ranges)):
            found[name] = {"kind": kind, "ranges": ranges, "span": span}
    return found


def _draw_one(rng: random.Random, name: str, spec: dict):
    for _ in range(TRIES):
        value = rng.choice(spec["choices"]) if "choices" in spec else _value(rng, *spec["span"])
        value = int(value) if spec["kind"] == "int" else value
        if all(r.accepts(value) for r in spec["ranges"]):
            return value
    raise WorkbookError(f"no value of {name} that every selected notebook accepts was found in {TRIES} draws; "
                        f"name its values with --set")


def text(value) -> str:
    """A value as -p takes it back (repr keeps a float exact)."""
    return repr(value) if isinstance(value, float) else str(value)


def draw_set(rng: random.Random, selected: list[Path], specs: dict | None = None) -> dict:
    """One set {name: value} that every selected notebook accepts (see the module docstring)."""
    specs = drawable(selected) if specs is None else specs
    for _ in range(TRIES):
        values = {name: _draw_one(rng, name, spec) for name, spec in specs.items()}
        try:
            resolve_parameters(selected, [(name, text(value)) for name, value in values.items()])
        except WorkbookError:
            continue
        return values
    raise WorkbookError(f"no parameter set that every selected notebook accepts was found in {TRIES} draws")


def draw_sets(seed: int, count: int, selected: list[Path]) -> list[dict]:
    """`count` sets drawn with random.Random(seed): the same seed, the same sets."""
    rng, specs = random.Random(seed), drawable(selected)
    return [draw_set(rng, selected, specs) for _ in range(count)]


def parse_set(given: str) -> list[tuple[str, str]]:
    """'seed=2,p=0.9' -> [('seed', '2'), ('p', '0.9')]; a piece without '=' continues the value before it."""
    pairs: list[tuple[str, str]] = []
    for piece in given.split(","):
        name, equals, value = piece.partition("=")
        if equals and name.strip().isidentifier():
            pairs.append((name.strip(), value.strip()))
        elif pairs and not equals:
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]},{piece.strip()}")
        else:
            raise WorkbookError(f"--set takes NAME=VALUE[,NAME=VALUE...]; got {given!r}")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise WorkbookError(f"--set {given}: {', '.join(repeated)} given more than once")
    return pairs


def check_set(given: str, selected: list[Path]) -> list[tuple[str, str]]:
    """The pairs of a named set, refused (naming the --set and the ranges) unless every notebook accepts them."""
    pairs = parse_set(given)
    try:
        resolve_parameters(selected, pairs)
    except WorkbookError as error:
        raise WorkbookError(f"--set {given}: {error}") from None
    return pairs
