"""Notebook parameters on the command line: what each notebook declares, and checks before any kernel starts.

A notebook declares its parameters in its first code cell (tagged `parameters`),
as annotated literals, each with a help comment that states the values it
accepts (`in [1, 2000]`, `one of {a, b}`; see lib.workbook.ranges). `-p NAME
VALUE` reaches every selected notebook that declares NAME, converted to the
declared (or default's) type and checked against the range of every one of
them, then by the same argument checks the library uses, so a bad value is
refused in one line, naming the notebooks that refuse it and their ranges,
before papermill starts a kernel. `check_declared` is the same check for a
notebook's own cell, so JupyterLab and the runner refuse the same values.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
from pathlib import Path

from lib import _checks
from lib.replica import SWITCHES
from lib.workbook.ranges import Range, parse_range


class WorkbookError(Exception):
    """A usage error: bad selection, unknown or invalid parameter, bad output folder."""


# Shared parameter names and the library's own checks of them, applied after the notebook's declared
# range (lib.workbook.ranges): a notebook may accept less than the library, never more.
def _finite_nonzero(value, name):
    value = _checks.real_number(value, name)
    if not math.isfinite(value) or value == 0.0:
        raise ValueError(f"{name} must be a finite number other than 0; got {value!r}")
    return value


def _positive_finite(value, name):
    # The notebooks' eps is the original checker's step, which has no default: None is not offered here.
    value = _checks.real_number(value, name)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def _one_of(accepted):
    return lambda value, name: _checks.choice(value, name, accepted)


PARAMETER_RULES = {
    "dtype": lambda value, name: str(_checks.dtype_from_name(value, name)),
    "p": lambda value, name: _checks.drop_probability(value),
    # the original library's seeds were 64-bit integers; a bigger one is refused before any kernel starts
    "seed": lambda value, name: _checks.positive_int(value, name, low=0, high=2**63 - 1),
    "eps": _positive_finite,
    "size": lambda value, name: _checks.positive_int(value, name),
    "n_calls": lambda value, name: _checks.positive_int(value, name),
    "n_max": lambda value, name: _checks.positive_int(value, name, low=100),
    "fault": _finite_nonzero,
    # the replica's string switches, as the playground declares them
    **{name: _one_of(SWITCHES[name]) for name in ("divide_by", "rng", "forward", "backward_mask")},
}


def _numbers(text: str) -> list[float]:
    """'0.1, -0.5 2' -> [0.1, -0.5, 2.0]: a list parameter (input values) given on the command line."""
    items = [item for item in re.split(r"[\s,]+", str(text).strip().strip("[]()")) if item]
    try:
        numbers = [float(item) for item in items]
    except ValueError:
        numbers = []
    if not numbers or not all(math.isfinite(n) for n in numbers):
        raise ValueError("expected finite numbers separated by commas, e.g. 0.1,-0.5,2")
    return numbers


_CONVERTERS = {"int": int, "float": float, "str": str, "list": _numbers, "tuple": lambda v: tuple(_numbers(v)),
               "bool": lambda v: {"true": True, "false": False}[str(v).lower()]}
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false",
          "list": "finite numbers separated by commas, e.g. 0.1,-0.5,2", "tuple": "finite numbers separated by "
          "commas, e.g. 0.1,-0.5,2"}


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
    """Name -> {'type', 'default', 'help', 'range'} from the notebook's `parameters` cell.

    Read straight from the file with Python's own parser (papermill's
    inspection starts a translator per notebook and takes seconds for the
    workbook). 'type' is the annotation, or the type of the default when the
    line has none, as papermill's command line infers it; 'range' is the
    lib.workbook.ranges.Range its help comment declares, or None.
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
        try:
            declared = parse_range(comment)
        except ValueError as error:
            raise WorkbookError(f"{path.name}: the range of parameter {name} cannot be read ({error})") from None
        found[name] = {"type": annotation or type(default).__name__, "default": repr(default),
                       "help": comment.strip(), "range": declared}
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


def _accepted(notebook: str, name: str, declared: Range | None, type_name: str) -> str:
    if declared is not None:
        return f"{notebook} accepts {name}{' as an integer' if type_name == 'int' else ''} {declared}"
    return f"{notebook} takes {name} as {_KINDS.get(type_name, 'a ' + type_name)}"


def _grouped(refusals: list[tuple[str, str]]) -> str:
    """[(notebook, 'accepts eps in (0, inf)'), ...] -> one clause per distinct range, naming its notebooks."""
    by_range: dict[str, list[str]] = {}
    for notebook, accepted in refusals:
        by_range.setdefault(accepted, []).append(notebook)
    clauses = []
    for accepted, notebooks in by_range.items():
        if len(notebooks) == 1:
            clauses.append(f"{notebooks[0]} {accepted}")
        else:
            names = " and ".join(notebooks) if len(notebooks) == 2 else "notebooks " + ", ".join(
                n[:2] for n in notebooks)
            clauses.append(f"{names} {accepted.replace('accepts', 'accept', 1).replace('takes', 'take', 1)}")
    return "; ".join(clauses)


_REFUSED = object()


def _converted(name: str, raw: str, declared: dict[Path, dict]):
    """`raw` converted for each notebook that declares `name`; a WorkbookError naming every notebook that refuses it."""
    values, refusals = {}, []
    for path, params in declared.items():
        if name not in params:
            continue
        type_name, bounds = params[name]["type"].lower(), params[name]["range"]
        try:
            value = _CONVERTERS.get(type_name, str)(raw)
        except (ValueError, KeyError):
            value = _REFUSED
        if value is _REFUSED or (bounds is not None and not bounds.accepts(value)):
            refusals.append((path.name, _accepted("", name, bounds, type_name).strip()))
            continue
        values[path] = value
    if refusals:
        raise WorkbookError(f"parameter {name}={raw} is refused before any notebook runs: {_grouped(refusals)}")
    for path, value in values.items():
        try:
            values[path] = PARAMETER_RULES[name](value, name) if name in PARAMETER_RULES else value
        except (ValueError, TypeError) as error:
            raise WorkbookError(f"parameter {name}={raw} is not valid for {path.name} ({error})") from None
    return values


def _scale_refusal(notebook: str, values: dict) -> str | None:
    """A p whose scale 1/(1-p) overflows the notebook's dtype (float16 near p = 1), or None."""
    if not {"p", "dtype"} <= set(values):
        return None
    try:
        _checks.drop_probability_for(values["p"], values["dtype"])
    except (ValueError, TypeError) as error:
        return f"{notebook} runs dtype={values['dtype']}: {error}"
    return None


def _defaults(params: dict) -> dict:
    found = {}
    for name, info in params.items():
        try:
            found[name] = ast.literal_eval(info["default"])
        except ValueError:
            continue
    return found


def resolve_parameters(notebooks: list[Path], overrides: list[tuple[str, str]]) -> dict[Path, dict]:
    """Convert and check `-p NAME VALUE` pairs against every selected notebook; the parameters for each."""
    declared = {path: declared_parameters(path) for path in notebooks}
    valid = sorted({name for params in declared.values() for name in params})
    per_notebook: dict[Path, dict] = {path: {} for path in notebooks}
    for name, raw in overrides:
        if name not in valid:
            raise _unknown(name, valid)
        for path, value in _converted(name, raw, declared).items():
            per_notebook[path][name] = value
    refusals = [r for path, params in declared.items() if per_notebook[path]
                for r in [_scale_refusal(path.name, {**_defaults(params), **per_notebook[path]})] if r]
    if refusals:
        raise WorkbookError("refused before any notebook runs: " + "; ".join(refusals))
    return per_notebook


#: The checkout's notebooks, where check_declared looks when the notebook is not in the current folder.
_CHECKOUT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def check_declared(notebook: str, namespace: dict) -> None:
    """In a notebook: raise ValueError for any parameter in `namespace` (its globals()) outside the
    range the notebook's own `parameters` cell declares, in the runner's words; silent otherwise.

        check_declared("02_chain_rule_for_dropout.ipynb", globals())
    """
    path = Path(notebook) if Path(notebook).exists() else _CHECKOUT_NOTEBOOKS / notebook
    params = declared_parameters(path)
    values = {name: namespace[name] for name in params if name in namespace}
    refusals = [f"{name}={values[name]!r} is refused: {_accepted(path.name, name, info['range'], info['type'])}"
                for name, info in params.items()
                if name in values and info["range"] is not None and not info["range"].accepts(values[name])]
    scale = _scale_refusal(path.name, values)
    if refusals or scale:
        raise ValueError("; ".join([*refusals, *([scale] if scale else [])]))
