"""Repository hygiene that CI should enforce: lint, and clean stored notebooks."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import papermill
import pytest

import lib.workbook.runner as workbook

NOTEBOOKS = workbook.discover()
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by requirements.txt")
def test_ruff_is_clean_on_library_tests_and_notebooks():
    done = subprocess.run(["ruff", "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_there_is_a_workbook():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_is_executed_and_clean(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "every code cell stored executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "executed top to bottom once"
    for cell in code:
        assert not {"papermill", "execution"} & set(cell.metadata), "run metadata stripped"
        assert not any(o.get("output_type") == "error" for o in cell.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_is_first_and_holds_only_annotated_literals(path):
    nb = nbformat.read(str(path), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    for line in first.source.splitlines():
        if not line.strip():
            continue
        statement = ast.parse(line.split("  #")[0]).body[0]
        assert isinstance(statement, ast.AnnAssign), f"annotated default expected: {line!r}"
        ast.literal_eval(statement.value)
        assert "  # " in line, f"help comment expected: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    # papermill's parser drops a line it cannot read (e.g. a help comment with
    # "="), and a dropped name silently stops receiving -p overrides.
    nb = nbformat.read(str(path), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    written = [ast.parse(line.split("  #")[0]).body[0].target.id for line in first.source.splitlines() if line.strip()]
    assert list(papermill.inspect_notebook(str(path))) == written
    assert list(workbook.declared_parameters(path)) == written  # the runner's own, faster reading agrees


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_verdict_cell_prints_one_verdict_line(path):
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "verdict" in c.metadata.get("tags", [])]
    if not tagged:
        pytest.skip("a teaching notebook without a verdict")
    assert len(tagged) == 1
    assert workbook.read_verdict(nb) != "-"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by requirements.txt")
def test_ruff_skips_a_virtual_environment_and_the_build_folder(tmp_path):
    # The README recommends `python -m venv .venv` inside the checkout; ruff must
    # keep its default excludes (.venv among them) and add the workbook's output.
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    for folder in (".venv/lib", "build", "output"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "untidy.py").write_text("import os\nx=1;y=2\n")
    done = subprocess.run(["ruff", "check", "--quiet", "."], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[:2000] + done.stderr[:2000]


#: A JupyterLab notebook column shows about this many characters of code without scrolling.
CODE_WIDTH = 100


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_lines_fit_a_notebook_column(path):
    notebook = nbformat.read(str(path), as_version=4)
    long = [(number, line) for number, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert long == [], f"{len(long)} code lines over {CODE_WIDTH} characters, first in cell {long[0][0]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_can_be_checked(path):
    """Each exercise has a check cell (check_answer/check_function) and a worked answer under Solutions."""
    notebook = nbformat.read(str(path), as_version=4)
    text = [cell.source for cell in notebook.cells]
    exercises = next((i for i, s in enumerate(text) if re.search(r"^## Exercises", s, re.MULTILINE)), None)
    solutions = next((i for i, s in enumerate(text) if re.search(r"^## Solutions", s, re.MULTILINE)), None)
    assert exercises is not None and solutions is not None and exercises < solutions
    asked = sorted(set(re.findall(r"check_(?:answer|function)\(\s*f?\"(Exercise \d+)", "\n".join(
        text[exercises:solutions]))))
    answered = sorted(set(re.findall(r"check_(?:answer|function)\(\s*f?\"(Exercise \d+)", "\n".join(
        text[solutions:]))))
    assert asked, "the Exercises section has no check cell"
    assert answered == asked, f"checked {asked}, worked answers for {answered}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_show_no_hint_before_an_attempt(path):
    """A stored notebook is untouched by a learner: its exercise checks show no hint and no
    wrong-answer message (hints wait for show_hint() or a second wrong try)."""
    notebook = nbformat.read(str(path), as_version=4)
    shown = [(number, output.get("text", "")) for number, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" for output in cell.outputs if output.get("output_type") == "stream"]
    leaks = [number for number, text in shown if re.search(r"^\s*Hint:|, hint: ", text, re.MULTILINE)]
    assert leaks == [], f"a hint is shown in the stored output of cell(s) {leaks}"


def _cited_files() -> list[tuple[str, str]]:
    """(where, cited path) for every repository file a document, notebook, module or test names: the
    markdown links of documents and notebooks, and anywhere the bare names of the project's own
    documents (docs/*.md, upper-case .md names) and recorded data (mojo/*.json). Paths inside the original
    library (which the runner reads from a checkout) are not this repository's."""
    prose = [ROOT / "README.md", *ROOT.glob("docs/*.md")]
    code = [*ROOT.glob("lib/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("mojo/**/*.mojo")]
    link = re.compile(r"\]\((?!https?:|#)([^)#\s]+)")
    bare = re.compile(r"(?<![\w./-])(docs/[\w.-]+\.md|mojo/[\w.-]+\.json|[A-Z]+\.md)")
    found = []
    for source in [*prose, *code, *NOTEBOOKS]:
        if source.suffix == ".ipynb":
            cells = nbformat.read(str(source), as_version=4).cells
            markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
            text = "\n".join(c.source for c in cells)
        else:
            text = source.read_text(encoding="utf-8")
            markdown = text if source in prose else ""
        found += [(source, m.group(1)) for m in link.finditer(markdown)]
        found += [(source, m.group(1)) for m in bare.finditer(text)]
    return [(str(source.relative_to(ROOT)), cited) for source, cited in found]


def test_every_file_the_repository_cites_is_in_it():
    missing = []
    for where, cited in _cited_files():
        candidates = [(ROOT / where).parent / cited, ROOT / cited]
        if not any(path.resolve().exists() for path in candidates):
            missing.append(f"{where}: {cited}")
    assert not missing, "cited but not in the repository: " + "; ".join(sorted(set(missing)))
