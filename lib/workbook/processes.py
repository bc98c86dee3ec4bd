"""The runner's processes: workers that stop with their kernels, and no half-written output left behind.

A kernel runs in a session of its own, so a signal to the runner's process
group never reaches it; each worker therefore kills its own children before it
exits, and watches for its parent's death, which no signal announces.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from pathlib import Path


def _child_processes() -> list[int]:
    """Pids of this process's children (Linux /proc; empty elsewhere)."""
    children: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            children += [int(pid) for pid in task.read_text().split()]
        except OSError:
            continue
    return children


def _die(*_) -> None:
    """Stop this worker and the kernel it started (a kernel runs in a session of its own, so no
    signal to the runner's process group reaches it, and an orphaned kernel may live on)."""
    for pid in _child_processes():
        with contextlib.suppress(OSError):  # it may have exited already
            os.kill(pid, signal.SIGKILL)
    os._exit(1)


def remove_partials(output_dir: Path) -> None:
    """Delete what stopped executions left half-written in `output_dir` (see `execute`)."""
    for partial in output_dir.glob(".*.partial.ipynb"):
        with contextlib.suppress(OSError):
            partial.unlink()


def exit_with_parent() -> None:
    """In a worker process: stop, with its kernel, on SIGTERM or as soon as the runner is gone.

    A runner killed outright (SIGKILL) cannot stop its workers; without the
    watch they would run the queue and then wait forever for work that never
    comes.
    """
    signal.signal(signal.SIGTERM, _die)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        _die()

    threading.Thread(target=watch, daemon=True).start()


class FolderBusy(Exception):
    """Another run holds the output folder."""


@contextlib.contextmanager
def output_lock(folder: Path):
    """Hold `folder` for one run: a second run into it is refused instead of mixing its pages in.

    An advisory lock on the folder itself (no lock file to leave behind); the
    kernel releases it when the process ends, however it ends.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"another run is writing into {folder}/; wait for it to finish or choose "
                             "another --output") from None
        yield
    finally:
        os.close(handle)

