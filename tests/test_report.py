"""The HTML report of `python -m lib run --html`: complete, self-contained, and it loads in a browser.

A tiny temporary workbook (three notebooks, one of them failing) is run once
for the whole module. If Debian's chromium is installed, the index and one
notebook page are also rendered headless; without it those tests skip.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from notebook_factory import write_notebook

from lib.workbook import report
from lib.workbook.cli import main
from lib.workbook.runner import NotebookRun

FIGURE = "fig, ax = plt.subplots()\nax.plot([0, 1], [{a}, {b}])\nax.set_title('figure {a}')\nplt.show()"


def _notebook(path: Path, title: str, cells: list[str], verdict: str | None = None) -> None:
    write_notebook(path, "boom: bool = False  # fail on purpose\nseed: int = 1  # RNG seed", cells, verdict,
                   heading=f"Some text first.\n\n# {title}\n\nGoal.")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run a tiny workbook with --html; returns (exit code, output folder)."""
    root = tmp_path_factory.mktemp("report")
    books = root / "notebooks"
    books.mkdir()
    # 01: three figures (two from one cell) and a verdict
    _notebook(books / "01_figures.ipynb", "01 · Figures of `x`",
              ["import matplotlib.pyplot as plt", FIGURE.format(a=1, b=2) + "\n" + FIGURE.format(a=3, b=4),
               "print('between')", FIGURE.format(a=5, b=6)],
              "from lib.workbook.verdict import Verdict\nVerdict('REFUTED', f'seed was {seed}').show()")
    # 02: no figure, a widget (whose view the report replaces)
    _notebook(books / "02_widget.ipynb", "02 · A widget, no figure",
              ["import ipywidgets\nfrom IPython.display import display\ndisplay(ipywidgets.IntSlider(value=3))"])
    # 03: one figure, then a failure: executed (partly), so it must still be linked
    _notebook(books / "03_fails.ipynb", "03 · Fails after a figure",
              ["import matplotlib.pyplot as plt", FIGURE.format(a=7, b=8),
               "if not boom:\n    raise RuntimeError('planted failure')"])
    out = root / "build"
    code = main(["run", "--notebook-dir", str(books), "--output", str(out), "--html", "--jobs", "2"])
    return code, out


def _executed(out: Path) -> list[Path]:
    return sorted(out.glob("[0-9][0-9]_*.ipynb"))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.table_links: list[str] = []
        self.in_table = False
        self.rows = 0
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "summary":
            self.in_table = True
        elif tag == "tr" and self.in_table:
            self.rows += 1
        elif tag == "a" and self.in_table:
            self.table_links.append(attrs.get("href", ""))
        elif tag in ("script", "link"):
            self.scripts.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False


def _parse(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


def test_the_run_writes_a_page_per_executed_notebook_and_an_index(built):
    code, out = built
    assert code == 1  # 03 fails on purpose
    assert [p.name for p in _executed(out)] == ["01_figures.ipynb", "02_widget.ipynb", "03_fails.ipynb"]
    assert (out / "index.html").exists()
    for executed in _executed(out):
        assert executed.with_suffix(".html").exists()


def test_index_links_every_executed_notebook(built):
    _, out = built
    index = _parse((out / "index.html").read_text(encoding="utf-8"))
    assert index.rows == 1 + len(_executed(out))  # header row + one per notebook
    assert sorted(set(index.table_links)) == [p.with_suffix(".html").name for p in _executed(out)]
    for link in index.table_links:
        assert (out / link).is_file()


def test_index_rows_show_title_verdict_time_and_status(built):
    _, out = built
    page = (out / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:]
    assert len(rows) == 3
    assert "01 · Figures of <code>x</code>" in rows[0] and "REFUTED" in rows[0] and "seed was 1" in rows[0]
    assert "02 · A widget, no figure" in rows[1] and "no verdict" in rows[1]
    assert "03 · Fails after a figure" in rows[2] and "failed" in rows[2] and "planted failure" in rows[2]
    # a crash is a crash, naming its cell, never a teaching notebook's missing verdict
    assert "crashed in cell 4 (&#x27;if not boom:&#x27;)" in rows[2] and "no verdict" not in rows[2]
    assert "<strong>Crashed</strong>: in cell 4" in page
    for row in rows:
        assert re.search(r"\d+\.\d s", row)


@pytest.mark.parametrize("name", ["01_figures", "02_widget", "03_fails"])
def test_every_figure_is_embedded_in_its_page(built, name):
    _, out = built
    executed = nbformat.read(str(out / f"{name}.ipynb"), as_version=4)
    expected = report.figures(executed)
    page = (out / f"{name}.html").read_text(encoding="utf-8")
    tags = re.findall(r"<img[^>]+src=\"data:image/png;base64,", page)
    assert len(tags) == len(expected) == {"01_figures": 3, "02_widget": 0, "03_fails": 1}[name]
    assert report.embedded_pngs(page) == expected  # the same images, in order


def test_index_shows_the_first_figure_of_each_notebook_as_a_thumbnail(built):
    from PIL import Image

    _, out = built
    page = (out / "index.html").read_text(encoding="utf-8")
    thumbs = report.embedded_pngs(page)
    assert len(thumbs) == 2  # 01 and 03 have figures, 02 has none
    firsts = [report.figures(nbformat.read(str(out / f"{n}.ipynb"), as_version=4))[0] for n in ("01_figures",
                                                                                              "03_fails")]
    for thumb, first in zip(thumbs, firsts, strict=True):
        small = Image.open(io.BytesIO(base64.b64decode(thumb)))
        full = Image.open(io.BytesIO(base64.b64decode(first)))
        assert small.width <= 400 and small.width <= full.width
        assert abs(small.height / small.width - full.height / full.width) < 0.02


def test_pages_load_nothing_from_the_network(built):
    _, out = built
    for page in [out / "index.html", *(p.with_suffix(".html") for p in _executed(out))]:
        text = page.read_text(encoding="utf-8")
        for attrs in _parse(text).scripts:
            assert not (attrs.get("src") or attrs.get("href") or "").startswith(("http:", "https:", "//")), page
    widget_page = (out / "02_widget.html").read_text(encoding="utf-8")
    assert "widget-state+json" not in widget_page and "widget-view+json" not in widget_page
    assert "need a running kernel" in widget_page


@pytest.mark.parametrize(("cells", "expected"), [
    (["# 01 · Title"], "01 · Title"),
    (["intro", "## Second level ##"], "Second level"),
    (["no heading at all"], "fallback"),
    (["    # indented code, not a heading"], "fallback"),
])
def test_notebook_title_is_the_first_heading(cells, expected):
    nb = new_notebook(cells=[new_markdown_cell(c) for c in cells] + [new_code_cell("# a comment")])
    assert report.notebook_title(nb, "fallback") == expected


# --------------------------------------------------------------------------
# Headless Chromium (Debian's `chromium` package), when installed.
# --------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                    "(apt-get install chromium; .ci/run installs it)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@needs_chromium
def test_index_loads_in_headless_chromium(built, tmp_path):
    _, out = built
    done = _chromium(tmp_path, "--dump-dom", (out / "index.html").as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert '<table id="summary">' in dom
    assert dom.count("<tr>") == 1 + len(_executed(out))
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom)) == 2


@needs_chromium
def test_a_notebook_page_renders_its_figures_in_headless_chromium(built, tmp_path):
    from PIL import Image, ImageStat

    _, out = built
    page = out / "01_figures.html"
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom.stdout)) == 3
    shot = tmp_path / "page.png"
    done = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1000,2200", f"--screenshot={shot}",
                     page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1000, 2200)
    assert ImageStat.Stat(image).stddev[0] > 10  # not a blank page: text and plots drawn



def _entry(name: str, verdict: str, status: str = "ok", **more) -> dict:
    return {"file": name, "title": name[:2] + " · " + name[3:-6], "status": status, "verdict": verdict,
            "error": "", "crashed_in": "", "verdict_cell": True, **more}


def test_what_the_run_found_answers_in_labelled_lines_from_the_runs_own_verdicts():
    from lib.workbook import findings

    entries = [_entry("01_a.ipynb", "CONFIRMED - fails at index 0 with 1.4305115"),
               _entry("02_f.ipynb", "-", verdict_cell=False),
               _entry("03_b.ipynb", "REFUTED - masks agree; and more detail that the table keeps"),
               _entry("06_c.ipynb", "CONFIRMED - the step is 1.00136 x 2*eps"),
               _entry("07_g.ipynb", "LATENT - a real flaw"),
               _entry("10_d.ipynb", "CONFIRMED - all 10 checks pass"), _entry("11_e.ipynb", "CONFIRMED - a tool")]
    assert findings.as_text(findings.answer(entries)) == [
        "Reproduced: fails at index 0 with 1.4305115 (01 · a)",
        "Cause: the step is 1.00136 x 2*eps (06 · c)",
        "Fix: all 10 checks pass (10 · d)",
        "Ruled out: masks agree; and more detail that the table keeps (03 · b)",
        "Not the cause: a real flaw (07 · g)",
        "Not in this run: notebooks 04, 05, 08, 09"]
    html_text = report._conclusion(entries)
    assert html_text.startswith("<h2>What this run found</h2>")
    assert "<li><strong>Cause</strong>: the step is 1.00136 x 2*eps" in html_text
    assert report._conclusion([_entry("02_f.ipynb", "-", verdict_cell=False)]) == ""


def test_what_the_run_found_says_plainly_when_a_notebook_crashed_or_printed_no_verdict():
    from lib.workbook import findings

    entries = [_entry("01_a.ipynb", "CONFIRMED - reproduced"),
               _entry("06_c.ipynb", "-", status="failed", crashed_in="cell 14 ('x = 1')"),
               _entry("10_d.ipynb", "-")]
    lines = findings.as_text(findings.answer(entries))
    assert lines[:2] == ["Crashed: in cell 14 ('x = 1'), so its verdict is missing from this answer (06 · c)",
                         "No verdict: it ran, but its verdict cell printed no verdict line (10 · d)"]
    assert not any(line.startswith(("Cause", "Fix")) for line in lines)


def test_a_long_reason_is_cut_after_the_clause_that_makes_it_readable():
    from lib.workbook import findings

    reason = "the failure occurs in 18 of 192 combinations; necessary: dtype=float32; of the others, 14 fail"
    (line,) = findings.answer([_entry("09_x.ipynb", f"CONFIRMED - {reason}")])[:1]
    assert line[1] == "the failure occurs in 18 of 192 combinations; necessary: dtype=float32"


def test_pages_break_output_lines_between_words(built):
    _, out = built
    page = (out / "01_figures.html").read_text()
    assert page.rindex("word-break:normal") > page.rindex("word-break: break-all")


def test_the_index_and_the_summary_give_the_same_time(built):
    # One duration, measured when the notebooks finish, for summary.json, index.html and the terminal.
    _, out = built
    took = float(re.search(r"([\d.]+) s to execute", (out / "index.html").read_text()).group(1))
    assert abs(json.loads((out / "summary.json").read_text())["seconds"] - took) <= 0.05 + 1e-9  # 5.15 shows as 5.1


def test_links_between_notebooks_point_at_their_pages(tmp_path):
    notebook = new_notebook(cells=[new_markdown_cell(
        "See [the glossary](01_overview.ipynb#Glossary), [02](02_next.ipynb) and [the site](https://x.org/a.ipynb).")])
    source = tmp_path / "03_links.ipynb"
    nbformat.write(notebook, str(source))
    page = report.export_notebook(source).read_text(encoding="utf-8")
    assert 'href="01_overview.html#Glossary"' in page and 'href="02_next.html"' in page
    assert 'href="https://x.org/a.ipynb"' in page  # not one of ours: left alone


def test_a_wide_figure_spans_the_gallery_row_at_a_readable_size(tmp_path):
    import base64
    import io

    from PIL import Image

    def png(width, height):
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    wide, square = png(2400, 600), png(1000, 800)
    assert report.is_wide(wide) and not report.is_wide(square)
    for payload, spans, width in ((wide, True, 1100), (square, False, 400)):
        executed = tmp_path / "01_a.ipynb"
        cell = new_code_cell("plot()", outputs=[new_output("display_data", data={"image/png": payload})])
        nbformat.write(new_notebook(cells=[new_markdown_cell("# A"), cell]), str(executed))
        executed.with_suffix(".html").write_text("page")
        run = NotebookRun(source=executed, output=executed, status="ok", seconds=1.0, verdict="-")
        card = report._card(report._Entry(run))
        assert ("class=wide" in card) is spans
        shown = card.split("base64,")[1].split("'")[0]
        assert Image.open(io.BytesIO(base64.b64decode(shown))).width == width
