"""The runner stopped by a real signal: prompt exit, the right code, a summary, no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from notebook_factory import write_notebook

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def _marker_processes(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text or ("ipykernel_launcher" in text and marker in _environment(cmdline.parent)):
            found.append(text)
    return found


def _environment(proc: Path) -> str:
    try:
        return (proc / "environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _start(tmp_path: Path):
    folder = tmp_path / "slow-notebooks"
    folder.mkdir()
    started = tmp_path / "started"
    cell = f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"
    for k in (1, 2):
        write_notebook(folder / f"0{k}_slow.ipynb", "n: int = 1  # a number", [cell])
    process = subprocess.Popen([sys.executable, "-m", "lib", "run", "--notebook-dir", str(folder), "--output",
                                str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=Path(__file__).resolve().parent.parent,
                               env={**os.environ, "WORKBOOK_TEST_MARKER": str(folder)})
    deadline = time.monotonic() + 60
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until a kernel is running its cell
    assert started.exists(), "no notebook started its cell"
    return process, str(folder)


@pytest.mark.parametrize(("how", "code"), [("ctrl-c", 130), ("sigterm", 143), ("sigkill", -9)])
def test_a_signal_stops_the_run_at_once_and_leaves_no_process(tmp_path, how, code):
    process, marker = _start(tmp_path)
    started = time.monotonic()
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to the foreground group
    else:
        process.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, err
    assert time.monotonic() - started < 15
    if how != "sigkill":
        assert "notebooks: 0 ok, 0 failed" in out and f"Stopped by SIG{'INT' if how == 'ctrl-c' else 'TERM'}" in err
        assert (tmp_path / "out" / "summary.json").exists()
    deadline = time.monotonic() + 10
    while _marker_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _marker_processes(marker) == []


def test_a_run_stopped_half_way_keeps_the_previous_complete_output(tmp_path):
    (tmp_path / "out").mkdir()
    previous = tmp_path / "out" / "01_slow.ipynb"
    previous.write_text("complete output of an earlier run")
    process, _ = _start(tmp_path)  # the notebooks sleep, so nothing is complete when the signal comes
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=30)
    assert previous.read_text() == "complete output of an earlier run"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01_slow.ipynb", "summary.json", "summary.md"]


def test_ctrl_c_stops_a_run_started_with_sigint_ignored(tmp_path):
    # A background job of a shell script starts with SIGINT ignored, and children inherit that.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process, _ = _start(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
