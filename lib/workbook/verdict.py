"""Verdicts: the one line each hypothesis notebook ends with.

A verdict is computed from evidence by the notebook's own cells and printed as

    Verdict: WORD - reason with the deciding numbers

The workbook runner reads that line back from the executed notebook (the cell
tagged `verdict`), so the summary table shows what the evidence said in this
run, with these parameters, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: What each word means. Exactly these words are accepted.
WORDS = {
    "CONFIRMED": "this cause produces the failure",
    "REFUTED": "this cause does not produce the failure",
    "LATENT": "a real flaw, but not the cause of this failure",
    "INCONCLUSIVE": "the evidence cannot decide with these parameters",
    "OBSERVED": "what one setting of the playground shows; it tests no hypothesis",
}

#: The printed form, as the runner parses it.
VERDICT_LINE = re.compile(rf"^Verdict: ({'|'.join(WORDS)}) - (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    word: str
    reason: str

    def __post_init__(self):
        if self.word not in WORDS:
            raise ValueError(f"word must be one of {', '.join(WORDS)}; got {self.word!r}")
        if not self.reason.strip() or "\n" in self.reason:
            raise ValueError("reason must be one non-empty line")

    def __str__(self) -> str:
        return f"Verdict: {self.word} - {self.reason}"

    def show(self) -> None:
        """Print the verdict line, the form the runner reads back. Returns None, so
        a notebook cell ending in `verdict.show()` stores only the printed line."""
        print(self)


def decide(*rules: tuple[bool, str, str | Callable[[], str]]) -> Verdict:
    """The verdict of the first rule whose condition holds.

    Each rule is `(condition, word, reason)`, read top to bottom like the
    verdict's definition in the notebook's markdown. `reason` is a string or a
    function returning one, so a reason that indexes something only the
    matching case has (the first failing element) is formatted only then.

        decide((fails and fixed, "CONFIRMED", lambda: f"fails at {first} ..."),
               (not fails, "REFUTED", "the check passes"),
               (True, "INCONCLUSIVE", "it fails, and the fix does not help"))

    Raises:
        ValueError: no condition holds (end with a `True` rule to be total).
    """
    for condition, word, reason in rules:
        if condition:
            return Verdict(word, reason() if callable(reason) else reason)
    raise ValueError("no rule's condition holds; end the rules with (True, WORD, reason)")


def parse_verdict(text: str) -> Verdict | None:
    """Find the last verdict line in `text`; None when there is none."""
    matches = VERDICT_LINE.findall(text)
    if not matches:
        return None
    word, reason = matches[-1]
    return Verdict(word, reason.strip())
