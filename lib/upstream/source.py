"""Reading and rewriting the Mojo sources of the original library's tests, as text.

Only what the runner needs: the top-level functions of a file, which test
functions call `check_gradient` and with what keyword arguments, which functions
main() reaches, and the two edits (a checker renamed; main() replaced by one that
runs every gradient test in its own try/except with marker lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHECKER = "check_gradient"
RENAMED_CHECKER = "upstream_check_gradient"
RENAMED_MAIN = "upstream_original_main"
_TOP_FN = re.compile(r"^fn\s+(\w+)\s*(?:\[[^\]]*\])?\s*\(", re.M)
_CALL = re.compile(r"\b(\w+)\s*\(")
_KWARG = re.compile(r"\b(epsilon|rtol|atol)\s*=\s*([-+0-9.eE]+)")


class SourceError(ValueError):
    """A test file or checker file this runner cannot read."""


@dataclass(frozen=True)
class CallSite:
    """One `check_gradient(...)` call: the test function it is in and its keyword arguments."""

    test: str
    rtol: float | None
    atol: float | None
    epsilon: float | None


def strip_text(source: str) -> str:
    """The source with docstrings, string literals and comments blanked (same length, same lines)."""
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    source = re.sub(r'"""[\s\S]*?"""', blank, source)
    source = re.sub(r'"(?:\\.|[^"\\\n])*"', blank, source)
    source = re.sub(r"'(?:\\.|[^'\\\n])*'", blank, source)
    return re.sub(r"#[^\n]*", blank, source)


def top_level_functions(source: str) -> dict[str, tuple[int, int]]:
    """name -> (start, end) offsets of each top-level `fn` (up to the next top-level statement)."""
    code = strip_text(source)
    starts = [(m.start(), m.group(1)) for m in _TOP_FN.finditer(code)]
    found = {}
    for start, name in starts:
        line_end = code.find("\n", start)
        line_end = len(code) if line_end < 0 else line_end
        following = re.compile(r"^[A-Za-z_@]", re.M).search(code, line_end + 1)
        end = following.start() if following else len(code)
        found[name] = (start, end)
    return found


def _call_text(code: str, open_paren: int) -> str:
    """The argument text of the call whose '(' is at open_paren."""
    depth = 0
    for k in range(open_paren, len(code)):
        depth += {"(": 1, ")": -1}.get(code[k], 0)
        if depth == 0:
            return code[open_paren + 1:k]
    raise SourceError("unbalanced parentheses in a check_gradient call")


def call_sites(source: str) -> list[CallSite]:
    """Every check_gradient call in a test_* function, in file order."""
    code = strip_text(source)
    functions = top_level_functions(source)
    sites = []
    for match in re.finditer(rf"\b{CHECKER}\s*\(", code):
        owner = [name for name, (start, end) in functions.items() if start <= match.start() < end]
        if not owner or owner[0] == CHECKER:
            continue
        arguments = dict(_KWARG.findall(_call_text(code, match.end() - 1)))
        sites.append(CallSite(owner[0], *(float(arguments[k]) if k in arguments else None
                                          for k in ("rtol", "atol", "epsilon"))))
    return sites


def reachable_from_main(source: str) -> set[str]:
    """Top-level functions that main() calls, directly or through other functions of the file."""
    code = strip_text(source)
    functions = top_level_functions(source)
    seen, todo = set(), ["main"]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        start, end = functions[name]
        body = code[start:end]
        body = body[body.index("(") + 1:]  # not the function's own name
        todo += [called for called in _CALL.findall(body) if called in functions]
    return seen


def rename_function(source: str, old: str, new: str) -> str:
    """Rename the top-level `fn old(` definition (calls elsewhere in the file are left alone)."""
    pattern = re.compile(rf"^fn\s+{old}(\s*\()", re.M)
    if len(pattern.findall(source)) != 1:
        raise SourceError(f"expected exactly one top-level `fn {old}(`")
    return pattern.sub(rf"fn {new}\1", source)


def _mojo_float(value: float) -> str:
    return repr(float(value))


def runner_main(file_label: str, tests: list[tuple[str, float, float]]) -> str:
    """A main() that runs each (test, original rtol, original atol) in its own try/except.

    Before each test it sets UPSTREAM_ORIGINAL_RTOL/ATOL for the dispatching checker
    and prints UPSTREAM_BEGIN; after it, UPSTREAM_END with "ok" or "raised".
    """
    lines = ["", "", "from os import setenv as upstream_setenv", "", "", "fn main() raises:",
             f'    print("UPSTREAM_FILE {file_label}", flush=True)']
    for name, rtol, atol in tests:
        lines += [
            f'    _ = upstream_setenv("UPSTREAM_ORIGINAL_RTOL", "{_mojo_float(rtol)}")',
            f'    _ = upstream_setenv("UPSTREAM_ORIGINAL_ATOL", "{_mojo_float(atol)}")',
            f'    print("UPSTREAM_BEGIN {name}", flush=True)',
            "    try:",
            f"        {name}()",
            f'        print("UPSTREAM_END {name} ok", flush=True)',
            "    except e:",
            f'        print("UPSTREAM_END {name} raised", flush=True)',
        ]
    return "\n".join(lines) + "\n"


def signature_defaults(checker_source: str) -> dict[str, str]:
    """The default values of check_gradient's epsilon, rtol and atol, as written."""
    functions = top_level_functions(checker_source)
    if CHECKER not in functions:
        raise SourceError(f"no top-level `fn {CHECKER}(` in the checker file")
    start, _ = functions[CHECKER]
    head = checker_source[start:_call_end(checker_source, checker_source.index("(", start))]
    defaults = dict(re.findall(r"\b(epsilon|rtol|atol)\s*:\s*Float64\s*=\s*([-+0-9.eE]+)", head))
    missing = {"epsilon", "rtol", "atol"} - defaults.keys()
    if missing:
        raise SourceError(f"check_gradient's signature has no default for {', '.join(sorted(missing))}")
    return defaults


def _call_end(source: str, open_paren: int) -> int:
    code = strip_text(source)
    return open_paren + len(_call_text(code, open_paren)) + 2
