"""Repository-wide pytest setup."""

import os

# nbval compares stored figure outputs made under the inline backend; a forced
# backend (MPLBACKEND=Agg, common on CI machines) would make kernels drop them.
os.environ.pop("MPLBACKEND", None)
