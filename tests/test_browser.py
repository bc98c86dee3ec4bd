"""The workbook as a reader meets it: JupyterLab and the HTML report in a real browser.

Debian's Chromium (`apt-get install chromium`, which `.ci/run` does) driven by
Playwright (requirements-browser.txt, with `executable_path`, so nothing is
downloaded). Skipped when either is missing, except in CI.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# CI sets WORKBOOK_REQUIRE_BROWSER=1: there a missing browser fails instead of skipping.
REQUIRED = os.environ.get("WORKBOOK_REQUIRE_BROWSER") == "1"
if REQUIRED:
    import playwright.sync_api as playwright
else:
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-browser.txt")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TOKEN = "workbook-browser-test"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists() and not REQUIRED,
                                 reason="Debian's chromium is not installed (apt-get install chromium)")]


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks; yields its base URL."""
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "13_playground.ipynb", folder)
    # Every cell in the page (JupyterLab otherwise renders only the cells in view), and no news prompt.
    settings = tmp_path_factory.mktemp("lab-settings")
    for plugin, values in (("notebook-extension/tracker", '{"windowingMode": "none"}'),
                           ("apputils-extension/notification", '{"fetchNews": "false"}')):
        target = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(values)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={folder}", "--ServerApp.disable_check_xsrf=True"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield url
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()


def _widget_image(page) -> bytes:
    """The PNG the playground's Output widget shows now."""
    image = page.locator(".widget-output img").first
    image.wait_for(state="visible", timeout=120_000)
    source = image.get_attribute("src")
    return base64.b64decode(source.split(",", 1)[1])


def _is_a_drawing(png: bytes) -> bool:
    from PIL import Image

    picture = Image.open(io.BytesIO(png)).convert("L")
    return picture.width > 400 and len(picture.getcolors(maxcolors=2**16) or ()) > 10


def test_the_playground_redraws_its_figure_when_a_control_moves(browser, lab):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab}/lab/tree/13_playground.ipynb?token={TOKEN}")
    page.locator(".jp-Notebook").wait_for(timeout=120_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    dropdown = page.locator(".widget-dropdown select").first
    dropdown.wait_for(timeout=120_000)
    assert page.locator(".widget-output img").count() == 0  # the Output starts empty
    cut = page.evaluate("[...document.querySelectorAll('.widget-label')]"
                        ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.textContent)")
    assert cut == []  # every control's label is shown whole
    dropdown.select_option("float64")
    first = _widget_image(page)
    assert _is_a_drawing(first)
    page.get_by_role("button", name="realised", exact=True).first.click()
    deadline = time.monotonic() + 120
    while _widget_image(page) == first and time.monotonic() < deadline:
        time.sleep(0.5)
    second = _widget_image(page)
    assert second != first and _is_a_drawing(second)
    assert "divide_by=realised" in page.locator(".widget-output").first.inner_text()
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0
    page.close()


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory):
    from notebook_factory import write_notebook

    from lib.workbook.cli import main

    books = tmp_path_factory.mktemp("books")
    long_verdict = "Verdict('CONFIRMED', 'a long reason with numbers 1.4305115 and 1.4285715, ' * 6).show()"
    write_notebook(books / "01_long.ipynb", "seed: int = 1  # a number",
                   ["import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(14, 3))\n"
                    "ax.plot([0, 1], [0, 1])\nplt.show()", "print('x = ' + '1.2345678 ' * 60)"],
                   "from lib.workbook.verdict import Verdict\n" + long_verdict)
    out = tmp_path_factory.mktemp("report")
    assert main(["run", "--notebook-dir", str(books), "--output", str(out), "--html"]) == 0
    return out


@pytest.mark.parametrize("width", [1400, 390])
@pytest.mark.parametrize("page_name", ["index.html", "01_long.html"])
def test_report_pages_fit_the_window(browser, report_folder, width, page_name):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((report_folder / page_name).as_uri())
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.close()
    assert overflow <= 0, f"{page_name} is {overflow} px wider than a {width} px window"
