"""The original tolerances: each test's call site at the failure-era commit, read with git.

A test is judged at the tolerance its call site had at 27a95c94 (the commit whose
run failed); a test added later at 1e-3/1e-6, the checker's default then. The
history comes from PATH itself when it is a git checkout holding that commit, or
from a git directory given with --history (a bare clone will do).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lib.upstream import source

ORIGINAL_COMMIT = "27a95c944d34df9739cbe5a5f06fa7a69a41725a"
#: check_gradient's defaults at ORIGINAL_COMMIT, for a call that gave none and for later tests.
DEFAULT_TOLERANCE = (1e-3, 1e-6)


@dataclass
class History:
    """Where the original tolerances came from, and PATH's own commit when known."""

    git_dir: str | None  # None: no history, every test at DEFAULT_TOLERANCE
    note: str
    commit: str | None = None
    originals: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def original(self, test_file: Path, test: str) -> tuple[tuple[float, float], str]:
        """(rtol, atol) and where they came from: 'call site at 27a95c94' or why the default."""
        key = (test_file.as_posix(), test)
        if key in self.originals:
            return self.originals[key], "call site at 27a95c94"
        if self.git_dir is None:
            return DEFAULT_TOLERANCE, "default (no history)"
        return DEFAULT_TOLERANCE, "default (added after 27a95c94)"


def _git(git_dir: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", git_dir, *arguments], capture_output=True, text=True)


def _git_dir_of(path: Path) -> str | None:
    """The git directory of a checkout whose top level is `path` (not of a repository `path` lies inside)."""
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel", "--absolute-git-dir"],
                          capture_output=True, text=True)
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2 or Path(lines[0]).resolve() != Path(path).resolve():
        return None
    return lines[1].strip()


def _has_commit(git_dir: str, commit: str) -> bool:
    return _git(git_dir, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def resolve(root: Path, history: Path | None, commit: str | None) -> History:
    """Find the history (history argument, else PATH's own git) and PATH's commit."""
    own = _git_dir_of(root)
    if history is not None:
        git_dir = _git_dir_of(history) or (str(history) if (Path(history) / "HEAD").is_file()
                                           and (Path(history) / "objects").is_dir() else None)
        if git_dir is None:
            raise ValueError(f"--history {history}: not a git repository")
    else:
        git_dir = own
    if commit is None and own is not None:
        commit = _git(own, "rev-parse", "HEAD").stdout.strip() or None
    if commit is not None and git_dir is not None:
        full = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").stdout.strip()
        commit = full or commit
    if git_dir is None:
        return History(None, "PATH is not a git checkout and no --history was given: original tolerances "
                             "unknown, every test judged at 1e-3/1e-6", commit)
    if not _has_commit(git_dir, ORIGINAL_COMMIT):
        return History(None, f"the history in {git_dir} has no commit {ORIGINAL_COMMIT[:8]}: original "
                             "tolerances unknown, every test judged at 1e-3/1e-6", commit)
    return History(git_dir, f"original tolerances: call sites at {ORIGINAL_COMMIT[:8]} (from {git_dir})", commit)


def load_originals(found: History, test_files: list[Path]) -> None:
    """Fill found.originals from each test file's version at ORIGINAL_COMMIT (when it existed)."""
    if found.git_dir is None:
        return
    for test_file in test_files:
        done = _git(found.git_dir, "show", f"{ORIGINAL_COMMIT}:{test_file.as_posix()}")
        if done.returncode != 0:
            continue
        for site in source.call_sites(done.stdout):
            rtol = site.rtol if site.rtol is not None else DEFAULT_TOLERANCE[0]
            atol = site.atol if site.atol is not None else DEFAULT_TOLERANCE[1]
            found.originals[(test_file.as_posix(), site.test)] = (rtol, atol)
