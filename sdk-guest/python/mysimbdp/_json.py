"""JSON text exactly as the Rust SDK (serde_json) writes it, so a Python app's documents are
byte-identical to a Rust app's: compact separators, non-ASCII kept as UTF-8, and floats in
the shortest round-trip form serde_json uses (`1e+16`, `1.5e-7`, `100.0`; NaN and infinities
become `null`)."""

from json.encoder import encode_basestring as _quote  # the C encoder, escapes as serde_json


def format_f64(value):
    """A float as serde_json (the `ryu` crate) writes it."""
    text = repr(value)
    if "e" not in text:
        if text[-1] == "f" or text[-1] == "n":  # inf, -inf, nan
            return "null"
        # repr and ryu agree on plain decimals for 1e-4 <= |x| < 1e16.
        return text
    mantissa, exponent = text.split("e")
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "")
    # repr's scientific mantissa is d or d.ddd: the point sits after the first digit.
    length = len(digits)
    kk = int(exponent) + 1  # 10^(kk-1) <= |x| < 10^kk
    k = kk - length
    if 0 <= k and kk <= 16:
        return sign + digits + "0" * k + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * (-kk) + digits
    # serde_json marks a positive exponent with `+` (`1e+16`), a negative one with `-`.
    exp = ("e+" if kk > 0 else "e") + str(kk - 1)
    if length == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp


def _encode(value, parts):
    kind = type(value)
    if kind is str:
        parts.append(_quote(value))
    elif kind is float:
        parts.append(format_f64(value))
    elif kind is bool:
        parts.append("true" if value else "false")
    elif kind is int:
        parts.append(str(value))
    elif value is None:
        parts.append("null")
    elif isinstance(value, dict):
        parts.append("{")
        first = True
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"a JSON object key must be a string, not {type(key).__name__}")
            if not first:
                parts.append(",")
            first = False
            parts.append(_quote(key))
            parts.append(":")
            _encode(item, parts)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    elif isinstance(value, str):
        parts.append(_quote(str(value)))
    elif isinstance(value, float):
        parts.append(format_f64(float(value)))
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value):
    """`value` (dicts, lists, tuples, str, int, float, bool, None) as compact JSON text."""
    parts = []
    _encode(value, parts)
    return "".join(parts)
