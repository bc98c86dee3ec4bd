"""How an answer differs from the expected one, said without giving the expected one away.

`what_is_wrong(answer, expected, ...)` returns '' for a right answer and one
sentence otherwise. The sentence names the direction and a band ("too large by
1 % to 10 %", "wrong sign", "index 3 of 5"), never the expected value nor the
offset to it: answer + offset would be the answer. It also says when the
answer was computed in a low precision (a numpy float16 or float32 value where
the exercise expects float64), because then the arithmetic, not the reasoning,
is what went wrong.
"""

from __future__ import annotations

import numpy as np

#: (upper bound of |answer/expected - 1|, words), for an answer of the right sign that is too large.
TOO_LARGE_BANDS = ((0.01, "by less than 1 %"), (0.1, "by 1 % to 10 %"), (1.0, "by 10 % to 100 %"),
                   (9.0, "by a factor of 2 to 10"), (np.inf, "by more than a factor of 10"))
#: (upper bound of 1 - answer/expected, words), for an answer of the right sign that is too small.
TOO_SMALL_BANDS = ((0.01, "by less than 1 %"), (0.1, "by 1 % to 10 %"), (0.5, "by 10 % to 50 %"),
                   (0.9, "by a factor of 2 to 10"), (np.inf, "by more than a factor of 10"))


def what_is_wrong(answer, expected, rtol: float, atol: float, *, unordered: bool = False) -> str:
    """'' when `answer` matches `expected`, else one sentence saying how it does not.

    Args:
        answer: the learner's value: a number, bool, string, or array-like of numbers.
        expected: the right value, of the same kind.
        rtol, atol: numbers match when |answer - expected| <= atol + rtol * |expected|.
        unordered: compare as sets of numbers (indices, say), in any order.
    """
    if unordered:
        return _wrong_set(answer, expected, rtol, atol)
    if isinstance(expected, str):
        if not isinstance(answer, str):
            return f"expected a string, got {type(answer).__name__}."
        return "" if answer.strip().lower() == expected.strip().lower() else f"{answer!r} is not it."
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(answer, (bool, np.bool_)):
            return f"expected True or False, got {answer!r}."
        return "" if bool(answer) == bool(expected) else f"{answer} is not it."
    return _wrong_numbers(answer, expected, rtol, atol)


def _wrong_numbers(answer, expected, rtol: float, atol: float) -> str:
    if isinstance(answer, (set, frozenset, dict)) or np.asarray(answer).dtype.kind not in "biufc":
        return f"expected a number or an array of numbers, got {type(answer).__name__}."
    want = np.asarray(expected)
    try:
        got = np.broadcast_to(np.asarray(answer), want.shape)
    except ValueError:
        return f"expected {_shape_words(want.shape)}, got {_shape_words(np.shape(answer))}."
    got64 = got.astype(np.complex128 if got.dtype.kind == "c" else np.float64)
    close = np.isclose(got64, want, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return ""
    precision = low_precision(answer, want)
    wrong = np.flatnonzero(~close)
    first = wrong[0]
    how = direction(got64.flat[first], want.flat[first], atol)
    if want.ndim == 0:
        said = f"{shown(answer)} is {how}."
    elif wrong.size == 1:
        said = f"index {first} of {want.size} is {how} (indices count from 0, in flat order)."
    else:
        said = (f"{wrong.size} of {want.size} values are wrong; the first, at index {first} "
                f"(counting from 0, in flat order), is {how}.")
    return said + (f" {precision}" if precision else "")


def direction(got: complex | float, want: complex | float, atol: float) -> str:
    """'too large by 1 % to 10 %', 'of the wrong sign', ...: how far and which way, as words."""
    if np.iscomplexobj(got) or np.iscomplexobj(want):
        return "not the right complex number"
    got, want = float(got), float(want)
    if np.isnan(got) or np.isnan(want):
        return "NaN where a number is expected" if np.isnan(got) else "a number where NaN is expected"
    if np.isinf(got) or np.isinf(want):
        return "infinite" if np.isinf(got) else "finite where the answer is not"
    if abs(want) <= atol:  # the answer is zero, within the tolerance: no ratio to report
        return "too large" if got > want else "too small"
    if got == 0:
        return "zero, where the answer is not"
    if np.sign(got) != np.sign(want):
        return "of the wrong sign"
    ratio = got / want
    bands, off, size = ((TOO_LARGE_BANDS, ratio - 1, "too large") if abs(got) > abs(want)
                        else (TOO_SMALL_BANDS, 1 - ratio, "too small"))
    words = next(words for bound, words in bands if off < bound)
    return f"{size} {words}" if got > 0 else f"{size} in magnitude {words}"


def low_precision(answer, want: np.ndarray) -> str:
    """A sentence when `answer` holds numpy float16/float32 values and `want` is float64, else ''."""
    kind = getattr(answer, "dtype", None)
    if kind is None and isinstance(answer, (list, tuple)) and answer:
        kind = getattr(answer[0], "dtype", None)
    if kind is None or np.dtype(kind) not in (np.float16, np.float32) or want.dtype != np.float64:
        return ""
    return (f"Your arithmetic ran in {np.dtype(kind).name}: numpy keeps {np.dtype(kind).name} "
            f"through +, * and **, and that rounds away what this exercise measures. Compute in "
            f"float64: wrap the numbers in float() first.")


def _wrong_set(answer, expected, rtol: float, atol: float) -> str:
    """Compare as sets of numbers: any order, any container; duplicates count once."""
    want = _distinct(expected)
    try:
        got = _distinct(answer)
    except (TypeError, ValueError):
        return f"expected a collection of numbers, got {type(answer).__name__}."
    matched = [np.any(np.isclose(g, want, rtol=rtol, atol=atol)) for g in got]
    found = [np.any(np.isclose(got, w, rtol=rtol, atol=atol)) for w in want]
    extra, missing = matched.count(False), found.count(False)
    if not extra and not missing:
        return ""
    parts = ([f"{extra} of yours should not be there"] if extra else []) + \
            ([f"{missing} {'is' if missing == 1 else 'are'} missing"] if missing else [])
    return f"not the right set of values (order does not matter): {' and '.join(parts)}."


def _distinct(values) -> np.ndarray:
    """The distinct numbers of a set, list, tuple or array, as a float64 vector."""
    items = sorted(values) if isinstance(values, (set, frozenset)) else values
    flat = np.asarray(items, dtype=np.float64).ravel()
    return np.unique(flat)


def _shape_words(shape: tuple) -> str:
    return "a single number" if shape == () else f"an array of shape {tuple(shape)}"


def shown(answer) -> str:
    """The learner's own answer as they would recognise it, short."""
    if isinstance(answer, (int, float, np.integer, np.floating)):
        return f"{float(answer):.6g}" if isinstance(answer, (float, np.floating)) else str(answer)
    return "your answer"
