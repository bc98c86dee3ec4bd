"""Small workbook notebooks for the runner and report tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path: Path, parameters: str, cells: list[str], verdict: str | None = None,
                   heading: str = "# test notebook") -> Path:
    """A small workbook notebook: a heading, a tagged parameters cell, code cells and an
    optional cell tagged `verdict`, with the python3 kernelspec papermill needs."""
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb_cells = [new_markdown_cell(heading), params, *(new_code_cell(source) for source in cells)]
    if verdict is not None:
        cell = new_code_cell(verdict)
        cell.metadata["tags"] = ["verdict"]
        nb_cells.append(cell)
    nb = new_notebook(cells=nb_cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, str(path))
    return path
