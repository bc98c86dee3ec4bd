"""The HTML report of a workbook run (`python -m lib run --html`).

The output folder becomes a report that opens from disk, offline, in any browser:

    index.html    the summary table (notebook title, verdict, time, status), each
                  title linking to the notebook's page, and a gallery with the
                  first figure of every executed notebook as an embedded thumbnail;
    NN_name.html  one page per executed notebook (nbconvert's lab template), every
                  figure embedded as a data URI, a link back to the index.

Nothing is fetched from the network: the pages drop the scripts nbconvert
would load from CDNs (require.js and the widget manager; MathJax too, unless a
notebook's markdown holds math), and widget outputs, which need a running
kernel, are replaced by a short note.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from lib.workbook import findings

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG = "image/png"
INDEX_NAME = "index.html"
TITLE = "Dropout gradient check: workbook report"

#: <img> tags whose source is an embedded PNG; group 1 is the base64 payload.
EMBEDDED_PNG = re.compile(r"<img\b[^>]*?\bsrc=[\"']data:image/png;base64,([A-Za-z0-9+/=\s]+)[\"']", re.IGNORECASE)

_WIDGET_NOTE = ("<p><em>Interactive controls: they need a running kernel, so open the notebook in JupyterLab "
                "to use them. The figures above show the state drawn by the run.</em></p>")

# nbconvert's lab page without what it would load from the network, plus a link back to the index.
_PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- if resources.report_math -%}{{ super() }}{%- endif -%}{%- endblock -%}
{%- block notebook_css -%}{{ super() }}
<style>/* JupyterLab breaks output lines anywhere (word-break: break-all), splitting words and numbers;
break only a token longer than the whole line. */
.jp-OutputArea-output pre{word-break:normal;overflow-wrap:break-word}</style>
{%- endblock notebook_css -%}
{%- block body_header -%}{{ super() }}
<nav style="margin:0.5em 1em;font-family:sans-serif"><a href="index.html">&larr; report index</a></nav>
{%- endblock body_header -%}
"""


# --------------------------------------------------------------------------
# Reading executed notebooks.
# --------------------------------------------------------------------------


def notebook_title(notebook, fallback: str) -> str:
    """The text of the notebook's first markdown heading ('# 01 · Title' -> '01 · Title')."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = re.match(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", line)
            if match:
                return match.group(1)
    return fallback


def figures(notebook) -> list[str]:
    """Base64 payloads of every PNG output of the notebook's code cells, in order (newlines removed)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if PNG in data:
                payload = data[PNG]
                found.append(re.sub(r"\s", "", "".join(payload) if isinstance(payload, list) else payload))
    return found


def embedded_pngs(page: str) -> list[str]:
    """Base64 payloads of the <img src="data:image/png;base64,..."> tags of an HTML page, in order."""
    return [re.sub(r"\s", "", m) for m in EMBEDDED_PNG.findall(page)]


def _has_math(notebook) -> bool:
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    return bool(re.search(r"\$[^$\n]+\$|\\\(|\\\[", text))


def _without_widgets(notebook):
    """A copy with the widget state dropped and each widget view replaced by a note."""
    notebook = copy.deepcopy(notebook)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {"text/html": _WIDGET_NOTE}
    return notebook


# --------------------------------------------------------------------------
# Writing pages.
# --------------------------------------------------------------------------


#: A relative link to another notebook of the workbook, as markdown renders it: href="NN_name.ipynb...
_NOTEBOOK_LINK = re.compile(r'href="(\d\d_[^"/#]+)\.ipynb')


def export_notebook(executed: Path, target: Path | None = None) -> Path:
    """Write an executed notebook as a self-contained HTML page (default: next to it, .html)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"report.html.j2": _PAGE_TEMPLATE})],
                            template_file="report.html.j2")
    resources = {"report_math": _has_math(notebook), "metadata": {"name": executed.stem}}
    body, _ = exporter.from_notebook_node(_without_widgets(notebook), resources=resources)
    body = _NOTEBOOK_LINK.sub(r'href="\1.html', body)  # links between notebooks go to their pages
    target = target or executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def thumbnail(payload: str, width: int = 400, colors: int = 128) -> str:
    """A PNG (base64) scaled down to `width` pixels wide with a `colors` palette, as base64.

    Figures are flat colours on white, so a palette keeps them sharp at a
    fifth of the size; a PNG already narrower than `width` is returned as it is.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    if image.width <= width:
        return payload
    height = max(1, round(image.height * width / image.width))
    if image.mode in ("RGBA", "LA", "P"):  # flatten transparency onto white, as the page shows it
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(background, image)
    small = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_WORD_COLORS = {"CONFIRMED": "#d1495b", "REFUTED": "#2a9d8f", "LATENT": "#e9a23b", "INCONCLUSIVE": "#8d99ae",
                "OBSERVED": "#3d405b"}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222}
h1{font-size:1.6em;margin-bottom:0.2em}.meta{color:#555;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1em 0 2em}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;white-space:nowrap}.file{color:#777;font-size:0.85em}
.word{display:inline-block;padding:1px 6px;border-radius:3px;color:#fff;font-size:0.8em;font-weight:600}
.failed{color:#d1495b;font-weight:600}.error{color:#d1495b;font-size:0.85em}
.conclusion{max-width:90ch;line-height:1.45;padding-left:1.2em}.conclusion li{margin:0.25em 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(360px,100%),1fr));gap:1.2em;
align-items:start}
td{overflow-wrap:anywhere}
@media (max-width:640px){#summary thead{display:none}#summary tr,#summary td{display:block}
#summary tr{border-bottom:2px solid #ccc;padding:0.4em 0}#summary td{border:none;padding:2px 4px}
#summary td.num{text-align:left}}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:0.6em;background:#fff}
figure img{width:100%;height:auto;display:block}.gallery figure.wide{grid-column:1/-1}
figcaption{font-size:0.9em;margin-bottom:0.4em}
"""


def _verdict_cell(run) -> str:
    word, _, reason = run.verdict.partition(" - ")
    if word in _WORD_COLORS:
        badge = f"<span class='word' style='background:{_WORD_COLORS[word]}'>{html.escape(word)}</span>"
        return f"{badge} {html.escape(reason)}"
    outcome = getattr(run, "outcome", run.verdict)
    if run.status != "ok":
        return f"<span class='failed'>{html.escape(outcome)}</span>"
    if outcome == "-":
        return "<span class='file'>no verdict (a teaching notebook)</span>"
    return html.escape(outcome)


class _Entry:
    """What the index shows for one run."""

    def __init__(self, run):
        import nbformat

        self.run = run
        self.page = run.output.with_suffix(".html")
        notebook = nbformat.read(str(run.output), as_version=4) if run.output.exists() else None
        self.title = notebook_title(notebook, run.source.stem) if notebook is not None else run.source.stem
        self.figures = figures(notebook) if notebook is not None else []

    @property
    def linked(self) -> bool:
        return self.page.exists()


def _inline(text: str) -> str:
    """Escape a markdown heading for HTML, keeping its `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _conclusion(entries: Sequence[dict]) -> str:
    """'What this run found': labelled lines from this run's verdicts (lib.workbook.findings), or ''."""
    lines = findings.answer(list(entries))
    if not lines:
        return ""
    items = "\n".join(f"<li><strong>{html.escape(label)}</strong>: {_inline(text)}"
                      + (f" <span class='file'>({_inline(source)})</span>" if source else "") + "</li>"
                      for label, text, source in lines)
    return f"<h2>What this run found</h2>\n<ul class='conclusion'>\n{items}\n</ul>"


def _facts(entries: Sequence[dict]) -> str:
    """The facts the notebooks recorded, one line each with the notebooks that measured each value, or ''."""
    lines = findings.recorded_text(list(entries))
    if not lines:
        return ""
    items = "\n".join(f"<li><code>{html.escape(line)}</code></li>" for line in lines)
    return ("<h2>Facts recorded</h2>\n<p class='meta'>Each fact, its value and the notebooks that measured it "
            f"(a fact with two values fails the run).</p>\n<ul class='conclusion'>\n{items}\n</ul>")


def _row(entry: _Entry) -> str:
    r = entry.run
    name = _inline(entry.title)
    title = f"<a href='{html.escape(entry.page.name)}'>{name}</a>" if entry.linked else name
    status = html.escape(r.status) if r.status == "ok" else f"<span class='failed'>{html.escape(r.status)}</span>"
    error = f"<div class='error'>{html.escape(r.error)}</div>" if r.error else ""
    return (f"<tr><td>{title}<div class='file'>{html.escape(r.source.name)}</div></td>"
            f"<td>{_verdict_cell(r)}{error}</td><td class='num'>{r.seconds:.1f} s</td>"
            f"<td>{status}</td><td class='num'>{len(entry.figures)}</td></tr>")


#: A figure at least this many times wider than tall (a row of panels) gets a whole gallery row.
WIDE_ASPECT = 2.0


def is_wide(payload: str) -> bool:
    """True for a PNG (base64) whose width is at least WIDE_ASPECT times its height."""
    from PIL import Image

    width, height = Image.open(io.BytesIO(base64.b64decode(payload))).size
    return width >= WIDE_ASPECT * height


def _card(entry: _Entry) -> str:
    # A row of panels shrunk into one grid column is unreadable: it spans the row, at a larger size.
    wide = is_wide(entry.figures[0])
    shown = thumbnail(entry.figures[0], width=1100 if wide else 400)
    more = f"first of {len(entry.figures)} figures" if len(entry.figures) > 1 else "1 figure"
    return (f"<figure{' class=wide' if wide else ''}><figcaption>"
            f"<a href='{html.escape(entry.page.name)}'>{_inline(entry.title)}</a>"
            f" <span class='file'>({more})</span></figcaption>"
            f"<a href='{html.escape(entry.page.name)}'><img alt='{html.escape(entry.title)}: first figure' "
            f"src='data:image/png;base64,{shown}'></a></figure>")


def write_index(runs: Sequence, output: Path, parameters: Iterable[tuple[str, str]] = (),
                total: float | None = None) -> Path:
    """index.html: the summary table linking every exported page, and a gallery of first figures.

    `runs` are lib.workbook.NotebookRun records; a notebook whose page exists
    (run.output.html) is linked, whether it passed or failed.
    """
    entries = [_Entry(r) for r in runs]
    found = [findings.entry(e.run, e.title) for e in entries]
    rows = "\n".join(_row(e) for e in entries)
    cards = "\n".join(_card(e) for e in entries if e.figures and e.linked)
    params = ", ".join(f"{html.escape(str(n))}={html.escape(str(v))}" for n, v in parameters) or "defaults"
    failed = sum(r.status != "ok" for r in runs)
    took = f"{total if total is not None else sum(r.seconds for r in runs):.1f} s to execute"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLE}</title><style>{_STYLE}</style></head>
<body>
<h1>{TITLE}</h1>
<p class="meta">Parameters: {params} &middot; {len(runs)} notebooks: {len(runs) - failed} ok, {failed} failed
&middot; {took}</p>
{_conclusion(found)}
{_facts(found)}
<table id="summary">
<thead><tr><th>notebook</th><th>verdict</th><th>time</th><th>status</th><th>figures</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Key figures</h2>
<p class="meta">The first figure of each notebook; click one to open the notebook.</p>
<div class="gallery">
{cards}
</div>
</body></html>
"""
    target = output / INDEX_NAME
    target.write_text(page, encoding="utf-8")
    return target


def write_report(runs: Sequence, output: Path, parameters: Iterable[tuple[str, str]] = (),
                 total: float | None = None) -> Path:
    """Export every executed notebook of `runs` to HTML, then write the index; returns index.html."""
    for run in runs:
        if run.output.exists():
            export_notebook(run.output)
    return write_index(runs, output, parameters, total)
