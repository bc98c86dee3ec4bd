"""Numbers in a notebook's prose that belong to one parameter set: the test's tool.

A markdown number that a default run prints, but a run with other parameters
does not, is a claim about the defaults. It may stand only where its
paragraph says so ("with the default parameters", "the original parameters"),
or where it is history (the reported numbers, the post-mortem, a commit id).
Everything else must be printed by a cell, so that it follows the parameters.
"""

from __future__ import annotations

import re

import nbformat

#: A number as prose writes it: -121,428 or 1.4305115 or 7.1e4 (not part of a word or a version).
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])", re.IGNORECASE)

#: Paragraphs that say which parameter set, or which piece of history, they describe.
QUALIFIED = re.compile(r"default|original (?:parameters|settings|test)|reported|post-mortem|\b[0-9a-f]{8}\b",
                       re.IGNORECASE)


def significant_digits(token: str) -> int:
    mantissa = re.split(r"[eE]", token.replace(",", "").lstrip("+-−"))[0]
    return len(mantissa.replace(".", "").lstrip("0"))


def printed_text(notebook) -> str:
    """Every text output of the notebook, also with thousands separators removed."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "text/plain" in output.get("data", {}):
                parts.append(output["data"]["text/plain"])
    text = "".join(parts)
    return text + "\n" + text.replace(",", "")


def paragraphs(markdown: str):
    """Paragraphs, list items and table rows: the unit a qualifier ("with the defaults") covers."""
    return re.split(r"\n\s*\n|\n(?=\s*[-*] |\s*\d+\. |\|)", markdown)


def parameter_bound_claims(default_run, other_run, min_digits: int = 3) -> list[tuple[str, str]]:
    """(number, paragraph) for each unqualified prose number printed by default_run but not by other_run."""
    default_out, other_out = printed_text(default_run), printed_text(other_run)
    found = []
    for cell in default_run.cells:
        if cell.cell_type != "markdown":
            continue
        for paragraph in paragraphs(cell.source):
            if QUALIFIED.search(paragraph):
                continue
            for token in NUMBER.findall(paragraph):
                bare = token.lstrip("+-−").rstrip(",")
                forms = {bare, bare.replace(",", "")}
                if significant_digits(token) >= min_digits and any(f in default_out for f in forms) \
                        and not any(f in other_out for f in forms):
                    found.append((token, " ".join(paragraph.split())[:200]))
    return found


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)
