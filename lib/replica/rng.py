"""Mojo 0.25.7's process-wide random generator, bit for bit, in numpy.

Measured against the real compiler (docs/history.md, "Measured with Mojo
0.25.7"): `random.seed(s)` and `random.random_float64()` produce the stream of
C++ `std::minstd_rand0` (state <- 16807 * state mod 2**31 - 1) read through
libstdc++'s `uniform_real_distribution<double>`, which spends two engine
outputs u1, u2 on every float64:

    value = ((u1 - 1) + (u2 - 1) * R) / R**2,   R = 2**31 - 2,

every operation in float64. The seed is taken as an unsigned 64-bit integer
modulo 2**31 - 1, and a state of 0 becomes 1, so a process that never seeds
draws what `seed(1)` would give. The workbook's replica needs this exact
stream: which elements the original test kept (elements 0 and 3) is a fact of
this generator, and numpy's generators would keep others.
"""

from __future__ import annotations

import numpy as np

_MODULUS = 2**31 - 1
_MULTIPLIER = 16807
_RANGE = float(_MODULUS - 1)  # engine outputs are 1 .. 2**31 - 2
_RANGE_SQUARED = _RANGE * _RANGE  # rounded to float64, as the C++ library does
_BELOW_ONE = float(np.nextafter(1.0, 0.0))
#: What an unseeded process starts from: the engine's default seed.
FRESH_PROCESS_STATE = 1
_BLOCK = 4096


def engine_state(seed: int) -> int:
    """The engine state `random.seed(seed)` leaves: seed mod (2**31 - 1) as uint64, 0 -> 1."""
    state = (int(seed) % 2**64) % _MODULUS
    return state or 1


def _engine_outputs(state: int, count: int) -> tuple[np.ndarray, int]:
    """The next `count` engine outputs after `state` (int64) and the state after them.

    The recurrence is sequential, but 16807**k mod M can be tabulated once, so a
    block of outputs is `state * table mod M`: products stay below 2**62.
    """
    outputs = np.empty(count, dtype=np.int64)
    table_size = min(count, _BLOCK)
    powers = np.empty(table_size, dtype=np.int64)
    power = 1
    for k in range(table_size):
        power = power * _MULTIPLIER % _MODULUS
        powers[k] = power
    for start in range(0, count, table_size):
        block = outputs[start:start + table_size]
        block[:] = (state * powers[: block.size]) % _MODULUS
        state = int(block[-1])
    return outputs, state


class MojoRandom:
    """One process-wide generator, as Mojo's `random` module keeps it.

    `seed(s)` is `random.seed(s)`; `random_float64(n)` returns the next `n`
    values of `random.random_float64()` as a float64 array; `uniform(shape)`
    is the same stream shaped (row-major: the order Mojo's loops draw in).
    A new instance is a fresh process.
    """

    def __init__(self) -> None:
        self._state = FRESH_PROCESS_STATE
        self.draws = 0

    def seed(self, seed: int) -> None:
        self._state = engine_state(seed)

    def random_float64(self, n: int) -> np.ndarray:
        outputs, self._state = _engine_outputs(self._state, 2 * int(n))
        first = (outputs[0::2] - 1).astype(np.float64)
        second = (outputs[1::2] - 1).astype(np.float64)
        values = (first + second * _RANGE) / _RANGE_SQUARED
        # the C++ library maps a rounded-up 1.0 to the largest double below it
        values[values >= 1.0] = _BELOW_ONE
        self.draws += int(n)
        return values

    def uniform(self, shape) -> np.ndarray:
        shape = tuple(np.atleast_1d(shape)) if np.ndim(shape) else (int(shape),)
        return self.random_float64(int(np.prod(shape, dtype=np.int64))).reshape(shape)


def mojo_random_float64(seed: int | None, n: int) -> np.ndarray:
    """The first `n` values of `random.random_float64()` after `random.seed(seed)`.

    seed=None gives the first `n` values of a process that never seeded.
    Returns a float64 array of shape (n,).
    """
    generator = MojoRandom()
    if seed is not None:
        generator.seed(seed)
    return generator.random_float64(n)
