"""Argument checks shared by the public functions.

Every check raises at the API boundary with a message that names the argument,
says what is accepted and shows what was given, so a user never has to read a
traceback from deep inside numpy to learn that `p` was 1.0.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
FLOAT_DTYPE_NAMES = ("float16", "float32", "float64")


def float_array(value, name: str) -> np.ndarray:
    """Return `value` as a floating-point ndarray, or raise TypeError naming `name`."""
    array = np.asarray(value)
    if array.dtype.type not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point array (float16, float32 or float64); "
            f"got dtype {array.dtype}"
        )
    return array


def dtype_from_name(dtype, name: str = "dtype") -> np.dtype:
    """Accept 'float32', np.float32 or np.dtype('float32'); refuse everything else."""
    try:
        # np.dtype(None) is float64: refuse None rather than silently change dtype
        resolved = None if dtype is None else np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.type not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be one of {', '.join(FLOAT_DTYPE_NAMES)}; got {dtype!r}")
    return resolved


def real_number(value, name: str) -> float:
    """A real, non-boolean number as a Python float (NaN allowed; callers check ranges)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    return float(value)


def drop_probability(p) -> float:
    """Check the drop probability: a real number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a drop probability, a real number in [0, 1); got {type(p).__name__} {p!r}")
    p = float(p)
    if math.isnan(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"p must be a drop probability in [0, 1); got {p!r}")
    return p


def largest_drop_probability(dtype) -> float:
    """The largest p whose scale 1/(1-p) is finite in `dtype`, rounded down to six decimals
    (so that the number printed is itself accepted): 0.999984 for float16, 1.0 for wider dtypes."""
    largest = float(np.finfo(dtype_from_name(dtype)).max)
    return math.floor((1 - 1 / largest) * 1e6) / 1e6


def drop_probability_for(p, dtype) -> float:
    """A drop probability whose scale 1/(1-p) is finite in `dtype` (float16 overflows near p = 1)."""
    p = drop_probability(p)
    bound = largest_drop_probability(dtype)
    if p > bound:
        name = dtype_from_name(dtype).name
        raise ValueError(f"p must be in [0, {bound:g}] for {name}, where the scale 1/(1-p) must stay "
                         f"finite (at most {float(np.finfo(name).max):g}); got {p!r}")
    return p


def non_negative(value, name: str) -> float:
    value = real_number(value, name)
    if math.isnan(value) or value < 0.0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return value


def positive_step(eps) -> float:
    eps = real_number(eps, "eps")
    if math.isnan(eps) or eps <= 0.0 or math.isinf(eps):
        raise ValueError(f"eps must be a finite step > 0 (or None for the default step); got {eps!r}")
    return eps


def seed_or_rng(seed, rng) -> np.random.Generator:
    """Resolve the (seed, rng) pair into one Generator.

    seed=None, rng=None draws fresh OS entropy; a seed gives a new Generator in
    the same state on every call (so the same seed gives the same mask); an rng
    is used as it is and advances.
    """
    if seed is not None and rng is not None:
        raise ValueError("pass either seed or rng, not both (seed makes a new Generator per call)")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        return rng
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer in [0, 2**63) or None; got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63) or None; got {seed!r}")
    return np.random.default_rng(int(seed))


def positive_int(value, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}; got {value}")
    return value


def choice(value, name: str, accepted: tuple[str, ...]) -> str:
    # Compare types too: 1 == True, but restore_input=1 is not an accepted spelling.
    if not any(type(value) is type(a) and value == a for a in accepted):
        options = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")
    return value


def callable_arg(value, name: str):
    """A function argument such as `forward` or `backward`."""
    if not callable(value):
        raise TypeError(f"{name} must be a callable, e.g. a function of x; got {type(value).__name__}")
    return value


def boolean(value, name: str) -> bool:
    """A real bool: 'no' or 1 are refused rather than read as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def none_or_float64(value, name: str) -> bool:
    """An option that is None or float64 (a dtype or its name): True for float64."""
    if value is None:
        return False
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype != np.float64:
        raise ValueError(f"{name} must be None (x's dtype) or 'float64'; got {value!r}")
    return True
