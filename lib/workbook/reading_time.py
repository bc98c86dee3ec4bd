"""How long a reader needs for a notebook: an estimate from what the notebook asks of them.

A learner reads the prose, reads the code cells and what they print, looks at
each figure, and does each exercise; the Solutions section is read only after
an exercise, so it is not counted. The rates are those of a careful reader of
technical material:

* prose: 150 words a minute;
* code: 20 non-blank lines a minute; printed output: 40 lines a minute;
* a figure: 1 minute;
* an exercise with a numeric or yes/no answer: 5 minutes; one that asks for a
  function (a derivation implemented and checked): 12 minutes.

The README's learner's paths quote these estimates; tests/test_readme.py keeps
them equal to what this module computes from the stored notebooks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

WORDS_PER_MINUTE = 150
CODE_LINES_PER_MINUTE = 20
OUTPUT_LINES_PER_MINUTE = 40
MINUTES_PER_FIGURE = 1
MINUTES_PER_ANSWER = 5
MINUTES_PER_FUNCTION = 12

_SOLUTIONS = re.compile(r"^## Solutions", re.MULTILINE)
_CHECKED = re.compile(r"check_(answer|function)\(\s*f?\"(Exercise \d+)")


@dataclass(frozen=True)
class Reading:
    """What a notebook asks of a reader before its Solutions, and the minutes it takes."""

    words: int
    code_lines: int
    output_lines: int
    figures: int
    answers: int
    functions: int

    @property
    def minutes(self) -> float:
        return (self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE
                + self.output_lines / OUTPUT_LINES_PER_MINUTE + self.figures * MINUTES_PER_FIGURE
                + self.answers * MINUTES_PER_ANSWER + self.functions * MINUTES_PER_FUNCTION)


def reading(path: Path) -> Reading:
    """Count, in the stored notebook at `path`, everything a reader meets before its Solutions."""
    cells = nbformat.read(str(path), as_version=4).cells
    end = next((i for i, cell in enumerate(cells) if _SOLUTIONS.search(cell.source)), len(cells))
    cells = cells[:end]
    code = [cell for cell in cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    checked = {}
    for kind, name in _CHECKED.findall("\n".join(cell.source for cell in code)):
        checked[name] = "function" if kind == "function" or checked.get(name) == "function" else "answer"
    return Reading(
        words=sum(len(cell.source.split()) for cell in cells if cell.cell_type == "markdown"),
        code_lines=sum(1 for cell in code for line in cell.source.splitlines() if line.strip()),
        output_lines=sum(len(_text(output).splitlines()) for output in outputs),
        figures=sum(1 for output in outputs if "image/png" in output.get("data", {})),
        answers=sum(1 for kind in checked.values() if kind == "answer"),
        functions=sum(1 for kind in checked.values() if kind == "function"))


def path_minutes(paths: list[Path]) -> float:
    """Minutes for reading the notebooks at `paths` one after the other."""
    return sum(reading(path).minutes for path in paths)


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "" if "image/png" in data else data.get("text/plain", "")
