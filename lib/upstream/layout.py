"""Which layout of the original library a checkout has, checked before anything is built.

Two layouts are known. Up to late November 2025 `check_gradient` lives in
`tests/helpers/gradient_checking.mojo` and the tests import it from there; later it
lives in `shared/testing/gradient_checker.mojo` (re-exported by `shared.testing`)
and the helpers file is a stub. Both need `shared/core/extensor.mojo` with the
ExTensor accessors the fixed checker uses. Everything refused is refused with an
error that names PATH and says what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lib.upstream import source

#: (layout name, checker file, the package the checker's sibling modules are imported from)
LAYOUTS = (
    ("tests/helpers", "tests/helpers/gradient_checking.mojo", "tests.helpers"),
    ("shared/testing", "shared/testing/gradient_checker.mojo", "shared.testing"),
)
EXTENSOR = "shared/core/extensor.mojo"
#: What gradient_check_fix.mojo and reference_checks.mojo use of ExTensor.
ACCESSORS = (r"var _numel\b", r"var _dtype\b", r"fn shape\(", r"fn _get_float64\(", r"fn _set_float64\(",
             r"^fn zeros_like\(")
#: The folders copied into the temporary tree: the tests import only `shared` and `tests`.
COPIED = ("shared", "tests")


class LayoutError(ValueError):
    """PATH is not a checkout of the original library, or one whose layout is unknown."""


@dataclass(frozen=True)
class Algorithm:
    """How the library's own checker at this commit differs, read from its source
    (see mojo/upstream/reference_checks.mojo); the runner checks each test's verdict against it."""

    auto_eps: bool
    rule_max: bool
    leak: bool


@dataclass
class Layout:
    root: Path
    name: str
    checker: Path  # relative to root
    package: str
    defaults: dict[str, str]
    algorithm: Algorithm
    test_files: list[Path] = field(default_factory=list)  # relative to root, each with >= 1 gradient test


def _function_body(text: str, name: str) -> str:
    functions = source.top_level_functions(text)
    if name not in functions:
        return ""
    start, end = functions[name]
    return source.strip_text(text)[start:end]


def algorithm_of(checker_text: str) -> Algorithm:
    check = _function_body(checker_text, source.CHECKER)
    compare = _function_body(checker_text, "assert_gradients_close")
    return Algorithm(auto_eps=re.search(r"==\s*0\.0\b", check) is not None,
                     rule_max=re.search(r"\bmax_abs\b|\bmax\(", compare) is not None,
                     leak=re.search(r"var\s+x_plus\s*=\s*x\s*$", check, re.M) is not None)


def _checker(root: Path) -> tuple[str, Path, str, str]:
    """(layout name, checker path, package, its text) of the layout whose checker defines check_gradient."""
    for name, relative, package in LAYOUTS:
        path = root / relative
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if source.CHECKER in source.top_level_functions(text):
                return name, Path(relative), package, text
    known = " or ".join(relative for _, relative, _ in LAYOUTS)
    raise LayoutError(f"PATH {root}: a layout this runner does not know: no `fn check_gradient(` in {known}")


def _require_extensor(root: Path) -> None:
    path = root / EXTENSOR
    if not path.is_file():
        raise LayoutError(f"PATH {root}: not the original library's layout: {EXTENSOR} is missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    missing = [pattern for pattern in ACCESSORS if re.search(pattern, text, re.M) is None]
    if missing:
        raise LayoutError(f"PATH {root}: a layout this runner does not know: {EXTENSOR} lacks "
                          + ", ".join(m.replace("\\", "").replace("^", "") for m in missing))


def gradient_test_files(root: Path, checker: Path) -> list[Path]:
    """tests/**/test_*.mojo files with at least one check_gradient call inside a test_* function."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.mojo")):
        relative = path.relative_to(root)
        if relative == checker:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if source.CHECKER in text and any(s.test.startswith("test_") for s in source.call_sites(text)):
            found.append(relative)
    return found


def detect(path: Path) -> Layout:
    """The layout of the checkout at `path`; LayoutError (naming PATH) for anything else."""
    root = Path(path)
    if not root.exists():
        raise LayoutError(f"PATH {root} does not exist")
    if not root.is_dir():
        raise LayoutError(f"PATH {root} is not a directory")
    if not all((root / folder).is_dir() for folder in COPIED):
        raise LayoutError(f"PATH {root}: not the original library's layout (it needs shared/ and tests/)")
    _require_extensor(root)
    name, checker, package, text = _checker(root)
    try:
        defaults = source.signature_defaults(text)
    except source.SourceError as error:
        raise LayoutError(f"PATH {root}: {checker}: {error}") from error
    layout = Layout(root.resolve(), name, checker, package, defaults, algorithm_of(text))
    layout.test_files = gradient_test_files(root, checker)
    if not layout.test_files:
        raise LayoutError(f"PATH {root}: no test file under tests/ calls check_gradient from a test_* function")
    return layout
