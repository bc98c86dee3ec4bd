"""FastCheckResult: what fast mode measured, its report, and the blind spot of its probes.

The blind spot
--------------
The price of a few directions is sensitivity (T, t_i, w_i and s_i as in
lib.gradcheck.projection). One element off by e_j puts e_j s_j w_j into every
probe's residual; the rest of the residual (the other elements' errors and the
rounding) stays within the probe's T, which is what T bounds. So a probe is
certain to fail (up to FALSE_ALARM) once |e_j| w_j > 2 T, and the smallest
single-element error the check is guaranteed to see is

    2 min_k T_k / w_j        (FastCheckResult.detection_threshold)

roughly 2 lam * sqrt(sum_i (t_i w_i)^2) / w_j, which grows like sqrt(N). A
smaller error may or may not be seen (it is seen when it stands out of T
alone, from about half the threshold when the rest of the residual is small);
the dense mode sees every error above its own tolerance t_j. The result
reports the largest threshold over the elements (max_detection_threshold) in
its summary, pass or fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lib.gradcheck.projection import _ratio
from lib.gradcheck.result import (
    MAX_REPORTED_ELEMENTS,
    GradCheckResult,
    format_element_table,
    smaller_steps_lines,
    smaller_steps_summary,
    tolerance_line,
)


@dataclass(frozen=True)
class FastCheckResult(GradCheckResult):
    """A GradCheckResult from the fast mode.

    The element arrays have x's shape, as in the dense mode: `analytical`
    (backward's output, float64) and `step` (each element's realised width
    x_i+ - x_i-, float64) are complete; `numerical` and `tolerance` hold values
    only where `measured` is True and NaN elsewhere (read-only views that take
    no memory when nothing was measured). Measured elements are the ones the
    localisation perturbed one at a time, exactly as the dense mode does.
    `error_ratio` is 0 for elements that were never measured. forward_calls
    counts every call: 2 per probe (there is no separate call at x itself),
    then search_calls and detail_calls.

    Probe arrays have shape (probes,), float64, in units of a directional
    derivative along the realised unit direction d / ||d|| (lib.gradcheck.projection):

    Attributes (beyond GradCheckResult's):
        seed: the seed of the probes' Generator (None: fresh OS entropy).
        probe_analytical: (a . d) / ||d||, a = backward(grad_output, x).
        probe_numerical: grad_output . (f(x+) - f(x-)) / ||d||.
        probe_tolerance: T / ||d||, the tolerance derived from the pass rule.
        probe_step: ||d||_2, the length of the realised perturbation.
        measured: bool, x's shape: elements with a dense-mode measurement.
        measured_step: float64, x's shape: the realised width each measured
            element was measured with (the dense mode's, in x's dtype; it
            differs from `step` when the probes were measured in float64),
            NaN elsewhere.
        localised_probe: the probe the localisation split, or None.
        search_calls: forward calls spent splitting groups of elements.
        detail_calls: forward calls spent measuring elements reached by inference.
        mutated_by: who wrote into the array it was given: "", "forward",
            "backward" or "forward and backward".
        probe_dtype: the dtype the probes and the search gave forward (x's
            dtype, or float64 with probe_dtype="float64"); `step` holds their
            realised widths. Elements named are measured in x's dtype.
        smaller_steps (GradCheckResult's): the measured elements that failed at
            the default step and were measured again at halving steps.
        held_still: int64, flat indices of the elements that passed only at a
            smaller step, held at x while every probe was measured again
            (lib.gradcheck.reprobe); empty when the probes were not.
        reprobe_ratio: float64, (probes + 1,) when they were: each probe's
            error/tolerance measured again, then the random upstream gradient's;
            the check's probes pass when all are <= 1. Empty otherwise.
        reprobe_calls: forward calls spent on that (2 per probe, and the search of the
            random upstream gradient's pair when it ran), included in forward_calls.

    Properties beyond the probe and element views: detection_threshold (x's
    shape) and max_detection_threshold, the blind spot of the probes (this
    module's docstring): a single-element error below it can go unseen.
    """

    seed: int | None = None
    probe_analytical: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_numerical: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_tolerance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    probe_step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    measured_step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    localised_probe: int | None = None
    search_calls: int = 0
    detail_calls: int = 0
    mutated_by: str = ""
    probe_dtype: str = ""
    held_still: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    reprobe_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reprobe_calls: int = 0


    @property
    def probes(self) -> int:
        return int(self.probe_analytical.size)

    @property
    def detection_threshold(self) -> np.ndarray:
        """2 min_k T_k / w_i, float64, x's shape: the smallest error in element i alone that
        some probe is certain to see (up to FALSE_ALARM).

        T_k = probe_tolerance * probe_step is probe k's tolerance on a . d;
        w_i is element i's realised width (`step`). An error below this in one
        element can pass the fast check while the dense mode fails it.
        """
        if not self.probes:
            return np.zeros(self.step.shape)
        tolerance = float(np.min(self.probe_tolerance * self.probe_step))
        with np.errstate(invalid="ignore", over="ignore"):
            return 2.0 * tolerance / self.step

    @property
    def max_detection_threshold(self) -> float:
        """The largest detection_threshold over the elements (the widest blind spot); 0 for an empty x."""
        threshold = self.detection_threshold
        return float(np.max(threshold)) if threshold.size else 0.0

    def _mutation_text(self) -> str:
        who = self.mutated_by or "forward or backward"
        return f"{who} modified the array it was given"

    @property
    def probe_error_ratio(self) -> np.ndarray:
        """|analytical - numerical| / tolerance per probe; a probe passes when <= 1."""
        return np.array([
            _ratio(a - n, t)
            for a, n, t in zip(self.probe_analytical, self.probe_numerical, self.probe_tolerance, strict=True)
        ])

    @property
    def probes_passed(self) -> np.ndarray:
        return self.probe_error_ratio <= 1.0

    @property
    def error_ratio(self) -> np.ndarray:
        """|a - n| / tolerance on measured elements (the dense rule), 0 elsewhere."""
        ratio = np.zeros(self.analytical.shape)
        m = self.measured
        diff = np.abs(self.analytical[m] - self.numerical[m])
        tol = self.tolerance[m]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = diff / tol
        r[(diff == 0) & (tol == 0)] = 0.0
        r[np.isnan(r)] = np.inf
        ratio[m] = r
        return ratio

    def summary(self) -> str:
        """One line: PASS/FAIL, probes within tolerance, failing elements found, the blind spot."""
        verdict = "PASS" if self.passed else "FAIL"
        ratios = self.probe_error_ratio
        worst = float(np.max(ratios)) if ratios.size else 0.0
        line = (
            f"{verdict}: {int(np.sum(ratios <= 1.0))}/{ratios.size} probes within tolerance, "
            f"max error/tolerance {worst:.4g}"
        )
        failing = self.failing_indices
        if failing.size:
            line += f"; failing elements found: {failing.tolist()}"
        if self.input_mutated:
            line += f"; {self._mutation_text()}"
        if self.reprobe_ratio.size:
            line += (f"; {'within' if np.all(self.reprobe_ratio <= 1.0) else 'still over'} tolerance with "
                     f"{self.held_still.size} element(s) that passed at a smaller step held still")
        return line + smaller_steps_summary(self) + (
            f"; a single-element error below {self.max_detection_threshold:.4g} can go unseen")

    def report(self, max_rows: int = MAX_REPORTED_ELEMENTS) -> str:
        """The dense report's layout: tolerance, then the probes, then the elements found."""
        failing = self.failing_indices
        n_failed_probes = int(np.sum(~self.probes_passed))
        if self.input_mutated:
            # The reason for the failure whatever the probes say: a forward that
            # writes to its input corrupts the points it is evaluated at.
            head = f"Gradient check failed for {self.dtype}: {self._mutation_text()} (input mutation)"
            if failing.size:
                head += f"; gradient mismatch at index {int(failing[0])}"
            elif n_failed_probes and "forward" not in self.mutated_by:
                # Only backward wrote: the probes' outputs are sound, and they see a mismatch too.
                head += (f", and {n_failed_probes} of {self.probes} random projections of the gradient are off "
                         f"(max error/tolerance {float(np.max(self.probe_error_ratio)):.4g})")
        elif failing.size:
            head = f"Gradient check failed for {self.dtype}: gradient mismatch at index {int(failing[0])}"
        elif n_failed_probes and not self.passed:  # passed: the probes passed once measured again
            head = (
                f"Gradient check failed for {self.dtype}: a random projection of the gradient is off "
                "(no failing element localised)"
            )
        else:
            head = f"Gradient check passed for {self.dtype}"
        threshold = self.detection_threshold.reshape(-1)
        blind = ""
        if threshold.size:
            worst = int(np.argmax(threshold))
            blind = (f"; a single-element error below {threshold[worst]:.4g} can go unseen "
                     f"(2T/w, largest at index {worst})")
        lines = [
            head,
            tolerance_line(self),
            f"Fast mode: {n_failed_probes} of {self.probes} random projections failed (seed {self.seed}); "
            "each compares a.d with grad_output.(f(x+) - f(x-)) along the realised step d,",
            f"with a tolerance derived from the pass rule and the rounding budget (lib.gradcheck.fast){blind}"
            + (f"; probes measured in {self.probe_dtype}" if self.probe_dtype not in ("", self.dtype) else ""),
            format_probe_table(self),
        ]
        measured = np.flatnonzero(self.measured.ravel())
        if measured.size:
            lines.append(
                f"Localised {failing.size} failing element{'s' if failing.size != 1 else ''} "
                f"by splitting probe {self.localised_probe} in {self.search_calls} forward calls "
                f"(+{self.detail_calls} to measure elements reached by inference); "
                f"each element perturbed alone, as in the dense mode:"
            )
            rows = failing[:max_rows] if failing.size else measured[:max_rows]
            lines.append(format_element_table(self, rows, step=self.measured_step))
            if failing.size > max_rows:
                lines.append(f"  ... and {failing.size - max_rows} more failing elements")
        lines.extend(smaller_steps_lines(self, max_rows))
        lines.extend(reprobe_lines(self))
        lines.append(f"Numerical gradient divided by the {self.divide_by} step")
        if self.input_mutated:
            lines.append(f"Warning: {self._mutation_text()}.")
        lines.extend(self.notes)
        return "\n".join(lines)


def format_probe_table(result: FastCheckResult) -> str:
    """Aligned rows per probe: analytical, numerical, difference, tolerance, step, err/tol."""
    header = (
        f"{'probe':>10} {'analytical':>14} {'numerical':>14} {'difference':>12} "
        f"{'tolerance':>11} {'step':>11} {'err/tol':>8}"
    )
    rows = [header]
    ratios = result.probe_error_ratio
    for k in range(result.probes):
        a, n = result.probe_analytical[k], result.probe_numerical[k]
        rows.append(
            f"{k:>10} {a:>14.8g} {n:>14.8g} {a - n:>12.4e} "
            f"{result.probe_tolerance[k]:>11.4e} {result.probe_step[k]:>11.4e} {ratios[k]:>8.3g}"
        )
    return "\n".join(rows)


def _writers(forward_wrote: bool, backward_wrote: bool) -> str:
    """Who wrote into the array it was given, for FastCheckResult.mutated_by."""
    return " and ".join(who for who, wrote in (("forward", forward_wrote), ("backward", backward_wrote)) if wrote)


def upstream_notes(random_ratio: float, grad_wrote: bool) -> list[str]:
    """What backward did with grad_output: ignored or misread it, or wrote into it."""
    notes = []
    if random_ratio > 1.0:
        notes.append(f"With a random grad_output the probe misses its tolerance by {random_ratio:.3g}x while "
                     "grad_output itself may pass: the backward does not compute grad_output^T J (does it "
                     "ignore, square or misread grad_output?). check_gradient names the elements.")
    if grad_wrote:
        notes.append("Input mutation: backward wrote into grad_output.")
    return notes


def element_arrays(shape: tuple[int, ...], leaves, a_flat: np.ndarray):
    """(numerical, tolerance, measured step, measured, any measured element failed) over x's shape.

    numerical, tolerance and step (float64) hold the dense measurement of each
    element the search measured alone, NaN elsewhere; measured is bool.
    """
    if not leaves:
        # Nothing measured element by element: read-only views that take no memory.
        nothing = np.broadcast_to(np.float64(np.nan), shape)
        return nothing, nothing, nothing, np.broadcast_to(np.False_, shape), False
    numerical, tolerance, step = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    measured = np.zeros(shape, dtype=bool)
    failed = False
    for j, value, _, band, width in leaves:
        numerical.reshape(-1)[j] = value
        measured.reshape(-1)[j] = True
        tolerance.reshape(-1)[j] = band
        step.reshape(-1)[j] = width
        with np.errstate(invalid="ignore"):
            failed |= not abs(a_flat[j] - value) <= band
    return numerical, tolerance, step, measured, failed


def reprobe_lines(result) -> list[str]:
    """The fast report's line on the probes measured again (none when they were not)."""
    if result.held_still.size == 0:
        return []
    ratios = result.reprobe_ratio
    held = ", ".join(str(int(i)) for i in result.held_still[:10]) + (", ..." if result.held_still.size > 10 else "")
    verdict = "all within tolerance" if np.all(ratios <= 1.0) else "still failing"
    return [f"Probes measured again with element(s) {held} held still (they passed only at a smaller step): "
            f"{verdict}, max error/tolerance {float(np.max(ratios)):.4g} (random grad_output's included), "
            f"in {result.reprobe_calls} forward calls"]
