"""What this run found, in a few labelled lines built from its own verdicts.

The input is the notebooks' entries of summary.json (file, title, status,
verdict, crashed_in, verdict_cell); nothing is written in advance, so every
number comes from this run. The roles follow the workbook's plan: 01
reproduces the failure, 03-09 test the causes (CONFIRMED is a cause, REFUTED
is ruled out, LATENT a real flaw that is not the cause), 10 verifies the fix.
A notebook that crashed, or ran without printing the verdict it should have,
is said so plainly, as is a part of the answer whose notebook was not run.

Each entry also carries the facts its notebook recorded (lib.workbook.facts):
two notebooks that measured one fact differently, or a verdict read here as
reproducing the failure from a notebook whose own facts say the failure-era
check passes, are listed first, after crashes, and fail the run.
"""

from __future__ import annotations

from lib.workbook import facts

REPRODUCTION, FIX = "01", "10"
HYPOTHESES = ("03", "04", "05", "06", "07", "08", "09")
_HYPOTHESIS_LABELS = {"CONFIRMED": "Cause", "REFUTED": "Ruled out", "LATENT": "Not the cause",
                      "INCONCLUSIVE": "Undecided"}


#: A reason is cut after its first clause ('; ' ends one) that brings it to this many characters.
SHORT = 60


def _first_clause(reason: str) -> str:
    """The verdict's reason up to the '; ' after its first SHORT characters (the table keeps it whole)."""
    clauses, kept = reason.split("; "), []
    for clause in clauses:
        kept.append(clause)
        if len("; ".join(kept)) >= SHORT:
            break
    return "; ".join(kept)


def _source(entry: dict) -> str:
    return entry.get("title") or entry["file"]


def _split(entry: dict) -> tuple[str, str]:
    word, _, reason = entry.get("verdict", "-").partition(" - ")
    return word, reason


def _missing(entry: dict) -> tuple[str, str, str] | None:
    """('Crashed' or 'No verdict', text, notebook) when the entry has no verdict it should have."""
    if entry.get("status") != "ok":
        where = f"in {entry['crashed_in']}" if entry.get("crashed_in") else "before any cell ran"
        return "Crashed", f"{where}, so its verdict is missing from this answer", _source(entry)
    if entry.get("verdict", "-") == "-" and entry.get("verdict_cell"):
        return "No verdict", "it ran, but its verdict cell printed no verdict line", _source(entry)
    return None


def _stem(entry: dict) -> str:
    return entry["file"].removesuffix(".ipynb")


def fact_conflicts(notebooks: list[dict]) -> list[tuple[str, str, object, str, object]]:
    """(fact, notebook, value, other notebook, other value) for each fact two notebooks measured differently."""
    return facts.conflicts({_stem(entry): entry.get("facts") or {} for entry in notebooks})


def disagreements(notebooks: list[dict]) -> list[str]:
    """'fact: NN_a measured X, NN_b measured Y', one line per disagreement (lib.workbook.facts)."""
    return facts.disagreements({_stem(entry): entry.get("facts") or {} for entry in notebooks})


def contradictions(notebooks: list[dict]) -> list[tuple[str, str]]:
    """(notebook, text) for a verdict this module reads as reproducing the failure ('Reproduced')
    from a notebook whose own facts say the failure-era check passes (failure_index None)."""
    found = []
    for entry in notebooks:
        recorded = entry.get("facts") or {}
        if (entry["file"][:2] == REPRODUCTION and _split(entry)[0] == "CONFIRMED"
                and "failure_index" in recorded and recorded["failure_index"] is None):
            found.append((_stem(entry), "its verdict reads as reproducing the failure (CONFIRMED), but it "
                                        "recorded failure_index None: the failure-era check passes"))
    return found


def problems(notebooks: list[dict]) -> list[str]:
    """Every disagreement and contradiction of the facts, one line each: any of them fails the run."""
    return disagreements(notebooks) + [f"{notebook}: {text}" for notebook, text in contradictions(notebooks)]


def answer(notebooks: list[dict]) -> list[tuple[str, str, str]]:
    """(label, text, notebook) lines: reproduction, causes, fix, what was ruled out, and what is missing."""
    by_number = {entry["file"][:2]: entry for entry in notebooks}
    lines = [m for entry in notebooks if (m := _missing(entry))]  # said first, so that nobody misses it
    lines += [("Facts disagree", line, "") for line in disagreements(notebooks)]
    lines += [("Verdict contradicts its facts", text, _source(by_number[notebook[:2]]))
              for notebook, text in contradictions(notebooks)]
    verdicts = {n: e for n, e in by_number.items() if " - " in e.get("verdict", "")}
    if REPRODUCTION in verdicts:
        word, reason = _split(verdicts[REPRODUCTION])
        label = "Reproduced" if word == "CONFIRMED" else "Not reproduced"
        lines.append((label, _first_clause(reason), _source(verdicts[REPRODUCTION])))
    tested = [n for n in HYPOTHESES if n in verdicts]
    for number in tested:
        word, reason = _split(verdicts[number])
        if word == "CONFIRMED":
            lines.append(("Cause", _first_clause(reason), _source(verdicts[number])))
    if tested and not any(_split(verdicts[n])[0] == "CONFIRMED" for n in tested):
        lines.append(("Cause", "none confirmed in this run: no hypothesis notebook says CONFIRMED", ""))
    if FIX in verdicts:
        word, reason = _split(verdicts[FIX])
        label = "Fix" if word == "CONFIRMED" else f"Fix not confirmed ({word})"
        lines.append((label, _first_clause(reason), _source(verdicts[FIX])))
    for number in tested:
        word, reason = _split(verdicts[number])
        if word != "CONFIRMED":
            lines.append((_HYPOTHESIS_LABELS.get(word, word.capitalize()), _first_clause(reason),
                          _source(verdicts[number])))
    absent = [n for n in (REPRODUCTION, *HYPOTHESES, FIX) if n not in by_number]
    if lines and absent:
        lines.append(("Not in this run", "notebooks " + ", ".join(absent), ""))
    return lines


def entry(run, title: str) -> dict:
    """A run (lib.workbook.runner.NotebookRun) as summary.json lists it, parameters aside."""
    return {"file": run.output.name, "title": title, "status": run.status, "seconds": round(run.seconds, 2),
            "verdict": run.verdict, "error": run.error, "crashed_in": getattr(run, "cell", ""),
            "verdict_cell": getattr(run, "verdict_cell", False), "facts": dict(getattr(run, "facts", {}))}


def as_text(lines: list[tuple[str, str, str]]) -> list[str]:
    """One plain line each: 'Cause: reason (06 · H4: ...)'."""
    return [f"{label}: {text}" + (f" ({source})" if source else "") for label, text, source in lines]


def recorded(notebooks: list[dict]) -> list[tuple[str, list[tuple[object, list[str]]]]]:
    """(fact, [(value, notebooks that measured it), ...]) for every fact some notebook recorded, in the
    order of lib.workbook.facts.FACTS; values that agree (facts.same) are one group, named by the first."""
    found = []
    for name in facts.FACTS:
        groups: list[tuple[object, list[str]]] = []
        for entry in notebooks:
            measured = entry.get("facts") or {}
            if name not in measured:
                continue
            group = next((g for g in groups if facts.same(g[0], measured[name])), None)
            if group is None:
                groups.append((measured[name], [_stem(entry)]))
            else:
                group[1].append(_stem(entry))
        if groups:
            found.append((name, groups))
    return found


def recorded_text(notebooks: list[dict]) -> list[str]:
    """'failure_index: 0 (01, 03, 06)' per fact; a fact measured differently lists each value."""
    return [f"{name}: " + "; ".join(f"{value!r} ({', '.join(n[:2] for n in names)})" for value, names in groups)
            for name, groups in recorded(notebooks)]
