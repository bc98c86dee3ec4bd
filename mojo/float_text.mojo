"""Float64 to text exactly as Python's repr() writes it.

The JSON consumer compares values bit for bit, so every float must read back to the same
float64. Mojo's own String(Float64) is not safe for that: for some values it prints a digit
string that parses to a neighbouring float (e.g. 4.313471169177122e+16) or one digit off the
shortest form (12.449234008789063 for 12.449234008789062). This module produces the shortest
digit string that rounds back to the value, choosing the one closest to the exact value when
several are equally short, using exact big-integer arithmetic (the free-format algorithm of
Steele & White as refined by Burger & Dybvig), then lays it out with Python's repr rules.
"""

from math import ceil, isinf, isnan, log10
from memory import bitcast

from bignat import BigNat


@fieldwise_init
struct DecimalDigits(Copyable, Movable):
    """The value 0.d1d2d3... * 10**exponent, with digits as ASCII characters."""

    var digits: String
    var exponent: Int


fn _split_float(value: Float64) -> Tuple[UInt64, Int]:
    """Return (mantissa, exponent) with value == mantissa * 2**exponent, value positive finite."""
    var bits = bitcast[DType.uint64](value)
    var biased = Int((bits >> 52) & 0x7FF)
    var fraction = bits & ((UInt64(1) << 52) - 1)
    if biased == 0:
        return (fraction, -1074)
    return (fraction | (UInt64(1) << 52), biased - 1075)


fn shortest_digits(value: Float64) -> DecimalDigits:
    """Shortest round-tripping digits of a positive finite value (ties go to the even digit).

    R/S is the value, M_plus/S and M_minus/S are half the distances to the neighbouring floats;
    any decimal strictly inside that interval (or on its edge when the mantissa is even, since
    the reader rounds ties to even) reads back to the same float.
    """
    var parts = _split_float(value)
    var mantissa = parts[0]
    var exponent = parts[1]
    var even = mantissa % 2 == 0
    # The gap below is half the gap above when the mantissa is a bare power of two.
    var uneven_gap = mantissa == (UInt64(1) << 52) and exponent > -1074

    var r = BigNat(mantissa)
    var s = BigNat(1)
    var m_plus = BigNat(1)
    var m_minus = BigNat(1)
    if exponent >= 0:
        r.shift_left(exponent)
        m_plus.shift_left(exponent)
        m_minus.shift_left(exponent)
    else:
        s.shift_left(-exponent)
    r.shift_left(2 if uneven_gap else 1)
    s.shift_left(2 if uneven_gap else 1)
    if uneven_gap:
        m_plus.shift_left(1)

    # Estimate the decimal exponent, scale by it, then correct the estimate exactly.
    var k = Int(ceil(log10(value) - 1e-10))
    if k >= 0:
        s.mul_pow10(k)
    else:
        r.mul_pow10(-k)
        m_plus.mul_pow10(-k)
        m_minus.mul_pow10(-k)
    while _reaches_top(r, m_plus, s, even):
        s.mul_small(10)
        k += 1

    var digits = List[Int]()
    while True:
        r.mul_small(10)
        m_plus.mul_small(10)
        m_minus.mul_small(10)
        var digit = 0
        while r.compare(s) >= 0:
            r.subtract(s)
            digit += 1
        var low = r.compare(m_minus) <= 0 if even else r.compare(m_minus) < 0
        var high = _reaches_top(r, m_plus, s, even)
        if not low and not high:
            digits.append(digit)
            continue
        if high and (not low or _round_up_at_end(r, s, digit)):
            digit += 1
        digits.append(digit)
        break
    return _carry_and_pack(digits^, k)


fn _reaches_top(r: BigNat, m_plus: BigNat, s: BigNat, even: Bool) -> Bool:
    """Whether r + m_plus reaches s, i.e. the upper edge of the interval is at or past one unit."""
    var order = r.plus(m_plus).compare(s)
    return order >= 0 if even else order > 0


fn _round_up_at_end(r: BigNat, s: BigNat, digit: Int) -> Bool:
    """Both last digits read back: take the nearer one, the even digit on an exact tie."""
    var twice = r.copy()
    twice.mul_small(2)
    var order = twice.compare(s)
    return order > 0 or (order == 0 and digit % 2 == 1)


fn _carry_and_pack(var digits: List[Int], exponent: Int) -> DecimalDigits:
    """Propagate a last digit of 10 leftwards, drop trailing zeros and return the text digits."""
    var k = exponent
    var i = len(digits) - 1
    while i > 0 and digits[i] == 10:
        digits[i] = 0
        digits[i - 1] += 1
        i -= 1
    if digits[0] == 10:
        digits[0] = 1
        k += 1
    while len(digits) > 1 and digits[len(digits) - 1] == 0:
        _ = digits.pop()
    var text = String()
    for d in digits:
        text += chr(ord("0") + d)
    return DecimalDigits(text, k)


fn float_repr(value: Float64) -> String:
    """Format like Python's repr(float); non-finite values use the names json.loads accepts."""
    if isnan(value):
        return "NaN"
    if isinf(value):
        return "Infinity" if value > 0.0 else "-Infinity"
    var sign = String("-") if bitcast[DType.uint64](value) >> 63 == 1 else String("")
    if value == 0.0:
        return sign + "0.0"
    var decimal = shortest_digits(abs(value))
    return sign + _layout(decimal.digits, decimal.exponent)


fn _layout(digits: String, exponent: Int) -> String:
    """Python's repr layout: plain notation for 1e-4 <= |v| < 1e16, otherwise d.ddde+XX."""
    var count = len(digits)
    if exponent > -4 and exponent <= 16:
        if exponent <= 0:
            return "0." + String("0") * (-exponent) + digits
        if exponent >= count:
            return digits + String("0") * (exponent - count) + ".0"
        return String(digits[:exponent]) + "." + String(digits[exponent:])
    var scientific = String(digits[:1])
    if count > 1:
        scientific += "." + String(digits[1:])
    var power = exponent - 1
    scientific += "e-" if power < 0 else "e+"
    if abs(power) < 10:
        scientific += "0"
    return scientific + String(abs(power))
