"""False alarms and detections on lib.catalogue: this checker, the plain rule, and PyTorch's gradcheck.

Every layer of lib.catalogue, correct and with each of its bugs, 10 seeds, all-ones and random
grad_output, float32 and float64: the dense mode with its defaults, the fast mode (also with its
probes measured in float64) and the plain rule. A false alarm is a correct backward that fails; a detection
is a broken backward that fails. PyTorch is optional (pip install torch==2.13.0): its columns
wrap the same numpy forward and backward in a torch.autograd.Function and run
torch.autograd.gradcheck with its defaults (eps=1e-6, atol=1e-5, rtol=1e-3), which checks the
full Jacobian rather than one upstream gradient.

    python benchmarks/false_alarms.py [--seeds 10] [--no-torch]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from lib import catalogue
from lib.gradcheck import check_gradient


def ours(case) -> bool:
    return check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False).passed


def fast(case) -> bool:
    return check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False,
                          mode="fast").passed


def fast64(case) -> bool:
    return check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False,
                          mode="fast", probe_dtype="float64").passed


def plain(case) -> bool:
    return check_gradient(case.forward, case.backward, case.x, case.grad_output, raise_on_failure=False,
                          strict=True, probes=0).passed


def torch_checker():
    try:
        import torch
    except ImportError:
        return None

    def check(case) -> bool:
        class Wrapped(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                ctx.save_for_backward(t)
                return torch.from_numpy(np.array(case.forward(t.detach().numpy().copy())))

            @staticmethod
            def backward(ctx, g):
                (t,) = ctx.saved_tensors
                grad = case.backward(g.detach().numpy().copy(), t.detach().numpy().copy())
                return torch.from_numpy(np.array(grad, dtype=case.x.dtype))

        x = torch.from_numpy(case.x.copy()).requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not a double precision floating point": the point of the row
            try:
                return bool(torch.autograd.gradcheck(Wrapped.apply, (x,), raise_exception=False))
            except Exception:
                return False
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="input seeds per case (default 10)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    args = parser.parse_args()
    seeds = range(args.seeds)
    columns = {"ours": catalogue.tally(ours, seeds=seeds), "fast": catalogue.tally(fast, seeds=seeds),
               "fast64": catalogue.tally(fast64, seeds=seeds), "plain": catalogue.tally(plain, seeds=seeds)}
    torch_check = None if args.no_torch else torch_checker()
    if torch_check is None:
        print("PyTorch is not installed (or --no-torch): its columns are left out")
    else:
        columns["torch"] = catalogue.tally(torch_check, seeds=seeds)
    print("ours: check_gradient's defaults (noise-aware rule, one random probe); fast: mode='fast' (2 probes); "
          "fast64: the same with probe_dtype='float64'; plain: strict=True, probes=0")
    print(catalogue.format_tallies(columns))


if __name__ == "__main__":
    main()
