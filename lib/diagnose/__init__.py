"""Why did a gradient check fail? An evidence-based diagnosis of a forward/backward pair.

`diagnose(forward, backward, x, grad_output)` runs the check that
`lib.gradcheck.check_gradient` runs, then gathers cheap evidence about the
pair and names the most likely cause:

    code                      what the evidence looks like
    ok                        the check passes and nothing else is wrong
    nondeterministic-forward  forward at the same x gives different outputs
    mask-mismatch             backward is a correct dropout-style gradient,
                              but under a different keep/drop pattern
    wrong-backward            backward is not the forward's vector-Jacobian
                              product (a constant factor, identity, ignoring
                              or mishandling grad_output, or no pattern)
    precision                 the mismatch disappears with the realised step,
                              the default step, or in float64, and is
                              either within the finite-difference budget of
                              the dtype and step (rounding) or, with no jump
                              within the step, truncation at a kink or bend
    input-mutation            forward or backward writes into an array it is given
    inconclusive              (no cause) the mismatch would blame the backward, but
                              calls at x could not establish that the forward is
                              deterministic (e.g. it returned only zeros)

Every pass judges by check_gradient's whole rule (docs/checking_at_kinks.md),
by lib.gradcheck's own code (lib.diagnose.stages): |a - n| <= atol + rtol *
max(|a|, |n|) + noise, the noise term lib.gradcheck.arithmetic's (the outputs'
rounding and a float64 re-measurement at the same points), and, for an element
that still fails, lib.gradcheck.kinks' smaller steps (a kink within the step:
converged, or a subgradient at a kink on the point). Where check_gradient
passes, diagnose does not report a failure or a precision problem: an `ok`
finding says what the noise term and the smaller steps explained. strict=True
is check_gradient's strict=True, the plain rule alone. (With divide_by="nominal"
the caller's check is the failure-era checker's, whose rule had neither.)

The evidence, all from calls of the user's own functions:

1. Determinism: forward at the same x, three times (before and after all the
   other calls), compared bit for bit; backward twice with the same arguments.
   Three identical calls prove little when the outputs are few or zero (a
   fresh dropout mask at p = 0.9 drops a lone element on most calls), so a
   blame of the backward that rests on the forward's slopes waits for more
   identical calls at x: enough that a forward dropping each output with
   probability 0.05 to 0.95 would agree by chance with probability below
   1e-3 (lib.diagnose.determinism). Any difference makes the finding
   nondeterministic-forward; only zeros, inconclusive.
2. Mutation: every call gets a private copy, compared with the original after
   the call. The caller's arrays are never passed in, so never changed.
3. Probes: besides the user's grad_output, two random ones (from a Generator
   seeded by `seed`). A backward that ignores grad_output passes a check with
   all ones, but not one with random weights. Linearity is tested exactly:
   backward(-2 g) must equal -2 backward(g), since scaling by -2 is exact in
   binary floating point.
4. One central-difference pass yields the numerical gradient for all probes
   at once, and, when forward maps n elements to n elements, its local slopes
   d out_i / d x_i and whether any other output moved (elementwise or not).
5. Precision: if the check fails, it is repeated with the realised step (free:
   the same differences), with the default step (if `eps` was given), and
   in float64 (x upcast). A mismatch that vanishes with the realised step is
   rounding of x+eps and x-eps. One that vanishes at another step or in
   float64 is rounding only if the failing pass missed by no more than a few
   times its budget: machine eps times the size of the outputs that moved,
   over the step, plus a smooth function's truncation error. Beyond that the
   other pass only used a step that misses what this one straddles: the
   worst element is searched for a jump (below); with none, it is truncation
   at a step too coarse for the forward (a kink, or sharp curvature).
6. Attribution of a real error, in float64 where possible. First the
   probe-based tests of the backward (repeatable, depends on grad_output
   unless it is all zeros, linear, not the identity), then a search for a jump
   in the forward at the worst element, since one difference quotient across
   a jump makes every slope meaningless: the step is bisected towards the
   half that holds the larger change; a continuous function's change soon
   splits between the halves, a jump's never does (a mask that depends on
   x's values if other outputs switch between zero and nonzero across it,
   else a discontinuity). Then the forward's local slopes give its keep
   pattern (zero vs nonzero slope), the backward's slopes (backward(r) / r)
   give the backward's. Equal patterns with a constant ratio mean a wrong
   factor; dropout-like patterns with the same scale but different support
   mean a mask mismatch.

The package: `findings` (codes, Finding, Diagnosis), `evidence` (calling the
user's functions, one dense pass judged by check_gradient's rule),
`determinism` (how much identical calls at x prove), `patterns` (reading
slopes and masks), `jumps` (a jump inside the step), `precision` (budgets,
precision findings), `rules` (the ordered rule table that attributes a real
error), `run` (diagnose itself). Nothing here is called by lib.gradcheck: a
failing check says how to call `diagnose`, and the caller decides to pay for it.

The cost is one dense check (2 forward calls per element of x), plus one or
two more when the check fails, plus, as in check_gradient, 2 calls per
element that fails the plain rule in float16/float32 (its float64
re-measurement) and 3 per halving of the step of each element that still
fails, in each dense check (relu 1e-4 from its kink in float32: 7 halvings,
21 calls), plus 3 forward calls at x and up to 14 in one jump search, and 5
backward calls per dense pass. A blame of the backward read from the
forward's slopes adds calls at x: none for an output with 45 or more nonzero
values, about 135 / m - 3 for m nonzero values (11 more for m = 10), at most
132 more (m <= 1). A passing check and an ordinary deterministic forward pay
nothing extra.
"""

from lib.diagnose.findings import CODES, HYPOTHESES, INCONCLUSIVE, Diagnosis, Finding, Trial
from lib.diagnose.run import DIVIDE_BY, diagnose

__all__ = ["CODES", "DIVIDE_BY", "HYPOTHESES", "INCONCLUSIVE", "Diagnosis", "Finding", "Trial", "diagnose"]
