"""From the binaries' lines to per-test results, mutation counts, the table and the JSON document."""

from __future__ import annotations

from lib.upstream.execute import TestRun
from lib.upstream.prepare import GradientTest

#: The unmutated configurations reported per test, by key.
VERDICTS = {"ours": ("ours", "original", "none"), "upstream_here": ("upstream", "callsite", "none"),
            "upstream_original": ("upstream", "original", "none"), "era": ("era", "original", "none")}
#: Each checker's mutation probes run at these tolerances.
PROBED = {"ours": "original", "upstream": "callsite", "era": "original"}
PROBES = {"scale": "x1.002", "shift": "+1e-5"}


def outcome(run: TestRun | None) -> dict:
    """One test under one configuration: its call's numbers, or why there are none."""
    if run is None:
        return {"status": "not run", "passed": False}
    if not run.calls:
        return {"status": "not reached" if run.status != "crashed" else "crashed", "passed": False}
    result = dict(run.calls[0], status=run.status)
    result.pop("checker", None)
    result.pop("mutation", None)
    return result


def test_record(test: GradientTest, runs: dict) -> dict:
    """Everything measured for one test; `runs` maps configuration -> {(file, test name) -> TestRun}."""
    key = (test.file, test.name)
    record = {"file": test.file.as_posix(), "test": test.name, "called_from_main": test.called_from_main,
              "original_tolerance": list(test.original), "original_tolerance_source": test.original_source}
    for name, configuration in VERDICTS.items():
        record[name] = outcome(runs.get(configuration, {}).get(key))
    here = record["upstream_here"]
    if "callsite_rtol" in here:
        record["upstream_tolerance"] = [here["callsite_rtol"], here["callsite_atol"]]
        record["upstream_effective_atol"] = here.get("effective_atol")
    record["mutations"] = {}
    for checker, tolerance in PROBED.items():
        record["mutations"][checker] = {
            probe: not outcome(runs.get((checker, tolerance, probe), {}).get(key))["passed"]
            for probe in PROBES}
    return record


def mutation_counts(records: list[dict]) -> dict:
    """checker -> probe -> {"flagged": n, "of": tests that checker passes unmutated}."""
    unmutated = {"ours": "ours", "upstream": "upstream_here", "era": "era"}
    counts: dict = {}
    for checker, key in unmutated.items():
        passing = [r for r in records if r[key]["passed"]]
        counts[checker] = {probe: {"flagged": sum(r["mutations"][checker][probe] for r in passing),
                                   "of": len(passing)} for probe in PROBES}
    return counts


def disagreements(records: list[dict]) -> list[str]:
    """Tests where the library's own verdict and its re-implementation's differ."""
    found = []
    for record in records:
        for key in ("upstream_here", "upstream_original"):
            result = record[key]
            if "reimplemented_passed" in result and result["reimplemented_passed"] != result["passed"]:
                found.append(f"{record['test']} ({key}): own {result['passed']}, "
                             f"re-implemented {result['reimplemented_passed']}")
    return found


def _ratio(result: dict) -> str:
    if "ratio" not in result:
        return result["status"]
    mark = "" if result["passed"] else " F"
    return f"{result['ratio']:.3g}{mark}"


def _tolerance(pair) -> str:
    return f"{pair[0]:g}/{pair[1]:g}" if pair else "-"


def _remeasured(result: dict) -> str:
    elements = result.get("remeasured") or []
    if not elements:
        return ""
    shown = ", ".join("{}@{:.3g}".format(e["verdict"], e["step"]) for e in elements[:3])
    return f"{len(elements)} el. ({shown}" + (", ...)" if len(elements) > 3 else ")")


def table(records: list[dict]) -> str:
    """The per-test table: tolerances, worst error/tolerance under each checker (F = fails)."""
    header = (f"{'file':<10} {'test':<44} {'main':<4} {'upstream tol':<14} {'original':<11} {'ours':>9} "
              f"{'upstream':>9} {'up@orig':>9} {'era':>9}  re-measured (ours)")
    lines = [header, "-" * len(header)]
    for r in records:
        upstream_tol = _tolerance(r.get("upstream_tolerance"))
        effective = r.get("upstream_effective_atol")
        if effective is not None and r.get("upstream_tolerance") and effective != r["upstream_tolerance"][1]:
            upstream_tol += f"({effective:g})"
        short = r["file"].rsplit("/", 1)[-1].removeprefix("test_").removesuffix(".mojo")
        main = "yes" if r["called_from_main"] else "NO"
        lines.append(f"{short[:10]:<10} {r['test'][:44]:<44} {main:<4} {upstream_tol:<14} "
                     f"{_tolerance(r['original_tolerance']):<11} {_ratio(r['ours']):>9} "
                     f"{_ratio(r['upstream_here']):>9} {_ratio(r['upstream_original']):>9} {_ratio(r['era']):>9}  "
                     f"{_remeasured(r['ours'])}")
    return "\n".join(lines)


def summary_lines(records: list[dict], counts: dict) -> list[str]:
    total = len(records)
    lines = []
    for key, label in (("ours", "ours at the original tolerance"),
                       ("upstream_here", "the library's own at this commit's tolerance"),
                       ("upstream_original", "the library's own at the original tolerance"),
                       ("era", "failure-era algorithm at the original tolerance")):
        lines.append(f"passed, {label}: {sum(r[key]['passed'] for r in records)} of {total}")
    for checker, probes in counts.items():
        described = ", ".join(f"{PROBES[p]} flagged in {c['flagged']} of {c['of']}" for p, c in probes.items())
        lines.append(f"mutation probes, {checker}: {described}")
    remeasured = [e for r in records for e in r["ours"].get("remeasured", [])]
    extra = sum(r["ours"].get("extra_forward", 0) for r in records)
    lines.append(f"elements re-measured at smaller steps (ours): {len(remeasured)}; extra forward calls: {extra}")
    never = [r["test"] for r in records if not r["called_from_main"]]
    lines.append(f"gradient tests main() never calls: {len(never)}" + (f" ({', '.join(never)})" if never else ""))
    return lines
