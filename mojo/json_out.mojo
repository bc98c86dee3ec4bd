"""Minimal JSON writing: objects built key by key, floats in round-trip form.

JSON has no NaN, and the `NaN` token json.loads accepts carries neither the sign bit nor the
payload, so a NaN is written as the string "nan:" + its 64 bits in hex (e.g. "nan:fff8000000000000",
the default NaN an invalid x86 operation yields); lib.replica.twin reads it back to those bits.
"""

from math import isnan
from memory import bitcast

from float_text import float_repr


fn nan_text(value: Float64) -> String:
    """A NaN as the JSON string "nan:<16 lowercase hex digits of its bits>"."""
    var bits = bitcast[DType.uint64](value)
    var text = String('"nan:')
    for shift in range(60, -4, -4):
        var nibble = Int((bits >> UInt64(shift)) & 0xF)
        text += chr(ord("0") + nibble) if nibble < 10 else chr(ord("a") + nibble - 10)
    return text + '"'


fn json_float(value: Float64) -> String:
    """A float that reads back to the same bits: round-trip digits, or nan_text for a NaN."""
    if isnan(value):
        return nan_text(value)
    return float_repr(value)


fn json_string(text: String) -> String:
    """A JSON string literal (quotes, backslashes and control characters escaped)."""
    var quoted = String('"')
    for char in text.codepoint_slices():
        if char == '"' or char == "\\":
            quoted += "\\" + char
        elif ord(char) < 0x20:
            quoted += "\\u00" + hex(ord(char), prefix="").rjust(2, "0")
        else:
            quoted += char
    return quoted + '"'


fn json_floats(values: List[Float64]) -> String:
    """A JSON array of floats, each printed so that float() reads back the same bits."""
    var text = String("[")
    for i in range(len(values)):
        if i > 0:
            text += ", "
        text += json_float(values[i])
    return text + "]"


struct JsonObject(Movable):
    """A JSON object written one member at a time, in insertion order."""

    var text: String

    fn __init__(out self):
        self.text = String()

    fn raw(mut self, key: String, value_text: String):
        """Add a member whose value is already JSON text."""
        if len(self.text) > 0:
            self.text += ", "
        self.text += json_string(key) + ": " + value_text

    fn string(mut self, key: String, value: String):
        self.raw(key, json_string(value))

    fn string_or_null(mut self, key: String, value: String):
        """An empty string is written as null."""
        self.raw(key, json_string(value) if len(value) > 0 else "null")

    fn float(mut self, key: String, value: Float64):
        self.raw(key, json_float(value))

    fn int_or_null(mut self, key: String, value: Int):
        """A negative value is written as null."""
        self.raw(key, String(value) if value >= 0 else "null")

    fn int(mut self, key: String, value: Int):
        self.raw(key, String(value))

    fn bool(mut self, key: String, value: Bool):
        self.raw(key, "true" if value else "false")

    fn floats(mut self, key: String, values: List[Float64]):
        self.raw(key, json_floats(values))

    fn ints(mut self, key: String, values: List[Int]):
        var items = List[String]()
        for v in values:
            items.append(String(v))
        self.raw(key, json_array(items))

    fn bools(mut self, key: String, values: List[Bool]):
        var items = List[String]()
        for v in values:
            items.append("true" if v else "false")
        self.raw(key, json_array(items))

    fn finish(self) -> String:
        return "{" + self.text + "}"


fn json_array(items: List[String], separator: String = ", ") -> String:
    """A JSON array of already-formatted items."""
    var text = String("[")
    for i in range(len(items)):
        if i > 0:
            text += separator
        text += items[i]
    return text + "]"
