"""A small unsigned big integer, just enough for exact float-to-decimal conversion.

Printing a float64 with the fewest digits that read back to the same value needs exact
arithmetic on numbers as large as 2**1077 * 10**17, so this module provides a natural number
stored as little-endian base-2**32 limbs with the handful of operations the digit generator
uses: multiply by a small factor, shift left, add, subtract and compare.
"""


struct BigNat(Copyable, Movable):
    """A natural number as little-endian 32-bit limbs, with no leading zero limbs."""

    var limbs: List[UInt32]

    fn __init__(out self, value: UInt64):
        """Create the number `value`."""
        self.limbs = List[UInt32]()
        if value != 0:
            self.limbs.append(UInt32(value & 0xFFFFFFFF))
            if value >> 32 != 0:
                self.limbs.append(UInt32(value >> 32))

    fn __copyinit__(out self, other: Self):
        self.limbs = other.limbs.copy()

    fn is_zero(self) -> Bool:
        return len(self.limbs) == 0

    fn _trim(mut self):
        """Drop leading zero limbs so that comparison can start from the length."""
        while len(self.limbs) > 0 and self.limbs[len(self.limbs) - 1] == 0:
            _ = self.limbs.pop()

    fn mul_small(mut self, factor: UInt32):
        """Multiply in place by a factor below 2**32."""
        var carry: UInt64 = 0
        for i in range(len(self.limbs)):
            var product = UInt64(self.limbs[i]) * UInt64(factor) + carry
            self.limbs[i] = UInt32(product & 0xFFFFFFFF)
            carry = product >> 32
        if carry != 0:
            self.limbs.append(UInt32(carry))
        self._trim()

    fn mul_pow10(mut self, power: Int):
        """Multiply in place by 10**power (power >= 0), nine decimal digits at a time."""
        var left = power
        while left >= 9:
            self.mul_small(1_000_000_000)
            left -= 9
        var factor: UInt32 = 1
        for _ in range(left):
            factor *= 10
        self.mul_small(factor)

    fn shift_left(mut self, bits: Int):
        """Multiply in place by 2**bits (bits >= 0)."""
        if self.is_zero() or bits == 0:
            return
        var whole = bits // 32
        var part = bits % 32
        var shifted = List[UInt32]()
        for _ in range(whole):
            shifted.append(0)
        var carry: UInt32 = 0
        for i in range(len(self.limbs)):
            var limb = self.limbs[i]
            if part == 0:
                shifted.append(limb)
            else:
                shifted.append((limb << UInt32(part)) | carry)
                carry = limb >> UInt32(32 - part)
        if carry != 0:
            shifted.append(carry)
        self.limbs = shifted^

    fn plus(self, other: BigNat) -> BigNat:
        """Return self + other."""
        var total = BigNat(0)
        var carry: UInt64 = 0
        var size = max(len(self.limbs), len(other.limbs))
        for i in range(size):
            var sum = carry
            if i < len(self.limbs):
                sum += UInt64(self.limbs[i])
            if i < len(other.limbs):
                sum += UInt64(other.limbs[i])
            total.limbs.append(UInt32(sum & 0xFFFFFFFF))
            carry = sum >> 32
        if carry != 0:
            total.limbs.append(UInt32(carry))
        return total^

    fn subtract(mut self, other: BigNat):
        """Subtract in place; the caller guarantees other <= self."""
        var borrow: Int64 = 0
        for i in range(len(self.limbs)):
            var diff = Int64(self.limbs[i]) - borrow
            if i < len(other.limbs):
                diff -= Int64(other.limbs[i])
            borrow = 0
            if diff < 0:
                diff += 0x1_0000_0000
                borrow = 1
            self.limbs[i] = UInt32(diff)
        self._trim()

    fn compare(self, other: BigNat) -> Int:
        """Return -1, 0 or 1 as self is below, equal to or above other."""
        if len(self.limbs) != len(other.limbs):
            return -1 if len(self.limbs) < len(other.limbs) else 1
        for j in range(len(self.limbs)):
            var i = len(self.limbs) - 1 - j
            if self.limbs[i] != other.limbs[i]:
                return -1 if self.limbs[i] < other.limbs[i] else 1
        return 0
