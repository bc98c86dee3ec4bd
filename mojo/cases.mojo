"""One case = one test (dropout or dropout2d) run under one checker configuration.

Every case starts from seed(1), the state of a fresh process, so it does not depend on the
cases before it.
"""

from random import seed

from checkers import CheckResult, failure_message, fixed_check, original_check
from dropout import CheckedForward, channel_dropout, dropout_backward
from inputs import TestInput
from json_out import JsonObject


@fieldwise_init
struct CaseSpec(Copyable, Movable):
    """The switches of one case, spelled as they appear in the JSON."""

    var checker: String  # "original" | "fixed"
    var divide_by: String  # "nominal" | "realised"
    var restore_input: Bool
    var forward: String  # "stochastic" | "fixed_mask"
    var rng: String  # "reseed" | "global"


fn all_case_specs() -> List[CaseSpec]:
    """Original checker over all 16 switch combinations, then the fixed one over 8."""
    var specs = List[CaseSpec]()
    var divides = List[String]("nominal", "realised")
    var restores = List[Bool](False, True)
    var forwards = List[String]("stochastic", "fixed_mask")
    var rngs = List[String]("reseed", "global")
    for divide_by in divides:
        for restore in restores:
            for forward in forwards:
                for rng in rngs:
                    specs.append(CaseSpec("original", divide_by, restore, forward, rng))
    for divide_by in divides:
        for forward in forwards:
            for rng in rngs:
                specs.append(CaseSpec("fixed", divide_by, True, forward, rng))
    return specs^


@fieldwise_init
struct Tolerances(Copyable, Movable):
    """The checkers' step (original checker only) and pass thresholds."""

    var eps: Float64
    var rtol: Float64
    var atol: Float64


fn to_float64[dtype: DType](values: List[Scalar[dtype]]) -> List[Float64]:
    """Widen dtype values to Float64 (exact) for the JSON."""
    var result = List[Float64](capacity=len(values))
    for v in values:
        result.append(Float64(v))
    return result^


fn run_case[
    dtype: DType
](test: TestInput[dtype], spec: CaseSpec, seed_value: Int, tol: Tolerances) -> String:
    """Run the test's dropout call, then the checker, and return the case as a JSON object.

    rng "reseed": every dropout call passes the seed (and reseeds if it is positive).
    rng "global": the test seeds once up front, and every dropout call then passes 0.
    """
    seed(1)
    var call_seed = seed_value
    if spec.rng == "global":
        if seed_value > 0:
            seed(seed_value)
        call_seed = 0
    var x = test.x.copy()
    var first = channel_dropout[dtype](x, test.plane, test.p, call_seed)
    var grad_output = List[Scalar[dtype]](length=len(x), fill=Scalar[dtype](1.0))
    var forward = CheckedForward[dtype](
        spec.forward == "stochastic", test.p, call_seed, test.plane, first.mask
    )
    var analytical = dropout_backward(grad_output, first.mask, test.p)
    var realised = spec.divide_by == "realised"
    var result: CheckResult
    if spec.checker == "original":
        result = original_check[CheckedForward[dtype]](
            x,
            forward,
            grad_output,
            analytical,
            tol.eps,
            tol.rtol,
            tol.atol,
            realised,
            spec.restore_input,
        )
    else:
        result = fixed_check[CheckedForward[dtype]](
            x, forward, grad_output, analytical, tol.rtol, tol.atol, realised
        )
    return _case_json(test, spec, seed_value, tol, first.mask, result, x)


fn _case_json[
    dtype: DType
](
    test: TestInput[dtype],
    spec: CaseSpec,
    seed_value: Int,
    tol: Tolerances,
    mask: List[Scalar[dtype]],
    result: CheckResult,
    x_after: List[Scalar[dtype]],
) -> String:
    var fields = JsonObject()
    fields.string("test", test.name)
    fields.string("dtype", String(dtype))
    fields.string("checker", spec.checker)
    fields.string("divide_by", spec.divide_by)
    fields.bool("restore_input", spec.restore_input)
    fields.string("forward", spec.forward)
    fields.string("rng", spec.rng)
    fields.float("p", test.p)
    fields.int("seed", seed_value)
    fields.float("eps", tol.eps)
    fields.float("rtol", tol.rtol)
    fields.float("atol", tol.atol)
    fields.floats("x", to_float64(test.x))
    fields.floats("mask", to_float64(mask))
    fields.floats("analytical", result.analytical)
    fields.floats("numerical", result.numerical)
    fields.floats("step", result.step)
    fields.floats("tolerance", result.tolerance)
    fields.floats("x_after", to_float64(x_after))
    if spec.checker == "fixed":
        add_fixed_fields(fields, result)
    fields.int_or_null("first_failing_index", result.first_failing)
    fields.string_or_null("message", failure_message[dtype](result.first_failing))
    return fields.finish()


fn add_fixed_fields(mut fields: JsonObject, result: CheckResult):
    """What only the fixed checker measures: the noise term, the verdicts, stage 2's record."""
    fields.floats("noise", result.noise)
    fields.bools("passed", result.passed)
    fields.ints("halvings", result.halvings)
    fields.floats("decided_step", result.decided_step)
    fields.bools("subgradient", result.subgradient)
    fields.floats("slope_plus", result.slope_plus)
    fields.floats("slope_minus", result.slope_minus)
    fields.int("forward_calls", result.forward_calls)
