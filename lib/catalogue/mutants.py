"""Forward/backward pairs, deliberately wrong and correct, each labelled with its diagnosis.

Every entry knows the diagnosis code it must produce (`lib.diagnose.CODES`),
names its mechanism in one line, and builds a fresh problem on demand:

    entry = by_name("missing-scale")
    forward, backward, x, grad_output = entry.build("float32", seed=0)
    entry.diagnose("float32", seed=0).primary.code      # -> "wrong-backward"

`entry.check` holds the check settings the entry is labelled under (most are
the defaults; the precision entries need a particular step, divide or
tolerance, e.g. eps=1e-5 with the nominal divide of the original checker, and
those that check_gradient's noise term would pass check by the plain rule,
strict=True, as the failing check they stand for did), and
`entry.dtypes` the dtypes for which the label holds: a too-small step is a
float32 problem, and the same setting in float64 is simply fine.

The wrong pairs are the mechanisms the investigation considered and their
relatives; the correct pairs (dropout, dropout2d, tanh, sigmoid, softmax,
log-sum-exp, layer norm, matmul) must come out `ok` in float32 and float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lib import _checks
from lib.catalogue.pairs import (
    P,
    backward_draws_mask,
    backward_into_grad_output,
    backward_scratch_x,
    correct_dropout,
    dropout2d_pair,
    dropout_original_values,
    elementwise,
    fresh_generator,
    global_rng_seeded_once,
    inplace_clip,
    inplace_dropout,
    input_seeded,
    keep_scale,
    layer_norm_pair,
    log_sum_exp,
    mask_rule,
    matmul_pair,
    rebound_mask,
    running_statistic,
    seed_zero,
    seeded_dropout,
    sigmoid,
    softmax_backward,
    softmax_pair,
    step_counter,
    stochastic_dropout,
)
from lib.catalogue.problem import Problem
from lib.diagnose import CODES, Diagnosis, diagnose
from lib.dropout import dropout, dropout_backward


@dataclass(frozen=True)
class Entry:
    """One labelled forward/backward pair.

    Attributes:
        name: short unique name, e.g. "inverted-mask".
        code: the diagnosis code the pair must produce as findings[0].
        description: the mechanism, in one line.
        factory: factory(dtype: np.dtype, seed: int) -> Problem, a fresh problem.
        check: keyword settings for diagnose (eps, divide_by, rtol, atol, strict); all but
            divide_by also apply to check_gradient.
        dtypes: dtypes in which the label holds.
    """

    name: str
    code: str
    description: str
    factory: Callable[[np.dtype, int], Problem]
    check: dict = field(default_factory=dict)
    dtypes: tuple[str, ...] = ("float32", "float64")

    def build(self, dtype="float32", seed: int = 0) -> Problem:
        """A fresh Problem in `dtype` (float16/32/64); `seed` fixes x, grad_output and masks."""
        dtype = _checks.dtype_from_name(dtype)
        seed = _checks.positive_int(seed, "seed", low=0, high=2**63 - 1)
        return self.factory(dtype, seed)

    def diagnose(self, dtype=None, seed: int = 0, probe_seed: int = 0) -> Diagnosis:
        """diagnose() on a fresh problem under this entry's check settings (dtype: first of `dtypes`)."""
        problem = self.build(self.dtypes[0] if dtype is None else dtype, seed)
        return diagnose(*problem, seed=probe_seed, **self.check)


MUTANTS: tuple[Entry, ...] = (
    # nondeterministic-forward: the forward is not a function of x alone.
    Entry("seedless-forward", "nondeterministic-forward",
          "forward draws a fresh mask on every call from a Generator that advances (seed=None behaviour)",
          stochastic_dropout(fresh_generator)),
    Entry("global-rng-forward", "nondeterministic-forward",
          "the shared global RNG is seeded once at the start; every forward call draws on from it",
          stochastic_dropout(global_rng_seeded_once)),
    Entry("seed-zero-forward", "nondeterministic-forward",
          "seed=0 means 'do not seed' in the original API, so every call draws a new mask",
          stochastic_dropout(seed_zero)),
    Entry("step-counter-forward", "nondeterministic-forward",
          "the layer advances a step counter on every forward call and seeds the mask with it",
          stochastic_dropout(step_counter)),
    Entry("input-seeded-forward", "nondeterministic-forward",
          "the mask is seeded from a checksum of x: same x, same mask, but x+eps and x-eps get different masks",
          stochastic_dropout(input_seeded)),
    Entry("running-statistic-forward", "nondeterministic-forward",
          "training-mode normalisation updates its running mean on every call (no RNG at all)",
          running_statistic),
    # mask-mismatch: a correct dropout gradient under the wrong keep pattern.
    Entry("other-seed-mask", "mask-mismatch",
          "backward uses a mask drawn with another seed than the forward's",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g, dropout(x, P, seed=s + 1)[1], P)))),
    Entry("rebound-mask", "mask-mismatch",
          "the backward closure reads `mask` late; a later dropout call rebinds the name",
          rebound_mask),
    Entry("inverted-mask", "mask-mismatch",
          "backward uses 1 - mask: keeps what the forward dropped",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g, 1 - mask, P)))),
    Entry("shifted-mask", "mask-mismatch",
          "backward uses the mask rolled by one element (an off-by-one in indexing)",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g, np.roll(mask, 1), P)))),
    Entry("transposed-mask", "mask-mismatch",
          "backward uses the transposed mask of a square input (a layout mix-up)",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g, mask.T, P)), shape=(7, 7))),
    Entry("backward-draws-mask", "mask-mismatch",
          "the backward draws a fresh mask on every call instead of using the forward's",
          seeded_dropout(backward_draws_mask)),
    Entry("element-mask-dropout2d", "mask-mismatch",
          "dropout2d forward drops channels; the backward applies an element mask from the same seed",
          dropout2d_pair(element_mask=True)),
    # wrong-backward: not the forward's vector-Jacobian product.
    Entry("missing-scale", "wrong-backward",
          "backward multiplies by the mask but forgets the 1/(1-p) scale",
          seeded_dropout(mask_rule(lambda g, mask, s, x: g * mask))),
    Entry("scale-by-1/p", "wrong-backward",
          "backward scales kept elements by 1/p instead of 1/(1-p)",
          seeded_dropout(mask_rule(lambda g, mask, s, x: g * mask * g.dtype.type(1.0 / P)))),
    Entry("double-scale", "wrong-backward",
          "backward applies the 1/(1-p) factor twice",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g, mask, P) * keep_scale(g.dtype)))),
    Entry("sign-flip", "wrong-backward",
          "backward returns the negated gradient",
          seeded_dropout(mask_rule(lambda g, mask, s, x: -dropout_backward(g, mask, P)), ones=False)),
    Entry("identity-backward", "wrong-backward",
          "backward returns grad_output unchanged (as in eval mode)",
          seeded_dropout(mask_rule(lambda g, mask, s, x: g))),
    Entry("ignores-grad-output", "wrong-backward",
          "backward returns mask / (1-p) without multiplying by grad_output: passes an all-ones check",
          seeded_dropout(mask_rule(lambda g, mask, s, x: mask * keep_scale(mask.dtype)))),
    Entry("squared-grad-output", "wrong-backward",
          "backward multiplies by grad_output twice: passes an all-ones check",
          seeded_dropout(mask_rule(lambda g, mask, s, x: dropout_backward(g * g, mask, P)))),
    Entry("tanh-derivative-of-input", "wrong-backward",
          "tanh backward uses 1 - x^2 (derivative at the input) instead of 1 - tanh(x)^2",
          elementwise(np.tanh, lambda x, y: 1 - x * x)),
    Entry("softmax-diagonal-only", "wrong-backward",
          "softmax backward uses only the Jacobian's diagonal y(1-y), forgetting the coupling terms",
          softmax_pair(lambda g, y: g * y * (1 - y))),
    Entry("matmul-untransposed", "wrong-backward",
          "matmul backward multiplies by W instead of W.T",
          matmul_pair(transpose=False)),
    Entry("layer-norm-no-mean-terms", "wrong-backward",
          "layer norm backward divides by sigma but forgets that mean and variance depend on x",
          layer_norm_pair(full_backward=False)),
    # precision: the gradient is right; the finite difference is not accurate enough.
    Entry("nominal-step-float32", "precision",
          "the original setting: eps=1e-5 in float32 divided by the nominal 2*eps, not the realised step",
          dropout_original_values, check={"eps": 1e-5, "divide_by": "nominal"}, dtypes=("float32",)),
    Entry("tiny-step-float32", "precision",
          "eps=1e-6 in float32, plain rule (strict): rounding noise of tanh(x) over so small a step swamps it",
          elementwise(np.tanh, lambda x, y: 1 - y * y), check={"eps": 1e-6, "strict": True},
          dtypes=("float32",)),
    Entry("step-below-spacing", "precision",
          "eps=1e-8 in float32 with the nominal divide: x+eps and x-eps round to x itself",
          dropout_original_values, check={"eps": 1e-8, "divide_by": "nominal"}, dtypes=("float32",)),
    Entry("half-precision-sigmoid", "precision",
          "a correct sigmoid checked in float16 at rtol=1e-3 by the plain rule: beyond float16's rounding budget",
          elementwise(sigmoid, lambda x, y: y * (1 - y)), check={"strict": True}, dtypes=("float16",)),
    Entry("tolerance-below-budget", "precision",
          "a correct layer norm in float64 at rtol=1e-12, atol=0, plain rule: tighter than any finite difference",
          layer_norm_pair(full_backward=True), check={"rtol": 1e-12, "atol": 0.0, "strict": True},
          dtypes=("float64",)),
    # input-mutation: forward or backward writes into its arguments.
    Entry("inplace-forward", "input-mutation",
          "dropout forward multiplies x in place (out=x) and returns it",
          inplace_dropout),
    Entry("inplace-clip-forward", "input-mutation",
          "hardtanh forward clips x in place",
          inplace_clip),
    Entry("backward-writes-grad-output", "input-mutation",
          "dropout backward scales grad_output in place and returns it",
          backward_into_grad_output),
    Entry("backward-scratch-x", "input-mutation",
          "tanh backward reuses x's buffer to hold tanh(x)",
          backward_scratch_x),
)

CORRECT: tuple[Entry, ...] = (
    Entry("dropout", "ok", "dropout with a fixed seed and the backward using its mask, all-ones grad_output",
          correct_dropout((6, 8), ones=True)),
    Entry("dropout-random-grad", "ok", "dropout on a 1-D input with a random grad_output",
          correct_dropout((40,), ones=False)),
    Entry("dropout2d", "ok", "channel dropout with its (N, C, 1, 1) mask",
          dropout2d_pair(element_mask=False)),
    Entry("tanh", "ok", "tanh with backward 1 - tanh(x)^2",
          elementwise(np.tanh, lambda x, y: 1 - y * y)),
    Entry("sigmoid", "ok", "sigmoid with backward s(1-s)",
          elementwise(sigmoid, lambda x, y: y * (1 - y))),
    Entry("softmax", "ok", "row softmax with backward y * (g - sum(g * y))",
          softmax_pair(softmax_backward)),
    Entry("log-sum-exp", "ok", "row log-sum-exp with backward g * softmax(x)", log_sum_exp),
    Entry("layer-norm", "ok", "layer norm with gamma and beta, full backward",
          layer_norm_pair(full_backward=True)),
    Entry("matmul", "ok", "x @ W with backward g @ W.T", matmul_pair(transpose=True)),
)

CATALOGUE: tuple[Entry, ...] = MUTANTS + CORRECT


def by_name(name: str) -> Entry:
    """The catalogue entry called `name`."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(f"no catalogue entry {name!r}; known: {', '.join(e.name for e in CATALOGUE)}")


class Outcome(NamedTuple):
    """One diagnosed instance: entry name, dtype, seed, expected and diagnosed code, plain verdict."""

    name: str
    dtype: str
    seed: int
    expected: str
    diagnosed: str
    passed: bool


def evaluate(entries=CATALOGUE, seeds=(0,)) -> list[Outcome]:
    """Diagnose every entry in each of its dtypes for each seed."""
    return [
        Outcome(e.name, dtype, seed, e.code, (d := e.diagnose(dtype, seed)).primary.code, d.passed)
        for e in entries for dtype in e.dtypes for seed in seeds
    ]


def confusion(outcomes) -> np.ndarray:
    """counts[i, j]: instances labelled CODES[i] diagnosed as CODES[j] (rows true, columns diagnosed)."""
    counts = np.zeros((len(CODES), len(CODES)), dtype=int)
    for o in outcomes:
        counts[CODES.index(o.expected), CODES.index(o.diagnosed)] += 1
    return counts


#: Column labels for the confusion table, in the order of CODES.
SHORT_CODES = ("ok", "nondet", "mask", "wrong-bwd", "precision", "mutation")

