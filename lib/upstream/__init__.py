"""The original library's own gradient tests, run with the fixed Mojo checker in place of theirs.

`python -m lib upstream PATH` (see run.run_upstream): PATH is a local checkout of
the original library; it is copied to a temporary folder, its check_gradient is
swapped for a dispatcher (mojo/upstream/), and every gradient test is run with the
fixed checker, the library's own one and the failure-era algorithm.
"""

from lib.upstream.execute import BuildFailed
from lib.upstream.layout import LayoutError
from lib.upstream.run import run_upstream

__all__ = ["BuildFailed", "LayoutError", "run_upstream"]
