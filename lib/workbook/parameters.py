"""Notebook parameters on the command line: what each notebook declares, and checks before any kernel starts.

A notebook declares its parameters in its first code cell (tagged `parameters`),
as annotated literals; `-p NAME VALUE` reaches every selected notebook that
declares NAME, converted to the declared (or default's) type and checked by the
same argument checks the library uses, so a bad value is refused in one line
before papermill starts a kernel.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
from pathlib import Path

from lib import _checks
from lib.replica import SWITCHES


class WorkbookError(Exception):
    """A usage error: bad selection, unknown or invalid parameter, bad output folder."""


# Shared parameter names and what each accepts, checked before any kernel starts
# by the same argument checks the library uses (lib._checks), so the accepted
# ranges are stated once.
def _finite_nonzero(value, name):
    value = _checks.real_number(value, name)
    if not math.isfinite(value) or value == 0.0:
        raise ValueError(f"{name} must be a finite number other than 0; got {value!r}")
    return value


def _one_of(accepted):
    return lambda value, name: _checks.choice(value, name, accepted)


PARAMETER_RULES = {
    "dtype": lambda value, name: str(_checks.dtype_from_name(value, name)),
    "p": lambda value, name: _checks.drop_probability(value),
    # the original library's seeds were 64-bit integers; a bigger one is refused before any kernel starts
    "seed": lambda value, name: _checks.positive_int(value, name, low=0, high=2**63 - 1),
    "eps": lambda value, name: _checks.positive_step(value),
    "size": lambda value, name: _checks.positive_int(value, name),
    "n_calls": lambda value, name: _checks.positive_int(value, name),
    "n_max": lambda value, name: _checks.positive_int(value, name, low=100),
    "fault": _finite_nonzero,
    # the replica's string switches, as the playground declares them
    **{name: _one_of(SWITCHES[name]) for name in ("divide_by", "rng", "forward", "backward_mask")},
}

_CONVERTERS = {"int": int, "float": float, "str": str,
               "bool": lambda v: {"true": True, "false": False}[str(v).lower()]}


def _parameters_cell(path: Path) -> str:
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as error:
        raise WorkbookError(f"{path.name} is not a readable notebook ({error})") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else source
    return ""


def declared_parameters(path: Path) -> dict[str, dict]:
    """Name -> {'type', 'default', 'help'} from the notebook's `parameters` cell.

    Read straight from the file with Python's own parser (papermill's
    inspection starts a translator per notebook and takes seconds for the
    workbook). 'type' is the annotation, or the type of the default when the
    line has none, as papermill's command line infers it.
    """
    found: dict[str, dict] = {}
    for line in _parameters_cell(path).splitlines():
        code, _, comment = line.partition("  #")
        try:
            statement = ast.parse(code).body[0] if code.strip() else None
        except SyntaxError:
            continue
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            name, annotation, value = statement.target.id, ast.unparse(statement.annotation), statement.value
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(
                statement.targets[0], ast.Name):
            name, annotation, value = statement.targets[0].id, None, statement.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            continue
        found[name] = {"type": annotation or type(default).__name__, "default": repr(default),
                       "help": comment.strip()}
    return found


def split_parameter(items: list[str]) -> tuple[str, str]:
    """('seed', '3') from ['seed', '3'] or ['seed=3'] (what `-p` was given)."""
    if len(items) == 1 and "=" in items[0]:
        name, _, value = items[0].partition("=")
        return name.strip(), value.strip()
    if len(items) == 2:
        return items[0], items[1]
    raise WorkbookError(f"-p takes NAME VALUE or NAME=VALUE; got {' '.join(items)!r}")


def _unknown(name: str, valid: list[str]) -> WorkbookError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return WorkbookError(f"parameter {name!r} is not declared by any selected notebook{hint}; "
                         f"valid names: {', '.join(valid)}")


def resolve_parameters(notebooks: list[Path], overrides: list[tuple[str, str]]) -> dict[Path, dict]:
    """Convert and validate `-p NAME VALUE` pairs; return the parameters for each notebook."""
    declared = {path: declared_parameters(path) for path in notebooks}
    valid = sorted({name for params in declared.values() for name in params})
    per_notebook: dict[Path, dict] = {path: {} for path in notebooks}
    for name, raw in overrides:
        if name not in valid:
            raise _unknown(name, valid)
        for path, params in declared.items():
            if name not in params:
                continue
            type_name = params[name]["type"].lower()
            try:
                value = _CONVERTERS.get(type_name, str)(raw)
            except (ValueError, KeyError):
                raise WorkbookError(
                    f"parameter {name}={raw!r} is not valid (accepted: a value of type {type_name})") from None
            if name in PARAMETER_RULES:
                try:
                    value = PARAMETER_RULES[name](value, name)
                except (ValueError, TypeError) as error:
                    raise WorkbookError(f"parameter {name}={raw!r} is not valid ({error})") from None
            per_notebook[path][name] = value
    return per_notebook
