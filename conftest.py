"""Repository-wide pytest setup."""

import importlib.util
import os

import pytest

# nbval compares stored figure outputs made under the inline backend; a forced
# backend (MPLBACKEND=Agg, common on CI machines) would make kernels drop them.
os.environ.pop("MPLBACKEND", None)

# Every exercise check a notebook runs here also tries wrong answers against itself
# (lib/workbook/exercise_audit.py); the kernels nbval starts inherit this.
os.environ["WORKBOOK_EXERCISE_AUDIT"] = "1"

_NBVAL = importlib.util.find_spec("nbval") is not None
_XDIST = importlib.util.find_spec("xdist") is not None


def pytest_addoption(parser):
    # pyproject.toml's addopts name nbval's options; without nbval pytest would stop at
    # "unrecognized arguments: --nbval" and say nothing of what to install.
    if not _NBVAL:
        parser.addoption("--nbval", action="store_true", help="(nbval is not installed)")
        parser.addoption("--nbval-current-env", action="store_true", help="(nbval is not installed)")
    # The same for pytest-xdist's options (the suite runs its files on every core).
    if not _XDIST:
        parser.addoption("-n", dest="numprocesses", help="(pytest-xdist is not installed)")
        parser.addoption("--dist", dest="dist", help="(pytest-xdist is not installed)")


def pytest_configure(config):
    if not _NBVAL:
        raise pytest.UsageError("nbval is not installed, and the tests check the stored notebooks with it: "
                                "run `pip install -r requirements.txt` first")
    if not _XDIST:
        raise pytest.UsageError("pytest-xdist is not installed, and the tests run their files on every core "
                                "with it: run `pip install -r requirements.txt` first")
