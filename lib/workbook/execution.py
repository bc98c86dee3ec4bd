"""Executing the selected notebooks in worker processes: results in order, progress meanwhile, a clean stop.

Each notebook runs in a worker (`--jobs` at once); the main process prints a
line as each finishes, in reading order, and, while it waits, the progress the
workers report (lib.workbook.progress). Ctrl-C or SIGTERM cancels the queue
and kills the workers at once (their kernels exit with them).
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lib.workbook import processes
from lib.workbook import runner as workbook
from lib.workbook.progress import Progress, progress_file

#: Seconds between two looks at the workers' progress.
POLL = 1.0


class Stop(BaseException):
    """SIGTERM, turned into an exception in the main process so that the run stops like on Ctrl-C
    (a BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it)."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _raise_stop(signum, frame):
    raise Stop(signum)


def _finished_line(number: int, total: int, run) -> str:
    word = run.outcome.split(" - ")[0] if run.verdict != "-" else run.outcome
    return f"[{number:>2}/{total}] {run.source.name:<40} {run.status:<6} {run.seconds:5.1f} s  {word}"


def _result(path: Path, output: Path, future, progress: Progress):
    """The notebook's run, printing progress while it is not finished."""
    while True:
        try:
            return future.result(timeout=POLL)
        except TimeoutError:
            for line in progress.poll():
                print(line, flush=True)
        except Exception as failure:  # the worker process itself died
            return workbook.NotebookRun(path, output / path.name, "failed", 0.0,
                                        error=f"{path.name}: {type(failure).__name__}: {failure}")


def execute_all(selected, output: Path, parameters: dict, jobs: int):
    """Execute the notebooks into `output`, printing a line as each finishes, and progress meanwhile.

    Returns (runs, stopped): the finished runs in order, and the signal that
    stopped the run (None when all ran).
    """
    runs: list = []
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # A process started with SIGINT ignored (a background job of a script, or a parent that
    # ignores it) would inherit that and sleep through Ctrl-C; the runner always honours it.
    previous_interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=processes.exit_with_parent)
    progress = Progress(output)
    try:
        futures = [pool.submit(workbook.execute, path, output / path.name, parameters[path],
                               progress_file(output / path.name)) for path in selected]
        for number, (path, future) in enumerate(zip(selected, futures, strict=True), start=1):
            run = _result(path, output, future, progress)
            progress.finished(run.output)
            runs.append(run)
            print(_finished_line(number, len(selected), run), flush=True)
            if run.error:
                print(f"        {run.error}", flush=True)
    except (KeyboardInterrupt, Stop) as stop:
        kill_workers(pool)
        processes.remove_partials(output)
        signum = stop.args[0] if isinstance(stop, Stop) else signal.SIGINT
        return runs, signal.Signals(signum)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
        pool.shutdown(wait=True, cancel_futures=True)
    return runs, None


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to every worker (each stops its kernel, see processes.exit_with_parent), SIGKILL to a straggler."""
    workers = list((pool._processes or {}).values())  # the executor has no public way to stop a running task
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
