"""Benchmark the dense and fast gradient checks, against each other and against PyTorch.

Run by hand from the repository root (takes a few minutes on 2 cores):

    python benchmarks/bench_gradcheck.py                 # everything
    python benchmarks/bench_gradcheck.py --quick         # smaller sizes, one repeat
    python benchmarks/bench_gradcheck.py --no-memory     # skip the peak-memory runs

Every table is measured in one run of this script, on one machine, so the
ratios compare like with like. Times are the best of --repeats runs
(time.perf_counter), the contenders interleaved. Peak memory is measured in a
fresh child process per cell (see benchmarks/README.md). PyTorch is optional:
without it the torch columns say "absent" and everything else still runs.

The checked function is the dropout of the original test: p = 0.3, the mask
redrawn from seed 42 on every call (numpy: lib.dropout; torch: torch.rand from
a Generator seeded 42, the same arithmetic), grad_output all ones. PyTorch
checks the scalar loss sum(f(x) * grad_output), which is exactly what the
dense and fast modes check, so the coverage is the same.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np

from lib.dropout import dropout, dropout_backward
from lib.gradcheck import check_gradient
from lib.gradcheck.fast import RANDOM_UPSTREAM, check_gradient_fast

P = 0.3
MASK_SEED = 42
DATA_SEED = 2024
#: How far the corrupted element of the localisation benchmark is off (the true values are 0 or 1/(1-p)).
CORRUPTION = 50.0
#: torch's default eps=1e-6 is meant for float64; in float32 its step is mostly rounding and the check
#: fails. 1e-3 is a float32-sized step (ours is cbrt(eps_float32) * max(1, |x|) = 4.9e-3 * max(1, |x|)).
TORCH_FLOAT32_EPS = 1e-3


# --- the function under check, in numpy and in torch -------------------------------------------------


def numpy_case(n: int, dtype):
    """(forward, backward, x, grad_output): seeded dropout of n standard-normal values."""
    x = np.random.default_rng(DATA_SEED).standard_normal(n).astype(dtype)

    def forward(a):
        return dropout(a, P, seed=MASK_SEED)[0]

    def backward(grad, a):
        return dropout_backward(grad, dropout(a, P, seed=MASK_SEED)[1], P)

    return forward, backward, x, np.ones(n, dtype=dtype)


def cheap_case(n: int, dtype=np.float32):
    """(forward, backward, x, grad_output): dropout with a fixed mask, a few microseconds per call.

    The forward broadcasts over a leading stack axis as it is, so it also serves batch=k.
    """
    rng = np.random.default_rng(DATA_SEED)
    x = rng.standard_normal(n).astype(dtype)
    scale = ((rng.random(n) >= P) / (1 - P)).astype(dtype)
    return (lambda a: a * scale), (lambda g, a: g * scale), x, np.ones(n, dtype=dtype)


def matrix_case(n: int, dtype=np.float32, width: int = 64):
    """(forward, backward, x, grad_output): tanh(x @ W) over rows of `width`, n elements in all.

    A matrix forward: every output depends on a row of inputs. `x @ W` broadcasts over a
    leading stack axis, so the same forward serves batch=k.
    """
    rng = np.random.default_rng(DATA_SEED)
    x = rng.standard_normal((n // width, width)).astype(dtype)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(dtype)

    def forward(a):
        return np.tanh(a @ w)

    def backward(g, a):
        return (g * (1 - np.tanh(a @ w) ** 2)) @ w.T

    return forward, backward, x, np.ones_like(x)


def corrupted(backward, index: int, error: float):
    def wrong(grad, a):
        out = backward(grad, a)
        out[index] += error
        return out

    return wrong


def import_torch(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    # On failure, gradcheck recomputes the whole Jacobian in slow mode just to
    # print it: 2N more calls. Replace that message builder so a failing torch
    # check costs what a passing one does; the verdict is still reported.
    gradcheck_module = sys.modules["torch.autograd.gradcheck"]
    gradcheck_module._run_slow_mode_and_get_error = lambda *args, **kwargs: " (Jacobian printout skipped)"
    # One small untimed check of each kind: torch loads kernels lazily on first use.
    for dtype in (np.float32, np.float64):
        loss, t = torch_case(torch, np.ones(8, dtype=dtype), np.ones(8, dtype=dtype))
        torch_gradcheck(torch, loss, t, fast=True)
        torch_gradcheck(torch, loss, t, fast=False)
    return torch


def torch_case(torch, x_np: np.ndarray, grad_np: np.ndarray):
    """(loss, x): loss(t) = sum(f(t) * grad_output) with the same seeded dropout f."""
    grad = torch.from_numpy(grad_np)
    scale = 1.0 / (1.0 - P)

    def loss(t):
        generator = torch.Generator().manual_seed(MASK_SEED)
        keep = torch.rand(t.shape, generator=generator, dtype=t.dtype) > P
        return (t * keep * scale * grad).sum()

    return loss, torch.from_numpy(x_np.copy()).requires_grad_(True)


def torch_gradcheck(torch, loss, x, fast: bool):
    eps = TORCH_FLOAT32_EPS if x.dtype == torch.float32 else 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the float32 "will likely fail" warning
        return bool(torch.autograd.gradcheck(loss, (x,), eps=eps, fast_mode=fast, raise_exception=False))


# --- the cells: one function per contender, shared by timing and memory runs ---------------------------


def make_cell(kind: str, n: int, dtype, torch=None):
    """A zero-argument callable running one contender once; returns its verdict (True = pass)."""
    maker = {"cheap": cheap_case, "matrix": matrix_case}.get(kind.split(":")[0], numpy_case)
    kind = kind.split(":")[-1]
    forward, backward, x, grad = maker(n, dtype)
    if kind == "bare":
        def run():
            work = x.copy()
            for _ in range(2 * x.size):
                forward(work)
            return None
    elif kind == "dense":
        def run():
            return check_gradient(forward, backward, x, grad, raise_on_failure=False).passed
    elif kind.startswith("batch"):
        k = int(kind[len("batch"):])

        def run():
            return check_gradient(forward, backward, x, grad, raise_on_failure=False, batch=k).passed
    elif kind == "diagnose":
        from lib.diagnose import diagnose

        def run():
            return diagnose(forward, backward, x, grad).passed
    elif kind == "loop":
        def run():  # the least a Python loop over the elements does: two writes, two calls, a copy, a dot, restore
            work, g, h = x.copy().reshape(-1), grad.reshape(-1), 1e-3
            for i in range(work.size):
                value = work[i]
                work[i] = value + h
                y_plus = forward(work.reshape(x.shape)).copy()
                work[i] = value - h
                np.dot((y_plus - forward(work.reshape(x.shape))).reshape(-1), g)
                work[i] = value
            return None
    elif kind in ("floor", "calls"):
        backward_calls = 1 if kind == "floor" else 1 + RANDOM_UPSTREAM

        def run():  # what any fast check must spend: 4 forward calls and one backward (its own: one more)
            work = x.copy()
            for _ in range(4):
                forward(work)
            for _ in range(backward_calls):
                backward(grad, work)
            return None
    elif kind == "forward":
        def run():  # one forward call
            forward(x)
            return None
    elif kind == "fast":
        def run():
            return check_gradient_fast(forward, backward, x, grad, raise_on_failure=False).passed
    elif kind == "localise":
        index = int(np.random.default_rng(n).integers(n))
        wrong = corrupted(backward, index, CORRUPTION)

        def run():
            return check_gradient_fast(forward, wrong, x, grad, raise_on_failure=False)
    elif kind in ("torch-slow", "torch-fast"):
        loss, t = torch_case(torch, x, grad)

        def run():
            return torch_gradcheck(torch, loss, t, fast=kind == "torch-fast")
    else:
        raise ValueError(f"unknown cell kind {kind!r}")
    return run


def best_of(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Time each callable `repeats` times, interleaved; (best seconds, last return value) per name."""
    best = {name: math.inf for name in runs}
    value = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            value[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, value


# --- peak memory, measured in a fresh child process ------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _memory_child(kind: str, n: int, dtype_name: str, torch_threads: int) -> None:
    """Run one cell once and print its peak memory growth in MiB, and how it was measured."""
    torch = import_torch(torch_threads) if kind.startswith("torch") else None
    make_cell(kind, 16, np.dtype(dtype_name), torch)()  # first-use costs are not the check's memory
    run = make_cell(kind, n, np.dtype(dtype_name), torch)
    try:
        # Writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one.
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before, method = _status_kib("VmRSS"), "rss"
    except OSError:
        import resource

        before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "maxrss"
    run()
    if method == "rss":
        peak = _status_kib("VmHWM")
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{max(peak - before, 0) / 1024:.1f} {method}")


def peak_mib(kind: str, n: int, dtype, args) -> str:
    if args.no_memory:
        return "-"
    command = [sys.executable, os.path.abspath(__file__), "--memory-of", kind, str(n), np.dtype(dtype).name,
               "--torch-threads", str(args.torch_threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return "error"
    return done.stdout.split()[0]


# --- tables ------------------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: list[list], notes: list[str] = ()) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    print()
    print(title)
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    for note in notes:
        print(f"  {note}")
    sys.stdout.flush()


def seconds(value: float) -> str:
    return f"{value:.4f}" if value < 10 else f"{value:.1f}"


def verdict(passed) -> str:
    return "pass" if passed else "FAIL"


#: One row per goal: what it is, what was measured, the target, met or not, and the same contender
#: against the work it cannot avoid (measured in the same run); printed last.
GOALS: list[list[str]] = []


def goal(name: str, measured: float, target: float, unit: str = "x", at_most: bool = True,
         unavoidable: tuple[float, str] | None = None) -> None:
    """Record a goal; `unavoidable`: (the contender over what it must do at the least, what that is)."""
    met = measured <= target if at_most else measured >= target
    beyond = f"{unavoidable[0]:.2f}x {unavoidable[1]}" if unavoidable else ""
    GOALS.append([name, f"{measured:.2f}{unit}", f"{'<=' if at_most else '>='} {target:g}{unit}",
                  "met" if met else "MISSED", beyond])


def dense_floor(args) -> None:
    """Dense mode against its floor, 2N forward calls, for cheap, matrix and expensive forwards."""
    rows = []
    for forward_kind, label in (("cheap", "fixed-mask dropout"), ("matrix", "tanh(x @ W), rows of 64"),
                                ("seeded", "dropout, new Generator per call")):
        for n in args.goal_sizes:
            prefix = "" if forward_kind == "seeded" else forward_kind + ":"
            times, _ = best_of({"bare": make_cell(prefix + "bare", n, np.float32),
                                "loop": make_cell(prefix + "loop", n, np.float32),
                                "dense": make_cell(prefix + "dense", n, np.float32)}, args.repeats)
            overhead = times["dense"] / times["bare"] - 1.0
            loop_overhead = times["loop"] / times["bare"] - 1.0
            rows.append([label, n, seconds(times["bare"]), seconds(times["loop"]), seconds(times["dense"]),
                         f"{loop_overhead:.2f}", f"{overhead:.2f}"])
            if forward_kind == "cheap":
                goal(f"dense: own cost beyond 2N forwards, cheap forward, N={n}", overhead, 0.5,
                     unavoidable=(times["dense"] / times["loop"], "a bare per-element loop (0a)"))
    print_table(
        "0a. Dense mode vs its floor, the 2N forward calls alone (float32)",
        ["forward", "N", "2N forwards s", "bare loop s", "dense check s", "loop overhead x", "overhead x"], rows,
        ["overhead = dense / (2N forwards) - 1: the checker's own cost in units of its floor;",
         "bare loop: the least a Python loop over the elements does (write x_i + h, call, copy the output, "
         "write x_i - h, call,",
         "  subtract, dot with grad_output, restore), with no check at all: its overhead is what per-element "
         "Python costs"],
    )


def competing_process():
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def contention(args) -> None:
    """The dense check with a competing process on the machine, against the same check without."""
    rows = []
    for n in args.goal_sizes:
        quiet, _ = best_of({"dense": make_cell("cheap:dense", n, np.float32)}, args.repeats)
        busy = competing_process()
        try:
            loaded, _ = best_of({"dense": make_cell("cheap:dense", n, np.float32)}, args.repeats)
        finally:
            busy.kill()
            busy.wait()
        ratio = loaded["dense"] / quiet["dense"]
        rows.append([n, seconds(quiet["dense"]), seconds(loaded["dense"]), f"{ratio:.2f}"])
        goal(f"dense: slowdown with one competing process, N={n}", ratio, 1.2)
    print_table("0b. Dense mode with one competing busy process (cheap forward, float32)",
                ["N", "alone s", "with a competitor s", "slowdown x"], rows,
                ["the checker's own dot products stay on the calling thread (pieces of at most 8192), so it "
                 "never waits for the core the competitor holds"])


def batching(args) -> None:
    """check_gradient(batch=64) against the per-element forward calls, same forward (it takes stacks)."""
    rows = []
    for forward_kind in ("cheap", "matrix"):
        for n in args.goal_sizes:
            times, _ = best_of({"dense": make_cell(f"{forward_kind}:dense", n, np.float32),
                                "batch": make_cell(f"{forward_kind}:batch64", n, np.float32)}, args.repeats)
            gain = times["dense"] / times["batch"]
            rows.append([forward_kind, n, 2 * n + 1, 2 * -(-n // 64) + 1, seconds(times["dense"]),
                         seconds(times["batch"]), f"{gain:.1f}"])
    print_table("0c. batch=64: a forward that takes stacks of 64 perturbed inputs (float32)",
                ["forward", "N", "calls", "calls, batch=64", "dense s", "batch=64 s", "gain x"], rows)


def diagnose_cost(args) -> None:
    rows = []
    for n in args.goal_sizes:
        times, _ = best_of({"dense": make_cell("cheap:dense", n, np.float32),
                            "diagnose": make_cell("cheap:diagnose", n, np.float32)}, args.repeats)
        ratio = times["diagnose"] / times["dense"]
        rows.append([n, seconds(times["dense"]), seconds(times["diagnose"]), f"{ratio:.2f}"])
        goal(f"diagnose / one dense check, N={n}", ratio, 3.0)
    print_table("0d. diagnose() against one dense check (cheap forward, float32, a passing check)",
                ["N", "dense s", "diagnose s", "diagnose / dense"], rows,
                ["diagnose makes 2N + 5 forward calls and 5 backward calls, and measures slopes, "
                 "cross terms and rounding on the way"])


def print_goals() -> None:
    print_table("Goals, measured in this run", ["goal", "measured", "target", "", "against what it must do"],
                GOALS, ["against what it must do: the same contender over the least work its design cannot avoid, "
                        "timed in the same run (1.00x: nothing left to remove)"])


def dense_vs_bare(args) -> None:
    rows = []
    for n in args.dense_sizes:
        times, _ = best_of({"bare": make_cell("bare", n, np.float64), "dense": make_cell("dense", n, np.float64)},
                           args.repeats)
        overhead = times["dense"] / times["bare"] - 1.0
        rows.append([n, 2 * n, seconds(times["bare"]), seconds(times["dense"]), f"{100 * overhead:.1f}",
                     peak_mib("dense", n, np.float64, args)])
    print_table(
        "1. Dense mode vs the bare cost of the 2N forward calls it must make (dropout, float64)",
        ["N", "forward calls", "2N forwards s", "dense check s", "overhead %", "dense peak MiB"],
        rows,
        ["overhead = dense / (2N forwards alone) - 1; goal: <= 25 % at N = 1024"],
    )


def dense_vs_torch(args, torch) -> None:
    rows = []
    for n in args.dense_sizes:
        runs = {"dense": make_cell("dense", n, np.float64)}
        if torch is not None:
            runs["torch"] = make_cell("torch-slow", n, np.float64, torch)
        times, value = best_of(runs, args.repeats)
        if torch is None:
            rows.append([n, seconds(times["dense"]), "absent", "-", verdict(value["dense"]), "absent",
                         peak_mib("dense", n, np.float64, args), "absent"])
            continue
        rows.append([n, seconds(times["dense"]), seconds(times["torch"]), f"{times['torch'] / times['dense']:.2f}",
                     verdict(value["dense"]), verdict(value["torch"]), peak_mib("dense", n, np.float64, args),
                     peak_mib("torch-slow", n, np.float64, args)])
    print_table(
        "2. Dense mode vs torch.autograd.gradcheck (slow mode), same loss sum(f(x) * g), float64",
        ["N", "dense s", "torch slow s", "torch/dense", "dense", "torch", "dense MiB", "torch MiB"],
        rows,
        ["both make 2N loss evaluations and one backward; > 1 in torch/dense means the dense mode is faster"],
    )


def fast_vs_torch(args, torch) -> None:
    rows = []
    for dtype in (np.float32, np.float64):
        for n in args.fast_sizes:
            runs = {"fast": make_cell("fast", n, dtype), "floor": make_cell("floor", n, dtype),
                    "calls": make_cell("calls", n, dtype)}
            if torch is not None:
                runs["torch"] = make_cell("torch-fast", n, dtype, torch)
            times, value = best_of(runs, args.repeats)
            name = np.dtype(dtype).name
            if n == max(args.fast_sizes):
                own = (times["fast"] / times["calls"], f"its own 4 forward + {1 + RANDOM_UPSTREAM} backward calls")
                goal(f"fast / its floor (4 forwards + 1 backward), N={n:.0e} {name}", times["fast"] / times["floor"],
                     2.0, unavoidable=own)
                if torch is not None:
                    goal(f"fast / torch fast mode, N={n:.0e} {name}", times["fast"] / times["torch"], 0.5,
                         unavoidable=own)
                memory, floor_memory = peak_mib("fast", n, dtype, args), peak_mib("calls", n, dtype, args)
                if "-" not in (memory, floor_memory) and "error" not in (memory, floor_memory):
                    # The result holds analytical and step, float64, x's shape: 16 bytes an element.
                    kept = floor_memory and float(floor_memory) + 16 * n / 2**20
                    goal(f"fast peak memory / input size, N={n:.0e} {name}",
                         float(memory) / (n * np.dtype(dtype).itemsize / 2**20), 4.0,
                         unavoidable=(float(memory) / kept, "its calls' peak + the result's two float64 arrays"))
            if torch is None:
                rows.append([f"{n:.0e}", name, seconds(times["fast"]), "absent", "-", verdict(value["fast"]),
                             "absent", peak_mib("fast", n, dtype, args), "absent"])
                continue
            rows.append([f"{n:.0e}", name, seconds(times["fast"]), seconds(times["torch"]),
                         f"{times['torch'] / times['fast']:.2f}", verdict(value["fast"]), verdict(value["torch"]),
                         peak_mib("fast", n, dtype, args), peak_mib("torch-fast", n, dtype, args)])
    print_table(
        "3. Fast mode (2 probes) vs torch.autograd.gradcheck(fast_mode=True), same loss sum(f(x) * g)",
        ["N", "dtype", "fast s", "torch fast s", "torch/fast", "fast", "torch", "fast MiB", "torch MiB"],
        rows,
        ["goal: fast mode verifies a 1e6-element float32 dropout in < 1 s and no slower than torch's fast mode",
         f"torch runs with eps=1e-6 in float64 and eps={TORCH_FLOAT32_EPS:g} in float32 "
         "(its default step fails in float32)"],
    )


def localisation(args) -> None:
    rows = []
    for n in args.localise_sizes:
        times, value = best_of({"probes": make_cell("fast", n, np.float32),
                                "localise": make_cell("localise", n, np.float32),
                                "forward": make_cell("forward", n, np.float32)}, args.repeats)
        result = value["localise"]
        index = int(np.random.default_rng(n).integers(n))
        found = result.failing_indices.tolist()
        # The fault is guaranteed to stand out of a probe's noise when it exceeds 2 T / w_j.
        detectable = 2 * result.probe_tolerance.min() * result.probe_step[0] / result.step[index]
        if n == max(args.localise_sizes):
            # What a search must spend at the least: the probes, then its forward calls.
            least = times["probes"] + (result.search_calls + result.detail_calls) * times["forward"]
            goal(f"localisation / probes alone, N={n:.0e}", times["localise"] / times["probes"], 2.0,
                 unavoidable=(times["localise"] / least, f"the probes + its {result.search_calls} search and "
                              f"{result.detail_calls} detail forward calls"))
        rows.append([f"{n:.0e}", index, "yes" if found == [index] else f"no: {found}",
                     2 * result.probes, result.search_calls, f"{2 * math.log2(n):.1f}", result.detail_calls,
                     f"{2 * n:.0e}", seconds(times["probes"]), seconds(times["localise"]), f"{detectable:.3g}",
                     peak_mib("localise", n, np.float32, args)])
    print_table(
        f"4. Localisation: dropout backward off by +{CORRUPTION:g} at one random index (float32, 2 probes)",
        ["N", "index", "found", "probe calls", "search calls", "2 log2 N", "detail calls", "dense rerun",
         "probes only s", "with search s", "detectable >=", "peak MiB"],
        rows,
        ["search calls: forward calls spent splitting groups after the probes failed (goal <= 2 log2 N);",
         "detail calls: 2 more when the element was reached by inference and had to be measured alone;",
         "dense rerun: what torch's fast mode spends (slow mode) to say where a failure is;",
         "detectable >=: the smallest error at that element the probes are guaranteed to see (2 T / w)."],
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the best is kept")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (numpy's element-wise work is single-threaded)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--no-torch", action="store_true", help="run without PyTorch even if it is installed")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one repeat, for a smoke test")
    parser.add_argument("--memory-of", nargs=3, metavar=("KIND", "N", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
        args.dense_sizes, args.fast_sizes, args.localise_sizes = [64, 256], [10**3, 10**4], [10**3, 10**4]
        args.goal_sizes = [256, 1024]
    else:
        args.goal_sizes = [1024, 16384]
        args.dense_sizes = [256, 1024, 4096]
        args.fast_sizes = [10**3, 10**4, 10**5, 10**6]
        args.localise_sizes = [10**3, 10**4, 10**5, 10**6]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.memory_of:
        kind, n, dtype_name = args.memory_of
        _memory_child(kind, int(n), dtype_name, args.torch_threads)
        return
    torch = None if args.no_torch else import_torch(args.torch_threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores, "
          f"load average {load[0]:.2f}" if load else "")
    if torch is None:
        print("PyTorch: absent (pip install torch to add its columns); torch columns are skipped")
    else:
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s)")
    print(f"best of {args.repeats} timed runs per cell; peak memory: "
          f"{'skipped' if args.no_memory else 'growth of the peak resident set, one fresh process per cell'}")
    started = time.perf_counter()
    dense_floor(args)
    contention(args)
    batching(args)
    diagnose_cost(args)
    dense_vs_bare(args)
    dense_vs_torch(args, torch)
    fast_vs_torch(args, torch)
    localisation(args)
    print_goals()
    print(f"\nfinished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
