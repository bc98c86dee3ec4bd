"""A checkable forward/backward pair, and the original failing test as one.

    problem = original_problem()                       # the replica's pair, as the test built it
    diagnose(*problem, eps=1e-5, divide_by="nominal")  # unpacks to forward, backward, x, grad_output
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib import _checks
from lib.dropout import dropout_backward
from lib.replica import GlobalRNG, original_dropout, test_values


@dataclass(frozen=True)
class Problem:
    """What a gradient check needs; iterating gives (forward, backward, x, grad_output).

    Attributes:
        forward: forward(x) -> y.
        backward: backward(grad_output, x) -> grad_x, x's shape.
        x: the input; grad_output: y's shape and dtype.
        mask, p: for a dropout pair, the 0/1 mask the backward uses (x's dtype) and the
            drop probability; None otherwise.
    """

    forward: Callable
    backward: Callable
    x: np.ndarray
    grad_output: np.ndarray
    mask: np.ndarray | None = None
    p: float | None = None

    def __iter__(self):
        """The arguments of check_gradient and diagnose, in their order: `diagnose(*problem)`."""
        return iter((self.forward, self.backward, self.x, self.grad_output))


def original_problem(size: int = 5, dtype="float32", p: float = 0.3, seed: int = 42) -> Problem:
    """The original test's pair, as `lib.replica.replay_original_test` builds it with every
    switch at its original value.

    One process-wide RNG, shared by the test's own dropout call and every forward call: a
    seed > 0 reseeds it on every call, seed 0 means "do not seed" (every call draws a new
    mask, so the order of calls matters, as it did). The backward uses the mask of the
    test's own first call; grad_output is all ones.

    Args:
        size: number of input values, x = lib.replica.test_values(size).
        dtype: float16, float32 or float64.
        p: drop probability in [0, 1).
        seed: the test's dropout seed, >= 0.
    """
    dtype = _checks.dtype_from_name(dtype)
    p = _checks.drop_probability(p)
    seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
    state = GlobalRNG()
    x = np.array(test_values(size), dtype=dtype)
    _, mask = original_dropout(x, p, seed, state, reseed=True)  # the test's own forward call

    def forward(x_in):
        return original_dropout(x_in, p, seed, state, reseed=True)[0]

    def backward(grad, x_in):
        return dropout_backward(grad, mask, p)

    return Problem(forward, backward, x, np.ones_like(x), mask, p)
