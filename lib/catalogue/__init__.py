"""Forward/backward pairs, correct and broken, to measure a gradient checker and a diagnosis against.

Two collections, one place:

- `layers`: ten ordinary numpy layers (affine, batch norm, layer norm, softmax with
  cross-entropy, conv2d, max-pool, an LSTM cell, GELU, tanh, dropout with a fixed mask), each
  correct and with real bugs. A checker should pass every correct one and fail every broken
  one, in float32 and float64: `build`, `cases`, `tally`.

      case = build("batch-norm", "float32", seed=3)
      check_gradient(case.forward, case.backward, case.x, case.grad_output)

- `mutants`: pairs labelled with the code `lib.diagnose.diagnose` must give (a mask drawn
  anew on every call, a mismatched mask, a wrong factor, a too-small step, a forward that
  writes into x, ...), and correct pairs labelled `ok`: `CATALOGUE`, `by_name`, `evaluate`,
  `confusion`.

      forward, backward, x, grad_output = by_name("missing-scale").build("float32", seed=0)

`Problem` is the pair both kinds of check take (it unpacks to forward, backward, x,
grad_output), and `original_problem()` is the original failing test as one.
"""

from lib.catalogue.layers import LAYERS, UPSTREAM_BUGS, Case, Tally, bugs, build, cases, format_tallies, tally
from lib.catalogue.mutants import (
    CATALOGUE,
    CORRECT,
    MUTANTS,
    SHORT_CODES,
    Entry,
    Outcome,
    by_name,
    confusion,
    evaluate,
)
from lib.catalogue.pairs import P
from lib.catalogue.problem import Problem, original_problem

__all__ = [
    "CATALOGUE",
    "CORRECT",
    "LAYERS",
    "MUTANTS",
    "SHORT_CODES",
    "UPSTREAM_BUGS",
    "Case",
    "Entry",
    "Outcome",
    "P",
    "Problem",
    "Tally",
    "bugs",
    "build",
    "by_name",
    "cases",
    "confusion",
    "evaluate",
    "format_tallies",
    "original_problem",
    "tally",
]
