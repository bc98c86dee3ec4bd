"""Unit and property tests for lib.dropout: forward, backward, dropout2d, bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lib import dropout, dropout2d, dropout2d_backward, dropout_backward

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
FLOAT_WIDTH = {np.float16: 16, np.float32: 32, np.float64: 64}
SEEDS = st.integers(0, 2**63 - 1)


def assert_same_bits(actual, expected):
    """Equal dtype, shape and bit pattern (so -0.0 vs 0.0 and one-ulp slips both fail)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    as_uint = np.dtype(f"u{actual.dtype.itemsize}")
    np.testing.assert_array_equal(actual.view(as_uint), expected.view(as_uint))


def rounded_scale(p, dtype):
    """1/(1-p) rounded once to the working dtype: the factor the spec prescribes."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


def assert_zero_one(mask, dtype):
    assert mask.dtype == np.dtype(dtype)
    assert np.all((mask == 0) | (mask == 1))


@st.composite
def float_arrays(draw, min_dims=0, max_dims=3, max_side=6):
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    # Bounded so that x * 100 (p up to 0.99) stays finite even in float16.
    elements = st.floats(-100, 100, width=FLOAT_WIDTH[dtype])
    return draw(hnp.arrays(dtype, shape, elements=elements))


# --- forward: shapes, dtypes, exact scale ---------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4), (2, 3, 4, 5)])
def test_dropout_keeps_shape_and_dtype(dtype, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out, mask = dropout(x, 0.4, seed=1)
    assert np.shape(out) == shape and np.shape(mask) == shape
    assert out.dtype == np.dtype(dtype)
    assert_zero_one(mask, dtype)


@settings(max_examples=150, deadline=None)
@given(x=float_arrays(), p=st.floats(0.0, 0.99), seed=SEEDS)
def test_dropout_output_is_x_times_mask_times_rounded_scale_bitwise(x, p, seed):
    out, mask = dropout(x, p, seed=seed)
    assert_zero_one(np.asarray(mask), x.dtype)
    # One rounding of 1/(1-p) to x's dtype: x / (1 - p) or a float64 scale would
    # differ in the last bit for many (x, p) pairs.
    assert_same_bits(out, x * mask * rounded_scale(p, x.dtype))


@settings(max_examples=100, deadline=None)
@given(x=float_arrays(min_dims=1), p=st.floats(0.01, 0.99), seed=SEEDS)
def test_dropped_elements_are_zero_and_kept_ones_are_scaled(x, p, seed):
    out, mask = dropout(x, p, seed=seed)
    kept = mask == 1
    np.testing.assert_array_equal(out[~kept], 0)
    np.testing.assert_array_equal(out[kept], x[kept] * rounded_scale(p, x.dtype))


def test_scale_is_applied_once_in_the_working_dtype():
    # 1/(1-0.3) is 1.4285714285714286 in float64 and 1.4285715 in float32; a
    # float32 x times the float64 scale would round differently for this x.
    x = np.full(64, 0.7, np.float32)
    out, mask = dropout(x, 0.3, seed=3)
    assert mask.any()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[mask == 1], np.float32(0.7) * np.float32(1 / 0.7))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_no_nan_when_the_scale_overflows_the_dtype(dtype):
    # 1/(1-0.99999) = 1e5 does not fit in float16 (max 65504): rounding the
    # scale to float16 gives inf, and a dropped element becomes 0 * inf = NaN.
    # A dropped element must be exactly 0 whatever p is; if such a p cannot be
    # honoured in this dtype it must be refused with an error that names p.
    x = np.ones(64, dtype)
    try:
        out, mask = dropout(x, 0.99999, seed=3)
    except ValueError as err:
        assert re.search(r"\bp\b", str(err))
        return
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[mask == 0], 0)


# --- inference and p == 0 ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kwargs", [{"p": 0.5, "training": False}, {"p": 0.0}, {"p": 0.0, "seed": 7}])
def test_identity_cases_return_a_copy_of_x_and_an_all_ones_mask(dtype, kwargs):
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(dtype)
    out, mask = dropout(x, **kwargs)
    assert_same_bits(out, x)
    assert_same_bits(mask, np.ones_like(x))
    # A copy: the caller can write into `out` without changing x.
    assert out is not x
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kwargs", [{"p": 0.5, "training": False}, {"p": 0.0}])
def test_dropout2d_identity_cases_return_a_copy_and_a_channel_mask_of_ones(dtype, kwargs):
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(dtype)
    out, mask = dropout2d(x, **kwargs)
    assert_same_bits(out, x)
    assert_same_bits(mask, np.ones((2, 3, 1, 1), dtype))
    assert not np.shares_memory(out, x)


# --- randomness: seed, fresh entropy, Generator -------------------------------------------


@pytest.mark.parametrize("layer, shape", [(dropout, (1000,)), (dropout2d, (10, 100, 2, 2))])
def test_same_seed_gives_the_same_mask_on_every_call(layer, shape):
    x = np.ones(shape, np.float32)
    masks = [layer(x, 0.3, seed=42)[1] for _ in range(4)]
    for mask in masks[1:]:
        assert_same_bits(mask, masks[0])


@pytest.mark.parametrize("layer, shape", [(dropout, (1000,)), (dropout2d, (10, 100, 2, 2))])
def test_different_seeds_give_different_masks(layer, shape):
    x = np.ones(shape, np.float32)
    assert not np.array_equal(layer(x, 0.5, seed=1)[1], layer(x, 0.5, seed=2)[1])


@pytest.mark.parametrize("layer, shape", [(dropout, (1000,)), (dropout2d, (10, 100, 2, 2))])
def test_no_seed_draws_a_fresh_mask_on_every_call(layer, shape):
    # 1000 independent decisions at p = 0.5: two equal masks have probability 2**-1000.
    x = np.ones(shape, np.float32)
    first, second = layer(x, 0.5)[1], layer(x, 0.5)[1]
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("layer, shape", [(dropout, (1000,)), (dropout2d, (10, 100, 2, 2))])
def test_generator_advances_and_is_reproducible(layer, shape):
    x = np.ones(shape, np.float32)
    generator = np.random.default_rng(5)
    first, second = layer(x, 0.5, rng=generator)[1], layer(x, 0.5, rng=generator)[1]
    assert not np.array_equal(first, second)
    replay = np.random.default_rng(5)
    assert_same_bits(layer(x, 0.5, rng=replay)[1], first)
    assert_same_bits(layer(x, 0.5, rng=replay)[1], second)


# With n * min(p, 1 - p) >= 25 the exact binomial probability of a count more
# than 6 standard deviations from its mean is below 1e-7, so these cannot flake.
@settings(max_examples=60, deadline=None)
@given(p=st.floats(0.05, 0.95), size=st.integers(500, 20_000), seed=SEEDS)
def test_keep_rate_is_within_binomial_bounds(p, size, seed):
    _, mask = dropout(np.zeros(size, np.float32), p, seed=seed)
    kept = int(np.count_nonzero(mask))
    assert abs(kept - size * (1 - p)) <= 6 * math.sqrt(size * p * (1 - p))


@settings(max_examples=30, deadline=None)
@given(p=st.floats(0.05, 0.95), n=st.integers(10, 40), c=st.integers(50, 100), seed=SEEDS)
def test_dropout2d_channel_keep_rate_is_within_binomial_bounds(p, n, c, seed):
    _, mask = dropout2d(np.zeros((n, c, 2, 2), np.float32), p, seed=seed)
    kept = int(np.count_nonzero(mask))
    assert abs(kept - n * c * (1 - p)) <= 6 * math.sqrt(n * c * p * (1 - p))


def test_keep_probability_is_one_minus_p_not_p():
    # p is the *drop* probability: at p = 0.1 about 90 % survive.
    _, mask = dropout(np.zeros(100_000, np.float64), 0.1, seed=0)
    assert abs(mask.mean() - 0.9) < 6 * math.sqrt(0.9 * 0.1 / 100_000)


# --- dropout2d: one decision per (sample, channel) ----------------------------------------


# Small NCHW arrays in every dtype, any p the dtype can scale, any seed.
nchw_cases = given(
    shape=st.tuples(*[st.integers(1, 4)] * 4),
    dtype=st.sampled_from(FLOAT_DTYPES),
    p=st.floats(0.0, 0.95),
    seed=SEEDS,
)


@settings(max_examples=80, deadline=None)
@nchw_cases
def test_dropout2d_decides_once_per_channel(shape, dtype, p, seed):
    rng = np.random.default_rng(seed)
    # Magnitudes in [0.5, 2) so a kept element is never 0 and a dropped one always is.
    x = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)
    out, mask = dropout2d(x, p, seed=seed)
    assert mask.shape == (shape[0], shape[1], 1, 1)
    assert_zero_one(mask, dtype)
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    assert_same_bits(out, x * mask * rounded_scale(p, dtype))
    # Every pixel of a channel shares its fate.
    zero = out == 0
    assert np.all(zero.all(axis=(2, 3)) | (~zero).all(axis=(2, 3)))
    np.testing.assert_array_equal(zero.all(axis=(2, 3)), mask[:, :, 0, 0] == 0)


def test_dropout2d_mask_differs_across_channels_and_samples():
    # A mask that were shared by all channels (or all samples) would still be
    # "constant over H, W"; 200 decisions at p = 0.5 are never all equal.
    _, mask = dropout2d(np.ones((10, 20, 3, 3), np.float32), 0.5, seed=11)
    assert 0 < mask.sum() < mask.size
    assert len({row.tobytes() for row in mask[:, :, 0, 0]}) > 1
    assert len({col.tobytes() for col in mask[:, :, 0, 0].T}) > 1


# --- backward -------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    dtype=st.sampled_from(FLOAT_DTYPES),
    p=st.floats(0.0, 0.99),
    seed=SEEDS,
)
def test_dropout_backward_equals_closed_form(shape, dtype, p, seed):
    rng = np.random.default_rng(seed)
    grad = rng.standard_normal(shape).astype(dtype)
    mask = (rng.random(shape) > p).astype(dtype)
    grad_in = np.asarray(dropout_backward(grad, mask, p))
    # Bit for bit the factor the forward used ...
    assert_same_bits(grad_in, grad * mask * rounded_scale(p, dtype))
    # ... and, to the dtype's precision, the exact chain rule grad * mask / (1 - p).
    exact = grad.astype(np.float64) * mask / (1.0 - p)
    finfo = np.finfo(dtype)
    np.testing.assert_allclose(grad_in.astype(np.float64), exact, rtol=2 * finfo.eps, atol=finfo.smallest_normal)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.9])
def test_backward_equals_the_original_librarys_order_of_operations(dtype, p):
    # The original library: masked = grad * mask, then times a full tensor of the 64-bit 1/(1-p) in the dtype.
    grad = np.random.default_rng(1).standard_normal(2000).astype(dtype)
    mask = dropout(np.zeros(2000, dtype), p, seed=2)[1]
    original = np.multiply(np.multiply(grad, mask), np.full_like(grad, 1.0 / (1.0 - p)))
    assert_same_bits(dropout_backward(grad, mask, p), original)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_backward_with_the_forward_mask_is_the_forward_jacobian(dtype):
    # dropout is linear in x, so forward(grad) must equal backward(grad) for the same mask.
    grad = np.random.default_rng(4).standard_normal((4, 6)).astype(dtype)
    out, mask = dropout(grad, 0.3, seed=9)
    assert_same_bits(dropout_backward(grad, mask, 0.3), out)


def test_backward_result_has_grad_output_dtype():
    grad = np.ones(6, np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float64)
    grad_in = dropout_backward(grad, mask, 0.5)
    assert grad_in.dtype == np.float32
    np.testing.assert_array_equal(grad_in, [2, 0, 2, 2, 0, 2])


@settings(max_examples=80, deadline=None)
@nchw_cases
def test_dropout2d_backward_broadcasts_the_channel_mask(shape, dtype, p, seed):
    rng = np.random.default_rng(seed)
    grad = rng.standard_normal(shape).astype(dtype)
    mask = (rng.random((shape[0], shape[1], 1, 1)) > p).astype(dtype)
    grad_in = dropout2d_backward(grad, mask, p)
    assert grad_in.shape == shape and grad_in.dtype == np.dtype(dtype)
    expected = grad * np.broadcast_to(mask, shape) * rounded_scale(p, dtype)
    assert_same_bits(grad_in, expected)
    dropped = mask[:, :, 0, 0] == 0
    assert np.all(grad_in[dropped] == 0)


def test_dropout2d_backward_matches_its_forward():
    x = np.random.default_rng(6).standard_normal((3, 4, 2, 5)).astype(np.float32)
    out, mask = dropout2d(x, 0.25, seed=8)
    # Linear in x: the backward applied to x reproduces the forward output.
    assert_same_bits(dropout2d_backward(x, mask, 0.25), out)


# --- bad input ------------------------------------------------------------------------------

X1 = np.ones(4, np.float32)
X4 = np.ones((1, 2, 2, 2), np.float32)
M4 = np.ones((1, 2, 1, 1), np.float32)

# Every public entry point that takes p, including the early-return paths.
P_PATHS = {
    "dropout": lambda p: dropout(X1, p, seed=0),
    "dropout, training=False": lambda p: dropout(X1, p, training=False),
    "dropout_backward": lambda p: dropout_backward(X1, X1, p),
    "dropout2d": lambda p: dropout2d(X4, p, seed=0),
    "dropout2d, training=False": lambda p: dropout2d(X4, p, training=False),
    "dropout2d_backward": lambda p: dropout2d_backward(X4, M4, p),
}
P_MESSAGE = r"\bp\b.*\[0, 1\)"


@pytest.mark.parametrize("path", P_PATHS)
@pytest.mark.parametrize("p", [math.nan, -0.1, -1e-300, 1.0, 1.5, math.inf, -math.inf])
def test_p_outside_zero_one_is_refused_naming_p_and_range(path, p):
    with pytest.raises(ValueError, match=P_MESSAGE):
        P_PATHS[path](p)


@pytest.mark.parametrize("path", P_PATHS)
def test_p_of_the_wrong_type_is_refused_naming_p_and_range(path):
    # A string, a bool or None is not a probability; the message should still
    # say what is accepted, as it does for out-of-range numbers.
    for p in ("0.3", True, None):
        with pytest.raises((TypeError, ValueError), match=P_MESSAGE):
            P_PATHS[path](p)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: dropout(x, 0.3, seed=0), "x"),
        (lambda x: dropout(x, 0.3, training=False), "x"),
        (lambda x: dropout2d(x.reshape(1, 1, 2, 2), 0.3, seed=0), "x"),
        (lambda x: dropout_backward(x, np.ones(4), 0.3), "grad_output"),
        (lambda x: dropout2d_backward(x.reshape(1, 1, 2, 2), np.ones((1, 1, 1, 1)), 0.3), "grad_output"),
    ],
)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex128])
def test_non_floating_arrays_are_refused_naming_the_argument(call, name, dtype):
    with pytest.raises(TypeError, match=rf"^{name} must be a floating-point array"):
        call(np.ones(4, dtype))


@pytest.mark.parametrize(
    "call",
    [
        lambda: dropout_backward(np.ones(4), np.ones(5), 0.3),
        lambda: dropout_backward(np.ones((2, 3)), np.ones((3, 2)), 0.3),
        lambda: dropout2d_backward(np.ones((1, 2, 2, 2)), np.ones((1, 3, 1, 1)), 0.3),
        # An element-wise mask is the wrong contract for channel dropout.
        lambda: dropout2d_backward(np.ones((1, 2, 2, 2)), np.ones((1, 2, 2, 2)), 0.3),
    ],
)
def test_mask_of_the_wrong_shape_is_refused_naming_mask(call):
    with pytest.raises(ValueError, match=r"\bmask\b.*shape"):
        call()


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, math.nan])
def test_mask_values_other_than_zero_and_one_are_refused(bad):
    mask = np.array([1.0, 0.0, bad, 1.0])
    with pytest.raises(ValueError, match=r"\bmask\b.*0 and 1"):
        dropout_backward(np.ones(4), mask, 0.3)
    with pytest.raises(ValueError, match=r"\bmask\b.*0 and 1"):
        dropout2d_backward(np.ones((1, 4, 2, 2)), mask.reshape(1, 4, 1, 1), 0.3)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1, 2, 3), (1, 1, 1, 1, 1)])
def test_dropout2d_refuses_non_4d_input_naming_the_shape(shape):
    pattern = rf"4-D.*{re.escape(str(shape))}"
    with pytest.raises(ValueError, match=rf"^x .*{pattern}"):
        dropout2d(np.ones(shape), 0.3, seed=0)
    with pytest.raises(ValueError, match=rf"^x .*{pattern}"):
        dropout2d(np.ones(shape), 0.3, training=False)
    with pytest.raises(ValueError, match=rf"^grad_output .*{pattern}"):
        dropout2d_backward(np.ones(shape), np.ones((1, 1, 1, 1)), 0.3)


SEED_PATHS = {
    "dropout": lambda **kw: dropout(X1, 0.3, **kw),
    "dropout, training=False": lambda **kw: dropout(X1, 0.3, training=False, **kw),
    "dropout, p=0": lambda **kw: dropout(X1, 0.0, **kw),
    "dropout2d": lambda **kw: dropout2d(X4, 0.3, **kw),
    "dropout2d, training=False": lambda **kw: dropout2d(X4, 0.3, training=False, **kw),
}


@pytest.mark.parametrize("path", SEED_PATHS)
@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (2**63, ValueError), (1.5, TypeError), (42.0, TypeError), (True, TypeError),
     ("42", TypeError)],
)
def test_bad_seed_is_refused_naming_seed(path, seed, error):
    with pytest.raises(error, match=r"\bseed\b"):
        SEED_PATHS[path](seed=seed)


def test_numpy_integer_seed_is_accepted():
    assert_same_bits(dropout(X1, 0.3, seed=np.int64(3))[1], dropout(X1, 0.3, seed=3)[1])


@pytest.mark.parametrize("path", SEED_PATHS)
@pytest.mark.parametrize("rng", [np.random.RandomState(0), 42, "rng", np.random.default_rng(0).bit_generator])
def test_bad_rng_type_is_refused_naming_rng(path, rng):
    with pytest.raises(TypeError, match=r"\brng\b.*Generator"):
        SEED_PATHS[path](rng=rng)


@pytest.mark.parametrize("path", SEED_PATHS)
def test_seed_and_rng_together_are_refused(path):
    with pytest.raises(ValueError, match=r"\bseed\b.*\brng\b"):
        SEED_PATHS[path](seed=1, rng=np.random.default_rng(1))


@pytest.mark.parametrize("training", ["no", 1, None])
def test_training_must_be_a_bool(training):
    with pytest.raises(TypeError, match="training must be True or False"):
        dropout(np.ones(3), 0.5, training=training)


def test_the_p_bound_in_the_overflow_message_is_itself_accepted():
    x = np.ones(8, np.float16)
    with pytest.raises(ValueError, match="accepted: p <= ") as caught:
        dropout(x, 0.999999, seed=1)
    bound = float(re.search(r"p <= ([0-9.]+)", str(caught.value)).group(1))
    out, _ = dropout(x, bound, seed=1)
    assert np.all(np.isfinite(out))


def test_zero_dimensional_input_gives_arrays_back():
    out, mask = dropout(np.array(2.0), 0.5, seed=3)
    assert isinstance(out, np.ndarray) and out.shape == () and mask.shape == ()
    assert isinstance(dropout_backward(np.array(1.0), mask, 0.5), np.ndarray)
