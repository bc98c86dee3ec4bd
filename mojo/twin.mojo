"""Mojo twin of the dropout gradient-check replica: prints one JSON document on stdout.

Usage: mojo run -I <this dir> twin.mojo [--p P] [--seed S] [--eps E]

The document holds raw draws of Mojo's process-wide generator ("rng") and, for the dropout and
dropout2d tests in float32 and float64, every checker configuration ("cases"), and the fixed
checker on a few functions with kinks and exact zeros ("kinks"), so the Python replica can be
compared with real Mojo bit for bit.
"""

from random import random_float64, seed
from sys import argv, exit, stderr

from cases import Tolerances, all_case_specs, run_case
from inputs import TestInput, dropout2d_input, dropout_input
from json_out import JsonObject, json_array
from kink_cases import all_kink_cases


struct Options(Copyable, Movable):
    """Command-line settings; without --p each test keeps its own p (0.3 and 0.2)."""

    var has_p: Bool
    var p: Float64
    var seed: Int
    var eps: Float64

    fn __init__(out self, args: List[String]) raises:
        self.has_p = False
        self.p = 0.0
        self.seed = 42
        self.eps = 1e-5
        var i = 0
        while i < len(args):
            if i + 1 >= len(args):
                raise Error("missing value after " + args[i])
            if args[i] == "--p":
                self.has_p = True
                self.p = atof(args[i + 1])
            elif args[i] == "--seed":
                self.seed = Int(args[i + 1])
            elif args[i] == "--eps":
                self.eps = atof(args[i + 1])
            else:
                raise Error("unknown option " + args[i] + " (expected --p, --seed, --eps)")
            i += 2


fn draws(count: Int) -> List[Float64]:
    """The next `count` values of the process-wide generator."""
    var values = List[Float64]()
    for _ in range(count):
        values.append(random_float64())
    return values^


fn rng_section() -> String:
    """First draws of a fresh process, then draws after a few seeds (incl. beyond 32 bits)."""
    var section = JsonObject()
    section.floats("fresh", draws(3))
    var seeded = List[String]()
    var seeds = List[Int](42, 7, 4294967338, 2147483647)
    for s in seeds:
        seed(s)
        var entry = JsonObject()
        entry.int("seed", s)
        entry.floats("draws", draws(12 if s == 42 else 3))
        seeded.append(entry.finish())
    section.raw("seeded", json_array(seeded))
    return section.finish()


fn append_cases[
    dtype: DType
](mut out_cases: List[String], test: TestInput[dtype], options: Options):
    """All 24 checker configurations of one test in one dtype, as JSON objects."""
    var tol = Tolerances(options.eps, 1e-3, 1e-6)
    for spec in all_case_specs():
        out_cases.append(run_case(test, spec, options.seed, tol))


fn main():
    """Print the document, or an error on stderr (stdout stays empty) and exit status 2."""
    try:
        print(build_document())
    except e:
        print("twin.mojo: " + String(e), file=stderr)
        exit(2)


fn build_document() raises -> String:
    """The whole JSON document; raises on a bad command line."""
    # The fresh draws must come before any seed() call in the process.
    var rng = rng_section()
    var args = List[String]()
    var argv_all = argv()
    for i in range(1, len(argv_all)):
        args.append(String(argv_all[i]))
    var options = Options(args)
    var p_dropout = options.p if options.has_p else 0.3
    var p_dropout2d = options.p if options.has_p else 0.2

    var cases = List[String]()
    append_cases(cases, dropout_input[DType.float32](p_dropout), options)
    append_cases(cases, dropout_input[DType.float64](p_dropout), options)
    append_cases(cases, dropout2d_input[DType.float32](p_dropout2d), options)
    append_cases(cases, dropout2d_input[DType.float64](p_dropout2d), options)

    var kinks = json_array(all_kink_cases(), ",\n  ")
    return (
        '{"rng": '
        + rng
        + ',\n "cases": '
        + json_array(cases, ",\n  ")
        + ',\n "kinks": '
        + kinks
        + "}"
    )
