"""Build each rewritten test file once, run the binary once per configuration, read its lines.

A configuration is (checker, tolerance, mutation), passed to the dispatching
check_gradient as UPSTREAM_CHECKER, UPSTREAM_TOLERANCE and UPSTREAM_MUTATION.
The binary prints UPSTREAM_BEGIN/UPSTREAM_END around each test and one
UPSTREAM_CALL line per check_gradient call; floats come as the decimal of their
float64 bit pattern, so they read back exactly.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: (checker, tolerance, mutation): ours and the failure-era algorithm at each test's original tolerance,
#: the library's own checker at its call site's tolerance (and once at the original one).
CONFIGURATIONS = (
    ("ours", "original", "none"), ("ours", "original", "scale"), ("ours", "original", "shift"),
    ("upstream", "callsite", "none"), ("upstream", "callsite", "scale"), ("upstream", "callsite", "shift"),
    ("upstream", "original", "none"),
    ("era", "original", "none"), ("era", "original", "scale"), ("era", "original", "shift"),
)
_FLOATS = {"callsite_rtol", "callsite_atol", "callsite_epsilon", "rtol", "atol", "ratio", "effective_atol", "step"}


class BuildFailed(RuntimeError):
    """`mojo build` refused a rewritten test file."""


@dataclass
class TestRun:
    """One test under one configuration."""

    status: str = "not run"  # "ok", "raised", "crashed" (the process died inside it), "not run"
    calls: list[dict] = field(default_factory=list)


def from_bits(text: str) -> float:
    return struct.unpack("<d", struct.pack("<Q", int(text)))[0]


def parse_call(line: str) -> dict:
    """The key=value fields of an UPSTREAM_CALL line, floats decoded, remeasured split."""
    fields = dict(item.split("=", 1) for item in line.split()[1:])
    call: dict = {}
    for key, value in fields.items():
        if key in _FLOATS:
            call[key] = from_bits(value)
        elif key in ("passed", "reimplemented_passed"):
            call[key] = value == "True"
        elif key in ("index", "numel", "extra_forward"):
            call[key] = int(value)
        elif key == "remeasured":
            call[key] = [_remeasured(entry) for entry in value.split(",") if entry]
        else:
            call[key] = value
    return call


def _remeasured(entry: str) -> dict:
    index, verdict, step, first_ratio = entry.split(":")
    return {"index": int(index), "verdict": verdict, "step": from_bits(step), "first_ratio": from_bits(first_ratio)}


def parse_output(stdout: str) -> dict[str, TestRun]:
    """test name -> its TestRun; a test begun but never ended crashed the process."""
    runs: dict[str, TestRun] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("UPSTREAM_BEGIN "):
            current = line.split()[1]
            runs[current] = TestRun("crashed")
        elif line.startswith("UPSTREAM_CALL ") and current is not None:
            runs[current].calls.append(parse_call(line))
        elif line.startswith("UPSTREAM_END ") and current is not None:
            runs[current].status = line.split()[2]
            current = None
    return runs


def build(mojo: str, tree: Path, relative: Path, out_dir: Path, timeout: float = 900) -> Path:
    """`mojo build -I tree file -o binary`; BuildFailed with the compiler's last lines."""
    binary = out_dir / relative.with_suffix("").as_posix().replace("/", "__")
    done = subprocess.run([mojo, "build", "-I", str(tree), str(tree / relative), "-o", str(binary)],
                          capture_output=True, text=True, timeout=timeout, cwd=tree)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        raise BuildFailed(f"{relative}: mojo build failed (exit {done.returncode}): "
                          + "\n".join((errors or done.stderr.splitlines())[-12:]))
    return binary


def run(binary: Path, tree: Path, configuration: tuple[str, str, str], timeout: float = 900) -> tuple[dict, int]:
    """Run the binary under one configuration: (test name -> TestRun, exit code)."""
    checker, tolerance, mutation = configuration
    environment = dict(os.environ, UPSTREAM_CHECKER=checker, UPSTREAM_TOLERANCE=tolerance,
                       UPSTREAM_MUTATION=mutation)
    try:
        done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=timeout, cwd=tree,
                              env=environment)
    except subprocess.TimeoutExpired as expired:
        stdout = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else expired.stdout
        return parse_output(stdout or ""), -1
    return parse_output(done.stdout), done.returncode
